// Shared helpers: the API client (public endpoints only), a tiny element builder, formatting
// and the in-place states every page uses (loading, empty, error).

// The API lives at the server's root; the UI at <root>/ui. Keep any mount prefix.
export const BASE = location.pathname.replace(/\/ui\/?.*$/, "");

export class ApiError extends Error {
  constructor(status, detail, code) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

function detailOf(data, status) {
  if (data && typeof data === "object" && data.detail !== undefined) {
    return typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
  }
  if (typeof data === "string" && data) return data;
  return `Request failed with HTTP ${status}`;
}

// With DOCKYARD_AUTH=keys every API call needs a key: asked for once (on the first 401), kept
// in this browser's localStorage and sent as X-Api-Key, like any client's.
const KEY_ITEM = "dockyard.apiKey";

export function authHeaders() {
  const key = localStorage.getItem(KEY_ITEM);
  return key ? { "x-api-key": key } : {};
}

function askForKey(detail) {
  const key = window.prompt(`This Dockyard needs an API key (${detail}).\nPaste a key ` +
    "(dockyard keys create --tenant T --role viewer):");
  if (key && key.trim()) {
    localStorage.setItem(KEY_ITEM, key.trim());
    return true;
  }
  return false;
}

/** Call the public HTTP API; non-2xx answers throw ApiError carrying the API's `detail`. */
export async function api(method, path, body, { signal } = {}, retried = false) {
  const init = { method, signal, headers: { ...authHeaders() } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(BASE + path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `Cannot reach the server (${err.message})`);
  }
  if (res.status === 401 && !retried) {
    let detail = "401";
    try { detail = (await res.clone().json()).detail || detail; } catch { /* not JSON */ }
    if (askForKey(detail)) return api(method, path, body, { signal }, true);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!res.ok) throw new ApiError(res.status, detailOf(data, res.status), data && data.code);
  return data;
}

/** A protocol command (POST /threads/{id}/commands); error envelopes throw. */
let commandId = 0;
export async function command(threadId, method, params) {
  const answer = await api("POST", `/threads/${threadId}/commands`,
    { id: ++commandId, method, params });
  if (answer.type === "error") throw new ApiError(200, answer.message || answer.error, answer.error);
  return answer;
}

/** h("div", {class: "x", onclick: fn}, child, "text", [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElementNS(
    tag === "svg" || attrs?.__svg ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "__svg" || v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

export function svg(tag, attrs, ...children) {
  return h(tag, { ...attrs, __svg: true }, ...children);
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// The tail of an id: Dockyard's ids (UUIDv7) and checkpoint ids (UUIDv6) start with a timestamp,
// so ids made close together share their first characters but not their last.
export function shortId(id) {
  return id ? String(id).replace(/-/g, "").slice(-8) : "—";
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const time = { hour: "2-digit", minute: "2-digit", second: "2-digit" };
  if (d.toDateString() === new Date().toDateString()) return d.toLocaleTimeString(undefined, time);
  return d.toLocaleString(undefined, {
    year: d.getFullYear() === new Date().getFullYear() ? undefined : "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

export function fmtDuration(startIso, endIso) {
  const ms = new Date(endIso) - new Date(startIso);
  if (!Number.isFinite(ms) || ms < 0) return "—";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

export function jsonBlock(value, cls = "") {
  return h("pre", { class: `json ${cls}` }, value === undefined ? "undefined" : pretty(value));
}

export function statusBadge(status) {
  return h("span", { class: `badge badge-${status || "unknown"}`, "data-status": status },
    status || "unknown");
}

export function loading(label = "Loading…") {
  return h("div", { class: "state state-loading", role: "status" },
    h("span", { class: "spinner" }), label);
}

export function empty(title, hint) {
  return h("div", { class: "state state-empty" },
    h("div", { class: "state-title" }, title), hint ? h("div", { class: "state-hint" }, hint) : null);
}

export function errorBox(err, title = "Something went wrong") {
  const msg = err instanceof Error ? err.message : String(err);
  return h("div", { class: "alert alert-error", role: "alert" },
    h("strong", {}, title), h("div", { class: "alert-msg" }, msg));
}

/** Parse a JSON text field; throws an Error naming the field. */
export function parseJson(text, field) {
  const t = text.trim();
  if (!t) return null;
  try {
    return JSON.parse(t);
  } catch (err) {
    throw new Error(`${field} is not valid JSON: ${err.message}`);
  }
}

export function card(title, body, actions) {
  return h("section", { class: "card" },
    title ? h("header", { class: "card-head" }, h("h2", {}, title),
      actions ? h("div", { class: "card-actions" }, actions) : null) : null,
    h("div", { class: "card-body" }, body));
}

export function pageHeader(title, subtitle, actions) {
  return h("header", { class: "page-head" },
    h("div", {}, h("h1", {}, title), subtitle ? h("div", { class: "page-sub" }, subtitle) : null),
    actions ? h("div", { class: "page-actions" }, actions) : null);
}

/** Run an async action from a button: disable it while pending, show errors in `where`. */
export async function withButton(button, where, fn) {
  button.disabled = true;
  const label = button.textContent;
  button.classList.add("is-busy");
  if (where) where.replaceChildren();
  try {
    return await fn();
  } catch (err) {
    if (where) where.replaceChildren(errorBox(err, "Action failed"));
    else throw err;
  } finally {
    button.disabled = false;
    button.textContent = label;
    button.classList.remove("is-busy");
  }
}
