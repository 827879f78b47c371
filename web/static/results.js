// results.js: the Results tab (a model version's evaluation, float and int8
// side by side, downloads) and the Try it tab (drop an image, see the
// model's predictions drawn).
import * as api from "./api.js";
import { h, guard, empty, fmtPct, fmtBytes, labelColour } from "./ui.js";
import { boxesOverlay } from "./data.js";

const num = (x) => (x === null || x === undefined) ? "–" : Number(x).toFixed(3);

function summaryTable(ev) {
  const f = ev.float || {}, q = ev.int8 || {};
  const rows = f.task === "detection" ?
    [["mAP (IoU .50:.95)", f.summary.AP, q.summary && q.summary.AP], ["AP50", f.summary.AP50, q.summary && q.summary.AP50],
     ["AP75", f.summary.AP75, q.summary && q.summary.AP75], ["AR100", f.summary.AR100, q.summary && q.summary.AR100]].map(
      ([n, a, b]) => [n, num(a), num(b)]) :
    [["accuracy", fmtPct(f.accuracy), fmtPct(q.accuracy)],
     ["macro F1", num(f.macro && f.macro.f1), num(q.macro && q.macro.f1)]];
  return h("table", { class: "side-by-side", id: "eval-summary" },
    h("caption", { text: "Evaluation on the " + (ev.split || "test") + " split (" + (f.images || f.samples || 0) + " images)" }),
    h("thead", {}, h("tr", {}, h("th", { text: "Metric" }), h("th", { text: "float" }), h("th", { text: "int8 (Edge TPU ready)" }))),
    h("tbody", {}, rows.map((r) => h("tr", {}, h("th", { scope: "row", text: r[0] }), h("td", { text: r[1] }), h("td", { text: r[2] })))));
}

// Precision against recall at IoU 0.5 for one class: float and int8.
function prCurve(name, recall, curves) {
  const c = h("canvas", { width: "260", height: "180", class: "chart", role: "img",
                          "aria-label": "Precision-recall curve of " + name + " at IoU 0.5 (orange: float, blue: int8)" });
  const ctx = c.getContext("2d"), pad = 24, w = c.width - pad - 6, hh = c.height - pad - 18;
  ctx.strokeStyle = "#888";
  ctx.strokeRect(pad, 14, w, hh);
  ctx.fillStyle = "#444";
  ctx.font = "11px sans-serif";
  ctx.fillText(name + " (P vs R, IoU .5)", pad, 10);
  ctx.fillText("1", 8, 22);
  ctx.fillText("0", 8, 14 + hh);
  curves.forEach(([colour, prec]) => {
    if (!prec) return;
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let started = false;
    prec.forEach((p, i) => {
      if (p < 0 || p === null) return;
      const x = pad + recall[i] * w, y = 14 + (1 - p) * hh;
      if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
    });
    ctx.stroke();
  });
  return c;
}

function perClass(ev, labels) {
  const f = ev.float || {}, q = ev.int8 || {};
  if (f.task === "detection") {
    const qa = q.per_class || [];
    const curves = h("div", { class: "curves" }, (f.per_class || []).map((c, i) => prCurve(c.name || labels[i] || String(i),
      f.recall_thresholds || [], [["#c2410c", c.pr_curve && c.pr_curve.precision], ["#2563eb", qa[i] && qa[i].pr_curve && qa[i].pr_curve.precision]])));
    return h("div", {}, h("table", { id: "per-class" }, h("caption", { text: "Per-class AP" }),
      h("thead", {}, h("tr", {}, ["Label", "boxes", "AP float", "AP int8", "AP50 float", "AP50 int8"].map((t) => h("th", { text: t })))),
      h("tbody", {}, (f.per_class || []).map((c, i) => h("tr", {}, h("th", { scope: "row", text: c.name || labels[i] || c.id }),
        h("td", { text: c.ground_truth }), h("td", { text: num(c.ap) }), h("td", { text: num(qa[i] && qa[i].ap) }),
        h("td", { text: num(c.ap50) }), h("td", { text: num(qa[i] && qa[i].ap50) }))))), curves);
  }
  const cm = q.confusion_matrix || f.confusion_matrix;
  const rows = Array.isArray(cm) ? cm : (cm && cm.matrix) || [];
  const names = (q.classes || f.classes || []).map((c, i) => c.name || labels[i] || String(i));
  return h("div", {}, h("table", { id: "confusion" }, h("caption", { text: "Confusion matrix (int8; rows: true label, columns: predicted)" }),
    h("thead", {}, h("tr", {}, h("th", { text: "" }), names.map((n) => h("th", { scope: "col", text: n })))),
    h("tbody", {}, rows.map((r, i) => h("tr", {}, h("th", { scope: "row", text: names[i] || i }),
      r.map((v, j) => h("td", { class: i === j ? "diag" : (v ? "off" : ""), text: v })))))),
    h("table", {}, h("caption", { text: "Per class (int8)" }),
      h("thead", {}, h("tr", {}, ["Label", "precision", "recall", "F1", "images"].map((t) => h("th", { text: t })))),
      h("tbody", {}, (q.classes || []).map((c, i) => h("tr", {}, h("th", { scope: "row", text: c.name || names[i] }),
        h("td", { text: num(c.precision) }), h("td", { text: num(c.recall) }), h("td", { text: num(c.f1) }), h("td", { text: c.support }))))));
}

async function pickModel(project, body, modelArg, title) {
  const r = await guard(() => api.get("/api/projects/" + project.id + "/models"));
  if (!r) return null;
  if (!r.models.length) {
    body.append(empty("No model yet: train one on the Train tab."));
    return null;
  }
  const id = modelArg ? Number(modelArg) : r.models[0].id;
  const sel = h("select", { id: "model-pick" }, r.models.map((m) => h("option", { value: m.id, selected: m.id === id,
    text: "model " + m.id + " · " + new Date(m.created_at / 1000).toLocaleString() })));
  sel.addEventListener("change", () => { location.hash = "#/p/" + project.id + "/" + title + "/" + sel.value; });
  body.append(h("div", { class: "toolbar" }, h("label", { for: "model-pick", text: "Model version" }), sel));
  return guard(() => api.get("/api/models/" + id));
}

export async function resultsTab(project, body, modelArg) {
  const model = await pickModel(project, body, modelArg, "results");
  if (!model) return;
  const ev = (model.report && model.report.evaluation) || {};
  const cfg = (model.report && model.report.config) || {};
  const downloads = h("ul", { class: "downloads", "aria-label": "Downloads" }, model.artifacts.map((a) =>
    h("li", {}, h("a", { href: "/api/models/" + model.id + "/artifacts/" + a.name, download: a.name,
      "data-artifact": a.name, text: a.name }), h("span", { class: "meta", text: " " + fmtBytes(a.size) }))));
  body.append(
    h("div", { class: "card" }, h("h2", { text: "Evaluation" }),
      ev.float ? summaryTable(ev) : empty("This model has no evaluation."),
      ev.float ? perClass(ev, project.labels) : null),
    h("div", { class: "card" }, h("h2", { text: "Downloads" }), downloads),
    h("div", { class: "card" }, h("h2", { text: "How it was made" }),
      h("dl", {}, h("dt", { text: "Dataset version" }), h("dd", { class: "mono", text: model.dataset_version }),
        h("dt", { text: "Settings" }), h("dd", { class: "mono", text: JSON.stringify(model.settings) }),
        h("dt", { text: "Preset, epochs, batch" }), h("dd", { text: (cfg.preset || "–") + ", " + (model.metrics.epochs || cfg.epochs) + ", " + (cfg.batch || "–") }))));
}

const TRY_MAX_BYTES = 1 << 20;

// The picture as sent: pictures over the API's 1 MiB body limit are scaled
// down (1280 pixels a side or less) and re-encoded as JPEG here; the
// predictions' pixel boxes are drawn over the original with a viewBox.
async function tryBody(file) {
  if (file.size <= TRY_MAX_BYTES || !/^image\/(jpeg|png)$/.test(file.type)) return file;
  const bitmap = await createImageBitmap(file);
  let blob = file;
  for (const side of [1280, 960, 640, 480, 320]) {
    const k = Math.min(1, side / Math.max(bitmap.width, bitmap.height));
    const c = document.createElement("canvas");
    c.width = Math.round(bitmap.width * k);
    c.height = Math.round(bitmap.height * k);
    c.getContext("2d").drawImage(bitmap, 0, 0, c.width, c.height);
    blob = await new Promise((res) => c.toBlob((b) => res(b || file), "image/jpeg", 0.85));
    if (blob.size <= TRY_MAX_BYTES) break;
  }
  return blob;
}

export async function tryTab(project, body, modelArg) {
  const model = await pickModel(project, body, modelArg, "try");
  if (!model) return;
  const which = h("select", { id: "try-model" }, h("option", { value: "int8", text: "int8" }), h("option", { value: "float", text: "float" }));
  const pick = h("input", { type: "file", accept: "image/jpeg,image/png", id: "try-file" });
  const zone = h("div", { class: "dropzone", role: "group", "aria-label": "Image to try" },
    h("p", { text: "Drop a JPEG or PNG picture here, or " }), h("label", { for: "try-file", text: "choose one" }), pick);
  const out = h("div", { class: "try-out", "aria-live": "polite" }, empty("Predictions appear here."));
  async function run(file) {
    out.replaceChildren(empty("Running the model…"));
    const sent = await guard(() => tryBody(file));
    if (!sent) { out.replaceChildren(empty("No predictions.")); return; }
    const r = await guard(() => api.request("POST", "/api/models/" + model.id + "/try?model=" + which.value, sent,
                                            { "Content-Type": "application/octet-stream" }));
    if (!r) { out.replaceChildren(empty("No predictions.")); return; }
    const url = URL.createObjectURL(file);
    const image = r.image;
    const frame = h("span", { class: "frame big" }, h("img", { src: url, alt: "The picture tried" }));
    frame.style.aspectRatio = image.width + " / " + image.height;
    const list = h("ol", { id: "predictions" });
    if (r.detections) {
      frame.append(boxesOverlay(project.labels, image, r.detections.map((d) => ({
        xmin: d.box.xmin, ymin: d.box.ymin, xmax: d.box.xmax, ymax: d.box.ymax,
        label: d.label }))));
      for (const d of r.detections) list.append(h("li", {}, h("span", { class: "swatch", text: "■" }), " " + d.label + " " + fmtPct(d.score)));
      list.querySelectorAll(".swatch").forEach((s, i) => { s.style.color = labelColour(project.labels, r.detections[i].label); });
      if (!r.detections.length) list.append(h("li", { text: "nothing found above the score threshold" }));
    } else {
      for (const c of r.classes || []) list.append(h("li", { text: c.label + " " + fmtPct(c.score) }));
    }
    out.replaceChildren(frame, list);
  }
  zone.addEventListener("dragover", (e) => e.preventDefault());
  zone.addEventListener("drop", (e) => { e.preventDefault(); if (e.dataTransfer.files[0]) run(e.dataTransfer.files[0]); });
  pick.addEventListener("change", () => { if (pick.files[0]) run(pick.files[0]); });
  body.append(h("div", { class: "card" }, h("h2", { text: "Try it" }), h("label", { for: "try-model", text: "Model" }), which, zone, out));
}
