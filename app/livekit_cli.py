"""``taina livekit-agent`` and ``taina livekit setup-sip``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from app.settings import Settings


def add_livekit_commands(subparsers: Any) -> None:
    """Register the LiveKit commands on the top-level ``taina`` parser."""
    agent = subparsers.add_parser(
        "livekit-agent", help="join LiveKit rooms (web visitors, LiveKit SIP calls) as TAINA"
    )
    agent.add_argument(
        "--poll",
        action="store_true",
        help="find rooms by polling ListRooms (one worker only) even when REDIS_URL is set",
    )
    agent.set_defaults(func=_cmd_agent)

    lk = subparsers.add_parser("livekit", help="LiveKit server setup")
    sub = lk.add_subparsers(dest="livekit_command", required=True)
    sip = sub.add_parser(
        "setup-sip", help="create the SIP inbound trunk and dispatch rule (idempotent)"
    )
    sip.add_argument("--numbers", default=None, help="comma-separated E.164 numbers")
    sip.set_defaults(func=_cmd_setup_sip)


def _cmd_agent(args: argparse.Namespace) -> int:
    from app.logging_setup import setup_logging
    from telephony.livekit_agent import run_agent

    settings = Settings()
    setup_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(run_agent(settings, poll=bool(getattr(args, "poll", False))))
    except KeyboardInterrupt:
        pass
    return 0


def _cmd_setup_sip(args: argparse.Namespace) -> int:
    from telephony.livekit_sip import setup_sip

    overrides = {"livekit_sip_trunk_numbers": args.numbers} if args.numbers else {}
    settings = Settings(**overrides)
    try:
        result = asyncio.run(setup_sip(settings))
    except Exception as exc:
        print(f"No se pudo configurar LiveKit SIP: {exc}", file=sys.stderr)
        return 1
    created = "creado" if result.trunk_created else "ya existía"
    print(f"Troncal SIP de entrada {result.trunk_id} ({created})")
    print(f"  números: {', '.join(result.numbers) or '(cualquiera)'}")
    created = "creada" if result.rule_created else "ya existía"
    print(f"Regla de despacho {result.rule_id} ({created})")
    print(
        f"  una sala por llamada: {settings.livekit_sip_room_prefix}<número>_<sufijo>, "
        f"agente {settings.livekit_agent_name!r}"
    )
    return 0
