// A JSON diff between two consecutive states: added / removed / changed keys (recursively for
// objects), and list appends shown as such (the common case of reducer channels).
import { h, pretty } from "./core.js";

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

export function diff(before, after, path = []) {
  const out = [];
  if (isObj(before) && isObj(after)) {
    for (const k of Object.keys(after)) {
      if (!(k in before)) out.push({ kind: "added", path: [...path, k], value: after[k] });
      else if (!same(before[k], after[k])) out.push(...diff(before[k], after[k], [...path, k]));
    }
    for (const k of Object.keys(before)) {
      if (!(k in after)) out.push({ kind: "removed", path: [...path, k], value: before[k] });
    }
    return out;
  }
  if (Array.isArray(before) && Array.isArray(after) && after.length > before.length
      && same(before, after.slice(0, before.length))) {
    return [{ kind: "appended", path, value: after.slice(before.length) }];
  }
  if (!same(before, after)) out.push({ kind: "changed", path, before, value: after });
  return out;
}

const SIGN = { added: "+", removed: "−", changed: "~", appended: "+" };

export function renderDiff(before, after) {
  const changes = diff(before ?? {}, after ?? {});
  if (!changes.length) return h("div", { class: "muted diff-none" }, "No change to the state values.");
  return h("ul", { class: "diff" }, changes.map((c) => h("li", { class: `diff-${c.kind}`, "data-kind": c.kind },
    h("span", { class: "diff-sign" }, SIGN[c.kind]),
    h("code", { class: "diff-path" }, c.path.join(".") || "(root)"),
    h("span", { class: "diff-kind" }, c.kind === "appended" ? `appended ${c.value.length}` : c.kind),
    c.kind === "changed"
      ? h("div", { class: "diff-values" },
          h("pre", { class: "json diff-before" }, pretty(c.before)),
          h("span", { class: "diff-arrow" }, "→"),
          h("pre", { class: "json diff-after" }, pretty(c.value)))
      : h("pre", { class: "json" }, pretty(c.value)))));
}
