// Small DOM and formatting helpers. Everything a person reads is built with text nodes
// (never innerHTML), so transcripts and document names cannot inject markup.

/**
 * Create an element: h("a", {href: "#/x", class: "link"}, "texto", otherNode).
 * Attributes starting with "on" become listeners; null/false attributes are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's content. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** A message box; kind is "error", "ok", "info" or "warn". Errors are announced at once. */
export function message(kind, text) {
  return h(
    "p",
    { class: `message message-${kind}`, role: kind === "error" ? "alert" : "status" },
    text,
  );
}

/** A table inside a horizontally scrolling wrapper (narrow screens). */
export function table(caption, headers, rows, { empty = "No hay datos." } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
    h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col" }, name)))),
      h("tbody", {}, rows),
    ),
  );
}

// --- forms ---------------------------------------------------------------------------------

/** A <select> whose first option ("Todos") means no filter. */
export function select(name, id, options, value) {
  return h(
    "select",
    { name, id },
    h("option", { value: "" }, "Todos"),
    Object.entries(options).map(([key, text]) =>
      h("option", { value: key, selected: key === value }, text),
    ),
  );
}

/** A labelled form control. */
export function field(id, text, control) {
  return h("div", { class: "field" }, h("label", { for: id }, text), control);
}

/** "Anterior / 1–25 de 80 / Siguiente"; go(offset) loads another page. */
export function pager(total, offset, limit, go) {
  if (total <= limit && offset === 0) return null;
  const first = total ? offset + 1 : 0;
  const last = Math.min(offset + limit, total);
  return h(
    "nav",
    { class: "pager", "aria-label": "Páginas" },
    h("button", { type: "button", class: "button", disabled: offset === 0,
      onclick: () => go(Math.max(0, offset - limit)) }, "Anterior"),
    h("span", {}, `${first}–${last} de ${total}`),
    h("button", { type: "button", class: "button", disabled: last >= total,
      onclick: () => go(offset + limit) }, "Siguiente"),
  );
}


// --- time ----------------------------------------------------------------------------------

let officeTimeZone; // undefined: the browser's own

export function setTimeZone(tz) {
  try {
    if (tz) new Intl.DateTimeFormat("es-DO", { timeZone: tz });
    officeTimeZone = tz || undefined;
  } catch {
    officeTimeZone = undefined;
  }
}

export function formatDateTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "—";
  return new Intl.DateTimeFormat("es-DO", {
    dateStyle: "medium",
    timeStyle: "short",
    timeZone: officeTimeZone,
  }).format(d);
}

export function formatTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return new Intl.DateTimeFormat("es-DO", {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    timeZone: officeTimeZone,
  }).format(d);
}

export function formatDay(isoDate) {
  // "2025-03-01" is a calendar day: format it without shifting through a time zone.
  const [y, m, d] = isoDate.split("-").map(Number);
  return new Intl.DateTimeFormat("es-DO", { day: "numeric", month: "short", timeZone: "UTC" })
    .format(new Date(Date.UTC(y, m - 1, d)));
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(seconds);
  const m = Math.floor(s / 60);
  return m ? `${m} min ${String(s % 60).padStart(2, "0")} s` : `${s} s`;
}

export function formatMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  return ms >= 1000 ? `${(ms / 1000).toFixed(2).replace(".", ",")} s` : `${Math.round(ms)} ms`;
}

export function formatPercent(rate) {
  return `${(rate * 100).toFixed(1).replace(".", ",")} %`;
}

/** "00112345678" → "001-1234567-8"; masked values ("*******5678") are shown as they come. */
export function formatCedula(value) {
  if (!value) return "—";
  return /^\d{11}$/.test(value) ? `${value.slice(0, 3)}-${value.slice(3, 10)}-${value.slice(10)}` : value;
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  return `${(n / 1024).toFixed(1).replace(".", ",")} KB`;
}

// --- labels --------------------------------------------------------------------------------

export const OUTCOMES = {
  booked: "Cita reservada",
  completed: "Atendida",
  transferred: "Transferida a un agente",
  abandoned: "Colgó antes de terminar",
  interrupted: "Interrumpida",
};

export const INGRESSES = {
  twilio: "Teléfono",
  web: "Web",
  livekit: "LiveKit",
};

export const END_REASONS = {
  "caller-hangup": "La persona colgó",
  "bot-hangup": "El asistente terminó",
  transfer: "Transferida",
  disconnected: "Conexión perdida",
  "protocol-error": "Error de protocolo",
  "refused-start": "Conexión rechazada",
  timeout: "Tiempo agotado",
  error: "Error del servidor",
  "server-lost": "Se cortó (el servidor se detuvo)",
  "max-duration": "Duración máxima alcanzada",
  "server-shutdown": "El servidor se estaba reiniciando",
};

/** Lower case without accents, one character for one: offsets carry over to the original. */
export function fold(text) {
  return Array.from(String(text), (ch) => ch.normalize("NFD").charAt(0).toLowerCase()).join("");
}

/** ``text`` with every accent-insensitive occurrence of ``needle`` inside <mark>. */
export function highlight(text, needle) {
  const parts = [];
  const haystack = fold(text);
  const want = fold(needle.trim());
  if (!want) return [text];
  let from = 0;
  for (let at = haystack.indexOf(want); at >= 0; at = haystack.indexOf(want, from)) {
    if (at > from) parts.push(text.slice(from, at));
    parts.push(h("mark", {}, text.slice(at, at + want.length)));
    from = at + want.length;
  }
  if (from < text.length) parts.push(text.slice(from));
  return parts;
}

export const BOOKING_STATUSES = {
  confirmed: "Confirmada",
  cancelled: "Cancelada",
  rescheduled: "Reprogramada",
};

export const ROLES = { admin: "Administrador", agent: "Agente", citizen: "Ciudadano" };

export const TIMINGS = {
  first_byte_ms: "Respuesta (primer audio)",
  endpoint_ms: "Detección de fin de turno",
  stt_ms: "Transcripción",
  stt_wait_ms: "Espera de la transcripción",
  brain_first_text_ms: "Asistente (primer texto)",
  tts_first_audio_ms: "Voz (primer audio)",
};

export function label(map, value) {
  if (value === null || value === undefined || value === "") return "—";
  return map[value] || value;
}

/** Values of a form as a plain object of trimmed, non-empty strings. */
export function formValues(form) {
  const out = {};
  for (const [key, value] of new FormData(form).entries()) {
    if (typeof value === "string" && value.trim()) out[key] = value.trim();
  }
  return out;
}
