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

/** Replace a node's children, skipping null/false ones as el() does. */
function put(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
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

const VIEWS = {
  day: dayView,
  week: (main, arg) => periodView(main, "week", arg),
  month: (main, arg) => periodView(main, "month", arg),
  projects: projectsView,
  keys: keysView,
  admin: adminView,
};

function isAdmin() {
  return state.me && state.me.role && state.me.role.title === "admin";
}

function shell() {
  const links = [["day", "Day"], ["week", "Week"], ["month", "Month"], ["projects", "Projects"], ["keys", "Keys"]];
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
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const arg = rest.join("/");
  const view = VIEWS[name] && (name !== "admin" || isAdmin()) ? name : "day";
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.route === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  stopPolling();
  stopPolling = () => {};
  // A fresh element per navigation: a slower earlier view that finishes late writes
  // into its own, detached element instead of over this one.
  const main = el("main", { id: "view", "data-ready": "false" },
    el("p", { class: "muted", text: "Loading…" }));
  document.getElementById("view").replaceWith(main);
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

  async function showStream(stream, done) {
    for (const b of timelineBox.querySelectorAll(".timeline button")) {
      b.setAttribute("aria-pressed", b.dataset.uuid === stream.uuid ? "true" : "false");
    }
    const end = new Date(Date.parse(stream.time) + stream.durationMs - 1).toISOString();
    const subs = await api("GET", "/api/substreams", { query: { start: stream.time, end, tz: state.zone } });
    const select = el("select", { name: "project" },
      el("option", { value: "", text: "Choose a project…" }),
      state.projects.map((p) => el("option", { value: p.uuid, selected: p.uuid === stream.projectUuid, text: p.name })));
    const message = el("div", { role: "status" }, done ? el("p", { text: done }) : null);
    select.addEventListener("change", async () => {
      if (!select.value) return;
      try {
        await api("PUT", `/api/stream/${stream.uuid}/project`, { body: { projectUuid: select.value } });
        stream.projectUuid = select.value;
        await Promise.all([renderTotals(), renderTimeline(stream.uuid)]);
        // Again: the substreams now carry the correction as their reason.
        await showStream(stream, `Moved to ${projectName(select.value)}.`);
      } catch (error) {
        message.replaceChildren(errorBox(error));
      }
    });
    const from = clockTime(stream.time, state.zone);
    details.replaceChildren(el("section", { class: "details", "aria-labelledby": "details-h" },
      el("h2", { id: "details-h", text: `Stream ${from}, ${duration(stream.durationMs)}` }),
      attribution(stream, subs),
      field("Project", select),
      message,
      el("div", { class: "scroll", role: "region", tabindex: "0", "aria-label": "Substreams" },
        el("table", { class: "substreams" },
          el("caption", { class: "muted", text: "Substreams" }),
          el("thead", {}, el("tr", {}, ["Time", "Application", "Document", "Project", "Duration"].map((t) => el("th", { scope: "col", text: t })))),
          el("tbody", {}, subs.map((s) => el("tr", {},
            el("td", { text: clockTime(s.time, state.zone) }),
            el("td", { text: state.names.application[s.applicationUuid] || "Unknown" }),
            el("td", { text: s.baseDocumentPath || "—" }),
            el("td", {}, projectName(s.projectUuid || null),
              s.projectRelationReason ? el("div", { class: "reason muted", text: s.projectRelationReason }) : null),
            el("td", { text: duration(s.durationMs) }))))))));
    select.focus();
  }

  await Promise.all([renderTotals(), renderTimeline(null)]);

  if (date === today(state.zone)) {
    // Live: new snapshots show up without a reload; the selected stream stays selected.
    const timer = setInterval(async () => {
      if (!main.isConnected) { clearInterval(timer); return; }
      if (document.visibilityState !== "visible") return;
      const pressed = timelineBox.querySelector("button[aria-pressed=true]");
      try {
        await Promise.all([renderTotals(), renderTimeline(pressed ? pressed.dataset.uuid : null)]);
        main.dataset.refreshed = String(Number(main.dataset.refreshed || 0) + 1);
      } catch (error) {
        if (error.status === 401) { clearInterval(timer); signInView("Your session has ended; sign in again."); }
      }
    }, POLL_MS);
    if (main.isConnected) stopPolling = () => clearInterval(timer);
  }
}

/** Why the stream has its project: the reason of its longest substream of that project. */
function attribution(stream, subs) {
  const own = subs.filter((s) => (s.projectUuid || null) === (stream.projectUuid || null))
    .sort((a, b) => b.durationMs - a.durationMs);
  const reason = own.length && own[0].projectRelationReason;
  return el("p", { class: "attribution" }, "Project: ",
    el("strong", { text: projectName(stream.projectUuid || null) }),
    reason ? el("span", { class: "muted" }, " — ", el("span", { class: "why", text: reason })) : null);
}

// Arrow keys change the day (week, month), unless a control that uses them has the focus.
document.addEventListener("keydown", (event) => {
  if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
  if (event.target.closest("input, select, textarea")) return;
  const period = /^#\/(week|month)/.exec(location.hash);
  if (period) {
    const noun = period[1];
    const button = document.querySelector(`button[aria-label="${event.key === "ArrowLeft" ? "Previous" : "Next"} ${noun}"]`);
    if (button) button.click();
    return;
  }
  if (!location.hash.startsWith("#/day") && location.hash !== "" && location.hash !== "#/") return;
  const picker = document.querySelector("input[name=date]");
  if (!picker) return;
  location.hash = `#/day/${addDays(picker.value, event.key === "ArrowLeft" ? -1 : 1)}`;
});

// ---- Week and month ----------------------------------------------------------------------

// What the week and month views group by; the choice stays while the app is open.
const GROUPS = {
  project: { by: "projectUuid", label: "Project", name: (k) => projectName(k) },
  category: { by: "categoryUuid", label: "Category",
    name: (k) => (k ? state.names.category[k] || "Unknown category" : "No category") },
  application: { by: "applicationUuid", label: "Application",
    name: (k) => (k ? state.names.application[k] || "Unknown application" : "No application") },
};
state.grouping = "project";

function addMonths(dateText, months) {
  const [y, m] = dateText.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1 + months, 1)).toISOString().slice(0, 10);
}

/** The local date (YYYY-MM-DD) of an instant in ``zone``. */
function localDate(iso, zone) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: zone }).format(new Date(iso));
}

function weekday(dateText) {
  return new Intl.DateTimeFormat("en-GB", { weekday: "short", timeZone: "UTC" })
    .format(new Date(`${dateText}T12:00:00Z`));
}

/** Minutes with two decimals: what the CSV holds for a duration. */
export function minutes(ms) {
  return (ms / 60000).toFixed(2);
}

/** One CSV field: quoted when needed; a leading =, +, - or @ is defused for spreadsheets. */
export function csvField(value) {
  let text = String(value);
  if (/^[=+\-@]/.test(text) && !/^-?\d/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function csvText(rows) {
  return rows.map((row) => row.map(csvField).join(",")).join("\r\n") + "\r\n";
}

/**
 * The week (7 days from a first day, default the last 7 days) or the month (``YYYY-MM``,
 * default this one): stacked bars per day by the chosen grouping, the totals table and a
 * CSV of that table.
 */
async function periodView(main, kind, arg) {
  await Promise.all([loadProjects(), loadNames()]);
  const zone = state.zone;
  let first, last, previous, next, title;
  if (kind === "week") {
    first = /^\d{4}-\d{2}-\d{2}$/.test(arg || "") ? arg : addDays(today(zone), -6);
    last = addDays(first, 6);
    previous = addDays(first, -7);
    next = addDays(first, 7);
    title = `${first} to ${last}`;
  } else {
    const month = /^\d{4}-(0[1-9]|1[0-2])$/.test(arg || "") ? arg : today(zone).slice(0, 7);
    first = `${month}-01`;
    last = addDays(addMonths(first, 1), -1);
    previous = addMonths(first, -1).slice(0, 7);
    next = addMonths(first, 1).slice(0, 7);
    title = new Intl.DateTimeFormat("en-GB", { month: "long", year: "numeric", timeZone: "UTC" })
      .format(new Date(`${first}T12:00:00Z`));
  }
  const range = { start: startOfDay(first, zone).toISOString(),
    end: new Date(startOfDay(addDays(last, 1), zone).getTime() - 1).toISOString(), tz: zone };
  const noun = kind === "week" ? "week" : "month";
  const back = el("button", { type: "button", "aria-label": `Previous ${noun}`, text: "←" });
  const forward = el("button", { type: "button", "aria-label": `Next ${noun}`, text: "→" });
  back.addEventListener("click", () => { location.hash = `#/${kind}/${previous}`; });
  forward.addEventListener("click", () => { location.hash = `#/${kind}/${next}`; });

  const switcher = el("fieldset", { class: "switch" }, el("legend", { text: "Group by" }),
    Object.entries(GROUPS).map(([key, group]) => {
      const input = el("input", { type: "radio", name: "grouping", value: key, checked: key === state.grouping });
      input.addEventListener("change", async () => {
        if (!input.checked) return;
        state.grouping = key;
        main.dataset.ready = "false";
        try {
          await render();
        } catch (error) {
          body.replaceChildren(errorBox(error));
        }
        main.dataset.ready = "true";
      });
      return el("label", { class: "choice" }, input, ` ${group.label}`);
    }));
  const download = el("button", { type: "button", text: "Download CSV" });
  const body = el("div", { id: "period" });
  let csv = "";
  download.addEventListener("click", () => {
    const blob = new Blob([csv], { type: "text/csv;charset=utf-8" });
    const link = el("a", { href: URL.createObjectURL(blob), download: `screenaware-${kind}-${first}-${state.grouping}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  });

  main.replaceChildren(
    el("h1", { text: kind === "week" ? "Week" : "Month" }),
    el("div", { class: "daybar" }, back,
      el("p", { class: "period-title", id: "period-title", text: title }), forward,
      el("span", { class: "muted", text: `Times in ${zone}.` })),
    el("div", { class: "period-controls" }, switcher, download),
    body);

  async function render() {
    const group = GROUPS[state.grouping];
    const data = await api("GET", "/api/times", { query: { ...range, resolution: "day", groupBy: group.by } });
    const days = Object.values(data.grouped || {}).map((day) => ({
      date: localDate(day.start, zone), sum: day.sum,
      groups: Object.fromEntries(Object.entries(day.grouped || {}).map(([k, n]) => [k, n.sum])),
    }));
    const totals = {};
    for (const day of days) {
      for (const [key, sum] of Object.entries(day.groups)) totals[key] = (totals[key] || 0) + sum;
    }
    // The groups with time in the range, most first; their colours follow that order
    // (projects keep the colour they have everywhere else).
    const keys = Object.keys(totals).filter((k) => totals[k] > 0).sort((a, b) => totals[b] - totals[a]);
    const nameOf = (key) => group.name(key === "none" ? null : key);
    const colourOf = (key) => (state.grouping === "project" ? colour(key === "none" ? null : key)
      : key === "none" ? "hsl(0 0% 55%)" : PALETTE[keys.indexOf(key) % PALETTE.length]);
    const total = days.reduce((sum, day) => sum + day.sum, 0);

    const max = Math.max(1, ...days.map((d) => d.sum));
    const chart = el("div", { class: `chart chart-${kind}`, role: "img",
      "aria-label": `Time per day from ${first} to ${last}, by ${group.label.toLowerCase()}; the table below has the numbers` });
    for (const day of days) {
      const column = el("div", { class: "col", "data-date": day.date, title: `${day.date}: ${duration(day.sum)}` });
      const stack = el("div", { class: "stack" });
      for (const key of keys) {
        const sum = day.groups[key] || 0;
        if (!sum) continue;
        const seg = el("div", { class: "seg", "data-key": key, title: `${day.date} ${nameOf(key)} ${duration(sum)}` });
        seg.style.height = `${(100 * sum) / max}%`;
        seg.style.background = colourOf(key);
        stack.append(seg);
      }
      const dayNumber = Number(day.date.slice(8));
      const label = kind === "week" ? weekday(day.date)
        : dayNumber === 1 || dayNumber % 5 === 0 ? String(dayNumber) : "";
      column.append(stack, el("span", { class: "tick", "aria-hidden": "true", text: label }));
      chart.append(column);
    }
    const legend = el("ul", { class: "legend", "aria-label": `${group.label}s` }, keys.map((key) => {
      const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.background = colourOf(key);
      return el("li", { "data-key": key }, swatch, nameOf(key));
    }));

    const header = ["Day", ...keys.map(nameOf), "Total"];
    const rows = days.map((day) => [day.date, ...keys.map((k) => day.groups[k] || 0), day.sum]);
    const footer = ["Total", ...keys.map((k) => totals[k]), total];
    const cell = (tag, ms) => el(tag, { class: ms ? "num" : "num zero", "data-ms": ms, text: duration(ms) });
    const table = el("table", { id: "period-table", class: "totals-table" },
      el("caption", { class: "muted", text: `Totals by day and ${group.label.toLowerCase()}` }),
      el("thead", {}, el("tr", {}, header.map((text, i) => el("th", {
        scope: "col", class: i ? "num" : null, "data-key": i && i <= keys.length ? keys[i - 1] : null, text })))),
      el("tbody", {}, rows.map((row) => el("tr", { "data-date": row[0] },
        el("th", { scope: "row", text: row[0] }), row.slice(1).map((ms) => cell("td", ms))))),
      el("tfoot", {}, el("tr", {}, el("th", { scope: "row", text: "Total" }),
        footer.slice(1).map((ms) => cell("td", ms)))));
    // The CSV is this table: the same rows and columns, durations in minutes.
    const minuteHeader = header.map((text, i) => (i ? `${text} (min)` : text));
    csv = csvText([minuteHeader, ...[...rows, footer].map((row) => [row[0], ...row.slice(1).map(minutes)])]);
    body.replaceChildren(
      el("p", {}, "Total ", el("strong", { id: "period-total", text: duration(total) })),
      chart, legend,
      el("div", { class: "scroll", role: "region", tabindex: "0", "aria-label": "Totals table" }, table));
  }

  await render();
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

  const tasksBox = el("div", { id: "tasks" });
  let tasks = [];

  // The tasks of one project: list, add, delete (the task routes of the API).
  function renderTasks(project, message) {
    const mine = tasks.filter((t) => t.projectUuid === project.uuid);
    const title = el("input", { name: "title", required: true });
    const add = el("form", { "aria-labelledby": "task-form-h" },
      el("h3", { id: "task-form-h", text: "New task" }),
      el("div", { class: "form-row" }, field("Task title", title),
        el("div", {}, el("button", { type: "submit", class: "primary", text: "Add task" }))));
    const taskStatus = el("div", { role: "status" }, message ? el("p", { text: message }) : null);
    add.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await api("POST", "/api/tasks", { body: { title: title.value.trim(), projectUuid: project.uuid } });
        await reloadTasks(project, `Added task ${title.value.trim()}.`);
      } catch (error) {
        taskStatus.replaceChildren(errorBox(error));
      }
    });
    const close = el("button", { type: "button", text: "Close tasks" });
    close.addEventListener("click", () => tasksBox.replaceChildren());
    tasksBox.replaceChildren(el("section", { class: "details", "aria-labelledby": "tasks-h" },
      el("h2", { id: "tasks-h", text: `Tasks of ${project.name}` }),
      taskStatus,
      mine.length
        ? el("ul", { class: "tasks" }, mine.map((t) => {
          const remove = el("button", { type: "button", class: "danger", "aria-label": `Delete task ${t.title}`, text: "Delete" });
          remove.addEventListener("click", async () => {
            try {
              await api("DELETE", `/api/tasks/${t.uuid}`);
              await reloadTasks(project, `Deleted task ${t.title}.`);
            } catch (error) {
              taskStatus.replaceChildren(errorBox(error));
            }
          });
          return el("li", { "data-uuid": t.uuid }, el("span", { text: t.title }), remove);
        }))
        : el("p", { class: "muted", text: "No tasks yet." }),
      add, el("div", { class: "actions" }, close)));
  }

  async function reloadTasks(project, message) {
    tasks = await api("GET", "/api/tasks");
    renderTasks(project, message);
    await render(null, true);
  }

  async function render(message, keepTasks) {
    const [, loaded] = await Promise.all([loadProjects(), api("GET", "/api/tasks")]);
    tasks = loaded;
    if (!keepTasks) tasksBox.replaceChildren();
    status.replaceChildren(message ? el("p", { text: message }) : "");
    formBox.replaceChildren(form(null));
    const rows = state.projects.map((p) => {
      const count = tasks.filter((t) => t.projectUuid === p.uuid).length;
      const showTasks = el("button", { type: "button", "aria-label": `Tasks of ${p.name}`, text: `Tasks (${count})` });
      showTasks.addEventListener("click", () => { renderTasks(p); tasksBox.querySelector("input").focus(); });
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
        el("td", {}, el("div", { class: "actions" }, showTasks, edit, remove)));
    });
    main.replaceChildren(el("h1", { text: "Projects" }), status,
      state.projects.length
        ? el("table", { id: "projects" }, el("thead", {}, el("tr", {},
          ["Name", "Parent", "Keywords", "Actions"].map((t, i) => el("th", { scope: "col", class: i === 1 || i === 2 ? "hide-narrow" : null, text: t })))),
          el("tbody", {}, rows))
        : el("p", { class: "muted", text: "No projects yet." }),
      tasksBox, formBox);
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

// ---- Admin: users, log review, crash reports --------------------------------------------

const ADMIN_TABS = [["users", "Users"], ["logs", "Log review"], ["crashes", "Crash reports"]];

async function adminView(main, arg) {
  const [tab, ...rest] = (arg || "").split("/");
  const current = ADMIN_TABS.some(([key]) => key === tab) ? tab : "users";
  const nav = el("nav", { "aria-label": "Admin", class: "tabs" }, el("ul", {},
    ADMIN_TABS.map(([key, text]) => el("li", {}, el("a", {
      href: `#/admin/${key}`, "aria-current": key === current ? "page" : null, text })))));
  const box = el("div", { id: "admin" });
  main.replaceChildren(el("h1", { text: "Admin" }), nav, box);
  if (current === "users") await adminUsers(box);
  else if (current === "logs") await adminLogs(box, rest);
  else await adminCrashes(box);
}

async function adminUsers(box, message) {
  const users = await api("GET", "/api/users");
  const status = el("div", { role: "status" }, message ? el("p", { text: message }) : null);
  const email = el("input", { type: "email", name: "email", required: true, autocomplete: "off" });
  const password = el("input", { type: "password", name: "password", required: true, autocomplete: "new-password", minlength: 8 });
  const role = el("select", { name: "role" }, el("option", { value: "user", text: "user" }), el("option", { value: "admin", text: "admin" }));
  const zone = el("input", { name: "timezone", placeholder: "e.g. Europe/Berlin" });
  const create = el("form", { "aria-labelledby": "user-form-h" },
    el("h2", { id: "user-form-h", text: "New user" }),
    el("div", { class: "form-row" }, field("Email", email), field("Password", password)),
    el("div", { class: "form-row" }, field("Role", role), field("Time zone (optional)", zone)),
    el("div", { class: "actions" }, el("button", { type: "submit", class: "primary", text: "Create user" })));
  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { email: email.value.trim(), password: password.value, role: role.value };
    if (zone.value.trim()) body.timezone = zone.value.trim();
    try {
      await api("POST", "/api/users", { body });
      await adminUsers(box, `Created ${body.email} (${body.role}).`);
      box.querySelector("#users").focus();
    } catch (error) {
      status.replaceChildren(errorBox(error));
    }
  });
  const rows = users.map((u) => {
    const self = u.uuid === state.me.uuid;
    const remove = self ? el("span", { class: "muted", text: "you" })
      : el("button", { type: "button", class: "danger", "aria-label": `Delete ${u.email}`, text: "Delete" });
    if (!self) {
      remove.addEventListener("click", async () => {
        try {
          await api("DELETE", `/api/users/${u.uuid}`);
          await adminUsers(box, `Deleted ${u.email}.`);
        } catch (error) {
          status.replaceChildren(errorBox(error));
        }
      });
    }
    const name = [u.nameFirst, u.nameLast].filter(Boolean).join(" ");
    // The role of others can change here; an admin's own role cannot (the API says 422).
    let roleCell = u.role.title;
    if (!self) {
      roleCell = el("select", { "aria-label": `Role of ${u.email}` },
        ["user", "admin"].map((r) => el("option", { value: r, text: r, selected: r === u.role.title })));
      roleCell.addEventListener("change", async () => {
        try {
          await api("PUT", "/api/users", { body: { email: u.email, role: roleCell.value } });
          await adminUsers(box, `${u.email} is now ${roleCell.value}.`);
        } catch (error) {
          status.replaceChildren(errorBox(error));
        }
      });
    }
    return el("tr", { "data-uuid": u.uuid }, el("td", { text: u.email }),
      el("td", { class: "hide-narrow", text: name || "—" }),
      el("td", { class: "role" }, roleCell),
      el("td", { class: "hide-narrow", text: u.timezone || "—" }),
      el("td", {}, remove));
  });
  box.replaceChildren(el("h2", { text: "Users" }), status,
    el("table", { id: "users", tabindex: "-1" }, el("thead", {}, el("tr", {},
      ["Email", "Name", "Role", "Time zone", "Actions"].map((t, i) => el("th", { scope: "col", class: i === 1 || i === 3 ? "hide-narrow" : null, text: t })))),
    el("tbody", {}, rows)),
    create);
}

// The review range: two local dates (from, to), like the API's default of two days.
function rangeForm(days, onShow) {
  const to = el("input", { type: "date", name: "to", required: true, value: today(state.zone) });
  const from = el("input", { type: "date", name: "from", required: true, value: addDays(today(state.zone), -days) });
  const form = el("form", { class: "form-row range", "aria-label": "Range" },
    field("From", from), field("To", to),
    el("div", {}, el("button", { type: "submit", text: "Show" })));
  const range = () => ({ start: startOfDay(from.value, state.zone).toISOString(),
    end: new Date(startOfDay(addDays(to.value, 1), state.zone).getTime() - 1).toISOString() });
  form.addEventListener("submit", (event) => { event.preventDefault(); onShow(range()); });
  return { form, range };
}

function stamp(iso) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: state.zone, year: "numeric", month: "2-digit",
    day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" })
    .format(new Date(iso)).replace(",", "");
}

const INTERVALS = [["5m", 300], ["1h", 3600], ["1d", 86400]];

async function adminLogs(box) {
  const status = el("div", { role: "status" });
  const seriesBox = el("section", { id: "series", "aria-labelledby": "series-h" });
  const chartBox = el("section", { id: "log-chart" });
  const pointsBox = el("section", { id: "log-points" });
  const pointBox = el("section", { id: "log-point" });
  const { form, range } = rangeForm(1, (r) => guard(() => showSeries(r)));
  const interval = el("select", { name: "interval" },
    INTERVALS.map(([value]) => el("option", { value, selected: value === "1h", text: value })));
  const uuid = el("input", { name: "uuid", required: true, pattern: "[0-9a-fA-F-]{36}" });
  const find = el("form", { class: "form-row", "aria-label": "Find a point" },
    field("Point uuid", uuid), el("div", {}, el("button", { type: "submit", text: "Find point" })));
  const pointStatus = el("div", { role: "status" });
  find.addEventListener("submit", (event) => {
    event.preventDefault();
    pointBox.replaceChildren();
    guard(() => showPoint(uuid.value.trim()), pointStatus);
  });
  let chosen = null;
  interval.addEventListener("change", () => { if (chosen) guard(() => showChart(chosen, range())); });

  async function guard(work, where = status) {
    where.replaceChildren();
    try {
      await work();
    } catch (error) {
      where.replaceChildren(errorBox(error));
    }
  }

  async function showSeries(r) {
    const series = await api("GET", "/api/logs", { query: r });
    seriesBox.replaceChildren(el("h2", { id: "series-h", text: "Series" }),
      series.length
        ? el("table", { id: "series-table" },
          el("thead", {}, el("tr", {}, ["Type", "Points"].map((t) => el("th", { scope: "col", text: t })))),
          el("tbody", {}, series.map((item) => {
            const open = el("button", { type: "button", class: "link", text: item.type });
            open.addEventListener("click", () => guard(() => showChart(item.type, range())));
            return el("tr", { "data-type": item.type }, el("td", {}, open), el("td", { class: "num", text: item.count }));
          })))
        : el("p", { class: "muted", text: "No log points in this range." }));
    chartBox.replaceChildren();
    pointsBox.replaceChildren();
  }

  async function showChart(type, r) {
    chosen = type;
    const seconds = INTERVALS.find(([value]) => value === interval.value)[1];
    const buckets = await api("GET", `/api/logs/${encodeURIComponent(type)}`,
      { query: { ...r, structure: "grouped", interval: interval.value } });
    const max = Math.max(1, ...buckets.map((b) => b.count));
    const strip = el("div", { class: "logchart", role: "group", "aria-label": `Points of ${type} per ${interval.value}` });
    for (const bucket of buckets) {
      const bar = el("span", { class: "bar" });
      bar.style.height = `${(100 * bucket.count) / max}%`;
      if (bucket.count) {
        const label = `${stamp(bucket.time)}: ${bucket.count} point${bucket.count === 1 ? "" : "s"}`;
        const button = el("button", { type: "button", class: "bucket", "data-time": bucket.time, "aria-label": label, title: label }, bar);
        button.addEventListener("click", () => guard(() => showBucket(type, bucket, seconds)));
        strip.append(button);
      } else {
        strip.append(el("span", { class: "bucket empty", "aria-hidden": "true" }, bar));
      }
    }
    const total = buckets.reduce((sum, b) => sum + b.count, 0);
    put(chartBox, el("h2", { id: "chart-h", text: `${type}: ${total} points` }),
      el("div", { class: "daybar" }, field("Interval", interval)),
      strip,
      buckets.length ? el("div", { class: "axis", "aria-hidden": "true" },
        el("span", { text: stamp(buckets[0].time) }), el("span", { text: stamp(buckets[buckets.length - 1].time) })) : null,
      el("p", { class: "muted", text: "Choose a bar for its points." }));
    pointsBox.replaceChildren();
  }

  async function showBucket(type, bucket, seconds) {
    const start = Date.parse(bucket.time);
    const points = await api("GET", `/api/logs/${encodeURIComponent(type)}`, { query: {
      start: new Date(start).toISOString(), end: new Date(start + seconds * 1000 - 1).toISOString(), limit: 200 } });
    put(pointsBox, el("h2", { id: "points-h", text: `Points of ${type} from ${stamp(bucket.time)}` }),
      el("div", { class: "scroll", role: "region", tabindex: "0", "aria-labelledby": "points-h" },
        el("table", { id: "points-table" },
          el("thead", {}, el("tr", {}, ["Time", "Level", "Message", "Point"].map((t) => el("th", { scope: "col", text: t })))),
          el("tbody", {}, points.map((point) => {
            const open = el("button", { type: "button", class: "link", "aria-label": `Point ${point.uuid}`, text: point.uuid.slice(0, 13) + "…" });
            open.addEventListener("click", () => guard(() => showPoint(point.uuid), pointStatus));
            return el("tr", { "data-uuid": point.uuid }, el("td", { text: stamp(point.time) }),
              el("td", { text: point.level }), el("td", { text: point.message || "" }), el("td", {}, open));
          })))),
      points.length >= 200 ? el("p", { class: "muted", text: "The first 200 points." }) : null);
  }

  async function showPoint(pointUuid) {
    const point = await api("GET", `/api/logs/point/${encodeURIComponent(pointUuid)}`);
    const rows = ["uuid", "type", "time", "level", "origin", "originId", "version", "userUuid", "message",
      "messageNumeric", "messageBool", "deleted"].filter((key) => point[key] !== undefined && point[key] !== null);
    put(pointBox, el("h2", { id: "point-h", tabindex: "-1", text: `Point ${point.uuid}` }),
      el("dl", { class: "point" }, rows.flatMap((key) => [el("dt", { text: key }), el("dd", { "data-key": key, text: String(point[key]) })])),
      point.details ? el("pre", { class: "command", id: "point-details" }, point.details) : null);
    pointBox.querySelector("h2").focus();
  }

  box.replaceChildren(el("h2", { text: "Log review" }), form, status, seriesBox, chartBox, pointsBox, find, pointStatus, pointBox);
  await showSeries(range());
}

async function adminCrashes(box) {
  const list = el("div", { id: "crashes" });
  const status = el("div", { role: "status" });
  async function show(r) {
    status.replaceChildren();
    let points;
    try {
      points = await api("GET", "/api/logs/crash_sensor", { query: { ...r, limit: 500 } });
    } catch (error) {
      status.replaceChildren(errorBox(error));
      return;
    }
    list.replaceChildren(points.length
      ? el("div", { class: "scroll", role: "region", tabindex: "0", "aria-label": "Crash reports" },
        el("table", { id: "crash-table" },
          el("thead", {}, el("tr", {}, ["Time", "Product", "Version", "Size", "Dump"].map((t) => el("th", { scope: "col", text: t })))),
          el("tbody", {}, points.map((point) => {
            let size = "";
            try { size = JSON.parse(point.details || "{}").size ?? ""; } catch { size = ""; }
            return el("tr", { "data-uuid": point.uuid }, el("td", { text: stamp(point.time) }),
              el("td", { text: point.origin || "" }), el("td", { text: point.version || "" }),
              el("td", { class: "num", text: size === "" ? "—" : `${size} B` }),
              el("td", {}, el("a", { href: `/api/logs/crash/${point.uuid}`, download: `${point.uuid}.dmp`,
                "aria-label": `Download the dump of ${stamp(point.time)}`, text: "Download" })));
          }))))
      : el("p", { class: "muted", text: "No crash reports in this range." }));
  }
  const { form, range } = rangeForm(30, show);
  box.replaceChildren(el("h2", { text: "Crash reports" }),
    el("p", { class: "muted", text: "Dumps uploaded by sensors (crash_sensor points); a dump evicted for space is 404." }),
    form, status, list);
  await show(range());
}

start();
