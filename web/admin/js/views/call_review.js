// Revisión de una llamada: what happened on the call, on top of the call page (calls.js).
//
// mountReview(main, call, {signal, ctx}) loads GET /api/calls/{sid}/review and
//  - lines the transcript up with the recording: each turn gets an «Escuchar» button at its
//    position, clicking a line jumps there, and the line being heard is highlighted;
//  - marks slow replies and shows the knowledge passage each answer came from;
//  - adds «Tiempos por turno» (where each reply's time went) and «Etiquetas y notas».
// The page stays usable if the review cannot be loaded: the plain transcript is already there.

import { get, post, request } from "../api.js";
import { formatDateTime, formatMs, h, message, replace } from "../dom.js";

const STAGE_CLASS = {
  endpoint_ms: "stage-endpoint",
  stt_wait_ms: "stage-stt",
  brain_first_sentence_ms: "stage-brain",
  tts_first_audio_ms: "stage-tts",
  overhead_ms: "stage-other",
};

export function clock(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.floor(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function sourceLabel(p) {
  return p.heading ? `${p.source} › ${p.heading}` : p.source;
}

/** The turn heard at time t: the last one that started at or before it. */
export function turnAt(turns, t) {
  let current = null;
  for (const turn of turns) {
    if (turn.start_s === null || turn.start_s === undefined) continue;
    if (turn.start_s <= t + 0.05) current = turn;
    else break;
  }
  return current;
}

// --- the transcript, decorated ------------------------------------------------------------

function decorateTranscript(list, review, player) {
  const bySeq = new Map(review.turns.map((t) => [t.seq, t]));
  for (const li of list.querySelectorAll("li[data-seq]")) {
    const turn = bySeq.get(Number(li.dataset.seq));
    if (!turn) continue;
    const head = li.querySelector(".turn-head");
    if (turn.slow && head) {
      head.append(h("span", { class: "badge badge-slow",
        title: `Más de ${formatMs(review.slow_turn_ms)} desde que la persona terminó de hablar` },
      "Lenta"));
    }
    const used = turn.passages.filter((p) => p.used);
    if (used.length) {
      li.append(h("p", { class: "turn-source" },
        h("span", { class: "muted" }, "Respondió con: "),
        used.map((p) => h("a", { href: `#/conocimiento?ver=${encodeURIComponent(p.source)}`,
          class: "passage" }, sourceLabel(p)))));
    }
    if (player && turn.start_s !== null && turn.start_s !== undefined && head) {
      li.classList.add("turn-seekable");
      head.append(h("button", { type: "button", class: "button button-small seek",
        "aria-label": `Escuchar desde ${clock(turn.start_s)}`,
        onclick: (event) => { event.stopPropagation(); player.seek(turn.start_s); } },
      `▶ ${clock(turn.start_s)}`));
      li.addEventListener("click", (event) => {
        // A click on the line jumps there; links, buttons and details keep their own job.
        if (event.target.closest("a, button, summary, details, pre")) return;
        if (window.getSelection && String(window.getSelection())) return;
        player.seek(turn.start_s);
      });
    }
  }
}

function syncTranscript(list, review, audio) {
  const turns = review.turns
    .filter((t) => t.start_s !== null && t.start_s !== undefined)
    .sort((a, b) => a.start_s - b.start_s);
  let shown = null;
  const update = () => {
    const turn = turnAt(turns, audio.currentTime);
    const seq = turn ? String(turn.seq) : null;
    if (seq === shown) return;
    shown = seq;
    for (const li of list.querySelectorAll("li.turn-current")) {
      li.classList.remove("turn-current");
      li.removeAttribute("aria-current");
    }
    if (seq === null) return;
    const li = list.querySelector(`li[data-seq="${seq}"]`);
    if (li) {
      li.classList.add("turn-current");
      li.setAttribute("aria-current", "true");
      if (!audio.paused) li.scrollIntoView({ block: "nearest" });
    }
  };
  audio.addEventListener("timeupdate", update);
  audio.addEventListener("seeked", update);
  update();
}

// --- where the time went ------------------------------------------------------------------

function limitMark(percent) {
  const mark = h("span", { class: "stage-limit" });
  mark.style.left = `${percent.toFixed(2)}%`;
  return mark;
}

function timeline(review) {
  const replies = review.turns.filter((t) => t.speaker === "bot" && t.first_byte_ms !== null);
  const section = h("section", { class: "card", "aria-labelledby": "tl-title", id: "tiempos" },
    h("h2", { id: "tl-title" }, "Tiempos por turno"));
  if (!replies.length) {
    section.append(h("p", { class: "empty" }, "No hay tiempos registrados en esta llamada."));
    return section;
  }
  const max = Math.max(...replies.map((t) => t.first_byte_ms), review.slow_turn_ms);
  const slow = review.slow_turns;
  section.append(
    h("p", { class: slow ? "" : "muted" },
      slow
        ? `${slow === 1 ? "1 respuesta lenta" : `${slow} respuestas lentas`} (más de ${formatMs(review.slow_turn_ms)} hasta el primer audio).`
        : `Ninguna respuesta pasó de ${formatMs(review.slow_turn_ms)} hasta el primer audio.`),
    h("ul", { class: "stage-legend", "aria-label": "Etapas" },
      review.stages.map((s) => h("li", {}, h("span", { class: `swatch ${STAGE_CLASS[s.key] || ""}`,
        "aria-hidden": "true" }), s.label))),
  );
  const rows = replies.map((t) => {
    const bar = h("div", { class: "stage-bar", "aria-hidden": "true" },
      review.stages.map((s) => {
        const v = t.stages[s.key];
        if (!v) return null;
        // Sizes through the CSSOM: the page's CSP refuses inline style attributes.
        const seg = h("span", { class: `stage ${STAGE_CLASS[s.key] || ""}`,
          title: `${s.label}: ${formatMs(v)}` });
        seg.style.width = `${((100 * v) / max).toFixed(2)}%`;
        return seg;
      }),
      limitMark((100 * review.slow_turn_ms) / max));
    return h("tr", { class: t.slow ? "row-slow" : null, dataset: { seq: String(t.seq) } },
      h("th", { scope: "row" }, t.seq === 0 ? "Saludo" : `Turno ${t.seq}`,
        t.slow ? h("span", { class: "badge badge-slow" }, "Lenta") : null),
      review.stages.map((s) => h("td", { class: "num" }, formatMs(t.stages[s.key]))),
      h("td", { class: "num total" }, formatMs(t.first_byte_ms)),
      h("td", { class: "bar-cell" }, bar));
  });
  section.append(h("div", { class: "table-wrap", tabindex: "0", role: "region",
    "aria-label": "Tiempos por turno" },
  h("table", { class: "timeline" },
    h("caption", { class: "visually-hidden" }, "Tiempos por turno, en el orden de la llamada"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Respuesta"),
      review.stages.map((s) => h("th", { scope: "col" }, s.label)),
      h("th", { scope: "col" }, "Primer audio"),
      h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Gráfico")))),
    h("tbody", {}, rows))));
  return section;
}

// --- tags and notes -------------------------------------------------------------------------

function tagsAndNotes(sid, review, ctx) {
  const base = `/api/calls/${encodeURIComponent(sid)}`;
  const section = h("section", { class: "card", "aria-labelledby": "qa-title", id: "etiquetas" },
    h("h2", { id: "qa-title" }, "Etiquetas y notas"));
  const status = h("div", { "aria-live": "polite" });
  const tagList = h("ul", { class: "tag-list", "aria-label": "Etiquetas de la llamada" });
  const notesList = h("ol", { class: "note-list", "aria-label": "Notas de la llamada" });
  const say = (kind, text) => replace(status, text ? message(kind, text) : null);

  function renderTags(tags) {
    replace(tagList, tags.length ? tags.map((tag) => h("li", { class: "tag" }, tag,
      h("button", { type: "button", class: "tag-remove", "aria-label": `Quitar la etiqueta «${tag}»`,
        onclick: async () => {
          try {
            const res = await request(`${base}/tags/${encodeURIComponent(tag)}`, { method: "DELETE" });
            renderTags(res.tags);
            say("ok", `Se quitó la etiqueta «${tag}».`);
          } catch (err) {
            if (err?.status !== 401) say("error", err.message);
          }
        } }, "×"))) : h("li", { class: "empty" }, "Sin etiquetas."));
  }

  function noteItem(note) {
    return h("li", { class: "note" },
      h("p", { class: "note-text" }, note.text),
      h("p", { class: "muted note-meta" }, `${note.author || "—"} · ${formatDateTime(note.created_at)}`,
        note.can_delete ? h("button", { type: "button", class: "button button-small button-danger",
          onclick: async (event) => {
            try {
              await request(`${base}/notes/${note.id}`, { method: "DELETE" });
              event.target.closest("li").remove();
              if (!notesList.children.length) renderNotes([]);
              say("ok", "Se borró la nota.");
            } catch (err) {
              if (err?.status !== 401) say("error", err.message);
            }
          } }, "Borrar") : null));
  }

  function renderNotes(notes) {
    replace(notesList, notes.length ? notes.map(noteItem) : h("li", { class: "empty" }, "Sin notas."));
  }

  const tagInput = h("input", { type: "text", id: "qa-tag", name: "tag", maxlength: "40",
    list: "qa-tag-suggestions", autocomplete: "off", placeholder: "p. ej. respuesta incorrecta" });
  const suggestions = h("datalist", { id: "qa-tag-suggestions" },
    ["respuesta incorrecta", "no entendió", "queja", "debió transferir", "revisar conocimiento"]
      .map((t) => h("option", { value: t })));
  const tagForm = h("form", { class: "inline-form", "aria-label": "Añadir etiqueta" },
    h("div", { class: "field" }, h("label", { for: "qa-tag" }, "Nueva etiqueta"), tagInput, suggestions),
    h("button", { type: "submit", class: "button" }, "Añadir etiqueta"));
  tagForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const tag = tagInput.value.trim();
    if (!tag) { say("error", "Escriba una etiqueta."); tagInput.focus(); return; }
    try {
      const res = await post(`${base}/tags`, { tag });
      renderTags(res.tags);
      tagInput.value = "";
      say("ok", `Se añadió la etiqueta «${tag.toLowerCase()}».`);
    } catch (err) {
      if (err?.status !== 401) say("error", err.message);
    }
  });

  const noteInput = h("textarea", { id: "qa-note", name: "note", rows: "3", maxlength: "4000" });
  const noteForm = h("form", { class: "note-form", "aria-label": "Añadir nota" },
    h("div", { class: "field" }, h("label", { for: "qa-note" }, "Nueva nota"), noteInput),
    h("button", { type: "submit", class: "button button-primary" }, "Guardar nota"));
  noteForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = noteInput.value.trim();
    if (!text) { say("error", "Escriba la nota antes de guardarla."); noteInput.focus(); return; }
    try {
      const note = await post(`${base}/notes`, { text });
      if (notesList.querySelector(".empty")) replace(notesList);
      notesList.append(noteItem(note));
      noteInput.value = "";
      say("ok", "Se guardó la nota.");
    } catch (err) {
      if (err?.status !== 401) say("error", err.message);
    }
  });

  get("/api/quality/tags").then((used) => {
    if (!ctx.alive()) return;
    const known = new Set([...suggestions.querySelectorAll("option")].map((o) => o.value));
    for (const { tag } of used) if (!known.has(tag)) suggestions.append(h("option", { value: tag }));
  }).catch(() => {});

  renderTags(review.tags);
  renderNotes(review.notes);
  section.append(status, tagList, tagForm, h("h3", {}, "Notas"), notesList, noteForm);
  return section;
}

// --- the player -----------------------------------------------------------------------------

function whenAudio(main, signal) {
  // calls.js builds the <audio> once the recording has been fetched (with the token).
  return new Promise((resolve) => {
    const found = main.querySelector("audio.recording");
    if (found) { resolve(found); return; }
    const observer = new MutationObserver(() => {
      const audio = main.querySelector("audio.recording");
      if (audio) { observer.disconnect(); resolve(audio); }
    });
    observer.observe(main, { childList: true, subtree: true });
    signal?.addEventListener("abort", () => observer.disconnect());
  });
}

/** Add the review to the call page; returns a cleanup function. */
export function mountReview(main, call, { signal, ctx }) {
  let audio = null;
  const player = call.recording_url ? {
    seek(t) {
      if (!audio) return;
      audio.currentTime = t;
      audio.play().catch(() => {}); // autoplay may be refused: the position is set anyway
    },
  } : null;

  get(`/api/calls/${encodeURIComponent(call.call_sid)}/review`, null, { signal }).then((review) => {
    if (!ctx.alive()) return;
    const list = main.querySelector("ol.transcript");
    const transcriptCard = list ? list.closest("section") : null;
    if (list) decorateTranscript(list, review, player);
    const tl = timeline(review);
    if (transcriptCard) transcriptCard.after(tl);
    else main.append(tl);
    main.append(tagsAndNotes(call.call_sid, review, ctx)); // last: after the call's bookings
    if (player && list) {
      whenAudio(main, signal).then((el) => {
        if (!ctx.alive()) return;
        audio = el;
        el.closest("section")?.append(h("p", { class: "muted hint" },
          "Haga clic en una línea de la transcripción para escucharla; la línea que suena se resalta."));
        syncTranscript(list, review, el);
      });
    }
  }).catch((err) => {
    if (err?.name === "AbortError" || err?.status === 401 || !ctx.alive()) return;
    main.append(message("warn", `No se pudo cargar la revisión de la llamada: ${err.message}`));
  });
}

/** The calls list: each row gets its tags (one request for the page). */
export function showCallTags(container, sids, ctx) {
  if (!sids.length) return;
  const params = new URLSearchParams();
  for (const sid of sids) params.append("sid", sid);
  request(`/api/quality/call-tags?${params}`).then((tags) => {
    if (!ctx.alive()) return;
    for (const row of container.querySelectorAll("tr[data-call-sid]")) {
      const mine = tags[row.dataset.callSid];
      const cell = row.querySelector("td");
      if (!mine?.length || !cell) continue;
      cell.append(h("ul", { class: "tag-list tag-list-small", "aria-label": "Etiquetas" },
        mine.map((tag) => h("li", { class: "tag" }, tag))));
    }
  }).catch(() => {}); // tags are a hint: the list stands without them
}
