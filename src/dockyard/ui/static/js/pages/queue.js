// The queue and its workers (GET /queue, the caller's tenant): depth, running runs with their
// worker and lease, the oldest waiting runs, recent failures. Refreshed every two seconds.
import { api, card, clear, empty, errorBox, fmtTime, h, loading, pageHeader, shortId, statusBadge } from "../core.js";
import { traceUrl } from "./trace.js";

const REFRESH_MS = 2000;

export async function renderQueue(view, signal) {
  const body = h("div", { class: "stack" }, loading("Loading the queue…"));
  const stamp = h("span", { class: "muted small" });
  clear(view, pageHeader("Queue", "Runs waiting and running, the workers holding them, and recent failures.", stamp), body);
  let info = null;
  api("GET", "/info", undefined, { signal }).then((i) => { info = i; }).catch(() => {});
  const tick = async () => {
    if (signal.aborted) return;
    try {
      const q = await api("GET", "/queue?limit=50", undefined, { signal });
      draw(body, q, info);
      stamp.textContent = `updated ${fmtTime(q.now)}`;
    } catch (err) {
      if (err.name === "AbortError") return;
      clear(body, errorBox(err, "Cannot load the queue"));
    }
    setTimeout(tick, REFRESH_MS);
  };
  await tick();
}

const runLink = (r) => h("a", { href: traceUrl(r.thread_id, r.run_id) }, h("code", { title: r.run_id }, shortId(r.run_id)));
const threadLink = (r) => h("a", { href: `#/threads/${r.thread_id}` }, h("code", {}, shortId(r.thread_id)));

function since(iso, now) {
  const ms = new Date(now) - new Date(iso);
  if (!Number.isFinite(ms)) return "—";
  if (ms < 1000) return "just now";
  if (ms < 60000) return `${Math.round(ms / 1000)} s`;
  if (ms < 3600000) return `${Math.round(ms / 60000)} min`;
  return `${Math.round(ms / 3600000)} h`;
}

function table(name, head, rows, emptyTitle) {
  if (!rows.length) return empty(emptyTitle);
  return h("table", { class: "table", "data-table": name },
    h("thead", {}, h("tr", {}, head.map((x) => h("th", {}, x)))), h("tbody", {}, rows));
}

function draw(body, q, info) {
  const now = q.now;
  const prod = info && info.database && info.database !== "sqlite";
  clear(body,
    h("div", { class: "trace-summary" }, [
      ["Pending", q.totals.pending || 0], ["Running", q.totals.running || 0],
      ["Workers", q.workers.length], ["Recent failures", q.failures.length],
    ].map(([k, v]) => h("div", { class: `stat${k === "Recent failures" && v ? " stat-bad" : ""}`, "data-stat": k }, h("div", { class: "stat-v" }, String(v)), h("div", { class: "stat-k" }, k)))),
    info && !prod ? h("div", { class: "muted small" }, "Embedded mode (SQLite): one process runs every run. With PostgreSQL and Redis, each dockyard worker shows here while it holds runs.") : null,
    h("div", { class: "grid-2" },
      card("Workers", table("workers", ["Worker", "Runs", "Lease until"], q.workers.map((w) =>
        h("tr", { "data-worker": w.worker_id, class: w.lease_expired ? "row-error" : "" },
          h("td", {}, h("code", {}, w.worker_id)), h("td", {}, w.runs),
          h("td", {}, fmtTime(w.lease_until), w.lease_expired ? h("span", { class: "tag tag-error" }, "expired") : null))), "No worker holds a run right now")),
      card("Depth", table("depth", ["Status", "Priority", "Runs"], q.depth.map((d) =>
        h("tr", {}, h("td", {}, statusBadge(d.status)), h("td", {}, d.priority), h("td", {}, d.n))), "The queue is empty"))),
    card("Running", table("running", ["Run", "Thread", "Graph", "Worker", "Running for", "Lease until", "Attempt"], q.running.map((r) => {
      const expired = r.lease_until && r.lease_until < now;
      return h("tr", { "data-run": r.run_id, class: expired ? "row-error" : "" },
        h("td", {}, runLink(r)), h("td", {}, threadLink(r)), h("td", {}, h("code", {}, r.graph_id)),
        h("td", {}, h("code", {}, r.worker_id || "—")), h("td", {}, since(r.started_at, now)),
        h("td", {}, fmtTime(r.lease_until), expired ? h("span", { class: "tag tag-error" }, "expired") : null),
        h("td", {}, r.attempts > 1 ? h("span", { class: "tag tag-warn" }, `#${r.attempts}`) : r.attempts));
    }), "No run is running")),
    card("Waiting", table("pending", ["Run", "Thread", "Graph", "Priority", "Waiting for", "Available"], q.pending.map((r) =>
      h("tr", { "data-run": r.run_id },
        h("td", {}, runLink(r)), h("td", {}, threadLink(r)), h("td", {}, h("code", {}, r.graph_id)),
        h("td", {}, r.priority), h("td", {}, since(r.created_at, now)), h("td", {}, fmtTime(r.available_at)))), "No run is waiting")),
    card("Recent failures", table("failures", ["Run", "Thread", "Graph", "Error", "Failed"], q.failures.map((r) =>
      h("tr", { "data-run": r.run_id, class: "row-error" },
        h("td", {}, runLink(r)), h("td", {}, threadLink(r)), h("td", {}, h("code", {}, r.graph_id)),
        h("td", {}, h("span", { class: "run-error" }, `${r.error?.error || "Error"}: ${r.error?.message || ""}`)),
        h("td", {}, fmtTime(r.ended_at || r.updated_at)))), "No failed run")));
}
