// Threads: POST /threads/search with a status filter, a metadata filter and limit/offset paging.
import {
  api, clear, empty, errorBox, fmtTime, h, loading, pageHeader, parseJson, pretty, shortId, statusBadge,
} from "../core.js";

const STATUSES = ["all", "idle", "busy", "interrupted", "error"];
const LIMIT = 20;

function hrefWith(params, changes) {
  const p = new URLSearchParams(params);
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === "" || v === "all" || v === 0) p.delete(k);
    else p.set(k, String(v));
  }
  const q = p.toString();
  return `#/threads${q ? `?${q}` : ""}`;
}

export async function renderThreads(view, params, signal) {
  const status = params.get("status") || "all";
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const metaText = params.get("metadata") || "";
  const chips = h("div", { class: "chips", role: "tablist" }, STATUSES.map((s) =>
    h("a", { class: `chip chip-${s}${s === status ? " active" : ""}`, href: hrefWith(params, { status: s, offset: 0 }),
      role: "tab", "aria-selected": String(s === status), "data-filter": s }, s)));
  const metaInput = h("input", { type: "text", class: "mono", name: "metadata", value: metaText,
    placeholder: '{"graph_id": "agent"}', "aria-label": "Metadata filter (JSON)" });
  const searchError = h("div", {});
  const search = h("form", { class: "searchbar" }, h("span", { class: "searchbar-label" }, "Metadata"), metaInput,
    h("button", { class: "btn", type: "submit" }, "Search"), metaText ? h("a", { class: "btn btn-ghost", href: hrefWith(params, { metadata: null, offset: 0 }) }, "Clear") : null);
  search.addEventListener("submit", (ev) => {
    ev.preventDefault();
    try {
      const v = parseJson(metaInput.value, "Metadata filter");
      if (v !== null && (typeof v !== "object" || Array.isArray(v))) throw new Error("Metadata filter must be a JSON object");
      location.hash = hrefWith(params, { metadata: v ? JSON.stringify(v) : null, offset: 0 });
    } catch (err) {
      clear(searchError, errorBox(err, "Invalid filter"));
    }
  });
  const body = h("div", {}, loading("Loading threads…"));
  clear(view, pageHeader("Threads", "Conversations and runs, newest first"),
    h("div", { class: "toolbar" }, chips, search), searchError, body);

  let metadata = null;
  try {
    metadata = metaText ? parseJson(metaText, "Metadata filter") : null;
  } catch (err) {
    clear(body, errorBox(err, "Invalid filter"));
    return;
  }
  const query = { limit: LIMIT, offset, sort_by: "updated_at", sort_order: "desc" };
  if (status !== "all") query.status = status;
  if (metadata) query.metadata = metadata;
  let rows;
  try {
    rows = await api("POST", "/threads/search", query, { signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    clear(body, errorBox(err, "Cannot list threads"));
    return;
  }
  if (!rows.length) {
    const filtered = status !== "all" || metadata || offset;
    clear(body, h("div", { class: "card" }, filtered
      ? empty("No threads match these filters", h("a", { href: "#/threads" }, "Show all threads"))
      : empty("No threads yet — start a run from Agents", h("a", { class: "btn btn-primary", href: "#/agents" }, "Go to Agents"))));
    return;
  }
  const table = h("table", { class: "table table-click", "data-table": "threads" },
    h("thead", {}, h("tr", {}, h("th", {}, "Thread"), h("th", {}, "Status"), h("th", {}, "Graph"),
      h("th", {}, "Metadata"), h("th", {}, "Updated"), h("th", {}, "Created"))),
    h("tbody", {}, rows.map((t) => {
      const href = `#/threads/${t.thread_id}`;
      const interrupted = t.status === "interrupted";
      const tr = h("tr", { class: interrupted ? "row-attention" : t.status === "error" ? "row-error" : "",
        "data-thread": t.thread_id, "data-status": t.status },
      h("td", {}, h("a", { href, class: "mono" }, shortId(t.thread_id)),
        interrupted ? h("span", { class: "needs-input" }, "needs input") : null),
      h("td", {}, statusBadge(t.status)),
      h("td", {}, t.metadata?.graph_id ? h("code", {}, t.metadata.graph_id) : "—"),
      h("td", {}, h("code", { class: "clip", title: pretty(t.metadata || {}) }, JSON.stringify(t.metadata || {}))),
      h("td", {}, fmtTime(t.updated_at)),
      h("td", {}, fmtTime(t.created_at)));
      tr.addEventListener("click", (ev) => { if (!ev.target.closest("a")) location.hash = href; });
      return tr;
    })));
  const prev = offset > 0 ? h("a", { class: "btn", href: hrefWith(params, { offset: Math.max(0, offset - LIMIT) }) }, "← Previous") : h("span", { class: "btn disabled" }, "← Previous");
  const next = rows.length === LIMIT ? h("a", { class: "btn", href: hrefWith(params, { offset: offset + LIMIT }), "data-action": "next-page" }, "Next →") : h("span", { class: "btn disabled" }, "Next →");
  clear(body, h("div", { class: "card card-flush" }, table),
    h("div", { class: "pager" }, h("span", { class: "muted" }, `Showing ${offset + 1}–${offset + rows.length}`), h("div", { class: "pager-btns" }, prev, next)));
}
