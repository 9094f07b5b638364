// The ScreenAware web app: plain JavaScript, the public API only, no build step.
// Signed in by a browser session (HttpOnly cookie); every change sends the CSRF
// token from the readable cookie in X-CSRF-Token (double-submit).

const CSRF_COOKIE = "sa_csrf";
// Today's view polls for new snapshots this often (while the tab is visible).
const POLL_MS = 30000;
let stopPolling = () => {};
const root = document.getElementById("root");

// ---- API -------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

async function api(method, path, { query, body } = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
  }
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (!["GET", "HEAD"].includes(method)) headers["X-CSRF-Token"] = cookie(CSRF_COOKIE);
  const response = await fetch(url, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) data = await response.json();
  if (!response.ok) {
    const message = (data && data.message) || `${response.status} ${response.statusText}`;
    const retry = Number(response.headers.get("Retry-After")) || null;
    throw new ApiError(response.status, message, retry);
  }
  return data;
}

// ---- Small helpers -----------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

let ids = 0;
function field(labelText, input) {
  const id = input.id || `f${++ids}`;
  input.id = id;
  return el("div", {}, el("label", { for: id, text: labelText }), input);
}

/** `1 h 05 min`, `12 min`, `40 s`. */
export function duration(ms) {
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.round(seconds / 60);
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  return h ? `${h} h ${String(m).padStart(2, "0")} min` : `${m} min`;
}

// Distinct, dark enough for white outlines; a project keeps its colour by its place
// in the project list (a hash put similar hues side by side).
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#e377c2", "#8c564b", "#17becf",
  "#bcbd22", "#ff7f0e", "#7f7f7f"];

function colour(projectUuid) {
  if (!projectUuid) return "hsl(0 0% 55%)";
  const index = state.projects.findIndex((p) => p.uuid === projectUuid);
  if (index >= 0) return PALETTE[index % PALETTE.length];
  let hash = 0;
  for (const ch of projectUuid) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360} 60% 42%)`;
}

function errorBox(error) {
  return el("p", { class: "error", role: "alert", text: error.message || String(error) });
}

// ---- Time zones: the user's day in the user's zone ---------------------------

function zoneOffsetMs(date, zone) {
  const parts = {};
  const format = new Intl.DateTimeFormat("en-US", {
    timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  for (const { type, value } of format.formatToParts(date)) parts[type] = Number(value);
  const asUtc = Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute, parts.second);
  return asUtc - Math.floor(date.getTime() / 1000) * 1000;
}

/** The instant a local date (YYYY-MM-DD) starts in ``zone``. */
function startOfDay(dateText, zone) {
  const [y, m, d] = dateText.split("-").map(Number);
  let guess = Date.UTC(y, m - 1, d);
  // Twice: the offset at the guess may differ from the offset at midnight (DST).
  for (let i = 0; i < 2; i++) guess = Date.UTC(y, m - 1, d) - zoneOffsetMs(new Date(guess), zone);
  return new Date(guess);
}

function addDays(dateText, days) {
  const [y, m, d] = dateText.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

function today(zone) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: zone }).format(new Date());
}

function dayRange(dateText, zone) {
  const start = startOfDay(dateText, zone);
  const end = new Date(startOfDay(addDays(dateText, 1), zone).getTime() - 1);
  return { start: start.toISOString(), end: end.toISOString(), tz: zone };
}

function clockTime(iso, zone) {
  return new Intl.DateTimeFormat("en-GB", { timeZone: zone, hour: "2-digit", minute: "2-digit" })
    .format(new Date(iso));
}

// ---- State ---------------------------------------------------------------------

const state = { me: null, zone: "UTC", projects: [], names: { category: {}, application: {} } };

function projectName(uuid) {
  if (!uuid) return "No project";
  const project = state.projects.find((p) => p.uuid === uuid);
  return project ? project.name : "Unknown project";
}

async function loadProjects() {
  state.projects = await api("GET", "/api/projects");
}

async function loadNames() {
  const [categories, applications] = await Promise.all([
    api("GET", "/api/categories"),
    api("GET", "/api/applications"),
  ]);
  state.names.category = Object.fromEntries(categories.map((c) => [c.uuid, c.name]));
  state.names.application = Object.fromEntries(applications.map((a) => [a.uuid, a.name]));
}

// ---- Sign in ---------------------------------------------------------------------

function signInView(message) {
  const email = el("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = el("input", {
    type: "password", name: "password", autocomplete: "current-password", required: true,
  });
  const status = el("div", { id: "signin-status" });
  if (message) status.append(el("p", { role: "status", text: message }));
  const form = el(
    "form",
    { class: "signin", novalidate: true },
    el("h1", { text: "Sign in to ScreenAware" }),
    field("Email", email),
    field("Password", password),
    status,
    el("button", { type: "submit", class: "primary", text: "Sign in" }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    try {
      await api("POST", "/api/auth/session", {
        body: { email: email.value, password: password.value },
      });
      await start();
    } catch (error) {
      let text = error.message;
      if (error.status === 429 && error.retryAfter) {
        text = `${error.message} Try again in ${error.retryAfter} seconds.`;
      }
      status.append(el("p", { class: "error", role: "alert", text }));
      password.select();
    }
  });
  root.replaceChildren(el("main", {}, form));
  email.focus();
}

// ---- Shell and routing -------------------------------------------------------------

const VIEWS = { day: dayView, week: weekView, projects: projectsView, keys: keysView, admin: adminView };

function isAdmin() {
  return state.me && state.me.role && state.me.role.title === "admin";
}

function shell() {
  const links = [["day", "Day"], ["week", "Week"], ["projects", "Projects"], ["keys", "Keys"]];
  if (isAdmin()) links.push(["admin", "Admin"]);
  const nav = el(
    "nav",
    { "aria-label": "Main" },
    el("ul", {}, links.map(([route, text]) => el("li", {}, el("a", { href: `#/${route}`, "data-route": route, text })))),
  );
  const signOut = el("button", { type: "button", text: "Sign out" });
  signOut.addEventListener("click", async () => {
    await api("DELETE", "/api/auth/session");
    stopPolling();
    state.me = null;
    location.hash = "";
    signInView("You are signed out.");
  });
  const header = el(
    "header",
    { class: "top" },
    el("span", { class: "brand", text: "ScreenAware" }),
    nav,
    el("div", { class: "who" }, el("span", { class: "muted hide-narrow", text: state.me.email }), signOut),
  );
  root.replaceChildren(header, el("main", { id: "view" }));
}

async function route() {
  if (!state.me) return;
  const [name, arg] = location.hash.replace(/^#\/?/, "").split("/");
  const view = VIEWS[name] && (name !== "admin" || isAdmin()) ? name : "day";
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.route === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  stopPolling();
  stopPolling = () => {};
  const main = document.getElementById("view");
  main.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
  main.dataset.ready = "false";
  try {
    await VIEWS[view](main, arg);
  } catch (error) {
    if (error.status === 401) return signInView("Your session has ended; sign in again.");
    main.replaceChildren(errorBox(error));
  }
  main.dataset.ready = "true";
}

async function start() {
  try {
    state.me = await api("GET", "/api/users/me");
  } catch (error) {
    if (error.status === 401) return signInView();
    root.replaceChildren(el("main", {}, errorBox(error)));
    return;
  }
  state.zone = state.me.timezone || Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  shell();
  await route();
}

window.addEventListener("hashchange", route);

// ---- Day ------------------------------------------------------------------------------

function bars(title, grouped, nameOf) {
  const rows = Object.entries(grouped || {})
    .map(([key, node]) => ({ key, sum: node.sum, name: nameOf(key === "none" ? null : key) }))
    .filter((row) => row.sum > 0)
    .sort((a, b) => b.sum - a.sum);
  const max = Math.max(1, ...rows.map((r) => r.sum));
  const slug = title.toLowerCase().replace(/\W+/g, "-");
  const list = el("ul", { class: "bars", "aria-labelledby": slug });
  for (const row of rows) {
    const fill = el("div", { class: "fill" });
    fill.style.width = `${(100 * row.sum) / max}%`;
    list.append(
      el("li", { "data-key": row.key },
        el("span", { class: "name", title: row.name, text: row.name }),
        el("div", { class: "track", "aria-hidden": "true" }, fill),
        el("span", { class: "dur", text: duration(row.sum) })),
    );
  }
  return el("section", { class: `totals totals-${slug}` },
    el("h2", { id: slug, text: title }),
    rows.length ? list : el("p", { class: "muted", text: "Nothing tracked." }));
}

async function dayView(main, dateArg) {
  const date = /^\d{4}-\d{2}-\d{2}$/.test(dateArg || "") ? dateArg : today(state.zone);
  const range = dayRange(date, state.zone);
  await Promise.all([loadProjects(), loadNames()]);

  const picker = el("input", { type: "date", value: date, name: "date" });
  picker.addEventListener("change", () => { if (picker.value) location.hash = `#/day/${picker.value}`; });
  const previous = el("button", { type: "button", "aria-label": "Previous day", text: "←" });
  const next = el("button", { type: "button", "aria-label": "Next day", text: "→" });
  previous.addEventListener("click", () => { location.hash = `#/day/${addDays(date, -1)}`; });
  next.addEventListener("click", () => { location.hash = `#/day/${addDays(date, 1)}`; });

  const timelineBox = el("section", { "aria-labelledby": "timeline-h" });
  const details = el("div", { id: "stream-details" });
  const totalsBox = el("div", { id: "totals" });

  main.replaceChildren(
    el("h1", { text: "Day" }),
    el("div", { class: "daybar" }, previous, field("Date", picker), next,
      el("span", { class: "muted", text: `Times in ${state.zone}; ← and → change the day.` })),
    el("div", { class: "day" },
      el("div", {}, timelineBox, details),
      totalsBox),
  );

  async function renderTotals() {
    const [total, byProject, byCategory, byApplication] = await Promise.all([
      api("GET", "/api/times", { query: range }),
      api("GET", "/api/times", { query: { ...range, groupBy: "projectUuid" } }),
      api("GET", "/api/times", { query: { ...range, groupBy: "categoryUuid" } }),
      api("GET", "/api/times", { query: { ...range, groupBy: "applicationUuid" } }),
    ]);
    totalsBox.replaceChildren(
      el("p", {}, "Total ", el("strong", { id: "day-total", text: duration(total.sum) })),
      bars("By project", byProject.grouped, projectName),
      bars("By category", byCategory.grouped, (k) => state.names.category[k] || "No category"),
      bars("By application", byApplication.grouped, (k) => state.names.application[k] || "Unknown"),
    );
  }

  async function renderTimeline(selected) {
    const streams = await api("GET", "/api/streams", { query: { ...range, showGaps: true } });
    const heading = el("h2", { id: "timeline-h", text: "Timeline" });
    if (!streams.length) {
      timelineBox.replaceChildren(heading, el("p", { class: "muted", text: "No activity on this day." }));
      details.replaceChildren();
      return;
    }
    const first = Date.parse(streams[0].time);
    const last = Math.max(...streams.map((s) => Date.parse(s.time) + s.durationMs));
    const span = Math.max(1, last - first);
    const strip = el("div", { class: "timeline", role: "group", "aria-label": "Streams of the day" });
    const used = new Set();
    for (const stream of streams) {
      const from = clockTime(stream.time, state.zone);
      const to = clockTime(new Date(Date.parse(stream.time) + stream.durationMs).toISOString(), state.zone);
      const what = stream.isGap ? "no activity" : projectName(stream.projectUuid);
      const button = el("button", {
        type: "button",
        class: stream.isGap ? "gap" : "stream",
        "data-uuid": stream.uuid || "",
        "aria-pressed": stream.uuid && stream.uuid === selected ? "true" : "false",
        "aria-label": `${from}–${to} ${what}, ${duration(stream.durationMs)}`,
        title: `${from}–${to} ${what} (${duration(stream.durationMs)})`,
      });
      button.style.flexGrow = String(stream.durationMs / span);
      button.style.flexBasis = "0";
      if (!stream.isGap) {
        button.style.background = colour(stream.projectUuid);
        used.add(stream.projectUuid || "");
        button.addEventListener("click", () => showStream(stream));
      } else {
        button.disabled = true;
      }
      strip.append(button);
    }
    const legend = el("ul", { class: "legend", "aria-label": "Projects" },
      [...used].map((uuid) => {
        const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
        swatch.style.background = colour(uuid || null);
        return el("li", {}, swatch, projectName(uuid || null));
      }));
    timelineBox.replaceChildren(heading, strip,
      el("div", { class: "axis", "aria-hidden": "true" },
        el("span", { text: clockTime(streams[0].time, state.zone) }),
        el("span", { text: clockTime(new Date(last).toISOString(), state.zone) })),
      legend);
  }

  async function showStream(stream) {
    for (const b of timelineBox.querySelectorAll(".timeline button")) {
      b.setAttribute("aria-pressed", b.dataset.uuid === stream.uuid ? "true" : "false");
    }
    const end = new Date(Date.parse(stream.time) + stream.durationMs - 1).toISOString();
    const subs = await api("GET", "/api/substreams", { query: { start: stream.time, end, tz: state.zone } });
    const select = el("select", { name: "project" },
      el("option", { value: "", text: "Choose a project…" }),
      state.projects.map((p) => el("option", { value: p.uuid, selected: p.uuid === stream.projectUuid, text: p.name })));
    const message = el("div", { role: "status" });
    select.addEventListener("change", async () => {
      if (!select.value) return;
      try {
        await api("PUT", `/api/stream/${stream.uuid}/project`, { body: { projectUuid: select.value } });
        stream.projectUuid = select.value;
        await Promise.all([renderTotals(), renderTimeline(stream.uuid)]);
        message.replaceChildren(el("p", { text: `Moved to ${projectName(select.value)}.` }));
      } catch (error) {
        message.replaceChildren(errorBox(error));
      }
    });
    const from = clockTime(stream.time, state.zone);
    details.replaceChildren(el("section", { class: "details", "aria-labelledby": "details-h" },
      el("h2", { id: "details-h", text: `Stream ${from}, ${duration(stream.durationMs)}` }),
      field("Project", select),
      message,
      el("table", {},
        el("caption", { class: "muted", text: "Substreams" }),
        el("thead", {}, el("tr", {}, ["Time", "Application", "Document", "Duration"].map((t) => el("th", { scope: "col", text: t })))),
        el("tbody", {}, subs.map((s) => el("tr", {},
          el("td", { text: clockTime(s.time, state.zone) }),
          el("td", { text: state.names.application[s.applicationUuid] || "Unknown" }),
          el("td", { text: s.baseDocumentPath || "—" }),
          el("td", { text: duration(s.durationMs) })))))));
    select.focus();
  }

  await Promise.all([renderTotals(), renderTimeline(null)]);

  if (date === today(state.zone)) {
    // Live: new snapshots show up without a reload; the selected stream stays selected.
    const timer = setInterval(async () => {
      if (document.visibilityState !== "visible") return;
      const pressed = timelineBox.querySelector("button[aria-pressed=true]");
      try {
        await Promise.all([renderTotals(), renderTimeline(pressed ? pressed.dataset.uuid : null)]);
        main.dataset.refreshed = String(Number(main.dataset.refreshed || 0) + 1);
      } catch (error) {
        if (error.status === 401) { clearInterval(timer); signInView("Your session has ended; sign in again."); }
      }
    }, POLL_MS);
    stopPolling = () => clearInterval(timer);
  }
}

// Arrow keys change the day, unless a control that uses them has the focus.
document.addEventListener("keydown", (event) => {
  if (!location.hash.startsWith("#/day") && location.hash !== "" && location.hash !== "#/") return;
  if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
  if (event.target.closest("input, select, textarea")) return;
  const picker = document.querySelector("input[name=date]");
  if (!picker) return;
  location.hash = `#/day/${addDays(picker.value, event.key === "ArrowLeft" ? -1 : 1)}`;
});

// ---- Week ------------------------------------------------------------------------------

async function weekView(main) {
  await loadProjects();
  const end = today(state.zone);
  const first = addDays(end, -6);
  const range = { start: startOfDay(first, state.zone).toISOString(),
    end: new Date(startOfDay(addDays(end, 1), state.zone).getTime() - 1).toISOString(), tz: state.zone };
  const data = await api("GET", "/api/times", { query: { ...range, resolution: "day", groupBy: "projectUuid" } });
  const days = Object.values(data.grouped || {});
  const max = Math.max(1, ...days.map((d) => d.sum));
  const chart = el("div", { class: "week", role: "img", "aria-label": "Time per day of the last 7 days, by project" });
  const rows = [];
  for (const day of days) {
    const column = el("div", { class: "col" });
    for (const [key, node] of Object.entries(day.grouped || {})) {
      if (!node.sum) continue;
      const seg = el("div", { class: "seg", title: `${projectName(key === "none" ? null : key)} ${duration(node.sum)}` });
      seg.style.height = `${(100 * node.sum) / max}%`;
      seg.style.background = colour(key === "none" ? null : key);
      column.append(seg);
    }
    chart.append(column);
    rows.push(el("tr", {}, el("td", { text: day.start.slice(0, 10) }), el("td", { text: duration(day.sum) })));
  }
  main.replaceChildren(el("h1", { text: "Week" }),
    el("p", { class: "muted", text: `${first} to ${end}, ${state.zone}` }), chart,
    el("table", {}, el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Day" }), el("th", { scope: "col", text: "Total" }))),
      el("tbody", {}, rows)));
}

// ---- Projects --------------------------------------------------------------------------

function list(text, separator) {
  return text.split(separator).map((s) => s.trim()).filter(Boolean);
}

async function projectsView(main) {
  await loadProjects();
  const status = el("div", { role: "status" });
  const formBox = el("div");

  function form(project) {
    const name = el("input", { name: "name", required: true, value: project ? project.name : "" });
    const parent = el("select", { name: "parentProject" }, el("option", { value: "", text: "None" }),
      state.projects.filter((p) => !project || p.uuid !== project.uuid)
        .map((p) => el("option", { value: p.uuid, selected: project && project.parentProject === p.uuid, text: p.name })));
    const keywords = el("input", { name: "keywords", value: project ? project.keywords.join(", ") : "" });
    const paths = el("textarea", { name: "localPaths", rows: 2 });
    paths.value = project ? project.localPaths.join("\n") : "";
    const emails = el("input", { name: "contactEmails", value: project ? project.contactEmails.join(", ") : "" });
    const save = el("button", { type: "submit", class: "primary", text: project ? "Save project" : "Create project" });
    const cancel = project ? el("button", { type: "button", text: "Cancel" }) : null;
    if (cancel) cancel.addEventListener("click", () => formBox.replaceChildren(form(null)));
    const node = el("form", { "aria-labelledby": "project-form-h" },
      el("h2", { id: "project-form-h", text: project ? `Edit ${project.name}` : "New project" }),
      el("div", { class: "form-row" }, field("Name", name), field("Parent project", parent)),
      el("div", { class: "form-row" }, field("Keywords (comma-separated)", keywords),
        field("Contact emails (comma-separated)", emails)),
      field("Local paths (one per line)", paths),
      el("div", { class: "actions" }, save, cancel));
    node.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { name: name.value.trim(), parentProject: parent.value || null,
        keywords: list(keywords.value, ","), localPaths: list(paths.value, "\n"),
        contactEmails: list(emails.value, ",") };
      try {
        if (project) await api("PUT", `/api/projects/${project.uuid}`, { body });
        else await api("POST", "/api/projects", { body });
        await render(`${project ? "Saved" : "Created"} ${body.name}.`);
      } catch (error) {
        status.replaceChildren(errorBox(error));
      }
    });
    return node;
  }

  async function render(message) {
    await loadProjects();
    status.replaceChildren(message ? el("p", { text: message }) : "");
    formBox.replaceChildren(form(null));
    const rows = state.projects.map((p) => {
      const edit = el("button", { type: "button", "aria-label": `Edit ${p.name}`, text: "Edit" });
      const remove = el("button", { type: "button", class: "danger", "aria-label": `Delete ${p.name}`, text: "Delete" });
      edit.addEventListener("click", () => { formBox.replaceChildren(form(p)); formBox.querySelector("input").focus(); });
      remove.addEventListener("click", async () => {
        try {
          await api("DELETE", `/api/projects/${p.uuid}`);
          await render(`Deleted ${p.name}.`);
        } catch (error) {
          status.replaceChildren(errorBox(error));
        }
      });
      const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.background = colour(p.uuid);
      return el("tr", { "data-uuid": p.uuid }, el("td", {}, swatch, p.name),
        el("td", { class: "hide-narrow", text: projectName(p.parentProject || null) === "No project" ? "—" : projectName(p.parentProject) }),
        el("td", { class: "hide-narrow", text: p.keywords.join(", ") || "—" }),
        el("td", {}, el("div", { class: "actions" }, edit, remove)));
    });
    main.replaceChildren(el("h1", { text: "Projects" }), status,
      state.projects.length
        ? el("table", { id: "projects" }, el("thead", {}, el("tr", {},
          ["Name", "Parent", "Keywords", "Actions"].map((t, i) => el("th", { scope: "col", class: i === 1 || i === 2 ? "hide-narrow" : null, text: t })))),
          el("tbody", {}, rows))
        : el("p", { class: "muted", text: "No projects yet." }),
      formBox);
  }

  await render();
}

// ---- Keys -------------------------------------------------------------------------------

async function keysView(main) {
  const status = el("div", { role: "status" });
  const shown = el("div", { id: "new-key" });

  async function render() {
    const keys = await api("GET", "/api/keys");
    const name = el("input", { name: "name", required: true, placeholder: "e.g. laptop" });
    const create = el("form", { "aria-labelledby": "key-form-h" },
      el("h2", { id: "key-form-h", text: "New key for a sensor" }),
      el("div", { class: "form-row" }, field("Name", name),
        el("div", {}, el("button", { type: "submit", class: "primary", text: "Create key" }))));
    create.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const key = await api("POST", "/api/keys", { body: { name: name.value } });
        const command = `screenaware-sensor --server ${location.origin} --key ${key.key}`;
        await render();
        shown.replaceChildren(el("div", { class: "notice" },
          el("p", {}, el("strong", { text: `Key "${key.name}" created.` }),
            " Copy it now: it is shown only this once. Start the sensor with:"),
          el("pre", { class: "command" }, el("code", { id: "sensor-command", text: command }))));
      } catch (error) {
        status.replaceChildren(errorBox(error));
      }
    });
    const rows = keys.map((k) => {
      const revoke = el("button", { type: "button", class: "danger", "aria-label": `Revoke ${k.name}`, text: "Revoke" });
      revoke.addEventListener("click", async () => {
        try {
          await api("DELETE", `/api/keys/${k.uuid}`);
          shown.replaceChildren();
          await render();
          status.replaceChildren(el("p", { text: `Revoked ${k.name}.` }));
        } catch (error) {
          status.replaceChildren(errorBox(error));
        }
      });
      return el("tr", { "data-uuid": k.uuid }, el("td", { text: k.name }),
        el("td", { class: "hide-narrow", text: k.createdAt.slice(0, 16).replace("T", " ") }),
        el("td", { text: k.lastUsedAt ? k.lastUsedAt.slice(0, 16).replace("T", " ") : "never" }),
        el("td", {}, revoke));
    });
    main.replaceChildren(el("h1", { text: "Keys" }),
      el("p", { class: "muted", text: "API keys let a sensor send your activity; each one can be revoked." }),
      status, shown, create,
      keys.length
        ? el("table", { id: "keys" }, el("thead", {}, el("tr", {},
          ["Name", "Created", "Last used", "Actions"].map((t, i) => el("th", { scope: "col", class: i === 1 ? "hide-narrow" : null, text: t })))),
          el("tbody", {}, rows))
        : el("p", { class: "muted", text: "No keys yet." }));
  }

  await render();
}

// ---- Admin (a first view: the users) --------------------------------------------------------

async function adminView(main) {
  const users = await api("GET", "/api/users");
  main.replaceChildren(el("h1", { text: "Admin" }), el("h2", { text: "Users" }),
    el("table", { id: "users" }, el("thead", {}, el("tr", {},
      ["Email", "Role"].map((t) => el("th", { scope: "col", text: t })))),
    el("tbody", {}, users.map((u) => el("tr", {}, el("td", { text: u.email }), el("td", { text: u.role.title }))))));
}

start();
