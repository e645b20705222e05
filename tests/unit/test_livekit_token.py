"""``POST /api/livekit/token``: claims, grants, expiry, the room it creates, and refusals."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from fastapi import FastAPI
from livekit import api

from app import routes_livekit
from app.routes_livekit import RateLimiter
from app.settings import Settings
from tests.fake_livekit_twirp import FakeLiveKitTwirp

SECRET = "un-secreto-de-prueba-bastante-largo-1234"


@pytest.fixture
async def fake() -> AsyncIterator[FakeLiveKitTwirp]:
    server = FakeLiveKitTwirp(api_key="APIprueba", api_secret=SECRET)
    await server.start()
    yield server
    await server.stop()


def make_app(settings: Settings) -> FastAPI:
    app = FastAPI()
    app.state.settings = settings
    app.include_router(routes_livekit.router)
    return app


def lk_settings(url: str, **kw: object) -> Settings:
    return Settings(
        livekit_url=url,
        livekit_api_key="APIprueba",
        livekit_api_secret=SECRET,
        livekit_token_ttl_s=300,
        **kw,
    )


async def post(app: FastAPI, ip: str = "10.0.0.1") -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(ip, 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.post("/api/livekit/token")


async def test_token_claims_grants_and_expiry(fake: FakeLiveKitTwirp) -> None:
    app = make_app(lk_settings(fake.url))
    before = int(time.time())
    resp = await post(app)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["url"] == fake.url
    room, identity = body["room"], body["identity"]
    assert room.startswith("web-") and len(room) > len("web-") + 8
    assert identity.endswith(room.removeprefix("web-"))

    claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"], issuer="APIprueba")
    assert claims["iss"] == "APIprueba"
    assert claims["sub"] == identity
    assert claims["video"]["room"] == room
    assert claims["video"]["roomJoin"] is True
    assert claims["video"]["canPublish"] is True
    assert claims["video"]["canSubscribe"] is True
    assert claims["video"]["canPublishData"] is True
    assert "roomCreate" not in claims["video"] and "roomAdmin" not in claims["video"]
    assert claims["roomConfig"]["maxParticipants"] == 2
    assert before + 299 <= claims["exp"] <= int(time.time()) + 301
    assert body["expires_at"] == pytest.approx(claims["exp"], abs=1)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(body["token"], "otro-secreto-igual-de-largo-que-el-bueno", algorithms=["HS256"])
    # the SDK's own verifier accepts it too
    assert api.TokenVerifier("APIprueba", SECRET).verify(body["token"]).video.room == room

    # the room was created on the server with its limits
    created = fake.calls("CreateRoom")
    assert len(created) == 1
    req = created[0].body
    assert req.name == room and req.max_participants == 2
    assert req.empty_timeout == 60 and req.departure_timeout == 10
    assert created[0].claims["video"]["roomCreate"] is True


async def test_each_request_gets_its_own_room(fake: FakeLiveKitTwirp) -> None:
    app = make_app(lk_settings(fake.url))
    rooms = {(await post(app)).json()["room"] for _ in range(3)}
    assert len(rooms) == 3 and set(fake.rooms) == rooms


async def test_404_in_spanish_when_livekit_is_not_configured() -> None:
    app = make_app(Settings(livekit_url=None, livekit_api_key=None, livekit_api_secret=None))
    resp = await post(app)
    assert resp.status_code == 404
    assert "LiveKit no están configuradas" in resp.json()["detail"]


async def test_rate_limited_per_ip(fake: FakeLiveKitTwirp) -> None:
    app = make_app(lk_settings(fake.url, livekit_token_per_minute=2))
    assert (await post(app, "10.0.0.1")).status_code == 200
    assert (await post(app, "10.0.0.1")).status_code == 200
    third = await post(app, "10.0.0.1")
    assert third.status_code == 429 and "Demasiadas" in third.json()["detail"]
    assert (await post(app, "10.0.0.2")).status_code == 200
    assert len(fake.calls("CreateRoom")) == 3


async def test_503_when_the_server_refuses(fake: FakeLiveKitTwirp) -> None:
    settings = lk_settings(fake.url)
    settings.livekit_api_secret = "secreto-equivocado-pero-largo-0000"
    resp = await post(make_app(settings))
    assert resp.status_code == 503
    assert fake.rejected and fake.rejected[0][1] == 401


def test_rate_limiter_window() -> None:
    lim = RateLimiter(2)
    assert lim.allow("a", 0.0) and lim.allow("a", 1.0)
    assert not lim.allow("a", 59.0)
    assert lim.allow("a", 60.5)
