// Two runs side by side (#/compare?a=<thread>/<run>&b=<thread>/<run>): their node sequences
// aligned (longest common subsequence of node names per subgraph), and per step whether the
// input, output or status differed — from the hashes in the trace listings; a row opens the two
// spans' values and their diff.
import { api, card, clear, empty, errorBox, fmtTime, h, loading, pageHeader, shortId, statusBadge } from "../core.js";
import { renderDiff } from "../diff.js";
import { fmtMs, loadTrace, traceUrl } from "./trace.js";

const nsKey = (s) => (s.namespace || "").split("|").filter(Boolean).map((p) => p.split(":")[0]).join(" › ");
const keyOf = (s) => `${nsKey(s)}/${s.name}`;

/** Align two span lists on their keys: [[a|null, b|null], …] in order (LCS, O(n·m)). */
export function align(a, b) {
  const n = a.length, m = b.length;
  const L = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      L[i][j] = keyOf(a[i]) === keyOf(b[j]) ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
    }
  }
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (keyOf(a[i]) === keyOf(b[j])) out.push([a[i++], b[j++]]);
    else if (L[i + 1][j] >= L[i][j + 1]) out.push([a[i++], null]);
    else out.push([null, b[j++]]);
  }
  while (i < n) out.push([a[i++], null]);
  while (j < m) out.push([null, b[j++]]);
  return out;
}

function verdict(a, b) {
  if (!a) return ["only-b", "only in B"];
  if (!b) return ["only-a", "only in A"];
  const ma = a.metadata || {}, mb = b.metadata || {};
  const parts = [];
  if (a.status !== b.status) parts.push("status");
  if (ma.input_hash !== mb.input_hash) parts.push("input");
  if (ma.output_hash !== mb.output_hash) parts.push("output");
  if (JSON.stringify(ma.next || []) !== JSON.stringify(mb.next || [])) parts.push("next");
  return parts.length ? ["differs", `${parts.join(", ")} differ${parts.length === 1 ? "s" : ""}`] : ["same", "same"];
}

function parseRef(v) {
  const [thread, run] = (v || "").split("/");
  return thread && run ? { thread, run } : null;
}

export async function renderCompare(view, params, signal) {
  const A = parseRef(params.get("a")), B = parseRef(params.get("b"));
  if (!A || !B) {
    clear(view, pageHeader("Compare runs"), empty("Pick two runs", "Open a run's trace and choose “Compare with…”, or tick two runs on a thread page."));
    return;
  }
  clear(view, pageHeader("Compare runs"), loading("Loading both traces…"));
  const [ta, tb] = await Promise.all([loadTrace(A.thread, A.run, signal, ["node"]), loadTrace(B.thread, B.run, signal, ["node"])]);
  const rows = align(ta.spans, tb.spans);
  const counts = { same: 0, differs: 0, "only-a": 0, "only-b": 0 };
  const firstDiff = rows.findIndex(([a, b]) => verdict(a, b)[0] !== "same");
  const detail = h("div", { class: "inspector" }, empty("Select a step", "Both spans' inputs and outputs, and their diff, appear here."));
  const body = rows.map(([a, b], i) => {
    const [cls, text] = verdict(a, b);
    counts[cls] += 1;
    const cell = (s, t) => (s ? h("td", {}, h("span", { class: "cmp-node" }, h("code", {}, s.name), nsKey(s) ? h("span", { class: "muted small" }, ` in ${nsKey(s)}`) : null),
      h("div", { class: "muted small" }, `step ${s.step ?? "?"} · ${fmtMs(s.duration_ms)} `, s.status !== "success" ? statusBadge(s.status) : null)) : h("td", { class: "cmp-missing" }, "—"));
    const tr = h("tr", { class: `cmp-row cmp-${cls}${i === firstDiff ? " cmp-first" : ""}`, "data-verdict": cls, "data-row": i },
      h("td", { class: "muted" }, i + 1), cell(a, ta), cell(b, tb), h("td", {}, h("span", { class: `cmp-verdict cmp-v-${cls}` }, text)));
    tr.addEventListener("click", () => {
      for (const r of tr.parentElement.children) r.classList.toggle("selected", r === tr);
      showPair(detail, A, B, a, b, signal);
    });
    return tr;
  });
  const side = (ref, t, label) => h("div", { class: "cmp-side" },
    h("div", { class: "cmp-label" }, label),
    h("div", {}, h("a", { href: traceUrl(ref.thread, ref.run) }, h("code", { class: "title-id" }, shortId(ref.run))), " ", statusBadge(t.run.status)),
    h("div", { class: "muted small" }, `${fmtTime(t.run.created_at)} · ${t.spans.length} nodes`,
      t.run.metadata?.replay_of ? ` · replay of ${shortId(t.run.metadata.replay_of)}` : ""),
    t.run.error ? h("div", { class: "run-error" }, `${t.run.error.error}: ${t.run.error.message}`) : null);
  clear(view,
    pageHeader("Compare runs", h("span", {}, firstDiff < 0 ? "Same node sequence, same inputs and outputs." : `First difference at row ${firstDiff + 1}.`)),
    h("div", { class: "cmp-heads" }, side(A, ta, "A"), side(B, tb, "B"),
      h("div", { class: "trace-summary" }, [["same", "Same"], ["differs", "Differ"], ["only-a", "Only in A"], ["only-b", "Only in B"]].map(([k, l]) =>
        h("div", { class: `stat${k !== "same" && counts[k] ? " stat-bad" : ""}` }, h("div", { class: "stat-v" }, String(counts[k])), h("div", { class: "stat-k" }, l))))),
    h("div", { class: "trace-grid" },
      card("Steps", rows.length ? h("table", { class: "table table-click", "data-table": "compare" },
        h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Run A"), h("th", {}, "Run B"), h("th", {}, "What differed"))),
        h("tbody", {}, body)) : empty("Neither run has node spans")),
      h("div", { class: "trace-side" }, card("Step detail", detail))));
  if (firstDiff >= 0) body[firstDiff].click();
}

async function showPair(where, A, B, a, b, signal) {
  clear(where, loading());
  const get = (ref, s) => (s ? api("GET", `/threads/${ref.thread}/runs/${ref.run}/trace/spans/${s.seq}?attempt=${s.attempt}`, undefined, { signal }) : null);
  let fa, fb;
  try {
    [fa, fb] = await Promise.all([get(A, a), get(B, b)]);
  } catch (err) {
    if (err.name !== "AbortError") clear(where, errorBox(err, "Cannot load the spans"));
    return;
  }
  const val = (f, k) => (f ? f.detail?.[k] : undefined);
  const section = (title, k) => {
    const va = val(fa, k), vb = val(fb, k);
    if (va === undefined && vb === undefined) return null;
    return h("div", { class: "stack" }, h("h3", { class: "pane-title" }, title),
      fa && fb ? renderDiff(va ?? null, vb ?? null) : h("div", { class: "muted small" }, "Only one run has this step."));
  };
  const err = (f, label) => (f?.metadata?.error ? h("div", { class: "alert alert-error" }, h("strong", {}, `${label}: ${f.metadata.error.type}`), h("div", { class: "alert-msg" }, f.metadata.error.message)) : null);
  clear(where,
    h("div", { class: "inspector-head" }, h("strong", {}, (a || b).name), h("span", { class: "muted" }, " · A → B")),
    err(fa, "A"), err(fb, "B"),
    section("Output (A → B)", "output"), section("Input (A → B)", "input"));
}
