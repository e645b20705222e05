"""Turn detection on speech probabilities, and what the caller heard from mark echoes."""

from __future__ import annotations

from pipeline.playout import PlayoutTracker
from pipeline.turn_taking import TurnConfig, TurnDetector, TurnEvent, UtteranceBuffer

CFG = TurnConfig(
    threshold=0.5,
    neg_threshold=0.35,
    min_speech_ms=96,
    speculative_silence_ms=256,
    end_of_turn_silence_ms=544,
    max_utterance_ms=3200,
)


def run(probs: list[float]) -> list[tuple[int, TurnEvent]]:
    det = TurnDetector(CFG, window_ms=32)
    return [(i, e) for i, p in enumerate(probs) if (e := det.update(p)) is not None]


def test_speech_pause_resume_and_end() -> None:
    probs = [0.0] * 3 + [0.9] * 10 + [0.1] * 9 + [0.9] * 5 + [0.1] * 17
    events = run(probs)
    assert [e for _, e in events] == [
        TurnEvent.SPEECH_STARTED,
        TurnEvent.PAUSED,
        TurnEvent.RESUMED,
        TurnEvent.PAUSED,
        TurnEvent.TURN_ENDED,
    ]
    assert events[0][0] == 5  # three windows (96 ms) of speech confirm it
    assert events[1][0] == 13 + 7  # 256 ms of silence: speculative transcription
    assert events[2][0] == 22  # speech again: the speculation is stale
    assert events[4][0] == 27 + 16  # 544 ms of silence ends the turn


def test_hysteresis_keeps_a_quiet_syllable_inside_the_turn() -> None:
    probs = [0.9] * 10 + [0.4] * 30 + [0.0] * 17
    events = [e for _, e in run(probs)]
    assert events == [TurnEvent.SPEECH_STARTED, TurnEvent.PAUSED, TurnEvent.TURN_ENDED]
    assert run([0.9] * 10 + [0.4] * 30)[-1][1] is TurnEvent.SPEECH_STARTED


def test_blips_are_not_speech_and_long_speech_is_capped() -> None:
    assert run([0.0, 0.9, 0.9, 0.1, 0.9, 0.2] * 10) == []
    events = run([0.9] * 120)  # 3.8 s of speech with no pause, utterances capped at 3.2 s
    assert [e for _, e in events][:2] == [TurnEvent.SPEECH_STARTED, TurnEvent.TURN_ENDED]
    assert (events[1][0] - events[0][0]) * 32 <= CFG.max_utterance_ms


def test_end_now_only_ends_an_utterance_in_progress() -> None:
    det = TurnDetector(CFG, window_ms=32)
    assert det.end_now() is None
    for _ in range(4):
        det.update(0.9)
    assert det.end_now() is TurnEvent.TURN_ENDED and not det.speaking


def test_utterance_buffer_keeps_preroll_and_prepends_carry() -> None:
    buf = UtteranceBuffer(preroll_windows=2)
    for chunk in (b"a", b"b", b"c"):
        buf.add(chunk)
    buf.begin(carry=b"X")
    buf.add(b"d")
    buf.prepend(b"0")
    assert buf.finish() == b"0Xbcd"
    assert not buf.active


def test_heard_text_follows_mark_echoes_to_a_word_boundary() -> None:
    tracker = PlayoutTracker()
    tracker.start_reply()
    start, end = tracker.add_text("Abrimos de lunes a viernes.")
    tracker.add_chunk("0.1", 10, 0.5)
    tracker.add_chunk("0.2", 14, 0.5)  # "Abrimos de lun|es": half a word heard
    tracker.add_chunk("0.3", end, 0.5)
    assert tracker.speaking and tracker.unplayed_s == 1.5
    assert not tracker.played("unknown")
    assert tracker.played("0.2")  # confirms 0.1 too
    assert tracker.heard_text() == "Abrimos de"
    tracker.flush()
    assert not tracker.speaking
    assert not tracker.played("0.3")  # a late echo after clear changes nothing
    assert tracker.heard_text() == "Abrimos de"


def test_a_candidate_opened_over_the_threshold_goes_on_over_the_floor() -> None:
    """Hysteresis from the first window (as Silero segments): an onset over ``threshold``
    followed by windows over ``neg_threshold`` is speech; windows under the floor are not."""
    events = [e for _, e in run([0.0, 0.55, 0.45, 0.45, 0.45] + [0.0] * 20)]
    assert events == [TurnEvent.SPEECH_STARTED, TurnEvent.PAUSED, TurnEvent.TURN_ENDED]
    assert run([0.45] * 10) == []  # never over the threshold: no candidate at all
    assert run([0.55, 0.3, 0.45, 0.45] * 5) == []  # each dip under the floor restarts it
