// editor.js: the Annotate tab. Detection: draw a box by dragging on the
// picture, drag a box to move it, drag a corner handle to resize it.
// Keys (picture focused): Delete/Backspace removes the selected box, arrows
// move it (Shift: 10 px; Alt: resize), 1-9 give it a label, Escape
// deselects, N / P next and previous image, Ctrl+S saves now. Every change
// is saved a moment later (PUT .../annotation with the CSRF header).
// Classification: the image's label and split.
import * as api from "./api.js";
import { h, guard, empty, labelColour, onLeave, notice } from "./ui.js";

const HANDLE = 7;
const MAX_W = 760;

export async function editorTab(project, body, imageArg) {
  let ids = await guard(() => api.get("/api/projects/" + project.id + "/images?limit=1000"));
  if (!ids) return;
  ids = ids.images.map((i) => i.id);
  if (!ids.length) {
    body.append(empty("No images to annotate yet: upload some on the Data tab."));
    return;
  }
  const id = imageArg ? Number(imageArg) : ids[0];
  const at = ids.indexOf(id);
  const ann = await guard(() => api.get("/api/projects/" + project.id + "/images/" + id + "/annotation"));
  if (!ann) return;
  const img = new Image();
  img.src = "/api/projects/" + project.id + "/images/" + id + "/file";
  try { await img.decode(); } catch (_) { notice("cannot show image " + id); return; }

  const labels = project.labels.slice();
  const go = (k) => { if (k >= 0 && k < ids.length) location.hash = "#/p/" + project.id + "/edit/" + ids[k]; };
  const saveState = h("span", { class: "save-state", role: "status", "aria-live": "polite", id: "save-state", text: "Saved" });
  const nav = h("div", { class: "toolbar" },
    h("button", { type: "button", onclick: () => go(at - 1), disabled: at <= 0, text: "← Previous" }),
    h("span", { text: "Image " + (at + 1) + " of " + ids.length }),
    h("button", { type: "button", onclick: () => go(at + 1), disabled: at >= ids.length - 1, text: "Next →" }),
    saveState);
  const split = h("select", { id: "ann-split" }, ["unassigned", "train", "val", "test"].map((s) =>
    h("option", { value: s, text: s, selected: s === ann.split })));
  let dirty = false, timer = null, saving = Promise.resolve();

  const state = { boxes: ann.boxes.map((b) => Object.assign({}, b)), sel: -1 };

  async function save() {
    clearTimeout(timer);
    timer = null;
    if (!dirty) return saving;
    dirty = false;
    const payload = { split: split.value };
    if (project.task === "detect") payload.boxes = state.boxes.map((b) => ({
      xmin: Math.round(b.xmin * 10) / 10, ymin: Math.round(b.ymin * 10) / 10,
      xmax: Math.round(b.xmax * 10) / 10, ymax: Math.round(b.ymax * 10) / 10, label: b.label }));
    else payload.label = classLabel.value || null;
    saveState.textContent = "Saving…";
    saving = saving.then(async () => {
      try {
        await api.put("/api/projects/" + project.id + "/images/" + id + "/annotation", payload);
        saveState.textContent = dirty ? "Unsaved changes" : "Saved";
        saveState.className = "save-state";
      } catch (e) {
        saveState.textContent = "Not saved: " + e.message;
        saveState.className = "save-state error";
        notice("Saving the annotation failed: " + e.message);
      }
    });
    return saving;
  }
  function changed() {
    dirty = true;
    saveState.textContent = "Unsaved changes";
    clearTimeout(timer);
    timer = setTimeout(save, 600);
  }
  onLeave(save);
  split.addEventListener("change", changed);

  const classLabel = h("select", { id: "ann-label" }, h("option", { value: "", text: "(unlabelled)" }),
    labels.map((l) => h("option", { value: l, text: l, selected: l === ann.label })));
  if (project.task !== "detect") {
    classLabel.addEventListener("change", changed);
    const pic = h("img", { src: img.src, alt: "Image " + (at + 1), class: "editor-img" });
    body.append(nav, h("div", { class: "editor" }, pic, h("div", { class: "side" },
      h("label", { for: "ann-label", text: "Label" }), classLabel, h("label", { for: "ann-split", text: "Split" }), split)));
    return;
  }

  const view = Math.min(MAX_W / img.width, 4, Math.max(1, 480 / Math.max(img.width, img.height)));
  const canvas = h("canvas", { tabindex: "0", class: "editor-canvas", id: "editor-canvas",
    "aria-label": "Picture with boxes. Drag to draw a box; arrows move the selected box, Alt+arrows resize it, Delete removes it, 1-9 set its label.",
    "data-scale": String(view) });
  canvas.width = Math.round(img.width * view);
  canvas.height = Math.round(img.height * view);
  const ctx = canvas.getContext("2d");
  const current = h("select", { id: "ann-current" }, labels.map((l, i) =>
    h("option", { value: l, text: (i < 9 ? (i + 1) + ": " : "") + l })));
  const boxList = h("ol", { class: "boxlist", "aria-label": "Boxes" });

  function clampBox(b) {
    const x0 = Math.max(0, Math.min(b.xmin, b.xmax)), x1 = Math.min(img.width, Math.max(b.xmin, b.xmax));
    const y0 = Math.max(0, Math.min(b.ymin, b.ymax)), y1 = Math.min(img.height, Math.max(b.ymin, b.ymax));
    b.xmin = x0; b.xmax = x1; b.ymin = y0; b.ymax = y1;
  }
  function draw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    state.boxes.forEach((b, i) => {
      const c = labelColour(labels, b.label);
      ctx.lineWidth = i === state.sel ? 3 : 2;
      ctx.strokeStyle = c;
      ctx.strokeRect(b.xmin * view, b.ymin * view, (b.xmax - b.xmin) * view, (b.ymax - b.ymin) * view);
      ctx.fillStyle = c;
      ctx.font = "12px sans-serif";
      ctx.fillText(b.label, b.xmin * view + 3, Math.max(12, b.ymin * view - 3));
      if (i === state.sel) for (const [x, y] of corners(b)) {
        ctx.fillStyle = "#fff";
        ctx.fillRect(x * view - HANDLE / 2, y * view - HANDLE / 2, HANDLE, HANDLE);
        ctx.strokeRect(x * view - HANDLE / 2, y * view - HANDLE / 2, HANDLE, HANDLE);
      }
    });
    boxList.replaceChildren(...state.boxes.map((b, i) => {
      const sel = h("select", { "aria-label": "Label of box " + (i + 1) }, labels.map((l) =>
        h("option", { value: l, text: l, selected: l === b.label })));
      sel.addEventListener("change", () => { b.label = sel.value; changed(); draw(); });
      return h("li", { class: i === state.sel ? "selected" : "" },
        h("button", { type: "button", class: "link", onclick: () => { state.sel = i; draw(); canvas.focus(); },
          text: Math.round(b.xmin) + "," + Math.round(b.ymin) + " – " + Math.round(b.xmax) + "," + Math.round(b.ymax) }),
        sel, h("button", { type: "button", "aria-label": "Delete box " + (i + 1), text: "✕",
          onclick: () => { state.boxes.splice(i, 1); state.sel = -1; changed(); draw(); } }));
    }));
    if (!state.boxes.length) boxList.append(h("li", { class: "empty", text: "No boxes: drag on the picture to draw one." }));
  }
  function corners(b) { return [[b.xmin, b.ymin], [b.xmax, b.ymin], [b.xmin, b.ymax], [b.xmax, b.ymax]]; }
  function pos(e) {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * (canvas.width / r.width) / view, (e.clientY - r.top) * (canvas.height / r.height) / view];
  }
  let drag = null;
  canvas.addEventListener("pointerdown", (e) => {
    const [x, y] = pos(e);
    const tol = HANDLE / view;
    drag = null;
    if (state.sel >= 0) {
      const b = state.boxes[state.sel];
      const k = corners(b).findIndex(([cx, cy]) => Math.abs(cx - x) <= tol && Math.abs(cy - y) <= tol);
      if (k >= 0) drag = { mode: "resize", k, b };
    }
    if (!drag) {
      let hit = -1;
      state.boxes.forEach((b, i) => { if (x >= b.xmin && x <= b.xmax && y >= b.ymin && y <= b.ymax) hit = i; });
      if (hit >= 0) {
        state.sel = hit;
        const b = state.boxes[hit];
        drag = { mode: "move", b, dx: x - b.xmin, dy: y - b.ymin };
      } else {
        const b = { xmin: x, ymin: y, xmax: x, ymax: y, label: current.value || labels[0] };
        state.boxes.push(b);
        state.sel = state.boxes.length - 1;
        drag = { mode: "draw", b };
      }
    }
    canvas.setPointerCapture(e.pointerId);
    canvas.focus();
    draw();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const [x, y] = pos(e);
    const b = drag.b;
    if (drag.mode === "move") {
      const w = b.xmax - b.xmin, hh = b.ymax - b.ymin;
      b.xmin = Math.max(0, Math.min(img.width - w, x - drag.dx));
      b.ymin = Math.max(0, Math.min(img.height - hh, y - drag.dy));
      b.xmax = b.xmin + w; b.ymax = b.ymin + hh;
    } else if (drag.mode === "draw") {
      b.xmax = x; b.ymax = y;
    } else {
      if (drag.k === 0 || drag.k === 2) b.xmin = x; else b.xmax = x;
      if (drag.k === 0 || drag.k === 1) b.ymin = y; else b.ymax = y;
    }
    draw();
  });
  canvas.addEventListener("pointerup", () => {
    if (!drag) return;
    clampBox(drag.b);
    if (drag.b.xmax - drag.b.xmin < 2 || drag.b.ymax - drag.b.ymin < 2) {
      if (drag.mode === "draw") { state.boxes.splice(state.sel, 1); state.sel = -1; drag = null; draw(); return; }
    }
    drag = null;
    changed();
    draw();
  });
  canvas.addEventListener("keydown", (e) => {
    const b = state.boxes[state.sel];
    const step = e.shiftKey ? 10 : 1;
    const arrows = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if ((e.ctrlKey || e.metaKey) && e.key === "s") { e.preventDefault(); dirty = true; save(); return; }
    if (b && (e.key === "Delete" || e.key === "Backspace")) {
      state.boxes.splice(state.sel, 1); state.sel = -1; changed();
    } else if (b && arrows[e.key]) {
      const [dx, dy] = arrows[e.key];
      if (e.altKey) { b.xmax += dx; b.ymax += dy; } else { b.xmin += dx; b.xmax += dx; b.ymin += dy; b.ymax += dy; }
      clampBox(b); changed();
    } else if (/^[1-9]$/.test(e.key) && labels[Number(e.key) - 1]) {
      current.value = labels[Number(e.key) - 1];
      if (b) { b.label = current.value; changed(); }
    } else if (e.key === "Escape") {
      state.sel = -1;
    } else if (e.key === "Tab" && state.boxes.length && !e.shiftKey && state.sel < state.boxes.length - 1) {
      state.sel++;
    } else if (e.key === "n" || e.key === "PageDown") { go(at + 1); return; }
    else if (e.key === "p" || e.key === "PageUp") { go(at - 1); return; }
    else return;
    e.preventDefault();
    draw();
  });
  body.append(nav, h("div", { class: "editor" }, canvas, h("div", { class: "side" },
    h("label", { for: "ann-current", text: "Label for new boxes (keys 1-9)" }), current,
    h("label", { for: "ann-split", text: "Split" }), split,
    h("h3", { text: "Boxes" }), boxList,
    h("p", { class: "meta", text: "Keys: Delete removes, arrows move (Shift ×10, Alt resizes), Tab next box, Esc deselects, N/P next/previous image, Ctrl+S saves." }))));
  draw();
  canvas.focus();
}
