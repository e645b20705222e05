// One conversation turn as a chat bubble; shared by a call's page and the live view.

import { formatMs, formatTime, h, TIMINGS } from "./dom.js";

const SPEAKERS = { caller: "Persona que llama", bot: "Asistente" };

function timingRows(timings) {
  const rows = [];
  for (const [key, value] of Object.entries(timings || {})) {
    if (typeof value !== "number" || key === "speculative") continue;
    const [base, provider] = key.split(".");
    if (!(base in TIMINGS)) continue;
    const name = provider ? `${TIMINGS[base]} (${provider})` : TIMINGS[base];
    rows.push(h("div", { class: "timing" }, h("dt", {}, name), h("dd", {}, formatMs(value))));
  }
  return rows;
}

function toolList(tools) {
  if (!tools?.length) return null;
  return h(
    "details",
    { class: "tools" },
    h("summary", {}, `Herramientas usadas (${tools.length})`),
    h(
      "ul",
      {},
      tools.map((tool) =>
        h(
          "li",
          { class: "tool" },
          h("code", { class: "tool-name" }, tool.name || "herramienta"),
          h("div", { class: "tool-part" }, h("span", { class: "muted" }, "Datos: "),
            h("pre", {}, JSON.stringify(tool.arguments ?? {}, null, 2))),
          h("div", { class: "tool-part" }, h("span", { class: "muted" }, "Resultado: "),
            h("pre", {}, typeof tool.result === "string"
              ? tool.result : JSON.stringify(tool.result ?? null, null, 2))),
        ),
      ),
    ),
  );
}

/** A turn from the REST API ({timings}) or a live event ({latency_ms}). */
export function turnItem(turn) {
  const bot = turn.speaker === "bot";
  const timings = turn.timings || (turn.latency_ms != null ? { first_byte_ms: turn.latency_ms } : {});
  const latency = timings.first_byte_ms;
  const head = h(
    "div",
    { class: "turn-head" },
    h("span", { class: "speaker" }, SPEAKERS[turn.speaker] || turn.speaker),
    turn.ended_at ? h("time", { datetime: turn.ended_at, class: "muted" }, formatTime(turn.ended_at)) : null,
    bot && latency != null ? h("span", { class: "badge badge-latency", title: "Desde que la persona terminó de hablar hasta el primer audio de la respuesta" }, `Latencia ${formatMs(latency)}`) : null,
    turn.interrupted ? h("span", { class: "badge badge-interrupted" }, "interrumpido") : null,
  );

  let body;
  if (bot && turn.interrupted) {
    body = [
      h("p", { class: "turn-text" }, h("span", { class: "muted" }, "Lo que escuchó: "),
        turn.heard_text ? `«${turn.heard_text}»` : "(nada: lo interrumpió de inmediato)"),
      h("p", { class: "turn-text turn-unsaid" }, h("span", { class: "muted" }, "Lo que iba a decir: "),
        turn.text),
    ];
  } else {
    body = h("p", { class: "turn-text" }, turn.text || (turn.dtmf ? "" : "(sin texto)"));
  }
  const rows = timingRows(timings);
  return h(
    "li",
    { class: `turn turn-${bot ? "bot" : "caller"}`, dataset: { seq: String(turn.seq) } },
    head,
    body,
    turn.dtmf ? h("p", { class: "turn-dtmf" }, `Marcó en el teclado: ${turn.dtmf}`) : null,
    rows.length > 1
      ? h("details", { class: "timings" }, h("summary", {}, "Tiempos por etapa"), h("dl", {}, rows))
      : null,
    toolList(turn.tools),
  );
}

/** Insert a turn in seq order; a turn already shown (same seq) is left as is. */
export function addTurn(list, turn) {
  const seq = Number(turn.seq);
  if (list.querySelector(`li[data-seq="${seq}"]`)) return false;
  const item = turnItem(turn);
  const after = [...list.children].find((li) => Number(li.dataset.seq) > seq);
  list.insertBefore(item, after || null);
  return true;
}
