// train.js: the Train tab: presets with advanced settings folded away, the
// project's job queue, and a running job followed live over Server-Sent
// Events (progress, loss chart, images/s, ETA) with a Cancel button.
import * as api from "./api.js";
import { h, guard, field, empty, fmtSeconds, onLeave, notice } from "./ui.js";

const PRESETS = [
  ["fast", "Fast", "A quick model to check the data: minutes."],
  ["balanced", "Balanced", "A good model for most uses."],
  ["accurate", "Accurate", "The best model kiln can make here: takes longest."]];

export function lossChart(canvas, points) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, hgt = canvas.height, pad = 30;
  ctx.clearRect(0, 0, w, hgt);
  ctx.strokeStyle = "#888";
  ctx.lineWidth = 1;
  ctx.strokeRect(pad, 8, w - pad - 8, hgt - pad - 8);
  ctx.fillStyle = "#444";
  ctx.font = "11px sans-serif";
  if (!points.length) { ctx.fillText("the loss appears here once training starts", pad + 8, hgt / 2); return; }
  const maxY = Math.max(...points.map((p) => p[1])) || 1;
  const maxX = Math.max(...points.map((p) => p[0]), 1);
  ctx.fillText(maxY.toPrecision(3), 2, 16);
  ctx.fillText("0", 2, hgt - pad);
  ctx.fillText("epoch " + maxX.toFixed(0), w - 70, hgt - 10);
  ctx.strokeStyle = "#c2410c";
  ctx.lineWidth = 2;
  ctx.beginPath();
  points.forEach(([x, y], i) => {
    const px = pad + (x / maxX) * (w - pad - 8), py = 8 + (1 - y / maxY) * (hgt - pad - 8);
    if (i) ctx.lineTo(px, py); else ctx.moveTo(px, py);
  });
  ctx.stroke();
}

// Follows one job's events; returns a function that stops following.
function follow(project, job, panel, onEnd) {
  const bar = h("progress", { max: "1", value: String(job.progress || 0), id: "job-progress",
                              "aria-label": "Training progress" });
  const pct = h("span", { id: "job-percent", text: Math.round(100 * (job.progress || 0)) + " %" });
  const phase = h("span", { class: "meta", id: "job-phase", text: job.state });
  const speed = h("span", { id: "job-speed", text: "– images/s" });
  const eta = h("span", { id: "job-eta", text: "ETA –" });
  const chart = h("canvas", { width: "560", height: "200", class: "chart", role: "img", "aria-label": "Training loss by epoch" });
  const cancel = h("button", { type: "button", text: "Cancel", onclick: async () => {
    const r = await guard(() => api.post("/api/jobs/" + job.id + "/cancel"));
    if (r) notice("Cancel requested.", "ok");
  } });
  panel.replaceChildren(h("h2", { text: "Job " + job.kind + " (" + job.id + ")" }),
    h("div", { class: "progress-row" }, bar, pct, phase), h("p", {}, speed, " · ", eta), chart, cancel);
  const points = [];
  lossChart(chart, points);
  const es = new EventSource("/api/jobs/" + job.id + "/events");
  es.addEventListener("progress", (m) => {
    const e = JSON.parse(m.data);
    if (e.progress !== undefined) { bar.value = e.progress; pct.textContent = Math.round(100 * e.progress) + " %"; }
    if (e.phase) phase.textContent = e.phase + (e.message ? ": " + e.message : "");
    if (e.event === "failed") phase.textContent = "failed: " + e.message;
    if (e.images_per_second !== undefined) speed.textContent = e.images_per_second.toFixed(1) + " images/s";
    if (e.eta_seconds !== undefined) eta.textContent = "ETA " + fmtSeconds(e.eta_seconds);
    if (e.loss !== undefined && e.epochs) {
      points.push([e.total ? (e.done / e.total) * e.epochs : e.epoch, e.loss]);
      lossChart(chart, points);
    }
  });
  es.addEventListener("end", (m) => {
    const j = JSON.parse(m.data);
    es.close();
    cancel.disabled = true;
    phase.textContent = j.state + (j.message && j.message !== j.state ? ": " + j.message : "");
    phase.id = "job-state";
    if (j.state === "done") { bar.value = 1; pct.textContent = "100 %"; }
    if (j.state === "failed") notice("Training failed: " + j.message);
    onEnd(j);
  });
  es.onerror = () => { if (es.readyState === EventSource.CLOSED) phase.textContent = "connection lost; reload to follow again"; };
  return () => es.close();
}

export async function trainTab(project, body) {
  const panel = h("div", { class: "card", "aria-live": "off" }, empty("No job is running."));
  const queue = h("div", { class: "card" });
  const presetBox = h("fieldset", { class: "presets" }, h("legend", { text: "Preset" }),
    PRESETS.map(([v, t, d], i) => h("label", { class: "preset" },
      h("input", { type: "radio", name: "preset", value: v, checked: i === 0 }), h("strong", { text: t }), h("small", { text: d }))));
  const num = (name, attrs) => h("input", Object.assign({ name, type: "number", inputmode: "decimal" }, attrs));
  const adv = { epochs: num("epochs", { min: "1", step: "1" }), batch: num("batch", { min: "1", step: "1" }),
                lr: num("lr", { min: "0", step: "any" }), seed: num("seed", { min: "0", step: "1" }),
                calib_images: num("calib_images", { min: "1", step: "1" }) };
  const details = h("details", {}, h("summary", { text: "Advanced settings" }),
    h("p", { class: "meta", text: "Leave empty to use the preset's value." }),
    field("Epochs", adv.epochs), field("Batch size", adv.batch), field("Learning rate", adv.lr),
    field("Random seed", adv.seed), field("Calibration images (int8)", adv.calib_images));
  const start = h("button", { type: "submit", class: "primary", text: "Start training" });
  const form = h("form", { class: "card", "aria-labelledby": "train-title" },
    h("h2", { id: "train-title", text: "Train a model" }), presetBox, details, start);
  let stop = null;
  onLeave(() => { if (stop) stop(); });

  async function loadQueue() {
    const r = await guard(() => api.get("/api/projects/" + project.id + "/jobs"));
    if (!r) return null;
    queue.replaceChildren(h("h2", { text: "Jobs" }), r.jobs.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["Job", "Kind", "State", "Progress", "Settings", ""].map((t) => h("th", { text: t })))),
      h("tbody", {}, r.jobs.map((j) => h("tr", {}, h("td", { text: j.id }), h("td", { text: j.kind }), h("td", { text: j.state }),
        h("td", { text: Math.round(100 * j.progress) + " %" }), h("td", { text: JSON.stringify(j.settings) }),
        h("td", {}, j.model_id ? h("a", { href: "#/p/" + project.id + "/results/" + j.model_id, text: "results" }) :
          (j.state === "queued" || j.state === "running") ? h("button", { type: "button", class: "link", text: "watch",
            onclick: () => watch(j) }) : null))))) : empty("No jobs yet."));
    return r.jobs;
  }
  function watch(job) {
    if (stop) stop();
    stop = follow(project, job, panel, (j) => {
      loadQueue();
      if (j.state === "done" && j.model_id)
        panel.append(h("p", {}, h("a", { href: "#/p/" + project.id + "/results/" + j.model_id, id: "results-link",
                                         class: "button primary", text: "See the results" })));
    });
  }
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const settings = { preset: form.querySelector("input[name=preset]:checked").value };
    for (const [k, el] of Object.entries(adv)) if (el.value !== "") settings[k] = Number(el.value);
    const job = await guard(() => api.post("/api/projects/" + project.id + "/jobs", { kind: "train", settings }));
    if (!job) return;
    watch(job);
    loadQueue();
  });
  body.append(form, panel, queue);
  const jobs = await loadQueue();
  const live = (jobs || []).find((j) => j.state === "running" || j.state === "queued");
  if (live) watch(live);
}
