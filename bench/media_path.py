"""CPU cost of the inbound media path per second of call audio.

Runs real Twilio ``media`` messages (JSON + base64 mu-law, 20 ms each) through exactly what
the server does per frame: parse → base64 decode → mu-law decode → 8→16 kHz streaming
resample → Silero VAD (ONNX) on 32 ms windows. Reports CPU time (process_time) per second of
audio as a percentage of one core.

    .venv/bin/python bench/media_path.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import base64
import json
import time

import numpy as np

from pipeline.vad import SileroVadModel
from telephony.audio_codec import StreamResampler, mulaw_to_pcm16, pcm16_to_mulaw
from telephony.twilio_protocol import Media, parse_message


def frames(seconds: int) -> list[str]:
    rng = np.random.default_rng(0)
    t = np.arange(8000 * seconds) / 8000
    voice = 0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    pcm = ((voice + 0.01 * rng.standard_normal(len(t))) * 32767).astype(np.int16).tobytes()
    mulaw = pcm16_to_mulaw(pcm)
    sid = "MZ" + "0" * 32
    out = []
    for i in range(0, len(mulaw), 160):
        out.append(
            json.dumps(
                {
                    "event": "media",
                    "sequenceNumber": str(i // 160 + 3),
                    "streamSid": sid,
                    "media": {
                        "track": "inbound",
                        "chunk": str(i // 160 + 1),
                        "timestamp": str(i // 8),
                        "payload": base64.b64encode(mulaw[i : i + 160]).decode(),
                    },
                }
            )
        )
    return out


def run(seconds: int) -> dict[str, float]:
    messages = frames(seconds)
    vad = SileroVadModel().stream(16000)
    resampler = StreamResampler(8000, 16000)
    window = vad.window_samples * 2
    buf = bytearray()
    stages = {"parse": 0.0, "decode_resample": 0.0, "vad": 0.0}
    cpu0 = time.process_time()
    for raw in messages:
        t0 = time.perf_counter()
        msg = parse_message(raw, 65536)
        t1 = time.perf_counter()
        assert isinstance(msg, Media)
        buf += resampler.process(mulaw_to_pcm16(msg.payload))
        t2 = time.perf_counter()
        while len(buf) >= window:
            samples = np.frombuffer(bytes(buf[:window]), np.int16).astype(np.float32) / 32768
            del buf[:window]
            vad.probability(samples)
        t3 = time.perf_counter()
        stages["parse"] += t1 - t0
        stages["decode_resample"] += t2 - t1
        stages["vad"] += t3 - t2
    cpu = time.process_time() - cpu0
    result = {"audio_s": float(seconds), "cpu_s": cpu, "core_percent": cpu / seconds * 100}
    result.update({f"{k}_percent": v / seconds * 100 for k, v in stages.items()})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    run(2)  # warm up ONNX
    r = run(args.seconds)
    print(json.dumps(r, indent=2))
    print(
        f"media path: {r['core_percent']:.3f} % of one core per second of call audio "
        f"(parse {r['parse_percent']:.3f} %, decode+resample {r['decode_resample_percent']:.3f} %, "
        f"VAD {r['vad_percent']:.3f} %)"
    )


if __name__ == "__main__":
    main()
