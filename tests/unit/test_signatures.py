from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import FormData, Headers
from twilio.request_validator import RequestValidator

from telephony.signatures import TwilioSignatureChecker

TOKEN = "12345-test-auth-token"
FORM = {
    "CallSid": "CA" + "1" * 32,
    "AccountSid": "AC" + "2" * 32,
    "From": "+18095551234",
    "To": "+18295550000",
    "CallStatus": "ringing",
}
LOCAL = "http://127.0.0.1:8000/twilio/voice"


def sign(url: str, params: object = None, token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params or {})


def test_classic_vector_through_public_url() -> None:
    """Twilio's documented example: token 12345, this URL and body → this signature."""
    checker = TwilioSignatureChecker("12345", "https://mycompany.com")
    form = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    headers = {"X-Twilio-Signature": "0/KCTR6DLpKmkAf8muzZqo1nDgQ="}
    assert checker.check_webhook("http://10.0.0.5:8000/myapp.php?foo=1&bar=2", headers, form)


def test_public_url_rebuilds_the_url_twilio_called_with_query() -> None:
    public = "https://taina.example.do/twilio/voice?tenant=sde&x=a%20b"
    checker = TwilioSignatureChecker(TOKEN, "https://taina.example.do")
    headers = {"X-Twilio-Signature": sign(public, FORM)}
    result = checker.verify_webhook(LOCAL + "?tenant=sde&x=a%20b", headers, FORM)
    assert result.ok and result.reason == "ok"
    assert result.url == public
    # The query string is part of what Twilio signed.
    assert not checker.check_webhook(LOCAL + "?tenant=sde", headers, FORM)
    assert not checker.check_webhook(LOCAL, headers, FORM)


@pytest.mark.parametrize(
    ("public_url", "signed_url"),
    [
        ("https://taina.example.do", "https://taina.example.do:443/twilio/voice"),
        ("https://taina.example.do:443", "https://taina.example.do/twilio/voice"),
        ("https://taina.example.do:8443", "https://taina.example.do:8443/twilio/voice"),
        ("http://taina.example.do", "http://taina.example.do:80/twilio/voice"),
        ("https://proxy.example.do/taina/", "https://proxy.example.do/taina/twilio/voice"),
    ],
)
def test_port_and_prefix_variations(public_url: str, signed_url: str) -> None:
    checker = TwilioSignatureChecker(TOKEN, public_url)
    headers = {"X-Twilio-Signature": sign(signed_url, FORM)}
    assert checker.check_webhook(LOCAL, headers, FORM)


def test_scheme_matters() -> None:
    checker = TwilioSignatureChecker(TOKEN, "https://taina.example.do")
    headers = {"X-Twilio-Signature": sign("http://taina.example.do/twilio/voice", FORM)}
    result = checker.verify_webhook(LOCAL, headers, FORM)
    assert not result.ok and result.reason == "mismatch"


def test_forwarded_headers_without_public_url() -> None:
    checker = TwilioSignatureChecker(TOKEN, None)
    signature = sign("https://abc.ngrok.app/twilio/voice?a=1", FORM)
    forwarded = {
        "X-Twilio-Signature": signature,
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "abc.ngrok.app",
    }
    assert checker.check_webhook(LOCAL + "?a=1", forwarded, FORM)
    # Several proxies: the first hop is what Twilio saw.
    chained = {
        **forwarded,
        "X-Forwarded-Proto": "https, http",
        "X-Forwarded-Host": "abc.ngrok.app, 10.0.0.1",
    }
    assert checker.check_webhook(LOCAL + "?a=1", chained, FORM)
    # Without the forwarded headers the app only knows its internal URL: refused.
    assert not checker.check_webhook(LOCAL + "?a=1", {"X-Twilio-Signature": signature}, FORM)


def test_request_url_used_as_is_without_public_url_or_proxy() -> None:
    checker = TwilioSignatureChecker(TOKEN)
    headers = {"X-Twilio-Signature": sign(LOCAL, FORM)}
    assert checker.check_webhook(LOCAL, headers, FORM)


def test_header_lookup_is_case_insensitive() -> None:
    checker = TwilioSignatureChecker(TOKEN, "https://taina.example.do")
    signature = sign("https://taina.example.do/twilio/voice", FORM)
    assert checker.check_webhook(LOCAL, {"x-twilio-signature": signature}, FORM)
    assert checker.check_webhook(LOCAL, {"X-TWILIO-SIGNATURE": signature}, FORM)
    assert checker.check_webhook(LOCAL, Headers({"x-twilio-signature": signature}), FORM)


def test_starlette_form_with_repeated_keys() -> None:
    checker = TwilioSignatureChecker(TOKEN, "https://taina.example.do")
    items = [*FORM.items(), ("Digits", "1"), ("Digits", "2")]
    form = FormData(items)
    signature = sign("https://taina.example.do/twilio/voice", form)
    assert checker.check_webhook(LOCAL, {"X-Twilio-Signature": signature}, form)
    # Dropping one of the repeated values breaks the signature.
    assert not checker.check_webhook(LOCAL, {"X-Twilio-Signature": signature}, FormData(items[:-1]))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda f: {**f, "From": "+18095559999"},
        lambda f: {**f, "Extra": "1"},
        lambda f: {k: v for k, v in f.items() if k != "CallStatus"},
    ],
)
def test_tampered_params_refused(tamper) -> None:  # type: ignore[no-untyped-def]
    checker = TwilioSignatureChecker(TOKEN, "https://taina.example.do")
    headers = {"X-Twilio-Signature": sign("https://taina.example.do/twilio/voice", FORM)}
    assert checker.check_webhook(LOCAL, headers, FORM)
    assert not checker.check_webhook(LOCAL, headers, tamper(FORM))


def test_missing_or_wrong_token_signature_refused() -> None:
    checker = TwilioSignatureChecker(TOKEN, "https://taina.example.do")
    url = "https://taina.example.do/twilio/voice"
    missing = checker.verify_webhook(LOCAL, {}, FORM)
    assert not missing.ok and missing.reason == "missing-signature"
    empty = checker.verify_webhook(LOCAL, {"X-Twilio-Signature": ""}, FORM)
    assert not empty.ok and empty.reason == "missing-signature"
    wrong = {"X-Twilio-Signature": sign(url, FORM, token="another-token")}
    assert not checker.check_webhook(LOCAL, wrong, FORM)


@pytest.mark.parametrize(
    ("headers", "form"),
    [
        ({"X-Twilio-Signature": "ñandú☃" * 3}, FORM),
        ({"X-Twilio-Signature": "A" * 100_000}, FORM),
        ({"X-Twilio-Signature": "abc\ud800"}, FORM),
        ({"X-Twilio-Signature": "abc="}, {"From": "\ud800"}),
        ({"X-Twilio-Signature": "abc="}, {"From": None}),
        ({"X-Twilio-Signature": "abc="}, {"Upload": object()}),
        ({"X-Twilio-Signature": "abc=", "X-Forwarded-Proto": "javascript"}, FORM),
        ({"X-Twilio-Signature": "abc=", "X-Forwarded-Host": "evil.do/path?x"}, FORM),
        ({"X-Twilio-Signature": b"\xff\xfe"}, FORM),
    ],
)
def test_garbage_never_raises(headers: dict, form: dict) -> None:
    for public_url in (None, "https://taina.example.do"):
        checker = TwilioSignatureChecker(TOKEN, public_url)
        assert checker.check_webhook(LOCAL, headers, form) is False
        assert checker.check_webhook("::not a url::" + "é" * 5000, headers, form) is False


@settings(max_examples=200, deadline=None)
@given(
    url=st.text(max_size=300),
    signature=st.text(max_size=100),
    host=st.text(max_size=100),
    form=st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=5),
)
def test_arbitrary_input_never_raises_or_passes(
    url: str, signature: str, host: str, form: dict[str, str]
) -> None:
    headers = {"X-Twilio-Signature": signature, "X-Forwarded-Host": host}
    for public_url in (None, "https://taina.example.do"):
        checker = TwilioSignatureChecker(TOKEN, public_url)
        assert checker.check_webhook(url, headers, form) is False
        assert checker.check_stream("/twilio/stream", host, headers) is False
        assert checker.check_stream(url, host, headers) is False


# --- media stream upgrade --------------------------------------------------------------------


def test_stream_signed_wss_url_with_public_url() -> None:
    checker = TwilioSignatureChecker(TOKEN, "https://taina.example.do")
    headers = {"x-twilio-signature": sign("wss://taina.example.do/twilio/stream")}
    result = checker.verify_stream("/twilio/stream", "127.0.0.1:8000", headers)
    assert result.ok
    assert result.url == "wss://taina.example.do/twilio/stream"


def test_stream_https_signature_refused() -> None:
    checker = TwilioSignatureChecker(TOKEN, "https://taina.example.do")
    headers = {"x-twilio-signature": sign("https://taina.example.do/twilio/stream")}
    result = checker.verify_stream("/twilio/stream", "taina.example.do", headers)
    assert not result.ok and result.reason == "mismatch"


def test_stream_host_from_host_header_or_forwarded_host() -> None:
    checker = TwilioSignatureChecker(TOKEN, None)
    signature = sign("wss://abc.ngrok.app/twilio/stream")
    assert checker.check_stream(
        "/twilio/stream", "abc.ngrok.app", {"x-twilio-signature": signature}
    )
    forwarded = {"x-twilio-signature": signature, "x-forwarded-host": "abc.ngrok.app"}
    assert checker.check_stream("/twilio/stream", "127.0.0.1:8000", forwarded)
    assert not checker.check_stream(
        "/twilio/stream", "127.0.0.1:8000", {"x-twilio-signature": signature}
    )
    assert not checker.check_stream("/other", "abc.ngrok.app", {"x-twilio-signature": signature})


def test_stream_with_port_in_public_url() -> None:
    checker = TwilioSignatureChecker(TOKEN, "https://taina.example.do:8443")
    headers = {"X-Twilio-Signature": sign("wss://taina.example.do:8443/twilio/stream")}
    assert checker.check_stream("/twilio/stream", None, headers)


@pytest.mark.parametrize(
    ("path", "host", "headers", "reason"),
    [
        ("/twilio/stream", "abc.ngrok.app", {}, "missing-signature"),
        ("/twilio/stream", None, {"x-twilio-signature": "abc="}, "bad-url"),
        ("/twilio/stream", "", {"x-twilio-signature": "abc="}, "bad-url"),
        ("/twilio/stream", "a@b", {"x-twilio-signature": "abc="}, "bad-url"),
        ("/twilio/stream", "a.do/x", {"x-twilio-signature": "abc="}, "bad-url"),
        ("twilio/stream", "a.do", {"x-twilio-signature": "abc="}, "bad-url"),
        ("/twilio/stream", "a.do", {"x-twilio-signature": "x" * 5000}, "oversized-signature"),
    ],
)
def test_stream_refusals(path: str, host: str | None, headers: dict, reason: str) -> None:
    result = TwilioSignatureChecker(TOKEN).verify_stream(path, host, headers)
    assert not result.ok
    assert result.reason == reason


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        TwilioSignatureChecker("")
    with pytest.raises(ValueError):
        TwilioSignatureChecker(TOKEN, "taina.example.do")
