"""Bookings as staff use them, against the real server (SQLite and PostgreSQL): the office
calendar with capacity, and cancel / reschedule / attendance, each in the audit log and posted
to the external booking system (a local receiver) when the webhook is configured.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from app.booking import verify_signature
from app.users import list_audit
from tests.integration.staff_fixtures import (  # noqa: F401  (fixtures)
    WebhookReceiver,
    database_url,
    past_booking,
    staff_api,
    webhook,
)
from tests.integration.test_admin_api import Api

SECRET = "secreto-del-webhook"
CEDULA = "00112345678"


def _book(client: Api, *, office: str = "SDC", skip: int = 0, cedula: str = CEDULA) -> Any:
    svc = client.services.booking_service

    async def go() -> Any:
        free = await svc.available("cedula", office, limit=skip + 1)
        return await svc.book(free[skip].id, "cedula", "Ana María Peña", cedula, "8095550100")

    return client.server.run(go())


def _slot_of(cal: dict[str, Any], code: str) -> dict[str, Any]:
    for day in cal["days"]:
        for slot in day["slots"]:
            if any(b["code"] == code for b in slot["bookings"]):
                return slot
    raise AssertionError(f"{code} not in the calendar")


def test_week_calendar_shows_capacity_and_bookings_masked_for_agents(
    staff_api: Callable[..., Api],  # noqa: F811
) -> None:
    client = staff_api()
    agent = client.token("agente@example.org", "agent")
    admin = client.token("admin@example.org", "admin")
    booking = _book(client)
    start = booking.starts_at.date()

    week = client.get("/api/calendar", agent, office="SDC", start=start.isoformat(), days=7)
    assert week.status_code == 200, week.text
    cal = week.json()
    assert cal["office"]["code"] == "SDC" and len(cal["offices"]) >= 2
    assert [d["day"] for d in cal["days"]] == [
        (start + timedelta(days=i)).isoformat() for i in range(7)
    ]
    first = cal["days"][0]
    assert first["capacity"] > 0 and first["booked"] == 1
    slot = _slot_of(cal, booking.code)
    assert slot["booked"] == 1 and slot["capacity"] >= 1 and not slot["past"]
    seen = slot["bookings"][0]
    assert seen["citizen_name"] == "Ana María Peña"
    assert seen["cedula"].endswith("5678") and CEDULA not in seen["cedula"]  # agent: masked
    assert seen["attendance"] is None

    full = client.get("/api/calendar", admin, office="SDC", start=start.isoformat()).json()
    assert _slot_of(full, booking.code)["bookings"][0]["cedula"] == CEDULA  # admin: in full
    assert len(full["days"]) == 1

    assert client.get("/api/calendar", agent, office="NOPE").status_code == 404
    assert client.get("/api/calendar", agent, days=30).status_code == 422
    assert client.http.get("/api/calendar").status_code == 401
    citizen = client.token("ciudadano@example.org", "citizen")
    assert client.get("/api/calendar", citizen).status_code == 403


def test_staff_actions_write_the_audit_log_and_notify_the_external_system(
    staff_api: Callable[..., Api],  # noqa: F811
    webhook: WebhookReceiver,  # noqa: F811
) -> None:
    client = staff_api(booking_webhook_url=webhook.url, booking_webhook_secret=SECRET)
    agent = client.token("agente@example.org", "agent")
    booking = _book(client)
    created = webhook.wait_for("booking.created")
    assert created["json"]["data"]["code"] == booking.code

    # Reschedule to another free slot of the same day or later.
    async def other_slot() -> int:
        svc = client.services.booking_service
        free = await svc.available("cedula", "SDC", limit=5)
        return next(s.id for s in free if s.id != booking.slot_id)

    target = client.server.run(other_slot())
    moved = client.http.post(
        f"/api/bookings/{booking.code}/reschedule", json={"slot_id": target}, headers=agent
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["slot_id"] == target and moved.json()["code"] == booking.code
    hook = webhook.wait_for("booking.rescheduled")
    assert verify_signature(SECRET, hook["raw"], hook["headers"].get("X-Taina-Signature"))
    assert hook["json"]["data"]["slot_id"] == target
    assert hook["json"]["data"]["actor"] == "agente@example.org"

    # The seat moved with it.
    cal = client.get(
        "/api/calendar", agent, office="SDC", start=moved.json()["starts_at"][:10]
    ).json()
    assert _slot_of(cal, booking.code)["id"] == target

    # Attendance cannot be marked before the appointment's day.
    early = client.http.post(
        f"/api/bookings/{booking.code}/attendance", json={"attendance": "attended"}, headers=agent
    )
    assert early.status_code == 409 and "día de la cita" in early.json()["detail"]

    # Cancel: the seat is freed.
    gone = client.http.post(f"/api/bookings/{booking.code}/cancel", headers=agent)
    assert gone.status_code == 200 and gone.json()["status"] == "cancelled"
    assert webhook.wait_for("booking.cancelled")["json"]["data"]["code"] == booking.code
    again = client.http.post(f"/api/bookings/{booking.code}/cancel", headers=agent)
    assert again.status_code == 409 and "ya no está activa" in again.json()["detail"]

    # A past appointment today: marked attended, then corrected to no-show; never cancelled.
    past_booking(client.server, "TA-PAST1", name="Pedro Past", ago=timedelta(hours=2), capacity=2)
    refused = client.http.post("/api/bookings/TA-PAST1/cancel", headers=agent)
    assert refused.status_code == 409 and "ya pasó" in refused.json()["detail"]
    came = client.http.post(
        "/api/bookings/TA-PAST1/attendance", json={"attendance": "attended"}, headers=agent
    )
    assert came.status_code == 200 and came.json()["attendance"] == "attended"
    assert webhook.wait_for("booking.attended")["json"]["data"]["attendance"] == "attended"
    fixed = client.http.post(
        "/api/bookings/TA-PAST1/attendance", json={"attendance": "no_show"}, headers=agent
    )
    assert fixed.json()["attendance"] == "no_show"
    assert webhook.wait_for("booking.no_show")["json"]["data"]["code"] == "TA-PAST1"
    today = client.get("/api/calendar", agent, office="SDC").json()
    assert _slot_of(today, "TA-PAST1")["bookings"][0]["attendance"] == "no_show"
    assert _slot_of(today, "TA-PAST1")["past"] is True

    bad = client.http.post(
        "/api/bookings/TA-PAST1/attendance", json={"attendance": "tal vez"}, headers=agent
    )
    assert bad.status_code == 422
    missing = client.http.post("/api/bookings/TA-NOPE0/cancel", headers=agent)
    assert missing.status_code == 404 and missing.json()["detail"] == "No se encontró esa cita."

    audit = client.server.run(list_audit(client.services.db, limit=50))
    mine = [(a.action, a.target) for a in audit if a.actor == "agente@example.org"]
    for expected in [
        ("booking.rescheduled", booking.code),
        ("booking.cancelled", booking.code),
        ("booking.attended", "TA-PAST1"),
        ("booking.no_show", "TA-PAST1"),
    ]:
        assert expected in mine, mine


def test_reschedule_into_a_full_slot_is_refused_and_nothing_moves(
    staff_api: Callable[..., Api],  # noqa: F811
) -> None:
    client = staff_api()
    agent = client.token("agente@example.org", "agent")
    mine = _book(client, cedula="00100000001")

    async def fill_other() -> int:
        svc = client.services.booking_service
        free = await svc.available("cedula", "SDC", limit=5)
        target = next(s for s in free if s.id != mine.slot_id)
        for i in range(target.available):
            await svc.book(target.id, "pasaporte", f"Otra {i}", f"0020000000{i}", None)
        return target.id

    full = client.server.run(fill_other())
    refused = client.http.post(
        f"/api/bookings/{mine.code}/reschedule", json={"slot_id": full}, headers=agent
    )
    assert refused.status_code == 409 and "completo" in refused.json()["detail"]
    still = client.server.run(client.services.booking_service.get(mine.code))
    assert still.slot_id == mine.slot_id and still.status == "confirmed"
    nowhere = client.http.post(
        f"/api/bookings/{mine.code}/reschedule", json={"slot_id": 999999}, headers=agent
    )
    assert nowhere.status_code == 404
