// Llamadas: the list with filters and transcript search, and one call's page.

import { get, request } from "../api.js";
import {
  BOOKING_STATUSES,
  END_REASONS,
  field,
  formatCedula,
  formatDateTime,
  formatDuration,
  formatMs,
  formValues,
  h,
  highlight,
  INGRESSES,
  label,
  message,
  OUTCOMES,
  pager,
  replace,
  select,
  table,
} from "../dom.js";
import { csvButton } from "../download.js";
import { turnItem } from "../transcript.js";
import { mountReview, showCallTags } from "./call_review.js";

const PAGE_SIZE = 25;

function nextDay(isoDate) {
  const [y, m, d] = isoDate.split("-").map(Number);
  const next = new Date(Date.UTC(y, m - 1, d + 1));
  return next.toISOString().slice(0, 10);
}


export async function renderCalls(main, { params, ctx }) {
  const p = Object.fromEntries(params.entries());
  const page = Math.max(1, Number(p.pagina) || 1);
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filtrar llamadas" },
    field("f-desde", "Desde", h("input", { type: "date", id: "f-desde", name: "desde", value: p.desde })),
    field("f-hasta", "Hasta", h("input", { type: "date", id: "f-hasta", name: "hasta", value: p.hasta })),
    field("f-resultado", "Resultado", select("resultado", "f-resultado", OUTCOMES, p.resultado)),
    field("f-canal", "Canal", select("canal", "f-canal", INGRESSES, p.canal)),
    field("f-telefono", "Teléfono", h("input", { type: "search", id: "f-telefono", name: "telefono",
      value: p.telefono, inputmode: "tel", placeholder: "+1809…" })),
    field("f-q", "Buscar en transcripciones", h("input", { type: "search", id: "f-q", name: "q",
      value: p.q, placeholder: "Palabras dichas en la llamada" })),
    h("div", { class: "filter-actions" },
      h("button", { type: "submit", class: "button button-primary" }, "Filtrar"),
      h("button", { type: "button", class: "button", onclick: () => ctx.navigate("/llamadas") },
        "Limpiar")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.navigate("/llamadas", formValues(form));
  });
  const results = h("div", { id: "calls-results", "aria-live": "polite" },
    h("p", { class: "loading" }, "Cargando…"));
  replace(main, h("h1", {}, "Llamadas"), form, results);

  if (p.desde && p.hasta && p.desde > p.hasta) {
    replace(results, message("error", "La fecha «Desde» no puede ser posterior a «Hasta»."));
    return;
  }
  const filters = {
    since: p.desde ? `${p.desde}T00:00:00` : null,
    until: p.hasta ? `${nextDay(p.hasta)}T00:00:00` : null,
    outcome: p.resultado,
    ingress: p.canal,
    phone: p.telefono,
    q: p.q,
  };
  const data = await get("/api/calls", {
    ...filters,
    limit: PAGE_SIZE,
    offset: (page - 1) * PAGE_SIZE,
  });
  if (!ctx.alive()) return;
  const matchRow = (c) =>
    c.match
      ? h("tr", { class: "match-row", dataset: { matchFor: c.call_sid } },
          h("td", { colspan: "7" },
            h("span", { class: "match-who" }, c.match.speaker === "bot" ? "Asistente: " : "Persona: "),
            h("span", { class: "match-text" }, highlight(c.match.text, p.q || ""))))
      : null;
  const rows = data.items.flatMap((c) => [
    h(
      "tr",
      { dataset: { callSid: c.call_sid }, class: c.match ? "has-match" : null },
      h("td", {}, h("a", { href: `#/llamadas/${encodeURIComponent(c.call_sid)}`,
        "aria-label": `Abrir la llamada del ${formatDateTime(c.started_at)}` },
        formatDateTime(c.started_at))),
      h("td", {}, label(INGRESSES, c.ingress)),
      h("td", {}, c.caller_number || "—"),
      h("td", {}, c.ended_at ? formatDuration(c.duration_s) : h("span", { class: "badge badge-live" }, "En curso")),
      h("td", { class: "num" }, String(c.turn_count)),
      h("td", {}, label(OUTCOMES, c.outcome)),
      h("td", {}, c.ended_at ? label(END_REASONS, c.end_reason) : "—"),
    ),
    matchRow(c),
  ]).filter(Boolean);
  const filtered = Object.keys(p).some((k) => k !== "pagina");
  replace(
    results,
    h("p", { class: "muted" }, data.total === 1 ? "1 llamada" : `${data.total} llamadas`),
    csvButton("/api/calls/export.csv", filters, "llamadas.csv", "las llamadas"),
    table("Llamadas", ["Fecha y hora", "Canal", "Número", "Duración", "Turnos", "Resultado", "Fin"],
      rows, { empty: filtered ? "Ninguna llamada coincide con los filtros." : "Todavía no hay llamadas." }),
    pager(data.total, (page - 1) * PAGE_SIZE, PAGE_SIZE, (offset) =>
      ctx.navigate("/llamadas", { ...p, pagina: offset / PAGE_SIZE + 1 })),
  );
  showCallTags(results, data.items.map((c) => c.call_sid), ctx); // staff tags (call_review.js)
}

function summaryList(call) {
  const item = (name, value) => h("div", {}, h("dt", {}, name), h("dd", {}, value));
  return h(
    "dl",
    { class: "summary" },
    item("Canal", label(INGRESSES, call.ingress)),
    item("Número que llamó", call.caller_number || "—"),
    item("Número llamado", call.called_number || "—"),
    item("Inicio", formatDateTime(call.started_at)),
    item("Fin", call.ended_at ? formatDateTime(call.ended_at) : "En curso"),
    item("Duración", formatDuration(call.duration_s)),
    item("Resultado", label(OUTCOMES, call.outcome)),
    item("Motivo de fin", call.ended_at ? label(END_REASONS, call.end_reason) : "—"),
    item("Latencia del saludo", formatMs(call.greeting_ms)),
  );
}

function latencySummary(turns) {
  const values = turns
    .filter((t) => t.speaker === "bot" && t.seq > 0 && typeof t.timings?.first_byte_ms === "number")
    .map((t) => t.timings.first_byte_ms)
    .sort((a, b) => a - b);
  if (!values.length) return null;
  const median = values[Math.floor((values.length - 1) / 2)];
  return h("p", { class: "muted" },
    `Latencia de las respuestas: mediana ${formatMs(median)}, máxima ${formatMs(values.at(-1))}.`);
}

async function audioPlayer(url, signal) {
  const audio = h("audio", { controls: true, preload: "metadata", class: "recording" });
  let objectUrl = null;
  const resolved = new URL(url, location.href);
  if (resolved.origin === location.origin) {
    // Our own API needs the Authorization header, which an <audio> element cannot send.
    const res = await request(resolved.pathname + resolved.search, { raw: true, signal });
    objectUrl = URL.createObjectURL(await res.blob());
    audio.src = objectUrl;
  } else {
    audio.src = resolved.href; // e.g. a signed Supabase Storage URL
  }
  return { audio, release: () => objectUrl && URL.revokeObjectURL(objectUrl) };
}

export async function renderCallDetail(main, { match, ctx }) {
  const sid = match[1];
  const controller = new AbortController();
  const call = await request(`/api/calls/${encodeURIComponent(sid)}`, { signal: controller.signal });
  if (!ctx.alive()) return null;

  const recording = h("section", { class: "card", "aria-labelledby": "rec-title" },
    h("h2", { id: "rec-title" }, "Grabación"));
  let release = null;
  if (call.recording_url) {
    recording.append(h("p", { class: "loading" }, "Cargando audio…"));
    audioPlayer(call.recording_url, controller.signal)
      .then(({ audio, release: free }) => {
        release = free;
        replace(recording, h("h2", { id: "rec-title" }, "Grabación"), audio);
      })
      .catch((err) => {
        if (err?.name === "AbortError") return;
        replace(recording, h("h2", { id: "rec-title" }, "Grabación"),
          message("error", `No se pudo cargar la grabación: ${err.message}`));
      });
  } else {
    recording.append(h("p", { class: "muted" }, "Esta llamada no se grabó."));
  }

  const transcript = h("ol", { class: "transcript", "aria-label": "Transcripción" },
    call.turns.map(turnItem));
  const bookingRows = call.bookings.map((b) =>
    h("tr", {},
      h("td", {}, h("code", {}, b.code)),
      h("td", {}, b.service_name),
      h("td", {}, b.office_name),
      h("td", {}, formatDateTime(b.starts_at)),
      h("td", {}, b.citizen_name),
      h("td", {}, formatCedula(b.cedula)),
      h("td", {}, label(BOOKING_STATUSES, b.status))));

  replace(
    main,
    h("p", {}, h("a", { href: "#/llamadas", class: "back" }, "← Volver a Llamadas")),
    h("h1", {}, "Llamada ", h("span", { class: "sid" }, call.call_sid)),
    call.ended_at ? null : message("info", "Esta llamada está en curso."),
    call.ended_at ? null : h("p", {}, h("a", { href: "#/en-curso" }, "Seguirla en vivo")),
    h("section", { class: "card", "aria-labelledby": "sum-title" },
      h("h2", { id: "sum-title" }, "Resumen"), summaryList(call)),
    recording,
    h("section", { class: "card", "aria-labelledby": "tr-title" },
      h("h2", { id: "tr-title" }, "Transcripción"),
      latencySummary(call.turns),
      call.turns.length ? transcript : h("p", { class: "empty" }, "La llamada no tiene turnos registrados.")),
    h("section", { class: "card", "aria-labelledby": "bk-title" },
      h("h2", { id: "bk-title" }, "Citas reservadas en esta llamada"),
      table("Citas de la llamada", ["Código", "Trámite", "Oficina", "Fecha y hora", "Nombre", "Cédula", "Estado"],
        bookingRows, { empty: "No se reservaron citas en esta llamada." })),
  );
  mountReview(main, call, { signal: controller.signal, ctx }); // player sync, timeline, tags
  return () => {
    controller.abort();
    if (release) release();
  };
}
