// Errors are shown with their stable code and the hint that fixes them, never "check the terminal".
import { el } from "./dom.js";

/** Normalise anything thrown or returned into {code, message, hint, status}. */
export function toError(value) {
  if (!value) return { code: "unknown_error", message: "Unknown error", hint: "" };
  if (value.error && typeof value.error === "object") value = value.error;  // an envelope
  if (typeof value === "object" && (value.code || value.message)) {
    return {
      code: String(value.code || "unknown_error"),
      message: String(value.message || value.code || "Error"),
      hint: value.hint ? String(value.hint) : "",
      status: value.status ?? value.http_status ?? null,
      details: value.details ?? null,
    };
  }
  if (value instanceof Error) {
    const aborted = value.name === "AbortError" || value.name === "TimeoutError";
    return {
      code: aborted ? "request_timeout" : "network_error",
      message: value.message || String(value),
      hint: aborted ? "The server did not answer in time; is it busy or stopped?"
        : "The Manager's server could not be reached; is ComfyUI (or cm-cli.py serve) running?",
    };
  }
  return { code: "unknown_error", message: String(value), hint: "" };
}

/** A block showing code, message and hint; text only. */
export function errorBox(value, { onDismiss } = {}) {
  const err = toError(value);
  return el("div", { class: "om-error", role: "alert", dataset: { code: err.code } },
    el("div", { class: "om-error-head" },
      el("code", { class: "om-error-code", text: err.code }),
      el("span", { class: "om-error-message", text: err.message }),
      onDismiss ? el("button", { class: "om-btn om-btn-ghost om-error-close", title: "Dismiss",
        onclick: onDismiss }, "×") : null),
    err.hint ? el("div", { class: "om-error-hint" }, el("span", { class: "om-label", text: "Hint: " }),
      el("span", { text: err.hint })) : null);
}

/** One-line text form for toasts and logs. */
export function errorText(value) {
  const err = toError(value);
  return `[${err.code}] ${err.message}${err.hint ? ` (hint: ${err.hint})` : ""}`;
}
