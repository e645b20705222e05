"""The masking rules of app/personal_data.py on the shapes numbers take in a call."""

from __future__ import annotations

import json
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.personal_data import Redactor, mask_heard, mask_keyed, mask_number, mask_text


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        ("Mi cédula es 001-1234567-8, gracias", "Mi cédula es *******5678, gracias"),
        ("0 0 1 1 2 3 4 5 6 7 8", "*******5678"),
        ("0 0 1, 1 2 3 4 5 6 7, 8", "*******5678"),  # as speakable() writes it
        ("cero cero uno, uno dos tres cuatro cinco seis siete, ocho", "*******5678"),
        ("Cero cero uno 1234567 ocho", "*******5678"),  # words and digits mixed
        (
            "mi número es 8095550100 y mi cédula 00112345678",
            "mi número es ******0100 y mi cédula *******5678",
        ),
        ("llámeme al +1 809 555 0100", "llámeme al +*******0100"),
        ("(809) 555-0100", "(******0100"),
        ("809.555.0100", "******0100"),
        ("40,212,345,678", "*******5678"),  # a cédula as a transcriber may group it
        ('{"cedula": "00112345678"}', '{"cedula": "*******5678"}'),
        ("555-0100", "***0100"),  # a local number
        ("cédula00112345678", "cédula*******5678"),  # glued by the transcriber
        ("cero0000000", "cero***0000"),
        ("uno00000000000000000", "uno*************0000"),  # words, not an id
    ],
)
def test_numbers_in_text_are_masked(said: str, shown: str) -> None:
    assert mask_text(said) == shown


@pytest.mark.parametrize(
    "text",
    [
        "una cita para las 8 y 30",
        "el 2025-03-01 a las 10",
        "2030-03-01T08:00:00-04:00",
        "2030-03-01 08:00:00-04:00",  # str() of a datetime in a tool result
        "el 01/03/2030 10:30",
        "cuesta RD$1,500,000.00",
        "uuid 550e8400-e29b-41d4-a716-446655440000",
        "web-1234567890abcdef",  # a web call id
        "CA1234567890123456789012345678abcd",  # a Twilio call SID
        "TA-7K3P9",
        "dos o tres personas",
        "cero cero uno",  # the first group alone is not a number of anyone
        "abren de 8 a 4, de lunes a viernes",
    ],
)
def test_other_numbers_stay(text: str) -> None:
    assert mask_text(text) == text


def test_keyed_digits_and_number_fields() -> None:
    assert mask_keyed("00112345678#") == "*******5678#"
    assert mask_keyed("1") == "1" and mask_keyed("12#") == "12#"
    assert mask_keyed("12345") == "*2345"
    assert mask_number("+18095550100") == "+*******0100"
    assert mask_number("001-1234567-8") == "***-****567-8"
    assert mask_number("123") == "***" and mask_number("anonymous") == "anonymous"


def test_heard_text_cut_mid_number_is_masked_whole() -> None:
    reply = "Su cédula es cero cero uno, uno dos tres cuatro cinco seis siete, ocho."
    assert mask_heard("Su cédula es cero cero uno, uno dos tres", reply) == "Su cédula es ******"
    assert mask_heard("Son las 8", "Son las 8 y media") == "Son las 8"


def test_admins_see_everything_agents_do_not() -> None:
    tool = {"arguments": {"cedula": 112345678, "slot_id": 3}, "result": "al 8095550100"}
    assert Redactor(full=True).data(tool) == tool
    assert Redactor(full=False).data(tool) == {
        "arguments": {"cedula": "*****5678", "slot_id": 3},
        "result": "al ******0100",
    }


_LONG_RUN = re.compile(r"\d(?:[\s\-.,/()]{0,3}\d){6,}")
_EXEMPT = re.compile(
    r"\d{1,3}(?:[.,]\d{3}){1,2}(?:[.,]\d{1,2})?"  # amounts
    r"|(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{4})(?:\s\d{1,2})?"  # dates (and hour)
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["cero", "uno", "dos", "nueve", " ", "-", ", ", ".", "x", "é"]),
            st.text(alphabet="0123456789", min_size=1, max_size=12),
        ),
        max_size=40,
    )
)
def test_no_long_digit_run_survives(parts: list[str]) -> None:
    """Whatever the mix, an agent never reads 7 digits of one number in a row (dates and
    amounts with thousands separators excepted, which are not personal; and identifiers, runs
    hexadecimal tokens of 20+ characters, which these parts cannot build)."""
    text = "".join(parts)
    for m in _LONG_RUN.finditer(mask_text(text)):
        assert _EXEMPT.fullmatch(m.group(0)), (text, m.group(0))


def test_hostile_text_is_linear() -> None:
    """A 100 KB transcript built to make a backtracking pattern explode is masked quickly."""
    hostile = "1 " * 25_000 + "a" + "cero, " * 8_000 + "x" + "-1" * 10_000
    start = time.perf_counter()
    mask_text(hostile)
    assert time.perf_counter() - start < 1.0


def test_log_lines_mask_numbers() -> None:
    """The session logs what callers say; the log line keeps no full number."""
    import logging

    from app.personal_data import MaskingLogFilter

    said = logging.LogRecord(
        "taina.session", logging.INFO, __file__, 1, "caller: %s%s",
        ("mi cédula es 001-1234567-8", " [DTMF 8095550100]"), None,
    )  # fmt: skip
    assert MaskingLogFilter().filter(said)
    assert said.getMessage() == "caller: mi cédula es *******5678 [DTMF ******0100]"
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "al 00112345678", None, None)
    MaskingLogFilter().filter(plain)
    assert plain.getMessage() == "al *******5678"


def test_a_live_event_cut_inside_a_number_hides_the_cut_digits() -> None:
    """Live events over the broker's size limit have their texts cut and end in "…"."""
    from app.live_events import fit_payload

    said = "x" * 9000 + " mi cédula es 001-1234567-8"
    event = {"type": "turn", "text": "a" * 7000 + " 001-12345" + "b" * 2000, "heard_text": said}
    cut = json.loads(fit_payload(event))
    assert cut["truncated"] is True
    shown = Redactor(full=False).data({**cut, "text": "a" * 30 + " 001-12…"})
    assert shown["text"] == "a" * 30 + " *****…"
    assert Redactor(full=False).data({"text": "son las 8…", "truncated": True})["text"] == (
        "son las 8…"
    )


def test_agents_cannot_search_by_part_of_a_number() -> None:
    agent, admin = Redactor(full=False), Redactor(full=True)
    for q in ("45678", "001-12", "cuatro cinco seis", "mi cédula 1234567"):
        assert agent.search_refusal(q) is not None, q
        assert admin.search_refusal(q) is None
    for q in ("cédula", "8 de marzo", "a las 10", "00112345678", "809-555-0100", None):
        assert agent.search_refusal(q) is None, q
    assert agent.search_refusal(phone="555-0100") is not None
    assert agent.search_refusal(phone="0100") is None
    assert agent.search_refusal(phone="+1 809 555 0100") is None
