// Store browser: POST /store/namespaces, then POST /store/items/search in the chosen namespace.
import { api, clear, empty, errorBox, fmtTime, h, jsonBlock, loading, pageHeader } from "../core.js";

const LIMIT = 20;

export async function renderStore(view, params, signal) {
  const ns = params.get("ns") ? params.get("ns").split("/").map(decodeURIComponent) : null;
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const list = h("div", { class: "list" }, loading());
  const items = h("div", { class: "detail" });
  clear(view, pageHeader("Store", "Long-term memory shared by graphs (get_store()) and the store API"),
    h("div", { class: "split" }, h("aside", { class: "split-list" }, list), items));
  let namespaces;
  try {
    namespaces = (await api("POST", "/store/namespaces", { limit: 100 }, { signal })).namespaces || [];
  } catch (err) {
    if (err.name === "AbortError") throw err;
    clear(list, errorBox(err, "Cannot list namespaces"));
    return;
  }
  const key = (n) => n.map(encodeURIComponent).join("/");
  if (!namespaces.length) {
    clear(list, empty("No namespaces yet", "Items appear when a graph or a client puts one."));
    clear(items, h("div", { class: "card" }, empty("The store is empty", "PUT /store/items or store.aput() in a node adds items.")));
    return;
  }
  const chosen = ns || namespaces[0];
  clear(list, namespaces.map((n) => h("a", {
    class: `list-item${key(n) === key(chosen) ? " active" : ""}`, href: `#/store?ns=${key(n)}`, "data-namespace": n.join("."),
  }, h("div", { class: "list-title mono" }, n.join(" / ")))));
  clear(items, loading("Loading items…"));
  let page;
  try {
    page = await api("POST", "/store/items/search", { namespace_prefix: chosen, limit: LIMIT, offset }, { signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    clear(items, errorBox(err, "Cannot search items"));
    return;
  }
  const rows = page.items || [];
  const header = h("div", { class: "detail-head" }, h("h2", { class: "detail-title mono" }, chosen.join(" / ")),
    h("div", { class: "meta-row" }, `${rows.length} item${rows.length === 1 ? "" : "s"}${offset ? ` from #${offset + 1}` : ""}`));
  if (!rows.length) {
    clear(items, header, h("div", { class: "card" }, empty("No items in this namespace")));
    return;
  }
  const base = `#/store?ns=${key(chosen)}`;
  clear(items, header, h("div", { class: "card card-flush" }, h("table", { class: "table", "data-table": "items" },
    h("thead", {}, h("tr", {}, h("th", {}, "Key"), h("th", {}, "Namespace"), h("th", {}, "Value"), h("th", {}, "Updated"))),
    h("tbody", {}, rows.map((it) => h("tr", { "data-key": it.key },
      h("td", {}, h("code", {}, it.key)),
      h("td", {}, h("code", {}, (it.namespace || []).join(" / "))),
      h("td", { class: "cell-json" }, jsonBlock(it.value, "json-small")),
      h("td", {}, fmtTime(it.updated_at))))))),
  h("div", { class: "pager" }, h("span", {}),
    h("div", { class: "pager-btns" },
      offset > 0 ? h("a", { class: "btn", href: `${base}&offset=${Math.max(0, offset - LIMIT)}` }, "← Previous") : h("span", { class: "btn disabled" }, "← Previous"),
      rows.length === LIMIT ? h("a", { class: "btn", href: `${base}&offset=${offset + LIMIT}` }, "Next →") : h("span", { class: "btn disabled" }, "Next →"))));
}
