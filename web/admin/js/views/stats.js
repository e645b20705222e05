// Estadísticas: calls per day, latency, booking and transfer rates, top questions.

import { get } from "../api.js";
import { barChart, hBarChart, ring } from "../charts.js";
import { formatDay, formatMs, formatPercent, h, replace, table } from "../dom.js";

const PERIODS = { 7: "Últimos 7 días", 30: "Últimos 30 días", 90: "Últimos 90 días" };
const LATENCY_TARGET_MS = 1000;

function kpi(name, value, id) {
  return h("div", { class: "kpi", id }, h("span", { class: "kpi-name" }, name), h("span", { class: "kpi-value" }, value));
}

export async function renderStats(main, { params, ctx }) {
  const days = PERIODS[params.get("dias")] ? Number(params.get("dias")) : 30;
  const period = h(
    "select",
    { id: "stats-days", name: "dias" },
    Object.entries(PERIODS).map(([value, text]) => h("option", { value, selected: Number(value) === days }, text)),
  );
  period.addEventListener("change", () => ctx.navigate("/estadisticas", { dias: period.value }));
  const body = h("div", {}, h("p", { class: "loading" }, "Cargando…"));
  replace(
    main,
    h("h1", {}, "Estadísticas"),
    h("div", { class: "field field-inline" }, h("label", { for: "stats-days" }, "Periodo"), period),
    body,
  );

  const a = await get("/api/analytics", { days });
  if (!ctx.alive()) return;

  const perDay = a.calls_per_day.map((d) => ({ label: formatDay(d.day), value: d.calls }));
  const busiest = a.calls_per_day.reduce((best, d) => (d.calls > (best?.calls ?? -1) ? d : best), null);
  const questions = a.top_questions;
  const maxQ = Math.max(1, ...questions.map((q) => q.count));

  replace(
    body,
    h("section", { class: "kpis", "aria-label": "Indicadores" },
      kpi("Llamadas", String(a.calls_total), "kpi-calls"),
      kpi("Latencia mediana", formatMs(a.median_turn_latency_ms), "kpi-median"),
      kpi("Latencia p95", formatMs(a.p95_turn_latency_ms), "kpi-p95"),
      kpi("Tasa de citas", formatPercent(a.booking_rate), "kpi-booking"),
      kpi("Transferidas a un agente", formatPercent(a.transfer_rate), "kpi-transfer"),
      kpi("No entendidas", formatPercent(a.not_understood_rate ?? 0), "kpi-unclear")),
    h("section", { class: "card", "aria-labelledby": "c-day" },
      h("h2", { id: "c-day" }, "Llamadas por día"),
      barChart(perDay, {
        title: "Llamadas por día",
        desc: `${a.calls_total} llamadas en ${a.days} días` +
          (busiest && busiest.calls ? `; el día con más fue ${formatDay(busiest.day)} con ${busiest.calls}.` : "."),
        format: (v) => String(Math.round(v)),
        integer: true,
      }),
      h("details", {}, h("summary", {}, "Ver los datos"),
        table("Llamadas por día", ["Día", "Llamadas"],
          a.calls_per_day.map((d) => h("tr", {}, h("td", {}, formatDay(d.day)), h("td", { class: "num" }, String(d.calls))))))),
    h("div", { class: "grid-2" },
      h("section", { class: "card", "aria-labelledby": "c-lat" },
        h("h2", { id: "c-lat" }, "Latencia de respuesta"),
        h("p", { class: "muted" }, "Desde que la persona termina de hablar hasta que oye la respuesta."),
        a.median_turn_latency_ms == null
          ? h("p", { class: "empty" }, "Sin respuestas medidas en el periodo.")
          : hBarChart(
              [
                { label: "Mediana", value: a.median_turn_latency_ms },
                { label: "Percentil 95", value: a.p95_turn_latency_ms, className: "bar bar-alt" },
              ],
              {
                title: "Latencia de respuesta",
                desc: `Mediana ${formatMs(a.median_turn_latency_ms)}, percentil 95 ${formatMs(a.p95_turn_latency_ms)}; objetivo ${formatMs(LATENCY_TARGET_MS)}.`,
                format: formatMs,
                reference: LATENCY_TARGET_MS,
                referenceLabel: "objetivo 1 s",
              },
            )),
      h("section", { class: "card", "aria-labelledby": "c-rate" },
        h("h2", { id: "c-rate" }, "Resultado de las llamadas"),
        h("div", { class: "rings" },
          h("figure", {}, ring(a.booking_rate, {
            title: "Tasa de citas",
            desc: `En ${formatPercent(a.booking_rate)} de las llamadas se reservó una cita.`,
            text: formatPercent(a.booking_rate),
          }), h("figcaption", {}, "Con cita reservada")),
          h("figure", {}, ring(a.transfer_rate, {
            title: "Tasa de transferencias",
            desc: `${formatPercent(a.transfer_rate)} de las llamadas pasaron a un agente.`,
            text: formatPercent(a.transfer_rate),
          }), h("figcaption", {}, "Transferidas a un agente")),
          h("figure", { class: "ring-bad" }, ring(a.not_understood_rate ?? 0, {
            title: "Llamadas con algo no entendido",
            desc: `En ${formatPercent(a.not_understood_rate ?? 0)} de las llamadas (${a.not_understood_calls ?? 0}) ` +
              "el asistente dijo al menos una vez que no entendió.",
            text: formatPercent(a.not_understood_rate ?? 0),
          }), h("figcaption", {}, "Con algo no entendido"))))),
    h("section", { class: "card", "aria-labelledby": "c-q" },
      h("h2", { id: "c-q" }, "Preguntas más frecuentes"),
      h("p", { class: "muted" },
        "Lo primero que dijo cada persona al llamar, agrupado: los saludos, las tildes y el orden " +
        "de las palabras no separan una misma pregunta."),
      questions.length
        ? h("ol", { class: "top-questions" },
            questions.map((q) => {
              const bar = h("span", { class: "qbar", "aria-hidden": "true" });
              bar.style.width = `${(q.count / maxQ) * 100}%`;
              return h("li", {},
                h("span", { class: "qtext" }, q.text),
                h("span", { class: "qcount" }, q.count === 1 ? "1 vez" : `${q.count} veces`),
                h("span", { class: "qtrack" }, bar));
            }))
        : h("p", { class: "empty" }, "Sin preguntas en el periodo.")),
  );
}
