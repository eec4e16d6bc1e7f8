// A run's trace (GET /threads/{id}/runs/{id}/trace): a waterfall of its node tasks, LLM and tool
// calls, one span's input / output / stack trace, and the replays (recorded up to a step, or
// with a modified input or config). Followed from storage while the run executes.
import {
  api, card, clear, empty, errorBox, fmtTime, h, jsonBlock, loading, pageHeader, parseJson,
  pretty, shortId, statusBadge, withButton,
} from "../core.js";
import { replayModified, replayRecorded } from "../replay.js";

const PAGE = 2000;
const ACTIVE = new Set(["pending", "running"]);
const KIND_ICON = { node: "◆", llm: "✦", tool: "⚙" };

export const traceUrl = (threadId, runId) => `#/threads/${threadId}/runs/${runId}`;

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "…";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

/** Every span of a run (pages of PAGE; a trace page is bounded, so a huge run takes several). */
export async function loadTrace(threadId, runId, signal, kinds) {
  const q = (kinds || []).map((k) => `&kind=${k}`).join("");
  const first = await api("GET", `/threads/${threadId}/runs/${runId}/trace?limit=${PAGE}${q}`, undefined, { signal });
  let next = first.next_offset;
  while (next !== null && next !== undefined) {
    const more = await api("GET", `/threads/${threadId}/runs/${runId}/trace?limit=${PAGE}&offset=${next}${q}`, undefined, { signal });
    first.spans.push(...more.spans);
    next = more.next_offset;
  }
  return first;
}

export async function renderTrace(view, threadId, runId, signal) {
  clear(view, pageHeader("Run", shortId(runId)), loading("Loading the trace…"));
  const ctx = { threadId, runId, signal, data: null, selected: null, spans: [], recorded: [] };
  ctx.data = await loadTrace(threadId, runId, signal);
  const refresh = h("button", { class: "btn btn-ghost", type: "button" }, "Refresh");
  const replayBtn = h("button", { class: "btn", type: "button", "data-action": "open-replay" }, "Replay with changes…");
  ctx.ui = {
    head: h("div", {}), banner: h("div", {}), summary: h("div", { class: "trace-summary" }),
    replay: h("div", {}), waterfall: h("div", { class: "wf", "data-waterfall": "" }),
    inspector: h("div", { class: "inspector" }, empty("Select a span", "Its timings, input, output and error appear here.")),
    compare: h("div", { class: "compare-pick" }),
  };
  clear(view,
    pageHeader(h("span", {}, "Run ", h("code", { class: "title-id", title: runId }, shortId(runId))),
      ctx.ui.head, h("span", { class: "page-actions" }, ctx.ui.compare, replayBtn, refresh)),
    ctx.ui.banner, ctx.ui.summary, ctx.ui.replay,
    h("div", { class: "trace-grid" },
      card("Timeline", ctx.ui.waterfall),
      h("div", { class: "trace-side" }, card("Span", ctx.ui.inspector))));
  refresh.addEventListener("click", () => reload(ctx));
  replayBtn.addEventListener("click", () => toggleReplayForm(ctx));
  await loadRecorded(ctx);
  render(ctx);
  renderComparePick(ctx);
  follow(ctx);
}

async function reload(ctx) {
  try {
    ctx.data = await loadTrace(ctx.threadId, ctx.runId, ctx.signal);
  } catch (err) {
    if (err.name !== "AbortError") clear(ctx.ui.banner, errorBox(err, "Cannot load the trace"));
    return;
  }
  render(ctx);
}

// While the run executes, its spans reach storage every second: look again until it is over.
function follow(ctx) {
  if (!ACTIVE.has(ctx.data.run.status)) return;
  setTimeout(async () => {
    if (ctx.signal.aborted) return;
    await reload(ctx);
    follow(ctx);
  }, 1000);
}

// A replay with recorded outputs: the original run's spans up to the step it reused.
async function loadRecorded(ctx) {
  const md = ctx.data.run.metadata || {};
  if (!md.replay_of || md.replay_mode !== "recorded") return;
  try {
    const orig = await loadTrace(md.replay_of_thread || ctx.threadId, md.replay_of, ctx.signal, ["node"]);
    ctx.recorded = orig.spans.filter((s) => !s.namespace && s.step !== null && s.step <= md.replay_up_to_step);
  } catch {
    ctx.recorded = []; // the original was deleted or expired: the replay stands on its own
  }
}

function render(ctx) {
  const { run, trace, spans } = ctx.data;
  ctx.spans = spans;
  const started = run.started_at || run.created_at;
  clear(ctx.ui.head, h("span", { class: "meta-row" }, statusBadge(run.status),
    h("span", {}, "thread ", h("a", { href: `#/threads/${ctx.threadId}` }, h("code", {}, shortId(ctx.threadId)))),
    h("span", {}, "started ", fmtTime(started)),
    run.ended_at ? h("span", {}, "took ", fmtMs(new Date(run.ended_at) - new Date(started))) : null,
    trace && trace.attempt > 1 ? h("span", { class: "tag tag-warn" }, `attempt ${trace.attempt}`) : null));
  const md = run.metadata || {};
  const origThread = md.replay_of_thread || ctx.threadId;
  clear(ctx.ui.banner,
    md.replay_of ? h("div", { class: "alert alert-info", "data-replay-banner": "" },
      h("strong", {}, md.replay_mode === "recorded" ? `Replay with recorded outputs up to step ${md.replay_up_to_step}, live after` : "Replay with a modified input or config"),
      h("div", {}, "Replay of run ", h("a", { href: traceUrl(origThread, md.replay_of) }, h("code", {}, shortId(md.replay_of))),
        md.replay_mode === "recorded" ? " — the recorded steps come from its checkpoints: they did not run again and spent no tokens. " : ". ",
        h("a", { href: `#/compare?a=${origThread}/${md.replay_of}&b=${ctx.threadId}/${ctx.runId}`, "data-action": "compare-original" }, "Compare with the original →"))) : null,
    run.status === "error" && run.error ? h("div", { class: "alert alert-error", role: "alert" },
      h("strong", {}, "The run failed"), h("div", { class: "alert-msg" }, `${run.error.error}: ${run.error.message}`)) : null,
    !trace && !spans.length ? h("div", { class: "alert alert-info" }, ACTIVE.has(run.status)
      ? "The run has not reported any span yet." : "No trace was recorded for this run (recorded with DOCKYARD_TRACES=true, kept DOCKYARD_TRACE_RETENTION_DAYS).") : null);
  const t = trace?.totals || {};
  const tokens = t.tokens ? (t.tokens.total_tokens ?? Object.values(t.tokens).reduce((a, b) => a + b, 0)) : null;
  clear(ctx.ui.summary, [
    ["Nodes", t.nodes ?? spans.filter((s) => s.kind === "node").length],
    ["LLM calls", t.llm_calls ?? 0], ["Tool calls", t.tool_calls ?? 0],
    ["Errors", t.errors ?? 0], ["Retries", t.retries ?? 0], ["Tokens", tokens ?? "—"],
  ].map(([k, v]) => h("div", { class: `stat${k === "Errors" && v ? " stat-bad" : ""}` }, h("div", { class: "stat-v" }, String(v)), h("div", { class: "stat-k" }, k))));
  renderWaterfall(ctx);
  if (ctx.selected === null) {
    // Open the failure first: that is what the page was opened for.
    const failed = spans.find((s) => s.status === "error" && s.kind === "node") || spans.find((s) => s.status === "error");
    if (failed) select(ctx, failed);
  }
}

function depthOf(span, bySeq) {
  let d = 0;
  const get = (seq) => bySeq.get(`${span.attempt}:${seq}`);
  for (let p = span.parent_seq; p !== null && p !== undefined && d < 20; p = get(p)?.parent_seq) d++;
  return d;
}

function renderWaterfall(ctx) {
  const { spans, run } = ctx.data;
  if (!spans.length && !ctx.recorded.length) {
    clear(ctx.ui.waterfall, empty(ACTIVE.has(run.status) ? "Waiting for the first node…" : "No spans", "Spans appear as the run's nodes execute."));
    return;
  }
  const bySeq = new Map(spans.map((s) => [`${s.attempt}:${s.seq}`, s]));
  const t0 = Math.min(...spans.map((s) => s.start_ms));
  const now = Date.now();
  const t1 = Math.max(...spans.map((s) => s.end_ms ?? (ACTIVE.has(run.status) ? now : s.start_ms)), t0 + 1);
  const total = t1 - t0;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => h("span", { class: "wf-tick", style: `left:${f * 100}%` }, fmtMs(total * f)));
  const rows = [];
  for (const s of ctx.recorded) {
    rows.push(h("div", { class: "wf-row wf-recorded", "data-span": `rec:${s.seq}`, "data-name": s.name, "data-status": "recorded", title: "Recorded: taken from the original run's checkpoint" },
      h("div", { class: "wf-label" }, h("span", { class: "wf-step" }, s.step), h("span", { class: "wf-ico" }, KIND_ICON.node), h("span", { class: "wf-name" }, s.name), h("span", { class: "tag" }, "recorded")),
      h("div", { class: "wf-track" }, h("span", { class: "wf-note" }, "from the original run · 0 tokens"))));
  }
  for (const s of spans) {
    const depth = depthOf(s, bySeq);
    const left = ((s.start_ms - t0) / total) * 100;
    const width = Math.max((((s.end_ms ?? (ACTIVE.has(run.status) ? now : s.start_ms)) - s.start_ms) / total) * 100, 0.4);
    const md = s.metadata || {};
    const row = h("div", {
      class: `wf-row wf-${s.kind} wf-st-${s.status}${ctx.selected && ctx.selected.seq === s.seq && ctx.selected.attempt === s.attempt ? " selected" : ""}`,
      "data-span": `${s.attempt}:${s.seq}`, "data-name": s.name, "data-status": s.status, "data-kind": s.kind, role: "button", tabindex: "0",
    },
    h("div", { class: "wf-label", style: `padding-left:${8 + depth * 16}px` },
      h("span", { class: "wf-step", title: "step" }, s.kind === "node" ? (s.step ?? "") : ""),
      h("span", { class: "wf-ico" }, KIND_ICON[s.kind] || "•"),
      h("span", { class: "wf-name" }, s.name),
      md.retry ? h("span", { class: "tag tag-warn" }, `retry ${md.retry}`) : null,
      s.status === "error" ? h("span", { class: "tag tag-error" }, "error") : null,
      s.status === "interrupted" ? h("span", { class: "tag tag-warn" }, "interrupt") : null,
      md.usage ? h("span", { class: "tag" }, `${md.usage.total_tokens ?? ""} tok`) : null),
    h("div", { class: "wf-track" },
      h("div", { class: "wf-bar", style: `left:${left}%;width:${width}%` }),
      // The duration beside its bar: after it, or before it when the bar ends near the edge.
      h("span", { class: "wf-dur", style: left + width > 82 ? `right:calc(${100 - left}% + 6px)` : `left:calc(${left + width}% + 6px)` }, fmtMs(s.duration_ms))));
    row.addEventListener("click", () => select(ctx, s));
    row.addEventListener("keydown", (e) => { if (e.key === "Enter") select(ctx, s); });
    rows.push(row);
  }
  const more = ctx.data.next_offset ? h("div", { class: "muted small center" }, "More spans follow: refresh to load them.") : null;
  clear(ctx.ui.waterfall,
    h("div", { class: "wf-axis" }, h("div", { class: "wf-label muted small" }, `${spans.length} spans`), h("div", { class: "wf-track" }, ticks)),
    h("div", { class: "wf-rows" }, rows), more);
}

async function select(ctx, span) {
  ctx.selected = span;
  for (const el of ctx.ui.waterfall.querySelectorAll(".wf-row")) el.classList.toggle("selected", el.dataset.span === `${span.attempt}:${span.seq}`);
  clear(ctx.ui.inspector, loading());
  let full;
  try {
    full = await api("GET", `/threads/${ctx.threadId}/runs/${ctx.runId}/trace/spans/${span.seq}?attempt=${span.attempt}`, undefined, { signal: ctx.signal });
  } catch (err) {
    if (err.name !== "AbortError") clear(ctx.ui.inspector, errorBox(err, "Cannot load the span"));
    return;
  }
  const md = full.metadata || {};
  const d = full.detail || {};
  const show = (v) => (v && v.__truncated__ ? h("div", {}, h("div", { class: "muted small" }, `Truncated: ${v.bytes} bytes, first part shown (DOCKYARD_TRACE_MAX_VALUE_BYTES).`), h("pre", { class: "json" }, v.preview)) : jsonBlock(v));
  const tabs = [["Input", () => show(d.input)], ["Output", () => (d.output === undefined ? empty("No output", full.status === "running" ? "Still running." : "The span ended without one.") : show(d.output))]];
  if (d.traceback || md.error) {
    tabs.unshift(["Error", () => h("div", { class: "stack", "data-span-error": "" },
      h("div", { class: "alert alert-error" }, h("strong", {}, md.error ? md.error.type : "Error"), h("div", { class: "alert-msg" }, md.error?.message || "")),
      d.traceback ? h("pre", { class: "stacktrace", "data-stack": "" }, d.traceback) : null)]);
  }
  const pane = h("div", { class: "inspector-pane" });
  const bar = h("div", { class: "tabs", role: "tablist" });
  const open = (name) => {
    for (const b of bar.children) b.classList.toggle("active", b.dataset.tab === name);
    clear(pane, tabs.find(([n]) => n === name)[1]());
  };
  for (const [name] of tabs) {
    const b = h("button", { type: "button", class: "tab", "data-tab": name, role: "tab" }, name);
    b.addEventListener("click", () => open(name));
    bar.append(b);
  }
  const out = h("div", {});
  let replay = null;
  if (full.kind === "node" && !full.namespace && full.step !== null && !ACTIVE.has(ctx.data.run.status)) {
    replay = h("button", { class: "btn btn-primary btn-small", type: "button", "data-action": "replay-up-to" }, `Replay up to here`);
    replay.title = `Steps before ${full.step} from this run's recorded outputs (no node runs again, no tokens), then live from “${full.name}”`;
    replay.addEventListener("click", () => withButton(replay, out, async () => {
      const made = await replayRecorded(ctx.data.run, ctx.data.trace, full.step - 1);
      location.hash = `#/threads/${made.thread_id}/runs/${made.run_id}`;
    }));
  }
  clear(ctx.ui.inspector,
    h("div", { class: "inspector-head" }, h("span", { class: "wf-ico" }, KIND_ICON[full.kind]), " ", h("strong", {}, full.name), " ", statusBadge(full.status)),
    h("div", { class: "kv" },
      h("span", {}, "kind"), h("span", {}, full.kind),
      full.step !== null ? [h("span", {}, "step"), h("span", {}, String(full.step))] : null,
      h("span", {}, "started"), h("span", {}, fmtTime(full.started_at)),
      h("span", {}, "duration"), h("span", {}, fmtMs(full.duration_ms)),
      full.namespace ? [h("span", {}, "subgraph"), h("code", {}, full.namespace.split("|").map((p) => p.split(":")[0]).join(" › "))] : null,
      md.triggers?.length ? [h("span", {}, "triggered by"), h("code", {}, md.triggers.join(", "))] : null,
      full.kind === "node" ? [h("span", {}, "next"), h("code", { "data-next": "" }, md.next?.length ? md.next.join(", ") : (full.status === "success" ? "END" : "—"))] : null,
      md.retry ? [h("span", {}, "attempt"), h("span", {}, `retry ${md.retry}`)] : null,
      md.ls_model_name ? [h("span", {}, "model"), h("code", {}, md.ls_model_name)] : null,
      md.usage ? [h("span", {}, "tokens"), h("span", {}, Object.entries(md.usage).filter(([, v]) => typeof v === "number").map(([k, v]) => `${k.replace("_tokens", "")} ${v}`).join(" · "))] : null,
      md.tool_calls?.length ? [h("span", {}, "tool calls"), h("code", {}, md.tool_calls.join(", "))] : null,
      md.task_id ? [h("span", {}, "task"), h("code", {}, shortId(md.task_id))] : null),
    replay ? h("div", { class: "form-actions" }, replay, h("span", { class: "muted small" }, "recorded before this step, live from it")) : null, out,
    bar, pane);
  open(tabs[0][0]);
}

function toggleReplayForm(ctx) {
  if (ctx.ui.replay.firstChild) {
    clear(ctx.ui.replay);
    return;
  }
  const run = ctx.data.run;
  const kw = run.kwargs || {};
  const isCommand = Boolean(kw.command);
  const inputArea = h("textarea", { class: "mono", rows: 8, spellcheck: "false", "data-replay-input": "" }, pretty(isCommand ? kw.command : (kw.input ?? null)));
  const configArea = h("textarea", { class: "mono", rows: 5, spellcheck: "false", "data-replay-config": "" }, pretty(kw.config || {}));
  const out = h("div", {});
  const go = h("button", { class: "btn btn-primary", type: "button", "data-action": "replay" }, "Replay run");
  go.addEventListener("click", () => withButton(go, out, async () => {
    const value = parseJson(inputArea.value, isCommand ? "Command" : "Input");
    const config = parseJson(configArea.value, "Config");
    if (config !== null && (typeof config !== "object" || Array.isArray(config))) throw new Error("Config must be a JSON object");
    const made = await replayModified(run, ctx.data.trace, isCommand ? { command: value, config } : { input: value, config });
    location.hash = `#/threads/${made.thread_id}/runs/${made.run_id}`;
  }));
  const base = ctx.data.trace?.base_checkpoint_id;
  clear(ctx.ui.replay, card("Replay with a modified input or config", h("div", { class: "stack" },
    h("p", { class: "muted small" }, base
      ? h("span", {}, "A new run starts from the checkpoint this run started from (", h("code", {}, shortId(base)), ") on a new branch of this thread; the original run and its checkpoints stay.")
      : "This was the thread's first run: the replay runs on a new thread."),
    h("div", { class: "grid-2" },
      h("label", { class: "field" }, h("span", { class: "field-label" }, isCommand ? "Command (resume value, update, goto)" : "Input"), inputArea),
      h("label", { class: "field" }, h("span", { class: "field-label" }, "Config ", h("span", { class: "field-type" }, "configurable, tags, recursion_limit…")), configArea)),
    h("div", { class: "form-actions" }, go), out)));
}

async function renderComparePick(ctx) {
  let runs = [];
  try {
    runs = await api("GET", `/threads/${ctx.threadId}/runs?limit=50`, undefined, { signal: ctx.signal });
  } catch {
    return;
  }
  const others = runs.filter((r) => r.run_id !== ctx.runId);
  if (!others.length) return;
  const pick = h("select", { "aria-label": "Compare with", "data-compare-with": "" },
    h("option", { value: "" }, "Compare with…"),
    others.map((r) => h("option", { value: r.run_id }, `${shortId(r.run_id)} · ${r.status} · ${fmtTime(r.created_at)}`)));
  pick.addEventListener("change", () => {
    if (pick.value) location.hash = `#/compare?a=${ctx.threadId}/${ctx.runId}&b=${ctx.threadId}/${pick.value}`;
  });
  clear(ctx.ui.compare, pick);
}
