// Calidad: the questions the assistant misunderstood or could not answer (grouped, with
// counts and links to the calls), the tags staff put on calls, and — for the knowledge page —
// «Probar una pregunta»: what the assistant would answer, and from which passage.

import { get, post } from "../api.js";
import { formatDateTime, h, message, replace, table } from "../dom.js";

const PERIODS = { 7: "Últimos 7 días", 30: "Últimos 30 días", 90: "Últimos 90 días" };

function callLinks(calls, total) {
  return h("ul", { class: "call-links" },
    calls.map((c, i) => h("li", {}, h("a", { href: `#/llamadas/${encodeURIComponent(c.call_sid)}`,
      "aria-label": `Llamada ${i + 1}, del ${formatDateTime(c.started_at)}` }, `Llamada ${i + 1}`))),
    total > calls.length ? h("li", { class: "muted" }, `y ${total - calls.length} más`) : null);
}

export async function renderQuality(main, { params, ctx }) {
  const days = PERIODS[params.get("dias")] ? Number(params.get("dias")) : 30;
  const period = h("select", { id: "q-dias", name: "dias" },
    Object.entries(PERIODS).map(([value, text]) => h("option", { value, selected: Number(value) === days }, text)));
  period.addEventListener("change", () => ctx.navigate("/calidad", { dias: period.value }));
  const body = h("div", { "aria-live": "polite" }, h("p", { class: "loading" }, "Cargando…"));
  replace(main, h("h1", {}, "Calidad de las respuestas"),
    h("p", { class: "muted" },
      "Lo que dijeron quienes llamaron y el asistente no entendió o no pudo responder, agrupado " +
      "aunque se haya dicho de formas distintas. Sirve para saber qué añadir a la base de " +
      "conocimiento; pruebe el resultado con «Probar una pregunta» en "
    , h("a", { href: "#/conocimiento" }, "Base de conocimiento"), "."),
    h("div", { class: "filters" }, h("div", { class: "field" }, h("label", { for: "q-dias" }, "Periodo"), period)),
    body);

  const report = await get("/api/quality/report", { days });
  if (!ctx.alive()) return;
  const kpi = (name, value) => h("div", {}, h("dt", {}, name), h("dd", {}, String(value)));
  const rows = report.groups.map((g) => h("tr", {},
    h("th", { scope: "row" }, `«${g.text}»`),
    h("td", {}, h("span", { class: `badge kind-${g.kind}` }, g.kind_label)),
    h("td", { class: "num" }, String(g.count)),
    h("td", {}, callLinks(g.calls, g.call_count))));
  const tagRows = report.tags.map((t) => h("tr", {},
    h("th", { scope: "row" }, t.tag),
    h("td", { class: "num" }, String(t.count)),
    h("td", {}, callLinks(report.tagged_calls[t.tag] || [], t.count))));
  replace(body,
    h("dl", { class: "quality-kpis" },
      kpi("Preguntas y respuestas de quienes llamaron", report.caller_turns),
      kpi("No entendidas", report.misunderstood),
      kpi("Sin respuesta", report.unanswered)),
    h("section", { class: "card", "aria-labelledby": "q-groups" },
      h("h2", { id: "q-groups" }, "Preguntas no entendidas o sin respuesta"),
      table("Tabla de preguntas no entendidas o sin respuesta", ["Lo que dijo", "Tipo", "Veces", "Llamadas"], rows,
        { empty: "Ninguna en este periodo: el asistente entendió y respondió todo." })),
    h("section", { class: "card", "aria-labelledby": "q-tags" },
      h("h2", { id: "q-tags" }, "Etiquetas puestas por el personal"),
      table("Etiquetas", ["Etiqueta", "Llamadas", "Ver"], tagRows,
        { empty: "Nadie ha etiquetado llamadas en este periodo. Las etiquetas se ponen en la página de cada llamada." })),
  );
}

// --- «Probar una pregunta» (shown on the knowledge page) -----------------------------------

function passageBox(p) {
  return h("div", { class: `try-passage${p.used ? " try-passage-used" : ""}` },
    h("strong", {}, p.used ? "Pasaje usado: " : "Consultado: "),
    h("a", { href: `#/conocimiento?ver=${encodeURIComponent(p.source)}` }, h("code", {}, p.source)),
    p.heading ? ` › ${p.heading}` : "",
    p.text ? h("p", {}, p.text) : null);
}

export function tryQuestionCard() {
  const input = h("input", { type: "text", id: "try-q", name: "question", maxlength: "500",
    placeholder: "p. ej. ¿Qué necesito para renovar el pasaporte?" });
  const button = h("button", { type: "submit", class: "button button-primary" }, "Probar");
  const result = h("div", { id: "try-result", "aria-live": "polite" });
  const form = h("form", { class: "try-form", "aria-labelledby": "try-title" },
    h("label", { for: "try-q" }, "Pregunta, como la diría quien llama"),
    h("div", { class: "row" }, input, button));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = input.value.trim();
    if (!question) {
      replace(result, message("error", "Escriba una pregunta."));
      input.focus();
      return;
    }
    button.disabled = true;
    replace(result, h("p", { class: "loading" }, "Preguntando al asistente…"));
    try {
      const res = await post("/api/quality/try", { question });
      const used = res.passages.filter((p) => p.used);
      const others = res.passages.filter((p) => !p.used);
      replace(result,
        h("p", { class: "muted" }, "El asistente respondería:"),
        h("blockquote", { class: "try-answer" }, res.answer || "(no diría nada)"),
        used.length ? used.map(passageBox)
          : message("warn", "No respondió con ningún pasaje de la base de conocimiento."),
        others.length ? h("details", {}, h("summary", {}, `Otros pasajes consultados (${others.length})`),
          others.map(passageBox)) : null);
    } catch (err) {
      if (err?.status !== 401) replace(result, message("error", err.message));
    } finally {
      button.disabled = false;
    }
  });
  return h("section", { class: "card", "aria-labelledby": "try-title", id: "probar" },
    h("h2", { id: "try-title" }, "Probar una pregunta"),
    h("p", { class: "muted" }, "Vea qué respondería el asistente en una llamada y de qué pasaje lo tomaría. " +
      "Usa el índice publicado: después de cambiar documentos, reindexe y vuelva a probar."),
    form, result);
}
