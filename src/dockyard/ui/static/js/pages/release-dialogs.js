// The release console's confirmations: a modal <dialog> that states what a change will do,
// takes its few parameters, and shows the API's refusal in place (status, code and detail)
// without closing, so the user can correct and retry.
import { ApiError, h, shortId } from "../core.js";

/** An error box that names the HTTP status and the API's stable error code, if any. */
export function apiErrorBox(err, title = "Action failed") {
  const msg = err instanceof Error ? err.message : String(err);
  const where = err instanceof ApiError && err.status
    ? h("span", { class: "alert-code" }, `HTTP ${err.status}${err.code ? ` · ${err.code}` : ""}`) : null;
  return h("div", { class: "alert alert-error", role: "alert", "data-error-code": err?.code || null },
    h("div", { class: "alert-title" }, h("strong", {}, title), where),
    h("div", { class: "alert-msg" }, msg));
}

/** "4b1e2c9a “tighter prompt”", or "base" for the server's own project. */
export function revLabel(id, byId) {
  if (!id) return "base (the server's own project)";
  const msg = byId?.get(id)?.message;
  return msg ? `${shortId(id)} “${msg}”` : shortId(id);
}

/** A labelled number input; read() gives a number or undefined when left empty. */
export function numberField(label, name, { value, min, max, step, unit, placeholder } = {}) {
  const input = h("input", { type: "number", name, "data-field": name, value, min, max, step, placeholder });
  return {
    el: h("label", { class: "field" }, h("span", { class: "field-label" }, label),
      h("span", { class: "input-unit" }, input, unit ? h("span", { class: "unit" }, unit) : null)),
    read: () => {
      if (input.value.trim() === "") return undefined;
      const v = Number(input.value);
      if (!Number.isFinite(v)) throw new Error(`${label} must be a number`);
      return v;
    },
  };
}

/**
 * Ask before a change. `run` performs it; a thrown error (an ApiError from the server, or a
 * validation Error) is shown inside the dialog, which stays open. Closes on success, on
 * Cancel/Escape, and when the page is left (`signal`).
 */
export function confirmAction({ name, title, intro, fields = [], confirmLabel, danger = false, run, signal }) {
  const out = h("div", { class: "modal-error" });
  const ok = h("button", { class: `btn ${danger ? "btn-danger-solid" : "btn-primary"}`, type: "submit", "data-action": "confirm" }, confirmLabel);
  const cancel = h("button", { class: "btn", type: "button", "data-action": "cancel" }, "Cancel");
  const form = h("form", { class: "modal-form", method: "dialog" },
    h("header", { class: "modal-head" }, h("h2", {}, title)),
    h("div", { class: "modal-body" }, h("p", { class: "modal-intro" }, intro), fields, out),
    h("footer", { class: "modal-actions" }, cancel, ok));
  const dialog = h("dialog", { class: `modal${danger ? " modal-danger" : ""}`, "data-dialog": name }, form);
  const close = () => { if (dialog.open) dialog.close(); };
  dialog.addEventListener("close", () => dialog.remove());
  cancel.addEventListener("click", close);
  signal?.addEventListener("abort", () => { close(); dialog.remove(); });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    ok.disabled = true;
    cancel.disabled = true;
    ok.classList.add("is-busy");
    out.replaceChildren();
    try {
      await run();
      close();
    } catch (err) {
      out.replaceChildren(apiErrorBox(err, err instanceof ApiError ? "The server refused this change" : "Check the form"));
    } finally {
      ok.disabled = false;
      cancel.disabled = false;
      ok.classList.remove("is-busy");
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}
