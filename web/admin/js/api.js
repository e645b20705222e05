// The session and every call to the REST API.
//
// Two ways to sign in, chosen by /admin/config.json: local accounts (POST /api/auth/login,
// a short-lived token kept in sessionStorage, so it dies with the tab) or, when the server has
// SUPABASE_URL, Supabase Auth through the vendored supabase-js client, whose access token is
// sent as the Bearer token (supabase-js refreshes it by itself).
//
// Local sessions are renewed: sign-in also sets an httpOnly refresh cookie (scripts never see
// it), and when the access token nears its end, or the server answers 401, the page asks
// POST /api/auth/refresh for a new one (once at a time, across tabs) and carries on, so a
// draft or the live view is never lost to an expiring token. Only when renewal is refused
// (sign-out elsewhere, password changed, idle too long) is the session over: it is cleared and
// the app goes back to the sign-in page with the server's own Spanish message.

export const MSG = {
  network: "No se pudo conectar con el servidor. Revise su conexión e intente de nuevo.",
  expired: "Su sesión expiró. Inicie sesión de nuevo.",
  loginRequired: "Inicie sesión para continuar.",
  forbidden: "No tiene permiso para realizar esta acción.",
  badCredentials: "Correo o contraseña incorrectos.",
  noAccess:
    "Su cuenta no tiene acceso al panel de administración. " +
    "Pida a un administrador el rol de agente o de administrador.",
  server: (code) =>
    `El servidor tuvo un problema (código ${code}). Intente de nuevo en unos minutos.`,
  unexpected: (code) => `La solicitud no se pudo completar (código ${code}).`,
};

const STORAGE_KEY = "taina.admin.session";
const EXPIRY_MARGIN_MS = 5000;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status; // 0: the server could not be reached
  }
}

let config = { supabase_url: null, supabase_anon_key: null, timezone: null };
let supabase = null;
let session = null; // {email, role, source, token?, expiresAt?}
const expiredListeners = [];

export function getConfig() {
  return config;
}

export function usesSupabase() {
  return supabase !== null;
}

export function currentSession() {
  return session;
}

export function isAdmin() {
  return session?.role === "admin";
}

/** Called with the reason (Spanish) whenever the session ends without the user asking. */
export function onSessionExpired(listener) {
  expiredListeners.push(listener);
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const el = document.createElement("script");
    el.src = src;
    el.onload = resolve;
    el.onerror = () => reject(new Error(`no se pudo cargar ${src}`));
    document.head.append(el);
  });
}

/** Read the public config and, with Supabase configured, set up its client. */
export async function loadConfig() {
  try {
    const res = await fetch("/admin/config.json", { cache: "no-store" });
    if (res.ok) config = { ...config, ...(await res.json()) };
  } catch {
    // Offline or server down: the local form shows, and signing in reports the network error.
  }
  if (config.supabase_url && config.supabase_anon_key && !supabase) {
    await loadScript("/admin/vendor/supabase.js");
    supabase = window.supabase.createClient(config.supabase_url, config.supabase_anon_key, {
      auth: {
        storage: window.sessionStorage,
        persistSession: true,
        autoRefreshToken: true,
        detectSessionInUrl: false,
      },
    });
    supabase.auth.onAuthStateChange((event) => {
      if (event === "SIGNED_OUT" && session) expire(MSG.expired);
    });
  }
  return config;
}

// --- session ---------------------------------------------------------------------------------

function save() {
  if (session && session.source === "local") {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  } else {
    sessionStorage.removeItem(STORAGE_KEY);
  }
}

function clearSession() {
  session = null;
  sessionStorage.removeItem(STORAGE_KEY);
}

/** End the session (e.g. a stream answered 401): back to sign-in with ``reason``. */
export function expireSession(reason) {
  expire(reason || MSG.expired);
}

function expire(reason) {
  const wasSignedIn = session !== null;
  clearSession();
  if (supabase) supabase.auth.signOut({ scope: "local" }).catch(() => {});
  for (const listener of expiredListeners) listener(reason, wasSignedIn);
}

async function bearer() {
  if (supabase) {
    const { data } = await supabase.auth.getSession();
    return data.session?.access_token || null;
  }
  if (!session?.token) return null;
  if (session.expiresAt && Date.now() > session.expiresAt - EXPIRY_MARGIN_MS) {
    return (await renew()) ? session.token : null;
  }
  return session.token;
}

let renewing = null; // the renewal in flight: concurrent requests wait for the same one
let renewRefusal = null; // the server's reason when renewal was refused

/**
 * Trade the refresh cookie for a new access token. Resolves true on success; false when the
 * server refuses (the reason is kept for the sign-in page). One renewal at a time in this tab,
 * and across tabs through the Web Locks API, since every renewal spends the shared cookie.
 */
function renew() {
  if (supabase || !session) return Promise.resolve(false);
  if (!renewing) {
    const before = session.token;
    const work = async () => {
      if (session && session.token !== before) return true; // another request renewed it
      let res;
      try {
        res = await fetch("/api/auth/refresh", {
          method: "POST",
          headers: { Accept: "application/json" },
          credentials: "same-origin",
        });
      } catch {
        throw new ApiError(0, MSG.network);
      }
      if (!res.ok) {
        renewRefusal = await errorDetail(res);
        return false;
      }
      const body = await res.json();
      if (!session) return false;
      session = {
        ...session,
        email: body.email,
        role: body.role,
        token: body.access_token,
        expiresAt: Date.now() + body.expires_in * 1000,
      };
      save();
      return true;
    };
    const locked = navigator.locks?.request
      ? navigator.locks.request("taina-refresh", work)
      : work();
    renewing = locked.finally(() => {
      renewing = null;
    });
  }
  return renewing;
}

/**
 * The session kept from before a reload, checked with the server (GET /api/auth/me).
 * Returns null when there is none; throws ApiError when the server refuses it.
 */
export async function restoreSession() {
  if (supabase) {
    const { data } = await supabase.auth.getSession();
    if (!data.session) return null;
    session = { email: data.session.user?.email || "", role: null, source: "supabase" };
  } else {
    const raw = sessionStorage.getItem(STORAGE_KEY);
    if (!raw) return null;
    try {
      session = JSON.parse(raw);
    } catch {
      clearSession();
      return null;
    }
  }
  const me = await request("/api/auth/me");
  session = { ...session, email: me.email, role: me.role };
  if (me.role === "citizen") {
    await signOut();
    throw new ApiError(403, MSG.noAccess);
  }
  save();
  return session;
}

/** The Spanish message for a failed response: the server's ``detail`` when it has one. */
export async function errorDetail(res) {
  try {
    const body = await res.json();
    if (typeof body?.detail === "string" && body.detail) return body.detail;
  } catch {
    // not JSON
  }
  if (res.status === 401) return MSG.expired;
  if (res.status === 403) return MSG.forbidden;
  if (res.status >= 500) return MSG.server(res.status);
  return MSG.unexpected(res.status);
}

/** Sign in with e-mail and password; resolves to the session or throws ApiError. */
export async function signIn(email, password) {
  clearSession();
  let token;
  let expiresAt = null;
  if (supabase) {
    let result;
    try {
      result = await supabase.auth.signInWithPassword({ email, password });
    } catch {
      throw new ApiError(0, MSG.network);
    }
    const { data, error } = result;
    if (error) {
      if (error.name === "AuthRetryableFetchError" || error.status === 0) {
        throw new ApiError(0, MSG.network);
      }
      if (error.status === 429) {
        throw new ApiError(429, "Demasiados intentos de inicio de sesión. Espere un momento.");
      }
      throw new ApiError(401, MSG.badCredentials);
    }
    token = data.session.access_token;
    session = { email: data.user?.email || email, role: null, source: "supabase" };
  } else {
    let res;
    try {
      res = await fetch("/api/auth/login", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ email, password }),
      });
    } catch {
      throw new ApiError(0, MSG.network);
    }
    if (!res.ok) throw new ApiError(res.status, await errorDetail(res));
    const body = await res.json();
    token = body.access_token;
    expiresAt = body.expires_in ? Date.now() + body.expires_in * 1000 : null;
    session = { email: body.email, role: body.role, source: "local", token, expiresAt };
  }
  // The server decides the role (for Supabase tokens, from app_metadata).
  const me = await request("/api/auth/me", { token });
  session = { ...session, email: me.email, role: me.role };
  if (me.role === "citizen") {
    await signOut();
    throw new ApiError(403, MSG.noAccess);
  }
  save();
  return session;
}

export async function signOut() {
  const wasLocal = session?.source === "local";
  clearSession();
  sessionStorage.removeItem("taina.admin.promptDraft"); // a draft is kept only across expiry
  if (wasLocal) {
    try {
      // Revokes the refresh cookie server-side: this sign-in cannot be renewed any more.
      await fetch("/api/auth/logout", { method: "POST", credentials: "same-origin" });
    } catch {
      // offline: the cookie still dies with its idle limit
    }
  }
  if (supabase) {
    try {
      await supabase.auth.signOut({ scope: "local" });
    } catch {
      // already signed out
    }
  }
}

// --- requests --------------------------------------------------------------------------------

/**
 * Call the API. opts: method, json (a body sent as JSON), form (FormData), signal, raw
 * (return the Response), token (use this token instead of the session's).
 */
export async function request(path, opts = {}, retried = false) {
  const token = opts.token || (await bearer());
  if (!token) {
    const reason = session ? renewRefusal || MSG.expired : MSG.loginRequired;
    renewRefusal = null;
    expire(reason);
    throw new ApiError(401, reason);
  }
  const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  let body;
  if (opts.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.json);
  } else if (opts.form) {
    body = opts.form;
  }
  let res;
  try {
    res = await fetch(path, { method: opts.method || "GET", headers, body, signal: opts.signal });
  } catch (err) {
    if (err?.name === "AbortError") throw err;
    throw new ApiError(0, MSG.network);
  }
  if (res.status === 401) {
    const detail = await errorDetail(res);
    // An access token refused before its announced end (clock skew, server key rotation):
    // renew once and repeat the request before giving up on the session.
    if (!retried && !opts.token && session?.source === "local" && (await renew())) {
      return request(path, opts, true);
    }
    const reason = renewRefusal || detail;
    renewRefusal = null;
    expire(reason);
    throw new ApiError(401, reason);
  }
  if (!res.ok) throw new ApiError(res.status, await errorDetail(res));
  if (opts.raw) return res;
  if (res.status === 204) return null;
  return res.json();
}

export function get(path, params, opts = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") query.set(key, String(value));
  }
  const qs = query.toString();
  return request(qs ? `${path}?${qs}` : path, opts);
}

export function post(path, json, opts = {}) {
  return request(path, { ...opts, method: "POST", json });
}

/**
 * For requests made outside `request` (the live stream) that got a 401: renew the session.
 * Resolves true when a new token is ready; false when the session is over (the caller then
 * ends it with `expireSession(renewalRefusal())`).
 */
export async function renewSession() {
  try {
    return await renew();
  } catch {
    return false;
  }
}

export function renewalRefusal(fallback) {
  const reason = renewRefusal || fallback || MSG.expired;
  renewRefusal = null;
  return reason;
}

/** The Authorization header value for requests made outside `request` (streams, audio). */
export async function authorization() {
  const token = await bearer();
  return token ? `Bearer ${token}` : null;
}
