// The visitor call page: microphone → WS /web/stream (16 kHz PCM16 frames from an
// AudioWorklet), bot speech ← the same socket into a playback worklet with a jitter buffer.
// Captions of both sides and the call's state come from the server as JSON messages.
//
// window.tainaStats exposes page-side counters (frames sent, marks echoed, non-silent samples
// played, turn latencies) for the browser tests and the latency bench.

const STATE_TEXT = {
  conectando: "Conectando…",
  escuchando: "Le escuchamos: puede hablar.",
  pensando: "El asistente está pensando…",
  hablando: "El asistente está hablando…",
};
const MSG_MIC =
  "No pudimos usar su micrófono. Permita el acceso al micrófono en su navegador para este " +
  "sitio y pulse «Llamar» de nuevo.";
const MSG_NO_AUDIO = "Su navegador no permite llamadas de voz. Pruebe con un navegador actualizado.";
const MSG_LOST =
  "Se perdió la conexión con el asistente. Revise su conexión a Internet y pulse «Llamar» " +
  "para intentarlo de nuevo.";
const MSG_ENDED = "La llamada terminó. ¡Gracias por comunicarse con nosotros!";
const MSG_SERVER =
  "No pudimos comunicarnos con el asistente: el servidor no responde. Revise su conexión a " +
  "Internet o intente de nuevo en unos minutos.";
const MSG_IDLE = "Pulse «Llamar» y permita el uso del micrófono.";
const LOUD_RMS = 0.02; // an input frame louder than this counts as the visitor speaking

const $ = (id) => document.getElementById(id);
const button = $("call");
const statusEl = $("status");
const messageEl = $("message");
const noticeEl = $("notice");
const captionsEl = $("captions");

const stats = {
  framesSent: 0,
  loudFramesSent: 0,
  lastLoudSentAt: null, // performance.now() of the newest loud frame sent
  marksEchoed: 0,
  nonSilentSamples: 0, // 16 kHz-equivalent samples of bot speech actually played
  voiceStarts: 0,
  latenciesMs: [], // end of visitor speech → first bot audio played, per turn
  outputLatencyMs: null,
  state: "idle",
  callId: null,
};
window.tainaStats = stats;

let call = null; // the active call's resources, or null

function showState(state) {
  stats.state = state;
  statusEl.dataset.state = state;
  statusEl.textContent = STATE_TEXT[state] || "";
}

/** A problem (red, announced at once); an empty text clears both boxes. */
function showMessage(text) {
  messageEl.textContent = text;
  messageEl.hidden = !text;
  if (!text) showNotice("");
}

/** News that is not a problem (the call ended normally): neutral, announced politely. */
function showNotice(text) {
  noticeEl.textContent = text;
  noticeEl.hidden = !text;
  if (text) {
    messageEl.textContent = "";
    messageEl.hidden = true;
  }
}

/** The ending a call's message describes: a normal goodbye is news, anything else a problem. */
function showEnding(text) {
  if (text === MSG_ENDED) showNotice(text);
  else showMessage(text);
}

/** Whether this server answers at all: tells "server down" apart from "browser can't". */
async function serverReachable() {
  try {
    const res = await fetch("/healthz", { cache: "no-store" });
    return res.status < 500;
  } catch {
    return false;
  }
}

let serverConfig = null; // /web/config.json: {livekit: bool}

async function loadServerConfig() {
  const res = await fetch("/web/config.json", { cache: "no-store" });
  if (!res.ok) return { livekit: true }; // an older server: ask for a LiveKit token as before
  return res.json();
}

function setButton(active, busy = false) {
  button.dataset.state = active ? "active" : "idle";
  button.textContent = active ? "Colgar" : "Llamar";
  button.disabled = busy;
}

// --- captions ---------------------------------------------------------------------------------
function caption(speaker, text, final) {
  let item = captionsEl.lastElementChild;
  const reuse = item && item.dataset.speaker === speaker && item.classList.contains("partial");
  if (!reuse) {
    item = document.createElement("li");
    item.dataset.speaker = speaker;
    item.className = speaker;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = speaker === "bot" ? "Asistente" : "Usted";
    item.append(who, document.createElement("span"));
    captionsEl.append(item);
  }
  item.lastElementChild.textContent = text;
  item.classList.toggle("partial", !final);
  item.scrollIntoView({ block: "nearest" });
}

// --- LiveKit ----------------------------------------------------------------------------------
// When the server has LiveKit configured, POST /api/livekit/token answers 200 with a token and
// js/livekit.js joins that room; its answer is a handle with hangup(), or null/false when the
// room could not be joined and this page uses its own WebSocket instead.
function endLiveKitCall(handle, message) {
  if (!call || call.livekit !== handle) return;
  call.ended = true;
  cleanup(call);
  showEnding(message);
  statusEl.textContent = "";
  statusEl.dataset.state = "terminada";
  stats.state = "terminada";
}

async function tryLiveKit(sessionId) {
  if (serverConfig && serverConfig.livekit === false) return false; // no 404 to ask for
  let response;
  try {
    response = await fetch("/api/livekit/token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ session: sessionId }),
    });
  } catch {
    return false;
  }
  if (response.status !== 200) return false;
  if (typeof window.tainaJoinLiveKit !== "function") return false;
  let handle = null;
  const end = (message) => endLiveKitCall(handle, message);
  const ui = { caption, showState, showMessage: showEnding, end };
  handle = await window.tainaJoinLiveKit(await response.json(), ui);
  return handle || false;
}

// --- the call ---------------------------------------------------------------------------------
async function startCall() {
  showMessage("");
  captionsEl.replaceChildren();
  setButton(true, true);
  showState("conectando");
  const sessionId = "v" + Math.random().toString(36).slice(2, 12);

  if (!navigator.mediaDevices?.getUserMedia || typeof AudioWorkletNode === "undefined") {
    return fail(MSG_NO_AUDIO);
  }
  try {
    serverConfig = await loadServerConfig();
  } catch {
    return fail(MSG_SERVER); // the server is down or unreachable: not the browser's fault
  }
  let mic;
  try {
    mic = await navigator.mediaDevices.getUserMedia({
      audio: {
        echoCancellation: true,
        noiseSuppression: true,
        autoGainControl: true,
        channelCount: 1,
      },
    });
  } catch (err) {
    console.warn("microphone refused:", err && err.name);
    return fail(MSG_MIC);
  }
  const livekit = await tryLiveKit(sessionId);
  if (livekit) {
    mic.getTracks().forEach((t) => t.stop()); // the SDK publishes its own capture of the mic
    call = { livekit, ended: false };
    setButton(true, false);
    return;
  }

  const ctx = new AudioContext({ latencyHint: "interactive" });
  call = { ctx, mic, ws: null, ended: false, started: false };
  try {
    await ctx.audioWorklet.addModule("/web/js/audio-worklets.js");
  } catch (err) {
    // The worklet is a file from this server: when the server is gone, say so.
    if (!(await serverReachable())) return fail(MSG_SERVER);
    console.error("audio worklet failed:", err);
    return fail(MSG_NO_AUDIO);
  }
  if (ctx.state === "suspended") await ctx.resume();
  stats.outputLatencyMs = ((ctx.outputLatency || 0) + (ctx.baseLatency || 0)) * 1000;

  const source = ctx.createMediaStreamSource(mic);
  const capture = new AudioWorkletNode(ctx, "taina-capture", { numberOfOutputs: 1 });
  const mute = ctx.createGain();
  mute.gain.value = 0; // the capture node must be pulled by the graph, but never heard
  source.connect(capture).connect(mute).connect(ctx.destination);
  const playback = new AudioWorkletNode(ctx, "taina-playback", {
    numberOfInputs: 0,
    outputChannelCount: [1],
  });
  playback.connect(ctx.destination);
  Object.assign(call, { source, capture, playback, mute });

  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/web/stream`);
  ws.binaryType = "arraybuffer";
  call.ws = ws;
  const thisCall = call;

  ws.onopen = () => ws.send(JSON.stringify({ type: "start", session: sessionId }));
  ws.onmessage = (event) => onServerMessage(thisCall, event.data);
  ws.onclose = () => {
    if (thisCall.ended) return;
    thisCall.ended = true;
    cleanup(thisCall);
    showMessage(thisCall.started ? MSG_LOST : MSG_SERVER);
    statusEl.textContent = "";
    statusEl.dataset.state = "perdida";
    stats.state = "perdida";
  };

  capture.port.onmessage = (e) => {
    const m = e.data;
    if (!thisCall.started || ws.readyState !== WebSocket.OPEN) return;
    ws.send(m.pcm);
    stats.framesSent += 1;
    if (m.rms > LOUD_RMS) {
      stats.loudFramesSent += 1;
      stats.lastLoudSentAt = performance.now();
    }
  };
  playback.port.onmessage = (e) => {
    const m = e.data;
    if (m.type === "played") {
      stats.nonSilentSamples = m.nonSilent;
      stats.marksEchoed += 1;
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "mark", name: m.name }));
    } else if (m.type === "voice-start") {
      const now = performance.now();
      stats.voiceStarts += 1;
      stats.nonSilentSamples = m.nonSilent;
      if (stats.lastLoudSentAt !== null && stats.lastLoudSentAt > (thisCall.lastVoiceAt || 0)) {
        stats.latenciesMs.push(Math.round(now - stats.lastLoudSentAt));
      }
      thisCall.lastVoiceAt = now;
    }
  };
}

function onServerMessage(c, data) {
  if (data instanceof ArrayBuffer) {
    c.playback.port.postMessage({ type: "audio", pcm: data }, [data]);
    return;
  }
  let msg;
  try {
    msg = JSON.parse(data);
  } catch {
    return;
  }
  switch (msg.type) {
    case "started":
      c.started = true;
      stats.callId = msg.call_id;
      setButton(true, false);
      break;
    case "audio_mark":
      c.playback.port.postMessage({ type: "mark", name: msg.name });
      break;
    case "clear":
      c.playback.port.postMessage({ type: "clear" });
      break;
    case "state":
      showState(msg.state);
      break;
    case "caption":
      caption(msg.speaker === "caller" ? "caller" : "bot", String(msg.text || ""), !!msg.final);
      break;
    case "error": // the server refuses the call (busy): its message, not "connection lost"
      c.ended = true;
      cleanup(c);
      showMessage(String(msg.message || ""));
      statusEl.textContent = "";
      break;
    case "hangup":
      c.ended = true;
      cleanup(c);
      showNotice(MSG_ENDED);
      statusEl.textContent = "";
      stats.state = "terminada";
      break;
  }
}

function cleanup(c) {
  try {
    c.livekit?.hangup();
  } catch {}
  try {
    if (c.ws && c.ws.readyState <= WebSocket.OPEN) c.ws.close(1000);
  } catch {}
  c.mic?.getTracks().forEach((t) => t.stop());
  c.ctx?.close().catch(() => {});
  if (call === c) call = null;
  setButton(false, false);
}

function fail(message) {
  if (call) {
    call.ended = true;
    cleanup(call);
  }
  setButton(false, false);
  showMessage(message);
  statusEl.textContent = MSG_IDLE;
  statusEl.dataset.state = "idle";
  stats.state = "idle";
}

function hangUp() {
  const c = call;
  if (!c) return;
  c.ended = true;
  try {
    if (c.ws?.readyState === WebSocket.OPEN) c.ws.send(JSON.stringify({ type: "hangup" }));
  } catch {}
  cleanup(c);
  showNotice(MSG_ENDED);
  statusEl.textContent = MSG_IDLE;
  stats.state = "terminada";
}

button.addEventListener("click", () => {
  if (call) hangUp();
  else startCall().catch((err) => {
    console.error(err);
    fail(MSG_LOST);
  });
});
