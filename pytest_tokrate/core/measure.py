"""Per-round samples and the metric formulas (see README, "Metrics").

A backend streams one request as :class:`TextChunk` events followed by one
:class:`EngineReport`; the runner stamps each event with a monotonic clock and hands the
stamped :class:`RawRound` to :func:`derive_sample`, which applies the formulas:

========================  ==================================================
TTFT                      ``t_first - t0`` (first chunk with non-empty text)
TPOT                      ``(t_end - t_first) / (n - 1)`` for ``n > 1``
ITL                       every gap ``t_i - t_{i-1}`` between content chunks
E2E latency               ``t_end - t0``
decode tok/s (engine)     ``n_decoded / decode_seconds`` from the engine's own timers
decode tok/s (client)     ``(n - 1) / (t_end - t_first)`` for ``n > 1``
prefill tok/s (engine)    ``prompt tokens processed / prefill seconds``
end-to-end tok/s          ``n / (t_end - t0)``
========================  ==================================================

``n`` is the engine's own count of generated tokens.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TextChunk:
    """A piece of generated text as the backend received it."""

    text: str
    tokens: int | None = None  # tokens this chunk carries, when the backend knows


@dataclass(frozen=True)
class EngineReport:
    """The engine's own counts and timers for one request (``None`` when not reported).

    ``decode_tokens`` is the number of tokens the decode timer covers, which may differ
    from ``output_tokens`` by one (llama.cpp's first token comes out of prefill).
    """

    output_tokens: int | None = None
    prompt_tokens: int | None = None
    prompt_tokens_processed: int | None = None  # prompt tokens actually evaluated (not cached)
    prompt_tokens_cached: int | None = None
    decode_tokens: int | None = None
    decode_ns: int | None = None
    prefill_ns: int | None = None
    load_ns: int | None = None
    total_ns: int | None = None
    done_reason: str | None = None
    token_count_estimated: bool = False  # counts come from a re-tokenisation, not the engine
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StampedChunk:
    text: str
    t_ns: int
    tokens: int | None = None


@dataclass(frozen=True)
class RawRound:
    """One request as observed by the client: timestamps in ``perf_counter_ns`` units."""

    t0_ns: int
    chunks: tuple[StampedChunk, ...]
    t_end_ns: int
    engine: EngineReport


@dataclass(frozen=True)
class Sample:
    """Every figure of one measured round. Times in seconds, rates in tokens/second."""

    index: int
    text: str
    output_tokens: int | None
    prompt_tokens: int | None
    ttft: float | None
    tpot: float | None
    e2e: float
    itl: tuple[float, ...]
    decode_tps: float | None  # engine's own timer where it has one, else the client's
    decode_tps_client: float | None
    decode_tps_engine: float | None
    prefill_tps: float | None
    e2e_tps: float | None
    load: float | None
    chunks: int
    words: int
    done_reason: str | None
    token_count_estimated: bool = False
    prompt_tokens_cached: int | None = None
    normalized_tokens: int | None = None  # output re-counted with one fixed tiktoken encoding
    #: Prompt tokens the engine evaluated in this round (the server's counter).
    prompt_tokens_processed: int | None = None
    #: True when the round reused a prompt cache it should not have (core/cache.py).
    cache_reused: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when the engine generated no tokens (no rates can be derived)."""
        return not self.output_tokens

    @property
    def decode_agreement(self) -> float | None:
        """Client-derived decode rate over the engine's (1.0 = perfect agreement)."""
        if self.decode_tps_client is None or not self.decode_tps_engine:
            return None
        return self.decode_tps_client / self.decode_tps_engine

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "text": self.text,
            "output_tokens": self.output_tokens,
            "prompt_tokens": self.prompt_tokens,
            "prompt_tokens_cached": self.prompt_tokens_cached,
            "prompt_tokens_processed": self.prompt_tokens_processed,
            "cache_reused": self.cache_reused,
            "ttft_s": self.ttft,
            "tpot_s": self.tpot,
            "e2e_s": self.e2e,
            "itl_s": list(self.itl),
            "decode_tps": self.decode_tps,
            "decode_tps_client": self.decode_tps_client,
            "decode_tps_engine": self.decode_tps_engine,
            "prefill_tps": self.prefill_tps,
            "e2e_tps": self.e2e_tps,
            "load_s": self.load,
            "chunks": self.chunks,
            "words": self.words,
            "done_reason": self.done_reason,
            "token_count_estimated": self.token_count_estimated,
            "normalized_tokens": self.normalized_tokens,
        }


def _rate(count: int | None, ns: int | None) -> float | None:
    if count is None or ns is None or count <= 0 or ns <= 0:
        return None
    return count / (ns / 1e9)


def derive_sample(raw: RawRound, index: int = 0) -> Sample:
    """Apply the metric formulas to one stamped round."""
    content = [c for c in raw.chunks if c.text]
    text = "".join(c.text for c in raw.chunks)
    eng = raw.engine
    n = eng.output_tokens
    if n is None and content and all(c.tokens is not None for c in content):
        # No engine count: fall back to chunk token counts when every chunk has one.
        n = sum(c.tokens or 0 for c in content)
    t_first = content[0].t_ns if content else None
    e2e_ns = raw.t_end_ns - raw.t0_ns
    ttft = (t_first - raw.t0_ns) / 1e9 if t_first is not None else None
    tpot = None
    decode_client = None
    if t_first is not None and n is not None and n > 1 and raw.t_end_ns > t_first:
        span = (raw.t_end_ns - t_first) / 1e9
        tpot = span / (n - 1)
        decode_client = (n - 1) / span
    itl = tuple((b.t_ns - a.t_ns) / 1e9 for a, b in itertools.pairwise(content))
    decode_tokens = eng.decode_tokens if eng.decode_tokens is not None else n
    decode_engine = _rate(decode_tokens, eng.decode_ns)
    processed = (
        eng.prompt_tokens_processed
        if eng.prompt_tokens_processed is not None
        else eng.prompt_tokens
    )
    prefill = _rate(processed, eng.prefill_ns)
    e2e_tps = (n / (e2e_ns / 1e9)) if n and e2e_ns > 0 else (0.0 if n == 0 else None)
    return Sample(
        index=index,
        text=text,
        output_tokens=n,
        prompt_tokens=eng.prompt_tokens,
        ttft=ttft,
        tpot=tpot,
        e2e=e2e_ns / 1e9,
        itl=itl,
        decode_tps=decode_engine if decode_engine is not None else decode_client,
        decode_tps_client=decode_client,
        decode_tps_engine=decode_engine,
        prefill_tps=prefill,
        e2e_tps=e2e_tps,
        load=eng.load_ns / 1e9 if eng.load_ns is not None else None,
        chunks=len(content),
        words=len(text.split()),
        done_reason=eng.done_reason,
        token_count_estimated=eng.token_count_estimated,
        prompt_tokens_cached=eng.prompt_tokens_cached,
        prompt_tokens_processed=eng.prompt_tokens_processed,
        extra=dict(eng.extra),
    )


__all__ = ["EngineReport", "RawRound", "Sample", "StampedChunk", "TextChunk", "derive_sample"]
