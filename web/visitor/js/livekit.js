// The visitor's call through a LiveKit room, with the official livekit-client browser SDK
// (vendored UMD build, ../vendor/livekit-client.umd.js, v2.23.0, Apache-2.0; loaded only when
// the server hands out a token, so visitors of a site without LiveKit never download it).
//
// app.js calls window.tainaJoinLiveKit(token, ui) after POST /api/livekit/token answered 200.
// We join the room, publish the microphone, play the agent's audio track and turn the agent's
// JSON data messages (topic "taina") into captions and states. The answer is a handle with
// hangup(), or null when the room could not be joined: app.js then uses WS /web/stream, so a
// LiveKit outage never leaves the visitor without a call.

const SDK_URL = "/web/vendor/livekit-client.umd.js";
const TOPIC = "taina";
const CONNECT_TIMEOUT_MS = 12000; // beyond this the WebSocket path is the better bet
const CAPTURE = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

const MSG_LOST =
  "Se perdió la conexión con el asistente. Revise su conexión a Internet y pulse «Llamar» " +
  "para intentarlo de nuevo.";
const MSG_ENDED = "La llamada terminó. ¡Gracias por comunicarse con nosotros!";
const MSG_AUDIO_BLOCKED =
  "Su navegador bloqueó el sonido. Pulse en cualquier parte de la página para escuchar al " +
  "asistente.";

// Test and diagnostics hooks: what the page did with LiveKit (read by the browser tests).
const lkStats = { sdkLoaded: false, connected: false, fellBack: null, audioTracks: 0, data: 0 };
window.tainaLiveKit = lkStats;

let sdkPromise = null;

/** The SDK's global, loading the vendored UMD build once (a classic script: CSP 'self'). */
function loadSdk() {
  if (window.LivekitClient) return Promise.resolve(window.LivekitClient);
  if (!sdkPromise) {
    sdkPromise = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = SDK_URL;
      script.async = true;
      script.onload = () =>
        window.LivekitClient ? resolve(window.LivekitClient) : reject(new Error("no SDK global"));
      script.onerror = () => reject(new Error("SDK script failed to load"));
      document.head.append(script);
    }).catch((err) => {
      sdkPromise = null; // let a later call try again
      throw err;
    });
  }
  return sdkPromise;
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** One agent data message (already decoded JSON) onto the page. Returns "end" on finalizada. */
function applyMessage(msg, ui) {
  if (!msg || typeof msg !== "object") return null;
  if (msg.type === "caption") {
    const speaker = msg.role === "user" ? "caller" : "bot";
    ui.caption(speaker, String(msg.text || ""), !!msg.final);
  } else if (msg.type === "state") {
    if (msg.state === "finalizada") return "end";
    ui.showState(String(msg.state || ""));
  }
  return null;
}

/**
 * Join the visitor's LiveKit room. `token` is the /api/livekit/token answer
 * ({url, token, room, identity, expires_at}); `ui` gives caption(speaker, text, final),
 * showState(state), showMessage(text) and end(message) (the call is over: reset the button).
 * Resolves to {room, hangup()} or null (fall back to the WebSocket path).
 */
async function joinLiveKit(token, ui) {
  let LK;
  try {
    LK = await loadSdk();
    lkStats.sdkLoaded = true;
  } catch (err) {
    console.warn("LiveKit SDK unavailable, using the direct connection:", err);
    lkStats.fellBack = "sdk";
    return null;
  }
  if (!LK.isBrowserSupported()) {
    lkStats.fellBack = "unsupported";
    return null;
  }

  const room = new LK.Room({
    adaptiveStream: false,
    dynacast: false,
    audioCaptureDefaults: CAPTURE,
    disconnectOnPageLeave: true,
  });
  const audioEls = new Set();
  let over = false;

  const finish = (message) => {
    if (over) return;
    over = true;
    for (const el of audioEls) el.remove();
    audioEls.clear();
    room.disconnect().catch(() => {});
    ui.end(message);
  };

  room.on(LK.RoomEvent.TrackSubscribed, (track) => {
    if (track.kind !== LK.Track.Kind.Audio) return;
    const el = track.attach();
    el.autoplay = true;
    el.hidden = true;
    el.dataset.livekit = "agent";
    document.body.append(el);
    audioEls.add(el);
    lkStats.audioTracks += 1;
  });
  room.on(LK.RoomEvent.TrackUnsubscribed, (track) => {
    for (const el of track.detach()) {
      el.remove();
      audioEls.delete(el);
    }
  });
  room.on(LK.RoomEvent.DataReceived, (payload, _participant, _kind, topic) => {
    if (topic !== TOPIC || over) return;
    let msg;
    try {
      msg = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      return;
    }
    lkStats.data += 1;
    if (applyMessage(msg, ui) === "end") finish(MSG_ENDED);
  });
  room.on(LK.RoomEvent.AudioPlaybackStatusChanged, () => {
    if (room.canPlaybackAudio || over) return;
    ui.showMessage(MSG_AUDIO_BLOCKED);
    const unlock = () => room.startAudio().then(() => ui.showMessage("")).catch(() => {});
    document.addEventListener("click", unlock, { once: true });
  });
  room.on(LK.RoomEvent.Reconnecting, () => ui.showState("conectando"));
  room.on(LK.RoomEvent.Disconnected, (reason) => {
    if (over) return;
    const byServer = reason === LK.DisconnectReason.ROOM_DELETED;
    finish(byServer ? MSG_ENDED : MSG_LOST);
  });

  try {
    const joined = room.connect(token.url, token.token, { autoSubscribe: true });
    await withTimeout(joined, CONNECT_TIMEOUT_MS, "connect");
  } catch (err) {
    console.warn("LiveKit room not joined, using the direct connection:", err);
    lkStats.fellBack = "connect";
    over = true;
    room.disconnect().catch(() => {});
    return null;
  }
  lkStats.connected = true;

  try {
    await room.localParticipant.setMicrophoneEnabled(true, CAPTURE);
  } catch (err) {
    console.warn("microphone not published:", err && err.name);
    over = true;
    room.disconnect().catch(() => {}); // the direct connection reuses the granted microphone
    lkStats.fellBack = "microphone";
    return null;
  }
  // The click on «Llamar» is recent enough for most browsers; if not, the event above asks.
  room.startAudio().catch(() => {});
  ui.showState("escuchando");

  return {
    room,
    hangup() {
      if (over) return;
      over = true;
      for (const el of audioEls) el.remove();
      audioEls.clear();
      room.disconnect().catch(() => {});
    },
  };
}

window.tainaJoinLiveKit = joinLiveKit;
