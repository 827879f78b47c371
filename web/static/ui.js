// ui.js: DOM helpers shared by the pages. No innerHTML with data: every
// text from the server goes through textContent.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let noticeTimer = null;

// Shows a message in the page's alert region (role="alert": read out).
export function notice(message, kind) {
  const box = document.getElementById("notice");
  box.textContent = message;
  box.className = kind || "error";
  box.hidden = false;
  clearTimeout(noticeTimer);
  if (kind === "ok") noticeTimer = setTimeout(() => { box.hidden = true; }, 4000);
}

export function clearNotice() {
  document.getElementById("notice").hidden = true;
}

// Runs fn; a thrown error's message (the server's "error" text) is shown.
export async function guard(fn) {
  try {
    return await fn();
  } catch (e) {
    if (e.status === 401 && !/^#\/(login|setup)/.test(location.hash)) {
      location.hash = "#/login"; // the session ended (logged out elsewhere, expired)
      const msg = "Please log in again: " + e.message;
      setTimeout(() => notice(msg), 100); // after the route change cleared the notices
      return undefined;
    }
    notice(e.message || String(e));
    return undefined;
  }
}

export function mount(...nodes) {
  const app = document.getElementById("app");
  app.replaceChildren(...nodes);
  return app;
}

// A labelled form field: label text, then the control.
export function field(label, control, hint) {
  const id = control.id || ("f" + Math.random().toString(36).slice(2));
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id, text: label }), control,
           hint ? h("small", { text: hint }) : null);
}

export function fmtPct(x) {
  return (x === null || x === undefined || isNaN(x)) ? "–" : (100 * x).toFixed(1) + " %";
}

export function fmtBytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
  return (n / (1 << 20)).toFixed(1) + " MiB";
}

export function fmtSeconds(s) {
  if (s === undefined || s === null || !isFinite(s)) return "–";
  s = Math.round(s);
  return s >= 60 ? Math.floor(s / 60) + " min " + (s % 60) + " s" : s + " s";
}

// Colour of a label: a fixed hue per index.
export function labelColour(labels, name) {
  const i = Math.max(0, labels.indexOf(name));
  return "hsl(" + ((i * 137) % 360) + " 85% 45%)";
}

export function empty(text) {
  return h("p", { class: "empty", text });
}

let leaving = null;
// A page registers a cleanup (close an EventSource, flush autosave) that runs
// before the next route is shown.
export function onLeave(fn) { leaving = fn; }
export async function leave() {
  if (leaving) { const f = leaving; leaving = null; await f(); }
}
