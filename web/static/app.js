// app.js: kiln studio's single-page UI. Hash routes:
//   #/login  #/setup  #/projects  #/p/<id>/<tab>[/<image id>]
// tabs: data, edit, train, results, try. All data comes from /api (docs/api.md).
import * as api from "./api.js";
import { h, mount, notice, clearNotice, guard, field, empty, leave } from "./ui.js";
import { projectPage } from "./project.js";

export const session = { user: null };

function nav() {
  const n = document.getElementById("nav");
  if (!session.user) { n.replaceChildren(); return; }
  n.replaceChildren(
    h("a", { href: "#/projects", text: "Projects" }),
    h("span", { class: "who", text: session.user.name + (session.user.admin ? " (admin)" : "") }),
    h("button", { type: "button", class: "link", onclick: logout, text: "Log out" }));
}

async function logout() {
  await guard(() => api.post("/api/logout"));
  session.user = null;
  api.setCsrf(null);
  nav();
  location.hash = "#/login";
}

function accountForm(title, intro, submitText, onSubmit) {
  const name = h("input", { name: "name", autocomplete: "username", required: true });
  const password = h("input", { name: "password", type: "password", minlength: "8", required: true,
                                autocomplete: title === "Log in" ? "current-password" : "new-password" });
  const form = h("form", { class: "card narrow", "aria-labelledby": "form-title" },
    h("h1", { id: "form-title", text: title }), intro ? h("p", { text: intro }) : null,
    field("User name", name), field("Password", password, "At least 8 characters."),
    h("button", { type: "submit", class: "primary", text: submitText }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearNotice();
    await guard(() => onSubmit(name.value.trim(), password.value));
  });
  mount(form);
  name.focus();
}

async function login(name, password) {
  const r = await api.post("/api/login", { name, password });
  api.setCsrf(r.csrf_token);
  session.user = r.user;
  nav();
  location.hash = "#/projects";
}

function setupPage() {
  accountForm("Create the administrator", "No account exists yet. The first account administers this studio.",
              "Create administrator", async (name, password) => {
    await api.post("/api/setup", { name, password });
    await login(name, password);
    notice("Administrator " + name + " created.", "ok");
  });
}

function loginPage() {
  accountForm("Log in", null, "Log in", login);
}

async function projectsPage() {
  const list = h("div", { class: "projects", "aria-live": "polite" }, empty("Loading projects…"));
  const name = h("input", { name: "name", required: true, maxlength: "200" });
  const task = h("select", { name: "task" },
    h("option", { value: "detect", text: "Object detection (boxes)" }),
    h("option", { value: "classify", text: "Image classification (one label per image)" }));
  const labels = h("input", { name: "labels", placeholder: "cup, plate" });
  const form = h("form", { class: "card", "aria-labelledby": "new-title" },
    h("h2", { id: "new-title", text: "New project" }),
    field("Project name", name), field("Task", task),
    field("Labels", labels, "Comma separated; uploads can add more."),
    h("button", { type: "submit", class: "primary", text: "Create project" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { name: name.value.trim(), task: task.value };
    const l = labels.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (l.length) body.labels = l;
    const p = await guard(() => api.post("/api/projects", body));
    if (p) location.hash = "#/p/" + p.id + "/data";
  });
  mount(h("h1", { text: "Projects" }), list, form);
  const r = await guard(() => api.get("/api/projects"));
  if (!r) return;
  if (!r.projects.length) {
    list.replaceChildren(empty("No projects yet. Create one below to start."));
    return;
  }
  list.replaceChildren(h("ul", { class: "cards" }, r.projects.map((p) =>
    h("li", { class: "card" },
      h("a", { href: "#/p/" + p.id + "/data", class: "title", text: p.name }),
      h("div", { class: "meta", text: (p.task === "detect" ? "detection" : "classification") +
                 (p.images !== undefined ? " · " + p.images + " images" : "") +
                 (p.role ? " · " + p.role : "") })))));
}

async function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  if (parts[0] === "setup") return setupPage();
  if (parts[0] === "login") return loginPage();
  if (!session.user) {
    const health = await guard(() => api.get("/api/health"));
    if (health && health.setup_needed) { location.hash = "#/setup"; return undefined; }
    try {
      const me = await api.get("/api/me");
      session.user = me.user;
      api.setCsrf(me.csrf_token);
      nav();
    } catch (e) {
      if (e.status !== 401) notice(e.message);
      location.hash = "#/login";
      return undefined;
    }
  }
  if (parts[0] === "p" && parts[1]) return projectPage(Number(parts[1]), parts[2] || "data", parts[3]);
  if (parts[0] !== "projects") { location.hash = "#/projects"; return undefined; }
  return projectsPage();
}

window.addEventListener("hashchange", async () => {
  await leave();
  clearNotice();
  route();
});
route();
