// project.js: one project's page: a header, tabs, and the tab's content.
import * as api from "./api.js";
import { h, mount, guard, empty } from "./ui.js";
import { dataTab } from "./data.js";
import { editorTab } from "./editor.js";
import { trainTab } from "./train.js";
import { resultsTab, tryTab } from "./results.js";

const TABS = [["data", "Data"], ["edit", "Annotate"], ["train", "Train"], ["results", "Results"], ["try", "Try it"]];

export async function projectPage(id, tab, arg) {
  const project = await guard(() => api.get("/api/projects/" + id));
  if (!project) {
    mount(empty("This project cannot be shown."), h("a", { href: "#/projects", text: "Back to projects" }));
    return;
  }
  const tabs = h("nav", { class: "tabs", "aria-label": "Project sections" }, TABS.map(([key, text]) =>
    h("a", { href: "#/p/" + id + "/" + key, text, "aria-current": key === tab ? "page" : null })));
  const body = h("section", { class: "tab", "aria-label": (TABS.find((t) => t[0] === tab) || TABS[0])[1] });
  mount(h("div", { class: "phead" },
          h("h1", { text: project.name }),
          h("span", { class: "meta", id: "project-meta", text: (project.task === "detect" ? "detection" : "classification") +
            " · " + project.images + " images · labels: " + (project.labels.join(", ") || "none yet") })),
        tabs, body);
  const render = { data: dataTab, edit: editorTab, train: trainTab, results: resultsTab, try: tryTab }[tab] || dataTab;
  await render(project, body, arg);
}
