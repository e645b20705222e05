"""Pre-rendered and recently rendered sentences, served at no synthesis cost.

The session sends TTS one sentence at a time (pipeline/sentences.py cuts the brain's reply),
and most of what the offline assistant says is a fixed sentence: the greeting, each slot
question, confirmations. :class:`CachedTTS` wraps the embedded voice and keys audio by the
exact sentence text and sample rate:

- *pinned* entries come from :meth:`CachedTTS.prerender` at start-up (the brain's fixed
  phrases, cut exactly as the session's sentence splitter cuts them) and are never evicted;
- everything else rendered completely is kept in an LRU bounded in bytes, so a sentence said
  again (a repeated question, the same read-back) costs nothing the second time.

A cache hit yields the same bytes, in the same chunk sizes, as the voice produced.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import aclosing
from typing import Any

from pipeline.engines import TextToSpeech
from pipeline.sentences import SentenceSplitter
from pipeline.tts import CHUNK_MS

log = logging.getLogger("taina.tts.cache")


def session_sentences(text: str) -> list[str]:
    """``text`` cut exactly as the call session cuts a reply before TTS sees it."""
    splitter = SentenceSplitter()
    return [*splitter.push(text), *splitter.flush()]


class CachedTTS:
    """A TextToSpeech that remembers audio per (sentence, sample rate)."""

    def __init__(
        self,
        inner: TextToSpeech,
        max_bytes: int = 32 * 1024 * 1024,
        metrics: Any = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name  # the chain's metrics and records name the real voice
        self.max_bytes = max_bytes
        self.metrics = metrics
        self._pinned: dict[tuple[str, int], bytes] = {}
        self._recent: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._recent_bytes = 0
        self.hits = 0
        self.misses = 0

    def attach_metrics(self, metrics: Any) -> None:
        self.metrics = metrics

    # --- lookup --------------------------------------------------------------------------------
    def cached(self, text: str, sample_rate: int) -> bytes | None:
        key = (text, sample_rate)
        audio = self._pinned.get(key)
        if audio is None:
            audio = self._recent.get(key)
            if audio is not None:
                self._recent.move_to_end(key)
        return audio

    @property
    def size_bytes(self) -> int:
        """Audio held in the LRU (pinned phrases are counted separately)."""
        return self._recent_bytes

    @property
    def pinned_bytes(self) -> int:
        return sum(len(a) for a in self._pinned.values())

    def _count(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        counter = getattr(self.metrics, "tts_cache_total", None)
        if counter is not None:
            counter.labels("hit" if hit else "miss").inc()

    def _remember(self, key: tuple[str, int], audio: bytes) -> None:
        if key in self._pinned or len(audio) > self.max_bytes:
            return
        old = self._recent.pop(key, None)
        if old is not None:
            self._recent_bytes -= len(old)
        self._recent[key] = audio
        self._recent_bytes += len(audio)
        while self._recent_bytes > self.max_bytes:
            _, evicted = self._recent.popitem(last=False)
            self._recent_bytes -= len(evicted)

    # --- TextToSpeech --------------------------------------------------------------------------
    async def synthesize(self, text: str, sample_rate: int, **kwargs: Any) -> AsyncIterator[bytes]:
        """Cached audio when this exact sentence was rendered before at this rate; else the
        voice's audio, remembered once it finished (a cancelled render is not kept)."""
        audio = self.cached(text, sample_rate)
        if audio is not None:
            self._count(hit=True)
            step = sample_rate * CHUNK_MS // 1000 * 2
            for start in range(0, len(audio), step):
                yield audio[start : start + step]
            return
        self._count(hit=False)
        chunks: list[bytes] = []
        stream = self.inner.synthesize(text, sample_rate, **kwargs)  # type: ignore[call-arg]
        async with aclosing(stream):  # a cancelled consumer stops the voice too
            async for chunk in stream:
                chunks.append(chunk)
                yield chunk
        if not kwargs:  # only PCM16 renders are interchangeable
            self._remember((text, sample_rate), b"".join(chunks))

    async def synthesize_all(self, text: str, sample_rate: int) -> bytes:
        return b"".join([chunk async for chunk in self.synthesize(text, sample_rate)])

    async def warm_up(self) -> None:
        warm = getattr(self.inner, "warm_up", None)
        if warm is not None:
            await warm()

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()

    # --- start-up ------------------------------------------------------------------------------
    async def prerender(self, texts: Iterable[str], rates: Sequence[int]) -> int:
        """Render every sentence of ``texts`` at each rate and pin it. Returns how many
        (sentence, rate) pairs were rendered; one that fails is logged and skipped."""
        t0 = time.perf_counter()
        done = 0
        total_bytes = 0
        seen: set[tuple[str, int]] = set()
        for text in texts:
            for sentence in session_sentences(text):
                for rate in rates:
                    key = (sentence, rate)
                    if key in seen or key in self._pinned:
                        continue
                    seen.add(key)
                    try:
                        chunks = [c async for c in self.inner.synthesize(sentence, rate)]
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.warning("pre-rendering %r failed", sentence[:60], exc_info=True)
                        continue
                    audio = b"".join(chunks)
                    self._pinned[key] = audio
                    old = self._recent.pop(key, None)
                    if old is not None:
                        self._recent_bytes -= len(old)
                    total_bytes += len(audio)
                    done += 1
                    await asyncio.sleep(0)  # let calls in progress run between renders
        log.info(
            "pre-rendered %d sentences with %s in %.2f s (%.1f MB)",
            done,
            self.name,
            time.perf_counter() - t0,
            total_bytes / 1e6,
        )
        return done
