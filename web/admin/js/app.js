// The dashboard shell: boot, hash routes, navigation, session expiry.
//
// Routes live in the URL fragment (#/llamadas?canal=twilio…), so a page can be bookmarked or
// reloaded and the back button works, with nothing for the server to route.

import {
  currentSession,
  getConfig,
  loadConfig,
  onSessionExpired,
  restoreSession,
  signOut,
} from "./api.js";
import { h, label, message, ROLES, replace, setTimeZone } from "./dom.js";
import { renderLogin } from "./login.js";
import { renderBookings } from "./views/bookings.js";
import { renderCalendar } from "./views/calendar.js";
import { renderCallDetail, renderCalls } from "./views/calls.js";
import { renderKnowledge } from "./views/knowledge.js";
import { renderLive } from "./views/live.js";
import { renderPrompts } from "./views/prompts.js";
import { renderQuality } from "./views/quality.js";
import { renderStats } from "./views/stats.js";

const LOGIN = "/iniciar-sesion";
const HOME = "/llamadas";

const ROUTES = [
  { pattern: /^\/llamadas\/([^/]+)$/, section: "llamadas", view: renderCallDetail },
  { pattern: /^\/llamadas$/, section: "llamadas", view: renderCalls },
  { pattern: /^\/en-curso$/, section: "en-curso", view: renderLive },
  { pattern: /^\/reservas$/, section: "reservas", view: renderBookings },
  { pattern: /^\/calendario$/, section: "calendario", view: renderCalendar },
  { pattern: /^\/calidad$/, section: "calidad", view: renderQuality },
  { pattern: /^\/instrucciones$/, section: "instrucciones", view: renderPrompts },
  { pattern: /^\/conocimiento$/, section: "conocimiento", view: renderKnowledge },
  { pattern: /^\/estadisticas$/, section: "estadisticas", view: renderStats },
];

const main = document.getElementById("contenido");
const nav = document.getElementById("nav");
const userBox = document.getElementById("user-box");
const flashBox = document.getElementById("flash");

let generation = 0; // bumps on every navigation: late answers of an old view are dropped
let cleanup = null;
let pendingNotice = null; // {kind, text}: why the user is on the sign-in page
let booted = false;

function parseHash() {
  // Split before decoding: a searched "¿dónde?" or "a&b" must stay inside its parameter.
  const raw = location.hash.replace(/^#/, "");
  const cut = raw.indexOf("?");
  let path = cut < 0 ? raw : raw.slice(0, cut);
  try {
    path = decodeURIComponent(path);
  } catch {
    // a malformed escape: keep the path as typed, it will simply not match a route
  }
  return { path: path || HOME, params: new URLSearchParams(cut < 0 ? "" : raw.slice(cut + 1)) };
}

/** Go to a route: navigate("/llamadas", {canal: "twilio"}). */
export function navigate(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") query.set(key, String(value));
  }
  const qs = query.toString();
  const target = `#${path}${qs ? `?${qs}` : ""}`;
  if (location.hash === target) route();
  else location.hash = target;
}

/** A short confirmation shown above the page ("Se activó la versión 3."). */
export function flash(kind, text) {
  replace(flashBox, text ? message(kind, text) : null);
}

function showShell(signedIn) {
  nav.hidden = !signedIn;
  userBox.hidden = !signedIn;
  const session = currentSession();
  if (signedIn && session) {
    document.getElementById("user-email").textContent = session.email;
    document.getElementById("user-role").textContent = label(ROLES, session.role);
  }
}

function markSection(section) {
  for (const link of nav.querySelectorAll("a[data-section]")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function focusHeading() {
  const heading = main.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

async function route() {
  const { path, params } = parseHash();
  if (cleanup) {
    try {
      cleanup();
    } catch {
      // a view's cleanup failing must not block navigation
    }
    cleanup = null;
  }
  const gen = ++generation;
  const ctx = { alive: () => gen === generation, navigate, flash, params };
  flash(null);

  if (path === LOGIN) {
    showShell(false);
    markSection(null);
    const notice = pendingNotice;
    pendingNotice = null;
    renderLogin(main, {
      notice,
      supabase: Boolean(getConfig().supabase_url),
      onSignedIn: () => {
        const next = params.get("volver");
        navigate(next && next.startsWith("/") && next !== LOGIN ? next : HOME);
      },
    });
    focusHeading();
    return;
  }
  if (!currentSession()) {
    navigate(LOGIN, { volver: path });
    return;
  }
  const found = ROUTES.map((r) => ({ r, m: path.match(r.pattern) })).find((x) => x.m);
  showShell(true);
  if (!found) {
    markSection(null);
    replace(main, h("h1", {}, "Página no encontrada"), message("error", "Esa sección no existe."),
      h("p", {}, h("a", { href: `#${HOME}` }, "Ir a Llamadas")));
    focusHeading();
    return;
  }
  markSection(found.r.section);
  replace(main, h("p", { class: "loading" }, "Cargando…"));
  try {
    const result = await found.r.view(main, { params, match: found.m, ctx });
    if (gen === generation) cleanup = typeof result === "function" ? result : null;
    else if (typeof result === "function") result();
  } catch (err) {
    if (gen !== generation || err?.name === "AbortError" || err?.status === 401) return;
    replace(main, h("h1", {}, "No se pudo cargar la página"), message("error", err.message),
      h("p", {}, h("button", { type: "button", class: "button", onclick: () => route() },
        "Reintentar")));
  }
  if (gen === generation) focusHeading();
}

onSessionExpired((reason) => {
  pendingNotice = { kind: "warn", text: reason };
  if (!booted) return; // boot routes to the sign-in page itself
  const { path } = parseHash();
  if (path === LOGIN) route();
  else navigate(LOGIN, { volver: path });
});

document.getElementById("sign-out").addEventListener("click", async () => {
  await signOut();
  pendingNotice = { kind: "info", text: "Cerró la sesión." };
  navigate(LOGIN);
});

async function boot() {
  const config = await loadConfig();
  setTimeZone(config.timezone);
  try {
    await restoreSession();
  } catch (err) {
    if (err?.status !== 401) pendingNotice = { kind: "error", text: err.message };
  }
  booted = true;
  window.addEventListener("hashchange", route);
  await route();
}

boot();
