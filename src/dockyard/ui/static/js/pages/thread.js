// Thread detail: the live view (thread streaming protocol), runs, interrupts, errors and the
// state timeline (history, diffs, full states, forks) — all through the public API.
import {
  api, card, clear, command, empty, errorBox, fmtDuration, fmtTime, h, jsonBlock, loading,
  pageHeader, parseJson, pretty, shortId, statusBadge, withButton,
} from "../core.js";
import { renderDiff } from "../diff.js";
import { followThread } from "../sse.js";

const CHANNELS = ["lifecycle", "updates", "values", "messages", "tools", "input", "custom"];
const PAGE = 20;
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

export async function renderThread(view, threadId, signal) {
  clear(view, pageHeader("Thread", shortId(threadId)), loading("Loading thread…"));
  const ctx = { threadId, signal, thread: null, runs: [], history: [], historyDone: false, selected: null };
  ctx.thread = await api("GET", `/threads/${threadId}`, undefined, { signal });

  const statusSlot = h("span", {});
  const refresh = h("button", { class: "btn btn-ghost", type: "button" }, "Refresh");
  ctx.ui = {
    status: statusSlot,
    alerts: h("div", { class: "stack" }),
    interrupts: h("div", {}),
    live: h("div", { class: "live", "data-live": "" }),
    liveState: h("span", { class: "live-state" }, "connecting…"),
    runs: h("div", {}, loading()),
    timeline: h("div", { class: "timeline-list" }, loading()),
    inspector: h("div", { class: "inspector" }, empty("Select a checkpoint", "Its diff, full state and a fork form appear here.")),
    more: h("div", {}),
  };
  clear(view,
    pageHeader(h("span", {}, "Thread ", h("code", { class: "title-id", title: threadId }, shortId(threadId))),
      h("span", { class: "meta-row" }, statusSlot,
        ctx.thread.metadata?.graph_id ? h("span", {}, "graph ", h("a", { href: `#/agents/${ctx.thread.metadata.assistant_id || ctx.thread.metadata.graph_id}` }, h("code", {}, ctx.thread.metadata.graph_id))) : null,
        h("span", {}, "created ", fmtTime(ctx.thread.created_at)),
        h("a", { href: "#/threads" }, "← all threads")),
      refresh),
    ctx.ui.alerts, ctx.ui.interrupts,
    h("div", { class: "grid-2" },
      card("Live view", ctx.ui.live, ctx.ui.liveState),
      card("Runs", ctx.ui.runs)),
    card("State timeline", h("div", { class: "timeline" },
      h("div", { class: "timeline-col" }, ctx.ui.timeline, ctx.ui.more), ctx.ui.inspector)));
  refresh.addEventListener("click", () => reloadAll(ctx));
  ctx.ui.live.append(h("div", { class: "muted live-empty" }, "No live events yet. Runs started from this UI (or client.threads.stream) stream here as they execute; every run shows in Runs and the timeline."));
  followThread(threadId, CHANNELS, (msg) => onLiveEvent(ctx, msg), {
    signal,
    onStatus: (s, err) => {
      ctx.ui.liveState.textContent = s === "open" ? "● live" : s === "error" ? `reconnecting (${err.message})` : "connecting…";
      ctx.ui.liveState.className = `live-state live-${s}`;
    },
  });
  await reloadAll(ctx);
}

async function reloadAll(ctx) {
  await loadRuns(ctx); // first: the error banner shows the failed run's traceback
  await Promise.all([loadThread(ctx), loadHistory(ctx, true)]);
}

function guard(ctx, slot, title) {
  return (err) => {
    if (err.name !== "AbortError" && !ctx.signal.aborted) clear(slot, errorBox(err, title));
  };
}

// ---------------------------------------------------------------- thread, errors, interrupts

async function loadThread(ctx) {
  try {
    ctx.thread = await api("GET", `/threads/${ctx.threadId}`, undefined, { signal: ctx.signal });
  } catch (err) {
    guard(ctx, ctx.ui.alerts, "Cannot load the thread")(err);
    return;
  }
  const t = ctx.thread;
  clear(ctx.ui.status, statusBadge(t.status));
  clear(ctx.ui.alerts);
  if (t.status === "error" || t.error) {
    const latest = await api("POST", `/threads/${ctx.threadId}/history`, { limit: 1 }, { signal: ctx.signal }).catch(() => []);
    const failed = (latest[0]?.tasks || []).filter((task) => task.error);
    const run = ctx.runs.find((r) => r.status === "error" && r.error);
    ctx.ui.alerts.append(h("div", { class: "alert alert-error", role: "alert", "data-error": "" },
      h("strong", {}, failed.length ? `Node “${failed.map((x) => x.name).join(", ")}” failed` : "The last run failed"),
      h("div", { class: "alert-msg" }, run?.error ? `${run.error.error}: ${run.error.message}` : (failed[0]?.error || t.error || "")),
      run?.error?.traceback ? h("details", { class: "trace" }, h("summary", {}, "Stack trace"), h("pre", {}, run.error.traceback)) : null));
  }
  renderInterrupts(ctx);
}

function renderInterrupts(ctx) {
  const t = ctx.thread;
  const list = Object.entries(t.interrupts || {}).flatMap(([taskId, items]) => items.map((i) => ({ ...i, taskId })));
  if (t.status !== "interrupted" || !list.length) {
    clear(ctx.ui.interrupts);
    return;
  }
  clear(ctx.ui.interrupts, h("section", { class: "card card-attention", "data-interrupts": "" },
    h("header", { class: "card-head" }, h("h2", {}, "Waiting for a human"),
      h("span", { class: "muted small" }, "The run stopped at interrupt(); answer to resume it.")),
    h("div", { class: "card-body stack" }, list.map((i) => interruptForm(ctx, i)))));
}

function interruptForm(ctx, intr) {
  const editor = h("textarea", { class: "mono", rows: 5, spellcheck: "false", "data-interrupt-value": "" }, pretty(intr.value));
  const out = h("div", {});
  const respond = (response) => async () => {
    await command(ctx.threadId, "input.respond", { interrupt_id: intr.id, response });
    clear(ctx.ui.interrupts, h("div", { class: "alert alert-info" }, "Answer sent — the run resumes below."));
    loadRuns(ctx);
  };
  const approve = h("button", { class: "btn btn-primary", type: "button", "data-action": "approve" }, "Approve");
  const reject = h("button", { class: "btn btn-danger", type: "button", "data-action": "reject" }, "Reject");
  const edited = h("button", { class: "btn", type: "button", "data-action": "respond-edited" }, "Send edited value");
  approve.addEventListener("click", () => withButton(approve, out, respond({ approved: true })));
  reject.addEventListener("click", () => withButton(reject, out, respond({ approved: false })));
  edited.addEventListener("click", () => withButton(edited, out, async () => respond(parseJson(editor.value, "Edited value"))()));
  return h("div", { class: "interrupt" },
    h("div", { class: "interrupt-head" }, h("span", {}, "Interrupt ", h("code", {}, shortId(intr.id))),
      h("span", { class: "muted small" }, "Approve sends {\"approved\": true}, Reject {\"approved\": false}; or edit the proposed value and send it.")),
    editor, h("div", { class: "form-actions" }, approve, reject, edited), out);
}

// ---------------------------------------------------------------- runs

async function loadRuns(ctx) {
  try {
    ctx.runs = await api("GET", `/threads/${ctx.threadId}/runs?limit=20`, undefined, { signal: ctx.signal });
  } catch (err) {
    guard(ctx, ctx.ui.runs, "Cannot list runs")(err);
    return;
  }
  // Runs not started through the thread protocol have no live events here: while one is
  // active, look again shortly (one timer at a time; it dies with the page's signal).
  if (ctx.runs.some((r) => r.status === "pending" || r.status === "running") && !ctx.poll) {
    ctx.poll = setTimeout(() => {
      ctx.poll = null;
      if (!ctx.signal.aborted) reloadAll(ctx);
    }, 1500);
  }
  if (!ctx.runs.length) {
    clear(ctx.ui.runs, empty("No runs on this thread yet"));
    return;
  }
  // Tick two runs to compare them side by side.
  ctx.picked = (ctx.picked || []).filter((id) => ctx.runs.some((r) => r.run_id === id));
  const compare = h("a", { class: "btn btn-small", "data-action": "compare-runs" }, "Compare selected");
  const syncCompare = () => {
    compare.classList.toggle("disabled", ctx.picked.length !== 2);
    compare.href = ctx.picked.length === 2 ? `#/compare?a=${ctx.threadId}/${ctx.picked[1]}&b=${ctx.threadId}/${ctx.picked[0]}` : "#";
    compare.textContent = ctx.picked.length === 2 ? "Compare selected" : `Compare: tick ${2 - ctx.picked.length} run${ctx.picked.length === 1 ? "" : "s"}`;
  };
  syncCompare();
  clear(ctx.ui.runs, h("table", { class: "table", "data-table": "runs" },
    h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "Run"), h("th", {}, "Status"), h("th", {}, "Started"), h("th", {}, "Duration"), h("th", {}, ""))),
    h("tbody", {}, ctx.runs.map((r) => {
      const active = r.status === "pending" || r.status === "running";
      const out = h("div", {});
      let action = null;
      if (active) {
        action = h("button", { class: "btn btn-small btn-danger", type: "button", "data-action": "cancel-run" }, "Cancel");
        action.addEventListener("click", () => withButton(action, out, async () => {
          await api("POST", `/threads/${ctx.threadId}/runs/${r.run_id}/cancel`);
          await loadRuns(ctx);
        }));
      }
      const tick = h("input", { type: "checkbox", class: "pick", "aria-label": "Select to compare", "data-pick": r.run_id, checked: ctx.picked.includes(r.run_id) });
      tick.addEventListener("change", () => {
        ctx.picked = ctx.picked.filter((id) => id !== r.run_id);
        if (tick.checked) ctx.picked = [r.run_id, ...ctx.picked].slice(0, 2);
        for (const el of ctx.ui.runs.querySelectorAll("[data-pick]")) el.checked = ctx.picked.includes(el.dataset.pick);
        syncCompare();
      });
      return h("tr", { "data-run": r.run_id, "data-status": r.status },
        h("td", { class: "pick-cell" }, tick),
        h("td", {}, h("a", { href: `#/threads/${ctx.threadId}/runs/${r.run_id}`, title: "Open the run's trace", "data-action": "open-trace" }, h("code", {}, shortId(r.run_id))),
          r.metadata?.replay_of ? h("span", { class: "tag tag-fork", title: `replay of ${r.metadata.replay_of}` }, r.metadata.replay_mode === "recorded" ? "replay · recorded" : "replay") : null,
          r.kwargs?.checkpoint || (r.kwargs?.checkpoint_id && !r.metadata?.replay_of) ? h("span", { class: "tag tag-fork" }, "fork") : null,
          r.kwargs?.command ? h("span", { class: "tag" }, "resume") : null,
          r.error ? h("div", { class: "run-error" }, `${r.error.error}: ${r.error.message}`) : null, out),
        h("td", {}, statusBadge(r.status)),
        h("td", {}, fmtTime(r.created_at)),
        h("td", {}, active ? "…" : fmtDuration(r.created_at, r.updated_at)),
        h("td", { class: "right" }, action, h("a", { class: "btn btn-small btn-ghost", href: `#/threads/${ctx.threadId}/runs/${r.run_id}` }, "Trace →")));
    }))), h("div", { class: "runs-foot" }, compare));
}

// ---------------------------------------------------------------- live view

function liveGroup(ctx, runId) {
  if (ctx.group && ctx.group.runId === runId) return ctx.group;
  ctx.ui.live.querySelector(".live-empty")?.remove();
  const status = h("span", { class: "badge badge-busy" }, "running");
  const el = h("div", { class: "live-run", "data-live-run": runId || "" },
    h("div", { class: "live-run-head" }, h("span", {}, "Run ", h("code", {}, shortId(runId))), status));
  ctx.ui.live.append(el);
  ctx.group = { runId, el, status, nodes: new Map(), custom: null, message: null };
  return ctx.group;
}

function nodeRow(group, name) {
  if (group.nodes.has(name)) return group.nodes.get(name);
  const state = h("span", { class: "node-state node-running" }, "running");
  const body = h("div", { class: "node-body" });
  const el = h("div", { class: "live-node", "data-node": name },
    h("div", { class: "live-node-head" }, h("span", { class: "node-dot" }), h("code", { class: "node-name" }, name), state), body);
  group.el.append(el);
  const row = { el, state, body };
  group.nodes.set(name, row);
  return row;
}

function nodeName(params, fallback) {
  const ns = (params.namespace || []).map((s) => s.split(":")[0]);
  return [...ns, fallback].filter(Boolean).join(" › ");
}

function onLiveEvent(ctx, msg) {
  if (msg.type !== "event") return;
  const p = msg.params || {};
  const d = p.data || {};
  const method = msg.method;
  const group = liveGroup(ctx, ctx.group?.runId ?? d.run_id);
  if (method === "lifecycle") {
    if (p.namespace && p.namespace.length) return; // a subgraph's lifecycle: its nodes show it
    if (d.event === "running") {
      const g = liveGroup(ctx, d.run_id);
      g.status.className = "badge badge-busy";
      g.status.textContent = "running";
      loadRuns(ctx);
      clear(ctx.ui.status, statusBadge("busy"));
      return;
    }
    const map = { completed: "success", failed: "error", interrupted: "interrupted" };
    group.status.className = `badge badge-${map[d.event] || "idle"}`;
    group.status.textContent = d.event;
    for (const row of group.nodes.values()) {
      if (row.state.textContent === "running") {
        row.state.textContent = d.event === "failed" ? "failed" : "stopped";
        row.state.className = `node-state node-${d.event === "failed" ? "failed" : "stopped"}`;
        if (d.event === "failed") row.el.classList.add("is-failed");
      }
    }
    if (d.error) group.el.append(h("div", { class: "live-error", role: "alert" }, d.error));
    ctx.group = { ...group, runId: `${group.runId}:done` }; // a later run gets a new group
    reloadAll(ctx);
    return;
  }
  if (method === "updates") {
    const row = nodeRow(group, nodeName(p, p.node || Object.keys(d)[0]));
    row.state.textContent = "done";
    row.state.className = "node-state node-done";
    row.el.classList.add("is-done");
    row.body.append(h("details", { class: "node-update" }, h("summary", {}, "state update"), jsonBlock(d)));
    return;
  }
  if (method === "messages") {
    if (d.event === "message-start") {
      const row = nodeRow(group, nodeName(p, d.metadata?.langgraph_node || "model"));
      const text = h("div", { class: "tokens", "data-tokens": "" });
      row.body.append(h("div", { class: "message" }, h("span", { class: "message-role" }, d.role || "ai"), text));
      group.message = text;
    } else if (d.event === "content-block-delta" && group.message) {
      const delta = d.delta || {};
      if (typeof delta.text === "string") group.message.append(delta.text);
      else if (delta.type && delta.type.includes("tool")) group.message.append(h("code", {}, JSON.stringify(delta)));
    } else if (d.event === "message-finish") {
      group.message?.classList.add("tokens-done");
      group.message = null;
    }
    return;
  }
  if (method === "tools") {
    const row = nodeRow(group, nodeName(p, d.metadata?.langgraph_node || d.node || "tools"));
    row.body.append(h("div", { class: "tool-event" },
      h("div", { class: "tool-head" }, h("span", { class: "tag" }, d.event || "tool"), h("code", {}, d.name || d.tool_name || "")), d.input !== undefined ? jsonBlock(d.input, "json-small") : null,
      d.output !== undefined ? jsonBlock(d.output, "json-small") : null,
      d.error ? h("div", { class: "live-error" }, String(d.error.message || d.error)) : null));
    return;
  }
  if (method === "input.requested" || method === "input") {
    group.el.append(h("div", { class: "live-input" }, h("strong", {}, "Waiting for input"), jsonBlock(d.payload ?? d.value, "json-small")));
    return;
  }
  if (method.startsWith("custom")) {
    if (!group.custom) {
      group.custom = { count: 0, el: h("div", { class: "live-custom" }) };
      group.el.append(group.custom.el);
    }
    group.custom.count += 1;
    clear(group.custom.el, h("span", { class: "tag" }, `custom × ${group.custom.count}`), h("code", {}, JSON.stringify(d)));
  }
}

// ---------------------------------------------------------------- state timeline

async function loadHistory(ctx, reset) {
  const body = { limit: PAGE };
  if (!reset && ctx.history.length) body.before = ctx.history[ctx.history.length - 1].checkpoint_id;
  let page;
  try {
    page = await api("POST", `/threads/${ctx.threadId}/history`, body, { signal: ctx.signal });
  } catch (err) {
    guard(ctx, ctx.ui.timeline, "Cannot load the history")(err);
    return;
  }
  ctx.history = reset ? page : ctx.history.concat(page);
  ctx.historyDone = page.length < PAGE;
  renderTimeline(ctx);
  const keep = ctx.selected && ctx.history.find((c) => c.checkpoint_id === ctx.selected);
  // Follow the newest checkpoint unless the user picked one that still exists.
  if (reset && (!keep || !ctx.userSelected) && ctx.history.length) select(ctx, ctx.history[0].checkpoint_id);
  else if (keep && reset) select(ctx, ctx.selected);
}

function writerOf(ctx, cp) {
  const src = cp.metadata?.source;
  if (src === "input") return "input";
  if (src === "update") return "state edit";
  if (src === "fork") return "fork";
  const parent = ctx.byId.get(cp.parent_checkpoint_id);
  if (parent) {
    const names = (parent.tasks || []).map((t) => t.name).filter((n) => n !== "__start__");
    if (names.length) return names.join(", ");
    if ((parent.next || []).length) return parent.next.join(", ");
  }
  return src === "loop" ? "—" : src || "—";
}

function renderTimeline(ctx) {
  ctx.byId = new Map(ctx.history.map((c) => [c.checkpoint_id, c]));
  const children = new Map();
  for (const c of ctx.history) {
    if (c.parent_checkpoint_id) children.set(c.parent_checkpoint_id, (children.get(c.parent_checkpoint_id) || []).concat(c));
  }
  // Checkpoints sharing a parent: every child but the oldest starts a branch (a fork).
  const branchStarts = new Set();
  for (const kids of children.values()) {
    if (kids.length > 1) {
      kids.slice().sort((a, b) => (a.created_at < b.created_at ? -1 : 1)).slice(1)
        .forEach((k) => branchStarts.add(k.checkpoint_id));
    }
  }
  // The head's ancestry is the current branch; checkpoints off it belong to older branches.
  const onHead = new Set();
  for (let c = ctx.history[0]; c && !onHead.has(c.checkpoint_id); c = ctx.byId.get(c.parent_checkpoint_id)) {
    onHead.add(c.checkpoint_id);
  }
  if (!ctx.history.length) {
    clear(ctx.ui.timeline, empty("No checkpoints yet", "A run writes one per step."));
    clear(ctx.ui.more);
    return;
  }
  clear(ctx.ui.timeline, ctx.history.map((c, i) => {
    const branch = branchStarts.has(c.checkpoint_id) || c.metadata?.source === "update" || c.metadata?.source === "fork";
    const off = !onHead.has(c.checkpoint_id);
    const row = h("button", {
      type: "button", class: `cp${c.checkpoint_id === ctx.selected ? " selected" : ""}${branch ? " cp-branch" : ""}${i === 0 ? " cp-head" : ""}${off ? " cp-off" : ""}`,
      "data-checkpoint": c.checkpoint_id, "data-step": c.metadata?.step,
    },
    h("span", { class: "cp-step" }, c.metadata?.step ?? "?"),
    h("span", { class: "cp-main" },
      h("span", { class: "cp-writer" }, writerOf(ctx, c)),
      h("span", { class: "cp-sub" }, fmtTime(c.created_at), " · ", h("code", {}, shortId(c.checkpoint_id)),
        (c.tasks || []).some((t) => t.error) ? h("span", { class: "tag tag-error" }, "error") : null,
        (c.interrupts || []).length ? h("span", { class: "tag tag-warn" }, "interrupt") : null,
        branchStarts.has(c.checkpoint_id) ? h("span", { class: "tag tag-fork" }, "branch") : null,
        i === 0 ? h("span", { class: "tag" }, "latest") : null,
        off ? h("span", { class: "tag", title: "Not an ancestor of the latest checkpoint" }, "earlier branch") : null)));
    row.addEventListener("click", () => {
      ctx.userSelected = true;
      select(ctx, c.checkpoint_id);
    });
    return row;
  }));
  if (ctx.historyDone) clear(ctx.ui.more, h("div", { class: "muted small center" }, `${ctx.history.length} checkpoints`));
  else {
    const more = h("button", { class: "btn btn-ghost btn-block", type: "button", "data-action": "more-history" }, "Load older checkpoints");
    more.addEventListener("click", () => withButton(more, null, () => loadHistory(ctx, false)));
    clear(ctx.ui.more, more);
  }
}

async function parentValues(ctx, cp) {
  if (!cp.parent_checkpoint_id) return {};
  const parent = ctx.byId.get(cp.parent_checkpoint_id);
  if (parent) return parent.values;
  const st = await api("GET", `/threads/${ctx.threadId}/state/${cp.parent_checkpoint_id}`, undefined, { signal: ctx.signal });
  return st.values;
}

async function select(ctx, checkpointId) {
  ctx.selected = checkpointId;
  for (const el of ctx.ui.timeline.querySelectorAll(".cp")) el.classList.toggle("selected", el.dataset.checkpoint === checkpointId);
  const cp = ctx.byId.get(checkpointId);
  if (!cp) return;
  const tabs = ["Diff", "State", "Fork"];
  const pane = h("div", { class: "inspector-pane" });
  const bar = h("div", { class: "tabs", role: "tablist" });
  const show = async (name) => {
    for (const b of bar.children) b.classList.toggle("active", b.dataset.tab === name);
    if (name === "Diff") {
      clear(pane, loading());
      try {
        const before = await parentValues(ctx, cp);
        clear(pane, h("div", { class: "muted small" }, cp.parent_checkpoint_id ? `Changes written at step ${cp.metadata?.step} by ${writerOf(ctx, cp)}` : "The first checkpoint of the thread"), renderDiff(before, cp.values));
      } catch (err) {
        guard(ctx, pane, "Cannot load the previous state")(err);
      }
    } else if (name === "State") {
      clear(pane, h("div", { class: "kv" },
        h("span", {}, "next"), h("code", {}, JSON.stringify(cp.next || [])),
        h("span", {}, "source"), h("code", {}, cp.metadata?.source || "—"),
        h("span", {}, "run"), h("code", {}, shortId(cp.metadata?.run_id)),
        h("span", {}, "checkpoint"), h("code", {}, cp.checkpoint_id)),
      (cp.tasks || []).filter((t) => t.error).map((t) => h("div", { class: "alert alert-error" }, h("strong", {}, `Node “${t.name}” failed`), h("div", { class: "alert-msg" }, t.error))),
      h("h3", { class: "pane-title" }, "Values"), jsonBlock(cp.values, "json-state"));
    } else {
      clear(pane, forkForm(ctx, cp));
    }
  };
  for (const t of tabs) {
    const b = h("button", { type: "button", class: "tab", "data-tab": t, role: "tab" }, t === "Fork" ? "Fork from here" : t);
    b.addEventListener("click", () => show(t));
    bar.append(b);
  }
  clear(ctx.ui.inspector, h("div", { class: "inspector-head" }, h("strong", {}, `Step ${cp.metadata?.step ?? "?"}`),
    h("span", { class: "muted" }, ` · ${writerOf(ctx, cp)} · ${fmtTime(cp.created_at)}`)), bar, pane);
  await show("Diff");
}

function forkForm(ctx, cp) {
  const editor = h("textarea", { class: "mono", rows: 10, spellcheck: "false", "data-fork-values": "" }, pretty(cp.values ?? {}));
  const asNode = h("input", { type: "text", class: "mono", placeholder: "as_node (optional)", "aria-label": "as_node" });
  const out = h("div", {});
  const go = h("button", { class: "btn btn-primary", type: "button", "data-action": "fork" }, "Fork and run");
  go.addEventListener("click", () => withButton(go, out, async () => {
    const edited = parseJson(editor.value, "State") ?? {};
    if (typeof edited !== "object" || Array.isArray(edited)) throw new Error("The state must be a JSON object");
    const base = cp.values || {};
    const changed = Object.fromEntries(Object.entries(edited).filter(([k, v]) => !same(v, base[k])));
    if (!Object.keys(changed).length) throw new Error("Change at least one value to fork.");
    const update = { checkpoint: { checkpoint_id: cp.checkpoint_id }, values: changed };
    if (asNode.value.trim()) update.as_node = asNode.value.trim();
    const forked = await api("POST", `/threads/${ctx.threadId}/state`, update);
    const assistant = ctx.thread.metadata?.assistant_id || ctx.thread.metadata?.graph_id || ctx.runs[0]?.assistant_id;
    const run = await api("POST", `/threads/${ctx.threadId}/runs`, { assistant_id: assistant, input: null, checkpoint: forked.checkpoint });
    clear(out, h("div", { class: "alert alert-info" }, "Forked at ", h("code", {}, shortId(forked.checkpoint.checkpoint_id)), " — run ", h("code", {}, shortId(run.run_id)), " is executing the new branch…"));
    await loadRuns(ctx);
    await api("GET", `/threads/${ctx.threadId}/runs/${run.run_id}/join`, undefined, { signal: ctx.signal });
    ctx.selected = null;
    ctx.userSelected = false;
    await reloadAll(ctx);
  }));
  return h("div", { class: "stack" },
    h("p", { class: "muted small" }, "Edit the state at this checkpoint. Keys you change are written as a new checkpoint next to it (through the graph's reducers: a list with a reducer appends), then a run continues the new branch from there."),
    editor, asNode, h("div", { class: "form-actions" }, go), out);
}
