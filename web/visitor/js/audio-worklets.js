// AudioWorklet processors for the visitor call page (loaded with audioWorklet.addModule).
//
// "taina-capture": microphone → 16 kHz PCM16 frames of 20 ms (320 samples), posted to the page
//   as transferable ArrayBuffers together with the frame's RMS level. Downsampling averages
//   the input samples that fall into each output sample (a box filter: cheap anti-aliasing).
// "taina-playback": 16 kHz PCM16 from the server → the context's rate, through a small jitter
//   buffer (playback starts once PREBUFFER_MS are queued, or after WAIT_MS with less). Markers
//   placed between chunks are reported back ("played") when playback passes them; "clear"
//   drops everything at once (barge-in).

const WIRE_RATE = 16000;
const FRAME_SAMPLES = 320; // 20 ms at 16 kHz

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / WIRE_RATE; // input samples per output sample
    this.pos = 0; // fractional input position inside the current output sample
    this.sum = 0;
    this.count = 0;
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.n = 0;
    this.energy = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const ch = input[0];
    for (let i = 0; i < ch.length; i++) {
      this.sum += ch[i];
      this.count += 1;
      this.pos += 1;
      if (this.pos >= this.step) {
        this.pos -= this.step;
        const v = Math.max(-1, Math.min(1, this.sum / this.count));
        this.sum = 0;
        this.count = 0;
        this.energy += v * v;
        this.frame[this.n++] = v < 0 ? v * 0x8000 : v * 0x7fff;
        if (this.n === FRAME_SAMPLES) {
          const rms = Math.sqrt(this.energy / FRAME_SAMPLES);
          const buf = this.frame.buffer;
          this.port.postMessage({ type: "frame", pcm: buf, rms }, [buf]);
          this.frame = new Int16Array(FRAME_SAMPLES);
          this.n = 0;
          this.energy = 0;
        }
      }
    }
    return true;
  }
}

const PREBUFFER_MS = 80;
const WAIT_MS = 100;
const CAPACITY_S = 120; // queued speech at most (the server sends faster than real time)
const SILENT = 0.01; // below this a sample is "silence" for the page's counters

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.cap = WIRE_RATE * CAPACITY_S;
    this.ring = new Float32Array(this.cap);
    this.written = 0; // total 16 kHz samples written
    this.read = 0; // fractional read position, in 16 kHz samples
    this.step = WIRE_RATE / sampleRate; // 16 kHz samples per output sample
    this.playing = false;
    this.waitSince = -1;
    this.marks = []; // [{name, at}] in write order
    this.voiced = false; // currently inside a stretch of non-silent output
    this.nonSilent = 0;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(msg) {
    if (msg.type === "audio") {
      const pcm = new Int16Array(msg.pcm);
      const room = this.cap - (this.written - Math.floor(this.read));
      const n = Math.min(pcm.length, room);
      for (let i = 0; i < n; i++) {
        this.ring[(this.written + i) % this.cap] = pcm[i] / 0x8000;
      }
      this.written += n;
    } else if (msg.type === "mark") {
      this.marks.push({ name: msg.name, at: this.written });
      this.flushMarks();
    } else if (msg.type === "clear") {
      this.read = this.written;
      this.marks = [];
      this.playing = false;
      this.waitSince = -1;
      this.voiced = false;
    }
  }

  flushMarks() {
    while (this.marks.length && this.marks[0].at <= Math.floor(this.read)) {
      this.port.postMessage({
        type: "played",
        name: this.marks.shift().name,
        nonSilent: this.nonSilent,
      });
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    const queued = this.written - this.read;
    if (!this.playing) {
      if (queued > 0) {
        if (this.waitSince < 0) this.waitSince = currentTime;
        const waitedMs = (currentTime - this.waitSince) * 1000;
        if (queued >= (WIRE_RATE * PREBUFFER_MS) / 1000 || waitedMs >= WAIT_MS) {
          this.playing = true;
        }
      }
    }
    let voicedNow = 0;
    for (let i = 0; i < out.length; i++) {
      if (!this.playing || this.read + 1 >= this.written) {
        out[i] = 0;
        continue;
      }
      const base = Math.floor(this.read);
      const frac = this.read - base;
      const a = this.ring[base % this.cap];
      const b = this.ring[(base + 1) % this.cap];
      const v = a + (b - a) * frac;
      out[i] = v;
      if (Math.abs(v) > SILENT) voicedNow += 1;
      this.read += this.step;
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (this.playing && this.read + 1 >= this.written) {
      this.read = this.written; // drained: back to buffering for the next reply
      this.playing = false;
      this.waitSince = -1;
    }
    if (voicedNow > 0) {
      this.nonSilent += voicedNow;
      if (!this.voiced) {
        this.voiced = true;
        this.port.postMessage({ type: "voice-start", nonSilent: this.nonSilent });
      }
    } else if (!this.playing) {
      this.voiced = false;
    }
    if (this.marks.length) this.flushMarks();
    return true;
  }
}

registerProcessor("taina-capture", CaptureProcessor);
registerProcessor("taina-playback", PlaybackProcessor);
