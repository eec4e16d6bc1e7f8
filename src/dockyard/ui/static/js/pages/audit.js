// The audit log (GET /admin/audit, the caller's tenant; admins only): who did what and when,
// newest first, filtered by action, paged. A caller without the `audit` permission sees the
// API's 403 in place; with auth off (dockyard dev) nothing is recorded, and the page says so.
import { api, card, clear, empty, errorBox, fmtTime, h, loading, pageHeader, shortId } from "../core.js";

const PAGE = 50;
const ACTIONS = [
  "", "run.create", "run.cancel", "run.cancel_many", "thread.state_update", "assistant.create",
  "assistant.update", "assistant.delete", "revision.create", "deployment.promote",
  "deployment.canary", "deployment.rollback", "threads.migrate", "revision.env", "key.create",
  "key.revoke", "auth.failed", "auth.forbidden",
];

export async function renderAudit(view, params, signal) {
  const action = params.get("action") || "";
  const offset = Math.max(0, Number(params.get("offset") || 0) || 0);
  const body = h("div", { class: "stack" }, loading("Loading the audit log…"));
  const select = h("select", { "data-filter": "action", "aria-label": "Action" },
    ACTIONS.map((a) => h("option", { value: a, selected: a === action ? "" : null }, a || "every action")));
  select.addEventListener("change", () => { location.hash = link(select.value, 0); });
  clear(view, pageHeader("Audit log", "Who did what and when in this tenant: runs, state edits, deploys, rollbacks, keys, refused calls.", select), body);
  let rows, info;
  try {
    [rows, info] = await Promise.all([
      api("GET", `/admin/audit?limit=${PAGE + 1}&offset=${offset}${action ? `&action=${encodeURIComponent(action)}` : ""}`, undefined, { signal }),
      api("GET", "/info", undefined, { signal }).catch(() => null),
    ]);
  } catch (err) {
    if (err.name === "AbortError") return;
    clear(body, errorBox(err, "Cannot load the audit log"));
    return;
  }
  const more = rows.length > PAGE;
  rows = rows.slice(0, PAGE);
  if (!rows.length) {
    const authOff = info && info.auth === "none";
    clear(body, card("Entries", empty(
      offset ? "No more entries" : action ? `No “${action}” entry yet` : "Nothing recorded yet",
      authOff || !info ? "Entries are written when auth is on (DOCKYARD_AUTH=keys or oidc): every change made through the API, and refused calls." : null)));
    return;
  }
  const table = h("table", { class: "table", "data-table": "audit" },
    h("thead", {}, h("tr", {}, ["When", "Actor", "Action", "Resource", "Outcome", "Detail"].map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((r) => h("tr", { "data-audit": r.action, class: r.outcome === "ok" ? "" : "row-error" },
      h("td", { class: "nowrap" }, fmtTime(r.at)),
      h("td", {}, h("code", {}, r.actor)),
      h("td", {}, h("span", { class: `tag${r.action.startsWith("auth.") ? " tag-error" : ""}` }, r.action)),
      h("td", {}, r.resource_type ? [h("span", { class: "muted" }, `${r.resource_type} `), r.resource_id ? h("code", { title: r.resource_id }, shortId(r.resource_id)) : null] : "—"),
      h("td", {}, r.outcome),
      h("td", { class: "audit-detail" }, detail(r.detail))))));
  const pager = h("div", { class: "pager" },
    offset ? h("a", { class: "btn", href: link(action, Math.max(0, offset - PAGE)) }, "← Newer") : null,
    h("span", { class: "muted small" }, `entries ${offset + 1}–${offset + rows.length}`),
    more ? h("a", { class: "btn", href: link(action, offset + PAGE), "data-next": "" }, "Older →") : null);
  clear(body, card("Entries", table), pager);
}

function link(action, offset) {
  const q = new URLSearchParams();
  if (action) q.set("action", action);
  if (offset) q.set("offset", String(offset));
  const s = q.toString();
  return `#/audit${s ? `?${s}` : ""}`;
}

function detail(d) {
  if (!d || !Object.keys(d).length) return h("span", { class: "muted" }, "—");
  return h("span", { class: "small" }, Object.entries(d).map(([k, v]) =>
    h("span", { class: "audit-kv" }, h("span", { class: "muted" }, `${k}: `), typeof v === "object" ? JSON.stringify(v) : String(v), " ")));
}
