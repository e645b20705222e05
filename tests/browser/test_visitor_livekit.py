"""The visitor page's LiveKit path in headless Chromium, with the real vendored livekit-client.

The app runs with LiveKit configured against a local fake of the Twirp API
(:mod:`tests.fake_livekit_twirp`), so ``POST /api/livekit/token`` really creates a room and
signs a token. No LiveKit media server runs here, so WebRTC itself is not exercised: the tests
wrap the SDK's ``Room.prototype.connect`` (and the microphone publish) to record the call and
resolve, then drive the room's own event emitter as the agent would (data messages, the agent's
audio track, a dropped connection). The fallback test leaves ``connect`` alone: the SDK really
dials the fake, which speaks no LiveKit signalling, and the page must carry on over
``WS /web/stream``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import BackgroundLoop, Browser, launch_chromium
from tests.fake_livekit_twirp import FakeLiveKitTwirp
from tests.integration.conftest import LiveServer, instant_engines

KEY = "APIvisitante"
SECRET = "un-secreto-de-prueba-para-el-navegador-123"
MSG_LOST = "Se perdió la conexión"
MSG_ENDED = "La llamada terminó"

# Runs before the page's scripts: when the UMD build assigns window.LivekitClient, replace its
# Room with a subclass that records connect/disconnect (instance arrow functions in the SDK, so
# they are wrapped per instance) and stub the microphone publish, once the exports are filled
# in (the UMD assigns an empty object first, then populates it synchronously).
WRAP_SDK = """
(() => {
  window.__lk = { connects: [], mics: [], disconnects: 0, rooms: [], realConnect: false };
  let sdk;
  Object.defineProperty(window, "LivekitClient", {
    configurable: true,
    get: () => sdk,
    set: (value) => {
      sdk = value;
      queueMicrotask(() => {
        const Base = sdk.Room;
        class RecordingRoom extends Base {
          constructor(options) {
            super(options);
            const connect = this.connect.bind(this);
            const disconnect = this.disconnect.bind(this);
            this.connect = (url, token, opts) => {
              window.__lk.connects.push({ url, token });
              return window.__lk.realConnect ? connect(url, token, opts) : Promise.resolve();
            };
            this.disconnect = (...args) => {
              window.__lk.disconnects += 1;
              return window.__lk.realConnect ? disconnect(...args) : Promise.resolve();
            };
            window.__lk.rooms.push(this);
          }
        }
        sdk.Room = RecordingRoom;
        sdk.LocalParticipant.prototype.setMicrophoneEnabled = function (on, opts) {
          window.__lk.mics.push({ on, opts });
          return Promise.resolve();
        };
      });
    },
  });
})();
"""

EMIT_DATA = """
([message, topic]) => {
  const sdk = window.LivekitClient;
  const room = window.__lk.rooms.at(-1);
  const payload = new TextEncoder().encode(JSON.stringify(message));
  room.emit(sdk.RoomEvent.DataReceived, payload, undefined, sdk.DataPacket_Kind.RELIABLE, topic);
}
"""

EMIT_AGENT_AUDIO = """
() => {
  const sdk = window.LivekitClient;
  const room = window.__lk.rooms.at(-1);
  const ctx = new AudioContext();
  const osc = ctx.createOscillator();
  const dest = ctx.createMediaStreamDestination();
  osc.connect(dest);
  osc.start();
  const mst = dest.stream.getAudioTracks()[0];
  const track = new sdk.RemoteAudioTrack(mst, "TR_agent", undefined, undefined);
  room.emit(sdk.RoomEvent.TrackSubscribed, track, {}, {});
}
"""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """System Chromium with Chromium's fake microphone (a beep), granted without a prompt."""
    fake_mic = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with launch_chromium(fake_mic, timeout_ms=20_000) as browser:
        yield browser


@pytest.fixture
def fake_livekit(bg: BackgroundLoop) -> Iterator[FakeLiveKitTwirp]:
    fake = FakeLiveKitTwirp(api_key=KEY, api_secret=SECRET)
    bg.run(fake.start())
    yield fake
    bg.run(fake.stop())


@pytest.fixture
def lk_server(
    live_server_factory: Callable[..., LiveServer], fake_livekit: FakeLiveKitTwirp
) -> LiveServer:
    return live_server_factory(
        engines=instant_engines(),
        livekit_url=fake_livekit.url,
        livekit_api_key=KEY,
        livekit_api_secret=SECRET,
    )


def lk(page: Any) -> dict[str, Any]:
    return page.evaluate(
        "() => ({...JSON.parse(JSON.stringify({...window.__lk, rooms: undefined})),"
        " stats: window.tainaLiveKit})"
    )


def start_livekit_call(page: Any, fake: FakeLiveKitTwirp) -> dict[str, Any]:
    """Press «Llamar» with connect wrapped; returns the token answer the page received."""
    from playwright.sync_api import expect

    page.add_init_script(WRAP_SDK)
    page.goto("/")
    with page.expect_response("**/api/livekit/token") as answer:
        page.get_by_role("button", name="Llamar").click()
    assert answer.value.status == 200
    token = answer.value.json()
    expect(page.get_by_role("button", name="Colgar")).to_be_enabled()
    page.wait_for_function("() => window.__lk.mics.length > 0")
    created = fake.calls("CreateRoom")
    assert [c.body.name for c in created] == [token["room"]]
    return token


def test_llamar_joins_the_room_with_the_token(
    lk_server: LiveServer,
    fake_livekit: FakeLiveKitTwirp,
    browser: Browser,
    screenshots: Callable[[Any, str], Path],
) -> None:
    from playwright.sync_api import expect

    page = browser.page(lk_server, width=900, height=800)
    csp = page.request.get("/").headers["content-security-policy"]
    assert f"ws://{fake_livekit.url.removeprefix('http://')}" in csp
    token = start_livekit_call(page, fake_livekit)

    seen = lk(page)
    assert seen["connects"] == [{"url": token["url"], "token": token["token"]}]
    assert token["url"] == fake_livekit.url and token["room"].startswith("web-")
    assert seen["mics"][0]["on"] is True
    assert seen["mics"][0]["opts"] == {
        "echoCancellation": True,
        "noiseSuppression": True,
        "autoGainControl": True,
    }
    assert seen["stats"]["connected"] is True and seen["stats"]["fellBack"] is None
    expect(page.locator("#status")).to_have_attribute("data-state", "escuchando")
    # no WebSocket call was started alongside the room
    assert page.evaluate("() => window.tainaStats.framesSent") == 0

    # The agent's audio track is attached to a playing <audio> element.
    page.evaluate(EMIT_AGENT_AUDIO)
    audio = page.locator("audio[data-livekit='agent']")
    expect(audio).to_have_count(1)
    page.wait_for_function(
        "() => { const a = document.querySelector(\"audio[data-livekit='agent']\");"
        " return a && a.srcObject && !a.paused; }"
    )

    # Agent data messages on topic "taina" become captions and states.
    page.evaluate(EMIT_DATA, [{"type": "state", "state": "hablando"}, "taina"])
    expect(page.locator("#status")).to_have_attribute("data-state", "hablando")
    expect(page.locator("#status")).to_have_text("El asistente está hablando…")
    bot = {"type": "caption", "role": "assistant", "text": "Buenos días, ¿en qué", "final": False}
    page.evaluate(EMIT_DATA, [bot, "taina"])
    bot_final = dict(bot, text="Buenos días, ¿en qué le puedo ayudar?", final=True)
    page.evaluate(EMIT_DATA, [bot_final, "taina"])
    user = {"type": "caption", "role": "user", "text": "¿A qué hora abren?", "final": True}
    page.evaluate(EMIT_DATA, [user, "taina"])
    page.evaluate(EMIT_DATA, [{"type": "state", "state": "pensando"}, "taina"])
    # another topic and garbage are ignored
    page.evaluate(EMIT_DATA, [{"type": "state", "state": "hablando"}, "otro"])
    page.evaluate(
        "() => window.__lk.rooms.at(-1).emit(window.LivekitClient.RoomEvent.DataReceived,"
        " new TextEncoder().encode('{no es json'), undefined, 0, 'taina')"
    )
    items = page.locator("#captions li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_have_attribute("data-speaker", "bot")
    expect(items.nth(0)).to_contain_text("Buenos días, ¿en qué le puedo ayudar?")
    expect(items.nth(0)).not_to_have_class("bot partial")
    expect(items.nth(1)).to_have_attribute("data-speaker", "caller")
    expect(items.nth(1)).to_contain_text("¿A qué hora abren?")
    expect(page.locator("#status")).to_have_attribute("data-state", "pensando")
    screenshots(page, "visitor-livekit-captions")

    # «Colgar» leaves the room and frees the button; the agent's audio element goes away.
    page.get_by_role("button", name="Colgar").click()
    expect(page.get_by_role("button", name="Llamar")).to_be_enabled()
    expect(page.locator("#notice")).to_contain_text(MSG_ENDED)
    expect(audio).to_have_count(0)
    assert lk(page)["disconnects"] >= 1
    # a second press starts a new call (a new token, a new room), not a stale one
    with page.expect_response("**/api/livekit/token") as again:
        page.get_by_role("button", name="Llamar").click()
    assert again.value.json()["room"] != token["room"]
    page.wait_for_function("() => window.__lk.connects.length === 2")


def test_agent_ends_the_call_with_finalizada(
    lk_server: LiveServer, fake_livekit: FakeLiveKitTwirp, browser: Browser
) -> None:
    from playwright.sync_api import expect

    page = browser.page(lk_server, width=900, height=700)
    start_livekit_call(page, fake_livekit)
    final = {"type": "state", "state": "finalizada", "reason": "despedida"}
    page.evaluate(EMIT_DATA, [final, "taina"])
    expect(page.get_by_role("button", name="Llamar")).to_be_enabled()
    expect(page.locator("#notice")).to_contain_text(MSG_ENDED)
    assert lk(page)["disconnects"] >= 1


def test_dropped_room_shows_connection_lost(
    lk_server: LiveServer, fake_livekit: FakeLiveKitTwirp, browser: Browser
) -> None:
    from playwright.sync_api import expect

    page = browser.page(lk_server, width=900, height=700)
    start_livekit_call(page, fake_livekit)
    page.evaluate(
        "() => window.__lk.rooms.at(-1).emit(window.LivekitClient.RoomEvent.Disconnected,"
        " window.LivekitClient.DisconnectReason.SIGNAL_CLOSE)"
    )
    expect(page.get_by_role("alert")).to_contain_text(MSG_LOST)
    expect(page.get_by_role("button", name="Llamar")).to_be_enabled()


def test_failed_connect_falls_back_to_the_websocket(
    lk_server: LiveServer,
    fake_livekit: FakeLiveKitTwirp,
    browser: Browser,
    screenshots: Callable[[Any, str], Path],
) -> None:
    from playwright.sync_api import expect

    page = browser.page(lk_server, width=900, height=700)
    page.add_init_script(WRAP_SDK + "\nwindow.__lk.realConnect = true;")
    page.goto("/")
    page.get_by_role("button", name="Llamar").click()
    # The real SDK dialled the fake (no LiveKit signalling there) and gave up...
    page.wait_for_function("() => window.tainaLiveKit.fellBack === 'connect'", timeout=30_000)
    seen = lk(page)
    assert len(seen["connects"]) == 1 and seen["connects"][0]["url"] == fake_livekit.url
    assert seen["mics"] == []
    # ...and the call went on over WS /web/stream: the server greets, the page plays it.
    expect(page.get_by_role("button", name="Colgar")).to_be_enabled(timeout=30_000)
    page.wait_for_function("() => window.tainaStats.callId && window.tainaStats.marksEchoed > 0")
    assert page.evaluate("() => window.tainaStats.framesSent") > 0
    expect(page.locator("#message")).to_be_hidden()
    screenshots(page, "visitor-livekit-fallback")
    call_id = page.evaluate("() => window.tainaStats.callId")
    page.get_by_role("button", name="Colgar").click()
    expect(page.locator("#notice")).to_contain_text(MSG_ENDED)
    view = lk_server.call_view(call_id)
    assert view is not None and view.info.ingress == "web"
