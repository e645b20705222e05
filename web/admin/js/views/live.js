// En curso: calls in progress, with transcript lines appearing as they are spoken.
//
// Preferred source: GET /api/live (Server-Sent Events relayed from every server process).
// It is read with fetch() rather than EventSource so the token travels in the Authorization
// header, not in the URL (where proxies log it). When the server has no live stream (404/503)
// the page polls the REST API every 2 s instead, so it works either way.

import {
  authorization,
  errorDetail,
  expireSession,
  get,
  MSG,
  renewalRefusal,
  renewSession,
} from "../api.js";
import { formatTime, h, INGRESSES, label, message, replace } from "../dom.js";
import { addTurn } from "../transcript.js";

const POLL_MS = 2000;
const WINDOW_MS = 4 * 3600 * 1000; // a call "in progress" for longer than this is a dead one
const KEEP_ENDED_MS = 5 * 60 * 1000;
const MAX_ENDED = 10;

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });

export async function renderLive(main) {
  const controller = new AbortController();
  const { signal } = controller;
  const status = h("div", { id: "live-status" });
  const board = h("div", { class: "live-board", id: "live-calls" });
  const empty = h("p", { class: "empty", id: "live-empty" }, "No hay llamadas en curso.");
  replace(
    main,
    h("h1", {}, "En curso"),
    h("p", { class: "muted" }, "Las llamadas aparecen al comenzar y sus frases a medida que se dicen."),
    status,
    empty,
    board,
  );

  const cards = new Map(); // call_sid → {card, list, badge, active, removeTimer}

  function setStatus(kind, text) {
    replace(status, message(kind, text));
  }

  function refreshEmpty() {
    empty.hidden = [...cards.values()].some((c) => c.active);
  }

  function ensureCard(call) {
    let entry = cards.get(call.call_sid);
    if (entry) return entry;
    const badge = h("span", { class: "badge badge-live" }, "En curso");
    const list = h("ol", { class: "transcript", "aria-live": "polite", "aria-relevant": "additions",
      "aria-label": "Transcripción en vivo" });
    const who = call.caller_number || "número desconocido";
    const titleId = `live-${call.call_sid}`;
    const card = h(
      "section",
      { class: "card live-call", "aria-labelledby": titleId, dataset: { callSid: call.call_sid } },
      h("div", { class: "live-head" },
        h("h2", { id: titleId }, `Llamada de ${who}`), badge),
      h("p", { class: "muted" },
        `${label(INGRESSES, call.ingress)} · comenzó ${formatTime(call.started_at) || "hace un momento"} · `,
        h("a", { href: `#/llamadas/${encodeURIComponent(call.call_sid)}` }, "Ver detalle")),
      list,
    );
    board.prepend(card);
    entry = { card, list, badge, active: true, removeTimer: null };
    cards.set(call.call_sid, entry);
    refreshEmpty();
    return entry;
  }

  function endCard(sid) {
    const entry = cards.get(sid);
    if (!entry || !entry.active) return;
    entry.active = false;
    entry.badge.textContent = "Finalizada";
    entry.badge.className = "badge badge-ended";
    entry.card.classList.add("ended");
    board.append(entry.card); // finished calls sink below the ones in progress
    entry.removeTimer = setTimeout(() => {
      entry.card.remove();
      cards.delete(sid);
    }, KEEP_ENDED_MS);
    const ended = [...cards.entries()].filter(([, c]) => !c.active);
    for (const [oldSid, old] of ended.slice(0, Math.max(0, ended.length - MAX_ENDED))) {
      clearTimeout(old.removeTimer);
      old.card.remove();
      cards.delete(oldSid);
    }
    refreshEmpty();
  }

  function onEvent(event) {
    switch (event.type) {
      case "snapshot": {
        const live = new Set();
        for (const call of event.calls || []) {
          live.add(call.call_sid);
          const entry = ensureCard(call);
          for (const turn of call.turns || []) addTurn(entry.list, turn);
        }
        for (const [sid, entry] of cards) if (entry.active && !live.has(sid)) endCard(sid);
        break;
      }
      case "call_started":
        ensureCard(event);
        break;
      case "turn":
        addTurn(ensureCard({ call_sid: event.call_sid }).list, event);
        break;
      case "call_ended":
        endCard(event.call_sid);
        break;
      case "resync":
        pollOnce().catch(() => {});
        break;
      default:
        break;
    }
  }

  // --- polling (no live stream on this server) ---------------------------------------------

  async function pollOnce() {
    const since = new Date(Date.now() - WINDOW_MS).toISOString();
    const page = await get("/api/calls", { since, limit: 100 }, { signal });
    const active = page.items.filter((c) => !c.ended_at);
    const activeSids = new Set(active.map((c) => c.call_sid));
    const finishing = [...cards.entries()]
      .filter(([sid, entry]) => entry.active && !activeSids.has(sid))
      .map(([sid]) => sid);
    for (const sid of [...activeSids, ...finishing]) {
      const call = await get(`/api/calls/${encodeURIComponent(sid)}`, null, { signal });
      const entry = ensureCard(call);
      for (const turn of call.turns) addTurn(entry.list, turn);
      if (call.ended_at) endCard(sid);
    }
  }

  async function poll() {
    setStatus("info", "Actualización automática cada 2 segundos.");
    while (!signal.aborted) {
      try {
        await pollOnce();
        setStatus("info", "Actualización automática cada 2 segundos.");
      } catch (err) {
        if (signal.aborted || err?.name === "AbortError" || err?.status === 401) return;
        setStatus("error", `${err.message} Reintentando…`);
      }
      await sleep(POLL_MS, signal);
    }
  }

  // --- Server-Sent Events ------------------------------------------------------------------

  /** Read one SSE response to its end; returns the server's retry hint (ms). */
  async function readStream(res) {
    let retry = POLL_MS;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const colon = line.indexOf(":");
            const name = colon < 0 ? line : line.slice(0, colon);
            const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (name === "data") data.push(val);
            else if (name === "retry" && /^\d+$/.test(val)) retry = Number(val);
          }
          if (!data.length) continue;
          try {
            onEvent(JSON.parse(data.join("\n")));
          } catch {
            // one unreadable event must not stop the view
          }
        }
      }
    } finally {
      reader.releaseLock();
    }
    return retry;
  }

  async function stream() {
    let failures = 0;
    while (!signal.aborted) {
      let auth;
      try {
        auth = await authorization(); // renews the session when its token is about to end
      } catch {
        auth = undefined; // the server could not be reached: retried below
      }
      if (auth === null) {
        expireSession(renewalRefusal(MSG.expired));
        return;
      }
      if (auth === undefined) {
        failures += 1;
        setStatus("error", `${MSG.network} Reintentando…`);
        await sleep(Math.min(POLL_MS * failures, 15000), signal);
        continue;
      }
      let res;
      try {
        res = await fetch("/api/live", {
          headers: { Authorization: auth, Accept: "text/event-stream" },
          cache: "no-store",
          signal,
        });
      } catch (err) {
        if (signal.aborted) return;
        failures += 1;
        setStatus("error", `${MSG.network} Reintentando…`);
        await sleep(Math.min(POLL_MS * failures, 15000), signal);
        continue;
      }
      if (res.status === 401) {
        const detail = await errorDetail(res);
        if (await renewSession()) continue; // a token refused early: renewed, reconnect
        expireSession(renewalRefusal(detail));
        return;
      }
      if (res.status === 404 || res.status === 405 || res.status === 503) {
        return poll(); // this server has no live stream: fall back to the REST API
      }
      if (!res.ok) {
        failures += 1;
        setStatus("error", `${await errorDetail(res)} Reintentando…`);
        await sleep(Math.min(POLL_MS * failures, 15000), signal);
        continue;
      }
      failures = 0;
      setStatus("ok", "Conectado: las frases aparecen en cuanto se dicen.");
      let retry = POLL_MS;
      try {
        retry = await readStream(res);
      } catch {
        if (signal.aborted) return;
      }
      await sleep(retry, signal); // the server ends each stream after a while; reconnect
    }
  }

  stream();
  return () => {
    controller.abort();
    for (const entry of cards.values()) clearTimeout(entry.removeTimer);
  };
}
