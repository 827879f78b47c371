// data.js: the Data tab: upload (drop or pick files, folders, archives) with
// per-file progress and validation messages, dataset health, and the
// thumbnail grid with boxes drawn, filtered by label, split and problem.
import * as api from "./api.js";
import { h, guard, empty, fmtBytes, labelColour, notice } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";
const RESUMABLE_FROM = 8 << 20;

// Files of a drop, folders walked (names keep their folder: "cat/1.jpg").
async function droppedFiles(dt) {
  const entries = [...dt.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  if (!entries.length) return [...dt.files];
  const out = [];
  async function walk(entry, prefix) {
    if (entry.isFile) {
      const f = await new Promise((res, rej) => entry.file(res, rej));
      out.push(prefix ? new File([f], prefix + f.name, { type: f.type }) : f);
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const e of batch) await walk(e, prefix + entry.name + "/");
      }
    }
  }
  for (const e of entries) await walk(e, "");
  return out;
}

function uploader(project, onDone) {
  const list = h("ul", { class: "uploads", "aria-label": "Uploads" });
  const pick = h("input", { type: "file", multiple: true, id: "file-pick", class: "visually-hidden",
                            accept: "image/*,.zip,.tar,.gz,.tgz,.bz2,.xz" });
  const folder = h("input", { type: "file", id: "folder-pick", class: "visually-hidden", webkitdirectory: true });
  const zone = h("div", { class: "dropzone", tabindex: "0", role: "group", "aria-label": "Upload files" },
    h("p", { text: "Drop images, folders or archives (zip, tar) with annotations here" }),
    h("label", { for: "file-pick", class: "button", text: "Choose files…" }), " ",
    h("label", { for: "folder-pick", class: "button", text: "Choose a folder…" }), pick, folder);

  async function send(files) {
    let added = 0;
    for (const file of files) {
      const bar = h("progress", { max: "1", value: "0", "aria-label": "Upload of " + file.name });
      const status = h("span", { class: "status", text: "waiting" });
      const problems = h("ul", { class: "problems" });
      list.prepend(h("li", {}, h("span", { class: "fname", text: file.webkitRelativePath || file.name }),
                     h("span", { class: "size", text: fmtBytes(file.size) }), bar, status, problems));
      status.textContent = "uploading";
      try {
        const onProgress = (x) => { bar.value = x; };
        const r = file.size >= RESUMABLE_FROM ? await api.uploadResumable(project.id, file, onProgress)
                                              : await api.uploadFile(project.id, file, onProgress);
        bar.value = 1;
        added += r.added || 0;
        status.textContent = (r.added || 0) + " images added" + (r.duplicates ? ", " + r.duplicates + " duplicates" : "") +
                             (r.format ? " (" + r.format + ")" : "");
        status.className = "status ok";
        for (const p of r.problems || [])
          problems.append(h("li", { class: p.severity, text: p.severity + ": " + p.message }));
      } catch (e) {
        status.textContent = "failed: " + e.message;
        status.className = "status error";
      }
    }
    onDone(added);
  }
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    send(await droppedFiles(e.dataTransfer));
  });
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick.click(); } });
  pick.addEventListener("change", () => { send([...pick.files]); pick.value = ""; });
  folder.addEventListener("change", () => { send([...folder.files]); folder.value = ""; });
  return h("div", { class: "card" }, h("h2", { text: "Upload" }), zone, list);
}

export function boxesOverlay(labels, image, boxes, cls) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 " + image.width + " " + image.height);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", cls || "overlay");
  svg.setAttribute("aria-hidden", "true");
  for (const b of boxes || []) {
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("x", b.xmin);
    r.setAttribute("y", b.ymin);
    r.setAttribute("width", Math.max(0, b.xmax - b.xmin));
    r.setAttribute("height", Math.max(0, b.ymax - b.ymin));
    r.setAttribute("stroke", labelColour(labels, b.label));
    r.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(r);
  }
  return svg;
}

function healthCard(health) {
  if (!health) return empty("No health report.");
  const rows = (health.labels || []).map((l) => h("tr", {},
    h("th", { scope: "row", text: l.name }), h("td", { text: l.images.total }),
    h("td", { text: l.boxes !== undefined ? l.boxes : "–" }),
    h("td", {}, h("meter", { min: "0", max: String(health.images.total || 1), value: String(l.images.total),
                             "aria-label": l.name + " share of images" }))));
  const im = health.images || {};
  return h("div", { class: "card health" },
    h("h2", { text: "Dataset health" }),
    h("p", { class: health.usable ? "ok" : "error",
             text: (health.usable ? "Usable for training. " : "Not usable yet. ") + (im.total || 0) + " images: " +
                   (im.train || 0) + " train, " + (im.val || 0) + " val, " + (im.test || 0) + " test, " +
                   (im.unassigned || 0) + " unassigned (split when training)." }),
    rows.length ? h("table", {}, h("caption", { text: "Class balance" }),
      h("thead", {}, h("tr", {}, h("th", { text: "Label" }), h("th", { text: "Images" }), h("th", { text: "Boxes" }), h("th", { text: "Share" }))),
      h("tbody", {}, rows)) : null,
    (health.problems || []).length ? h("details", {}, h("summary", { text: health.problems.length + " problems (" +
      (health.errors || 0) + " errors, " + (health.warnings || 0) + " warnings)" }),
      h("ul", { class: "problems" }, health.problems.map((p) => h("li", { class: p.severity, text: p.message }))))
      : h("p", { text: "No problems found." }));
}

export async function dataTab(project, body) {
  const healthBox = h("div", {});
  const grid = h("ul", { class: "grid", "aria-label": "Images" });
  const count = h("p", { class: "meta", "aria-live": "polite" });
  const more = h("button", { type: "button", hidden: true, text: "Show more" });
  const label = h("select", { id: "filter-label" }, h("option", { value: "*", text: "any label" }),
    h("option", { value: "", text: "unlabelled" }), project.labels.map((l) => h("option", { value: l, text: l })));
  const split = h("select", { id: "filter-split" }, ["any", "train", "val", "test", "unassigned"].map((s) =>
    h("option", { value: s === "any" ? "" : s, text: s })));
  const problem = h("select", { id: "filter-problem" }, h("option", { value: "", text: "any" }),
    h("option", { value: "any", text: "with a problem" }),
    ["box_clamped", "box_small", "box_empty", "duplicate", "corrupt"].map((p) => h("option", { value: p, text: p })));
  const filters = h("div", { class: "filters", role: "group", "aria-label": "Filters" },
    h("label", { for: "filter-label", text: "Label" }), label, h("label", { for: "filter-split", text: "Split" }), split,
    h("label", { for: "filter-problem", text: "Problem" }), problem);
  let offset = 0;

  async function load(reset) {
    if (reset) { offset = 0; grid.replaceChildren(); }
    const q = new URLSearchParams({ offset: String(offset), limit: "60" });
    if (label.value !== "*") q.set("label", label.value);
    if (split.value) q.set("split", split.value);
    if (problem.value) q.set("problem", problem.value);
    const r = await guard(() => api.get("/api/projects/" + project.id + "/images?" + q));
    if (!r) return;
    offset += r.images.length;
    count.textContent = r.total + " images match";
    if (!r.total) grid.replaceChildren(h("li", { class: "empty", text: project.images ?
      "No image matches these filters." : "No images yet: upload some above." }));
    for (const im of r.images) {
      const thumb = h("img", { src: "/api/projects/" + project.id + "/images/" + im.id + "/thumbnail", alt: "",
                               loading: "lazy" });
      const frame = h("span", { class: "frame" }, thumb, project.task === "detect" ? boxesOverlay(project.labels, im, im.boxes) : null);
      frame.style.aspectRatio = im.width + " / " + im.height;
      const desc = project.task === "detect" ? (im.boxes.length + " boxes") : (im.label || "unlabelled");
      grid.append(h("li", {}, h("a", { href: "#/p/" + project.id + "/edit/" + im.id, "data-image": im.id,
        "aria-label": "Image " + im.source + ": " + desc + ", " + im.split }, frame,
        h("span", { class: "cap", text: desc + " · " + im.split + (im.problems.length ? " · ⚠ " + im.problems.join(", ") : "") }))));
    }
    more.hidden = offset >= r.total;
  }
  async function loadHealth() {
    const health = await guard(() => api.get("/api/projects/" + project.id + "/health"));
    healthBox.replaceChildren(healthCard(health));
  }
  for (const s of [label, split, problem]) s.addEventListener("change", () => load(true));
  more.addEventListener("click", () => load(false));
  body.append(uploader(project, (added) => {
    if (added) notice(added + " images added.", "ok");
    project.images += added;
    const meta = document.getElementById("project-meta");
    if (meta) meta.textContent = meta.textContent.replace(/\d+ images/, project.images + " images");
    load(true);
    loadHealth();
  }), healthBox, h("div", { class: "card" }, h("h2", { text: "Images" }), filters, count, grid, more));
  await Promise.all([load(true), loadHealth()]);
}
