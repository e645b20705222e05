from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from telephony.twiml import (
    TRANSFER_MESSAGE,
    UNAVAILABLE_MESSAGE,
    connect_stream_twiml,
    hangup_twiml,
    stream_url,
    transfer_twiml,
    unavailable_twiml,
)


def parse(xml: str) -> ET.Element:
    root = ET.fromstring(xml.encode())
    assert root.tag == "Response"
    return root


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("https://taina.example.do", "wss://taina.example.do/twilio/stream"),
        ("https://taina.example.do/", "wss://taina.example.do/twilio/stream"),
        ("http://localhost:8000", "wss://localhost:8000/twilio/stream"),
        ("https://abc.ngrok.app/?x=1#frag", "wss://abc.ngrok.app/twilio/stream"),
        ("https://user:pw@host.do:8443", "wss://host.do:8443/twilio/stream"),
        ("https://proxy.do/taina", "wss://proxy.do/taina/twilio/stream"),
        ("https://proxy.do/taina/", "wss://proxy.do/taina/twilio/stream"),
    ],
)
def test_stream_url_is_wss_without_query(base: str, expected: str) -> None:
    assert stream_url(base) == expected


def test_stream_url_custom_path_and_prefix_not_doubled() -> None:
    assert stream_url("https://h.do", "media") == "wss://h.do/media"
    assert stream_url("https://h.do/taina", "/taina/twilio/stream") == (
        "wss://h.do/taina/twilio/stream"
    )


@pytest.mark.parametrize("base", ["", "h.do", "ftp://h.do", "https://", "/relative"])
def test_stream_url_rejects_non_http_bases(base: str) -> None:
    with pytest.raises(ValueError):
        stream_url(base)


def test_connect_stream_twiml_carries_url_callback_and_parameters() -> None:
    url = "wss://taina.example.do/twilio/stream"
    xml = connect_stream_twiml(
        url,
        "https://taina.example.do/twilio/status",
        {"token": "abc.def", "from": "+18095551234", "odd": 'a&b<c>"d'},
    )
    root = parse(xml)
    assert [child.tag for child in root] == ["Connect"]  # nothing after <Connect>
    stream = root.find("Connect/Stream")
    assert stream is not None
    assert stream.get("url") == url
    assert stream.get("statusCallback") == "https://taina.example.do/twilio/status"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params == {"token": "abc.def", "from": "+18095551234", "odd": 'a&b<c>"d'}


def test_connect_stream_twiml_without_status_callback_or_declaration() -> None:
    xml = connect_stream_twiml("wss://h.do/s", None, {}, declaration=False)
    assert xml.startswith("<Response>")
    stream = parse(xml).find("Connect/Stream")
    assert stream is not None
    assert "statusCallback" not in stream.attrib
    assert stream.findall("Parameter") == []


def test_parameter_length_limit() -> None:
    connect_stream_twiml("wss://h.do/s", None, {"t": "x" * 498})  # 499 chars: allowed
    with pytest.raises(ValueError):
        connect_stream_twiml("wss://h.do/s", None, {"t": "x" * 499})  # 500 chars
    with pytest.raises(ValueError):
        connect_stream_twiml("wss://h.do/s", None, {"": "x"})
    with pytest.raises(ValueError):
        connect_stream_twiml("wss://h.do/s", None, {"t": "a\x00b"})


@pytest.mark.parametrize(
    "url", ["https://h.do/s", "ws://h.do/s", "wss://h.do/s?token=1", "wss:///s", "/twilio/stream"]
)
def test_connect_stream_twiml_rejects_bad_stream_urls(url: str) -> None:
    with pytest.raises(ValueError):
        connect_stream_twiml(url, None, {})


def test_unavailable_twiml_says_spanish_and_hangs_up() -> None:
    root = parse(unavailable_twiml())
    assert [child.tag for child in root] == ["Say", "Hangup"]
    say = root.find("Say")
    assert say is not None
    assert say.get("language") == "es-MX"
    assert say.text == UNAVAILABLE_MESSAGE
    assert "no está disponible" in UNAVAILABLE_MESSAGE


def test_transfer_twiml_announces_and_dials() -> None:
    root = parse(transfer_twiml("+18095551234", "+18095550000"))
    assert [child.tag for child in root] == ["Say", "Dial"]
    assert root.findtext("Say") == TRANSFER_MESSAGE
    dial = root.find("Dial")
    assert dial is not None
    assert dial.get("timeout") == "20"
    assert dial.get("callerId") == "+18095550000"
    assert dial.findtext("Number") == "+18095551234"


def test_transfer_twiml_without_caller_id() -> None:
    dial = parse(transfer_twiml(" +18095551234 ")).find("Dial")
    assert dial is not None
    assert "callerId" not in dial.attrib
    assert dial.findtext("Number") == "+18095551234"


@pytest.mark.parametrize("number", ["", "8095551234", "+0123", "+1809555123x", "sip:a@b"])
def test_transfer_twiml_rejects_non_e164(number: str) -> None:
    with pytest.raises(ValueError):
        transfer_twiml(number)


def test_hangup_twiml() -> None:
    root = parse(hangup_twiml())
    assert [child.tag for child in root] == ["Hangup"]
