// Releases: the release console of `dockyard deploy` — the traffic split (GET /deployment),
// per-revision figures over a window (GET /deployment/stats), the revisions with their build
// logs (GET /revisions), the history of changes, promote / canary / rollback with a
// confirmation (POST /deployment/promote, POST /deployment/rollback) and a revision's
// environment variables (PUT /revisions/{id}/env; names only come back). Public API only.
import {
  api, card, clear, empty, fmtTime, h, loading, pageHeader, shortId,
} from "../core.js";
import { apiErrorBox, confirmAction, numberField, revLabel } from "./release-dialogs.js";

const WINDOWS = [[300, "5 min"], [3600, "1 hour"], [86400, "24 hours"], [7 * 86400, "7 days"]];
const REVISIONS = 100; // newest first; the API pages further (offset)
const POLL_MS = 5000; // auto-rollbacks and other operators' changes show up without a reload

export async function renderReleases(view, params, signal) {
  const windowSeconds = WINDOWS.some(([s]) => s === Number(params.get("window")))
    ? Number(params.get("window")) : 3600;
  const ui = {
    flash: h("div", { "data-flash": "" }),
    traffic: h("div", {}, loading("Loading the deployment…")),
    rollback: h("span", {}),
    figures: h("div", {}, loading()),
    revisions: h("div", {}, loading("Loading revisions…")),
    history: h("div", {}, loading()),
  };
  const ctx = { ui, signal, windowSeconds, openLogs: new Set(), data: null };
  const refresh = h("button", { class: "btn btn-ghost", type: "button", "data-action": "refresh" }, "Refresh");
  refresh.addEventListener("click", () => load(ctx));
  const chips = h("div", { class: "chips chips-small", role: "tablist", "aria-label": "Window" },
    WINDOWS.map(([s, label]) => h("a", {
      class: `chip${s === windowSeconds ? " active" : ""}`, href: `#/releases?window=${s}`, role: "tab",
      "aria-selected": String(s === windowSeconds), "data-window": s,
    }, label)));
  clear(view,
    pageHeader("Releases", h("span", {}, "Revisions uploaded with ", h("code", {}, "dockyard deploy"),
      ", the traffic they serve, and every change"), refresh),
    ui.flash,
    card("Traffic", ui.traffic, ui.rollback),
    card("Figures per revision", ui.figures, chips),
    card("Revisions", ui.revisions),
    card("History", ui.history));
  await load(ctx);
  const timer = setInterval(() => {
    if (!document.querySelector("dialog[open]") && document.visibilityState === "visible") load(ctx, true).catch(() => {});
  }, POLL_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}

async function load(ctx, quiet = false) {
  const { signal } = ctx;
  const [dep, stats, revisions] = await Promise.allSettled([
    api("GET", "/deployment", undefined, { signal }),
    api("GET", `/deployment/stats?window_seconds=${ctx.windowSeconds}`, undefined, { signal }),
    api("GET", `/revisions?limit=${REVISIONS}`, undefined, { signal }),
  ]);
  if (signal.aborted) return;
  if (quiet && [dep, stats, revisions].some((r) => r.status === "rejected")) return; // keep the last view
  const byId = new Map((revisions.value || []).map((r) => [r.revision_id, r]));
  ctx.data = { dep: dep.value, revisions: revisions.value || [], byId };
  if (dep.status === "rejected") {
    clear(ctx.ui.traffic, apiErrorBox(dep.reason, "Cannot read the deployment"));
    clear(ctx.ui.history, apiErrorBox(dep.reason, "Cannot read the history"));
    clear(ctx.ui.rollback);
  } else {
    renderTraffic(ctx);
    renderHistory(ctx);
  }
  if (stats.status === "rejected") clear(ctx.ui.figures, apiErrorBox(stats.reason, "Cannot read the figures"));
  else renderFigures(ctx, stats.value);
  if (revisions.status === "rejected") clear(ctx.ui.revisions, apiErrorBox(revisions.reason, "Cannot list revisions"));
  else renderRevisions(ctx);
}

/** A call that failed outside a dialog: its error, in the page's flash area. */
function changedError(ctx, err) {
  clear(ctx.ui.flash, apiErrorBox(err, "The server refused this"));
}

/** After a change: say what happened, then show the new state. */
async function changed(ctx, message) {
  const note = h("div", { class: "alert alert-ok", role: "status" }, message);
  clear(ctx.ui.flash, note);
  setTimeout(() => note.remove(), 8000);
  await load(ctx);
}

// ---- traffic ---------------------------------------------------------------------------

function revTile(ctx, role, id, extra) {
  const rev = id ? ctx.data.byId.get(id) : null;
  return h("div", { class: `tile tile-${role}`, "data-tile": role, "data-revision": id || "base" },
    h("div", { class: "tile-label" }, role === "current" ? "Current" : "Canary"),
    h("div", { class: "tile-value mono", title: id || "the server's own project" }, id ? shortId(id) : "base"),
    h("div", { class: "tile-sub" }, rev
      ? [rev.message || h("span", { class: "muted" }, "no message"), " · ", rev.author || "unknown author"]
      : id ? "revision not listed" : "the server's own project (no revision promoted)"),
    extra);
}

function renderTraffic(ctx) {
  const { dep } = ctx.data;
  const canary = dep.canary_revision_id;
  const share = canary ? Number(dep.canary_percent) : 0;
  const currentLabel = dep.current_revision_id ? shortId(dep.current_revision_id) : "base";
  const bar = h("div", { class: "traffic-bar", "data-split": `${100 - share}/${share}` },
    h("div", { class: "traffic-seg traffic-current", style: `flex-basis: ${100 - share}%`, title: `current ${currentLabel}` },
      h("span", { class: "mono" }, currentLabel), h("strong", {}, `${fmtPct(100 - share)}`)),
    canary ? h("div", { class: "traffic-seg traffic-canary", style: `flex-basis: ${share}%`, title: `canary ${shortId(canary)}` },
      h("span", { class: "mono" }, shortId(canary)), h("strong", {}, `${fmtPct(share)}`)) : null);
  const limits = dep.auto_rollback;
  const thresholds = h("div", { class: "tile tile-guard", "data-tile": "auto-rollback" },
    h("div", { class: "tile-label" }, "Auto-rollback"),
    limits ? [
      h("div", { class: "tile-value" }, "armed"),
      h("dl", { class: "thresholds" },
        limits.max_error_rate != null ? [h("dt", {}, "error rate >"), h("dd", {}, fmtPct(limits.max_error_rate * 100))] : null,
        limits.max_p95_seconds != null ? [h("dt", {}, "p95 >"), h("dd", {}, `${limits.max_p95_seconds} s`)] : null,
        h("dt", {}, "over"), h("dd", {}, `${fmtWindow(limits.window_seconds)}, once ${limits.min_runs} runs`)),
    ] : [
      h("div", { class: "tile-value muted" }, "off"),
      h("div", { class: "tile-sub" }, canary ? "this canary has no thresholds" : "set thresholds when starting a canary"),
    ]);
  clear(ctx.ui.traffic,
    h("div", { class: "traffic-legend muted small" }, "New threads; a thread keeps the revision it started on."),
    bar,
    h("div", { class: "tiles" },
      revTile(ctx, "current", dep.current_revision_id),
      canary ? revTile(ctx, "canary", canary, h("div", { class: "tile-share" }, `${fmtPct(share)} of new threads`))
        : h("div", { class: "tile tile-canary tile-off", "data-tile": "canary" },
          h("div", { class: "tile-label" }, "Canary"), h("div", { class: "tile-value muted" }, "none"),
          h("div", { class: "tile-sub" }, "Start one from a ready revision below.")),
      thresholds),
    dep.updated_at ? h("div", { class: "muted small" }, `Last change ${fmtTime(dep.updated_at)} by ${dep.updated_by || "unknown"}`) : null);
  const nothing = !dep.current_revision_id && !canary;
  const button = h("button", {
    class: "btn btn-danger btn-small", type: "button", "data-action": "rollback", disabled: nothing,
    title: nothing ? "Nothing to roll back: no revision was promoted" : null,
  }, canary ? "Drop canary…" : "Roll back…");
  button.addEventListener("click", () => rollbackDialog(ctx));
  clear(ctx.ui.rollback, button);
}

function rollbackDialog(ctx) {
  const { dep, revisions, byId } = ctx.data;
  const canary = dep.canary_revision_id;
  const previous = dep.events.find((e) => e.action === "promote" && e.revision_id === dep.current_revision_id);
  const ready = revisions.filter((r) => r.status === "ready" && r.revision_id !== dep.current_revision_id);
  const target = h("select", { name: "to", "data-field": "to" },
    h("option", { value: "" }, canary ? `keep ${revLabel(dep.current_revision_id)} (drop the canary)`
      : previous ? `previous: ${revLabel(previous.from_revision_id, byId)}` : "the previous revision"),
    h("option", { value: "base" }, "base — the server's own project"),
    ready.map((r) => h("option", { value: r.revision_id }, revLabel(r.revision_id, byId))));
  const reason = h("input", { type: "text", name: "reason", "data-field": "reason", maxlength: 2000,
    placeholder: "e.g. error rate up after the prompt change" });
  confirmAction({
    name: "rollback", danger: true, signal: ctx.signal,
    title: canary ? `Drop canary ${shortId(canary)}?` : `Roll back ${revLabel(dep.current_revision_id)}?`,
    intro: canary
      ? "New threads stop going to the canary at once. Threads already on it keep running it."
      : "New threads go to the target at once, on every replica. Existing threads stay on their revision.",
    fields: [
      h("label", { class: "field" }, h("span", { class: "field-label" }, "Roll back to"), target),
      h("label", { class: "field" }, h("span", { class: "field-label" }, "Reason", h("span", { class: "field-type" }, "optional, kept in the history")), reason),
    ],
    confirmLabel: canary ? "Drop canary" : "Roll back",
    run: async () => {
      const body = {};
      if (target.value) body.to = target.value;
      if (reason.value.trim()) body.reason = reason.value.trim();
      const out = await api("POST", "/deployment/rollback", body);
      await changed(ctx, `Rolled back: new threads now run ${revLabel(out.current_revision_id, byId)}.`);
    },
  });
}

// ---- figures ---------------------------------------------------------------------------

function renderFigures(ctx, stats) {
  const limits = ctx.data.dep?.auto_rollback;
  // Without a canary the API's second row is the base project's (role "canary", no revision).
  const rows = stats.map((s) => (s.role === "canary" && !s.revision_id ? { ...s, role: "base" } : s));
  if (!rows.length) {
    clear(ctx.ui.figures, empty("No serving revision"));
    return;
  }
  clear(ctx.ui.figures, h("table", { class: "table", "data-table": "figures" },
    h("thead", {}, h("tr", {}, h("th", {}, "Serving"), h("th", {}, "Revision"), h("th", { class: "right" }, "Runs"),
      h("th", { class: "right" }, "Errors"), h("th", { class: "right" }, "Error rate"), h("th", { class: "right" }, "p95"))),
    h("tbody", {}, rows.map((s) => {
      const over = s.role === "canary" && limits && s.error_rate != null && limits.max_error_rate != null
        && s.error_rate > limits.max_error_rate;
      return h("tr", { "data-role": s.role, "data-revision": s.revision_id || "base" },
        h("td", {}, h("span", { class: `role role-${s.role}` }, s.role)),
        h("td", {}, h("code", { title: s.revision_id || "the server's own project" }, s.revision_id ? shortId(s.revision_id) : "base")),
        h("td", { class: "right num" }, String(s.runs)),
        h("td", { class: "right num" }, String(s.errors)),
        h("td", { class: `right num${s.errors ? " num-bad" : ""}${over ? " num-over" : ""}` },
          s.error_rate == null ? "—" : fmtPct(s.error_rate * 100)),
        h("td", { class: "right num" }, s.p95_seconds == null ? "—" : fmtSeconds(s.p95_seconds)));
    }))),
  h("div", { class: "muted small figures-foot" }, `Runs that ended in the last ${fmtWindow(ctx.windowSeconds)}.`));
}

// ---- revisions -------------------------------------------------------------------------

function renderRevisions(ctx) {
  const { dep, revisions } = ctx.data;
  if (!revisions.length) {
    clear(ctx.ui.revisions, h("div", { class: "state state-empty release-empty", "data-empty": "revisions" },
      h("div", { class: "state-title" }, "No revisions yet"),
      h("div", { class: "state-hint" }, "The server's own project serves every thread. Upload your project as an immutable revision, then send traffic to it:"),
      h("pre", { class: "cmd" },
        h("span", { class: "cmd-line" }, "dockyard deploy -m \"first release\"", h("span", { class: "cmd-note" }, "  # upload, build and verify → revision 4b1e… ready")),
        h("span", { class: "cmd-line" }, "dockyard promote 4b1e…", h("span", { class: "cmd-note" }, "  # all new threads (or --canary 10%)"))),
      h("div", { class: "state-hint" }, "Revisions, their build logs and every promote or rollback then show here.")));
    return;
  }
  const rows = [];
  for (const r of revisions) {
    const isCurrent = r.revision_id === dep?.current_revision_id;
    const isCanary = r.revision_id === dep?.canary_revision_id;
    const failed = r.status !== "ready";
    const actions = h("div", { class: "row-actions" });
    if (!failed && !isCurrent) {
      const promote = h("button", { class: "btn btn-small btn-primary", type: "button", "data-action": "promote" }, "Promote…");
      promote.addEventListener("click", () => promoteDialog(ctx, r));
      actions.append(promote);
      if (!isCanary) {
        const canary = h("button", { class: "btn btn-small", type: "button", "data-action": "canary" }, "Canary…");
        canary.addEventListener("click", () => canaryDialog(ctx, r));
        actions.append(canary);
      }
    }
    if (!failed) {
      const env = h("button", { class: "btn btn-small", type: "button", "data-action": "env" }, "Env…");
      env.addEventListener("click", () => envDialog(ctx, r));
      actions.append(env);
    }
    const logText = [failed ? r.error || "no error recorded" : null, r.build_log].filter(Boolean).join("\n\n");
    const logRow = h("tr", { class: "row-log", "data-log": r.revision_id, hidden: !ctx.openLogs.has(r.revision_id) },
      h("td", { colspan: 7 }, h("div", { class: "build-log" },
        h("div", { class: failed ? "build-log-head" : "build-log-head build-log-ok" }, failed
          ? "Build log — verification failed; this revision never serves"
          : "Build log — unpacked, environment built, graphs imported"),
        h("pre", {}, logText || "no build log recorded"))));
    {
      const toggle = h("button", { class: "btn btn-small", type: "button", "data-action": "build-log",
        "aria-expanded": String(ctx.openLogs.has(r.revision_id)) }, "Build log");
      toggle.addEventListener("click", () => {
        const open = logRow.hidden;
        logRow.hidden = !open;
        toggle.setAttribute("aria-expanded", String(open));
        if (open) ctx.openLogs.add(r.revision_id);
        else ctx.openLogs.delete(r.revision_id);
      });
      actions.append(toggle);
    }
    rows.push(h("tr", { class: failed ? "row-error" : isCurrent ? "row-current" : isCanary ? "row-canary" : "",
      "data-revision": r.revision_id, "data-status": r.status },
    h("td", {}, h("code", { class: "rev-id", title: `${r.revision_id}\ncontent ${r.content_hash}` }, shortId(r.revision_id)),
      isCurrent ? h("span", { class: "tag tag-current" }, "current") : null,
      isCanary ? h("span", { class: "tag tag-canary" }, `canary ${fmtPct(dep.canary_percent)}`) : null),
    h("td", {}, h("span", { class: `badge badge-${r.status}`, "data-status": r.status }, r.status)),
    h("td", { class: "rev-change" },
      h("div", { class: r.message ? "rev-message" : "rev-message muted" }, r.message || "no message"),
      h("div", { class: "muted small" }, r.author || "unknown author",
        r.git_commit ? [" · ", h("code", { title: r.git_commit }, r.git_commit.slice(0, 10))] : null),
      failed && r.error ? h("div", { class: "run-error clip-line", title: r.error }, r.error) : null),
    h("td", {}, r.graphs?.length ? r.graphs.map((g) => h("code", { class: "graph-chip" }, g)) : h("span", { class: "muted" }, "—")),
    h("td", { class: "right num" }, fmtBytes(r.size_bytes)),
    h("td", { class: "nowrap" }, fmtTime(r.created_at)),
    h("td", { class: "right" }, actions)));
    rows.push(logRow);
  }
  clear(ctx.ui.revisions, h("table", { class: "table", "data-table": "revisions" },
    h("thead", {}, h("tr", {}, h("th", {}, "Revision"), h("th", {}, "Status"), h("th", {}, "Change"), h("th", {}, "Graphs"),
      h("th", { class: "right" }, "Size"), h("th", {}, "Deployed"), h("th", {}))),
    h("tbody", {}, rows)),
  revisions.length === REVISIONS
    ? h("div", { class: "muted small figures-foot" }, `The newest ${REVISIONS} revisions; GET /revisions?offset=${REVISIONS} lists older ones.`)
    : null);
}

async function envDialog(ctx, rev) {
  let names;
  try {
    names = await api("GET", `/revisions/${rev.revision_id}/env`);
  } catch (err) {
    changedError(ctx, err);
    return;
  }
  const removes = names.map((n) => {
    const box = h("input", { type: "checkbox", "data-unset": n.name });
    return { name: n.name, box, el: h("label", { class: "env-row" }, box, h("code", {}, n.name), h("span", { class: "muted small" }, ` set ${fmtTime(n.updated_at)} — tick to remove`)) };
  });
  const name = h("input", { type: "text", name: "env_name", "data-field": "env_name", placeholder: "NAME", autocomplete: "off" });
  const value = h("input", { type: "password", name: "env_value", "data-field": "env_value", placeholder: "value (never shown again)", autocomplete: "off" });
  confirmAction({
    name: "env", signal: ctx.signal,
    title: `Environment of ${shortId(rev.revision_id)}`,
    intro: ["Variables and secrets given only to this revision's worker processes, which restart with them. ",
      "Values are never shown again, nor logged."],
    fields: [
      removes.length ? h("div", { class: "env-list" }, removes.map((r) => r.el)) : h("div", { class: "muted small" }, "No variable set yet."),
      h("div", { class: "env-new" }, h("label", { class: "field" }, h("span", { class: "field-label" }, "Name"), name),
        h("label", { class: "field" }, h("span", { class: "field-label" }, "Value"), value)),
    ],
    confirmLabel: "Save",
    run: async () => {
      const env = {};
      for (const r of removes) if (r.box.checked) env[r.name] = null;
      if (name.value.trim()) env[name.value.trim()] = value.value;
      if (!Object.keys(env).length) throw new Error("Add a variable or tick one to remove");
      const out = await api("PUT", `/revisions/${rev.revision_id}/env`, { env });
      await changed(ctx, `Saved ${out.set.join(", ")} on ${shortId(rev.revision_id)}; its workers restart with them.`);
    },
  });
}

function promoteDialog(ctx, rev) {
  const { dep, byId } = ctx.data;
  confirmAction({
    name: "promote", signal: ctx.signal,
    title: `Promote ${shortId(rev.revision_id)} to all traffic?`,
    intro: [
      "Every new thread runs ", h("strong", {}, rev.message || shortId(rev.revision_id)),
      ` from now on, replacing ${revLabel(dep.current_revision_id, byId)}`,
      dep.canary_revision_id ? " and ending the canary" : "",
      ". Threads already started keep their revision.",
    ],
    confirmLabel: "Promote",
    run: async () => {
      await api("POST", "/deployment/promote", { revision_id: rev.revision_id });
      await changed(ctx, `Promoted ${shortId(rev.revision_id)}: it now serves all new threads.`);
    },
  });
}

function canaryDialog(ctx, rev) {
  const { dep, byId } = ctx.data;
  const percent = numberField("Share of new threads", "percent", { value: 10, min: 0.01, max: 99.99, step: "any", unit: "%" });
  const guard = h("input", { type: "checkbox", name: "auto_rollback", "data-field": "auto_rollback" });
  const rate = numberField("Max error rate", "max_error_rate", { value: 20, min: 0, max: 100, step: "any", unit: "%" });
  const p95 = numberField("Max p95", "max_p95_seconds", { min: 0, step: "any", unit: "s", placeholder: "no limit" });
  const minRuns = numberField("Min runs", "min_runs", { value: 10, min: 0, step: 1 });
  const windowS = numberField("Window", "window_seconds", { value: 300, min: 1, step: 1, unit: "s" });
  const limits = h("div", { class: "threshold-grid", hidden: true }, rate.el, p95.el, minRuns.el, windowS.el);
  guard.addEventListener("change", () => { limits.hidden = !guard.checked; });
  confirmAction({
    name: "canary", signal: ctx.signal,
    title: `Start a canary of ${shortId(rev.revision_id)}?`,
    intro: [`A share of new threads runs `, h("strong", {}, rev.message || shortId(rev.revision_id)),
      `; the rest stay on ${revLabel(dep.current_revision_id, byId)}.`,
      dep.canary_revision_id ? ` It replaces the canary ${shortId(dep.canary_revision_id)}.` : ""],
    fields: [percent.el,
      h("label", { class: "check" }, guard, h("span", {}, "Roll back automatically when the canary misbehaves")),
      limits],
    confirmLabel: "Start canary",
    run: async () => {
      const body = { revision_id: rev.revision_id, canary_percent: percent.read() };
      if (body.canary_percent === undefined) throw new Error("Give the share of new threads, e.g. 10");
      if (guard.checked) {
        const rule = { max_error_rate: rate.read(), max_p95_seconds: p95.read(), min_runs: minRuns.read(), window_seconds: windowS.read() };
        if (rule.max_error_rate !== undefined) rule.max_error_rate /= 100;
        body.auto_rollback = Object.fromEntries(Object.entries(rule).filter(([, v]) => v !== undefined));
      }
      await api("POST", "/deployment/promote", body);
      await changed(ctx, `Canary started: ${fmtPct(body.canary_percent)} of new threads run ${shortId(rev.revision_id)}.`);
    },
  });
}

// ---- history ---------------------------------------------------------------------------

const VERBS = { promote: "promoted", canary: "started a canary of", rollback: "rolled back", auto_rollback: "auto-rollback dropped" };

function renderHistory(ctx) {
  const { dep, byId } = ctx.data;
  if (!dep.events.length) {
    clear(ctx.ui.history, empty("No changes yet", "Promotes, canaries and rollbacks — by whom, when and why — are listed here."));
    return;
  }
  const rev = (id) => h("code", { title: id || "the server's own project" }, id ? shortId(id) : "base");
  clear(ctx.ui.history, h("ol", { class: "events", "data-list": "history" }, dep.events.map((e) => {
    let what;
    if (e.action === "promote") what = [rev(e.revision_id), " to all new threads", e.from_revision_id !== undefined ? [" (was ", rev(e.from_revision_id), ")"] : null];
    else if (e.action === "canary") {
      what = [rev(e.revision_id), e.reason ? ` for ${e.reason}` : null,
        e.from_revision_id ? [" (replacing ", rev(e.from_revision_id), ")"] : null];
    }
    else if (e.action === "rollback") what = [" from ", rev(e.from_revision_id), " to ", rev(e.revision_id)];
    else if (e.action === "auto_rollback") what = [" the canary ", rev(e.from_revision_id), "; traffic back on ", rev(e.revision_id)];
    else what = [rev(e.revision_id)];
    const auto = e.action === "auto_rollback";
    const message = byId.get(e.revision_id)?.message;
    return h("li", { class: `event event-${e.action}`, "data-action": e.action, "data-event": e.id },
      h("span", { class: "event-dot" }),
      h("div", { class: "event-main" },
        h("div", {}, h("span", { class: `tag tag-${e.action}` }, e.action.replace("_", "-")), " ",
          auto ? null : h("strong", {}, e.actor || "unknown"), " ", VERBS[e.action] || e.action, " ", what),
        e.reason && e.action !== "canary"
          ? h("div", { class: auto ? "event-reason event-reason-auto" : "event-reason" }, e.reason) : null,
        message && e.action !== "rollback" && e.action !== "auto_rollback" ? h("div", { class: "muted small" }, `“${message}”`) : null),
      h("time", { class: "event-time muted small", datetime: e.at }, fmtTime(e.at)));
  })));
}

// ---- formatting ------------------------------------------------------------------------

function fmtPct(value) {
  const v = Number(value);
  if (!Number.isFinite(v)) return "—";
  return `${Number.isInteger(v) ? v : v < 10 ? v.toFixed(1) : Math.round(v)}%`;
}

function fmtSeconds(s) {
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(2)} s`;
}

function fmtBytes(n) {
  if (n == null) return "—";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function fmtWindow(seconds) {
  const s = Number(seconds);
  const known = WINDOWS.find(([w]) => w === s);
  if (known) return known[1];
  if (s % 3600 === 0) return `${s / 3600} h`;
  if (s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}
