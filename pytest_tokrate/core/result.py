"""The result of one ``tokrate.run``: every raw sample and the summaries computed from it."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pytest_tokrate.backends.base import ModelInfo
from pytest_tokrate.core.measure import Sample
from pytest_tokrate.core.stats import Summary


def _float(x: int | None) -> float | None:
    return None if x is None else float(x)


def _normalized_tps(s: Sample) -> float | None:
    if s.normalized_tokens is None or s.e2e <= 0:
        return None
    return s.normalized_tokens / s.e2e


#: Figures summarised over rounds: attribute name -> (sample getter, unit, higher is better)
FIGURES: dict[str, tuple[Callable[[Sample], float | None], str, bool]] = {
    "decode_tps": (lambda s: s.decode_tps, "tok/s", True),
    "decode_tps_client": (lambda s: s.decode_tps_client, "tok/s", True),
    "decode_tps_engine": (lambda s: s.decode_tps_engine, "tok/s", True),
    "prefill_tps": (lambda s: s.prefill_tps, "tok/s", True),
    "e2e_tps": (lambda s: s.e2e_tps, "tok/s", True),
    "ttft": (lambda s: s.ttft, "s", False),
    "tpot": (lambda s: s.tpot, "s", False),
    "e2e": (lambda s: s.e2e, "s", False),
    "load": (lambda s: s.load, "s", False),
    "output_tokens": (lambda s: _float(s.output_tokens), "tok", True),
    "prompt_tokens": (lambda s: _float(s.prompt_tokens), "tok", True),
    "words": (lambda s: float(s.words), "words", True),
    "normalized_tokens": (lambda s: _float(s.normalized_tokens), "tok", True),
    "normalized_tps": (_normalized_tps, "tok/s", True),
}  # fmt: skip


@dataclass
class Measurement:
    """Samples of the measured rounds of one prompt on one model, and their summaries.

    Each figure in :data:`FIGURES` is available as a :class:`~pytest_tokrate.core.stats.Summary`
    attribute: ``r.decode_tps.median``, ``r.ttft.p90``, ``r.e2e.ci95`` ...
    Times are in seconds, rates in tokens per second.
    """

    model: ModelInfo
    samples: list[Sample]
    settings: dict[str, Any]
    request: dict[str, Any]
    cache_busting: str
    versions: dict[str, str | None]
    warmup_rounds: int = 0
    #: Seconds the engine spent loading the model during warm-up (the embedded engine
    #: loads there, so ``load`` of the measured rounds is empty); ``None``: no load seen.
    warmup_load_s: float | None = None
    discarded: list[str] = field(default_factory=list)
    test_id: str | None = None
    label: str | None = None
    #: Filled by quality checks (see checks.py): per-round outcomes and the pass rate.
    quality: Any = None
    #: Verdicts of the judges (quality bar, baseline gate), filled after the test body ran.
    findings: list[Any] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self, figure: str) -> Summary:
        if figure not in FIGURES:
            raise AttributeError(f"unknown figure {figure!r}; known: {', '.join(FIGURES)}")
        getter = FIGURES[figure][0]
        return Summary.of(getter(s) for s in self.samples)

    @cached_property
    def decode_tps(self) -> Summary:
        return self.summary("decode_tps")

    @cached_property
    def decode_tps_client(self) -> Summary:
        return self.summary("decode_tps_client")

    @cached_property
    def decode_tps_engine(self) -> Summary:
        return self.summary("decode_tps_engine")

    @cached_property
    def prefill_tps(self) -> Summary:
        return self.summary("prefill_tps")

    @cached_property
    def e2e_tps(self) -> Summary:
        return self.summary("e2e_tps")

    @cached_property
    def ttft(self) -> Summary:
        return self.summary("ttft")

    @cached_property
    def tpot(self) -> Summary:
        return self.summary("tpot")

    @cached_property
    def e2e(self) -> Summary:
        return self.summary("e2e")

    @cached_property
    def load(self) -> Summary:
        return self.summary("load")

    @cached_property
    def output_tokens(self) -> Summary:
        return self.summary("output_tokens")

    @cached_property
    def prompt_tokens(self) -> Summary:
        return self.summary("prompt_tokens")

    @cached_property
    def words(self) -> Summary:
        return self.summary("words")

    @cached_property
    def normalized_tokens(self) -> Summary:
        """Output re-counted with cl100k_base (the common yardstick across tokenizers)."""
        return self.summary("normalized_tokens")

    @cached_property
    def normalized_tps(self) -> Summary:
        return self.summary("normalized_tps")

    @cached_property
    def itl(self) -> Summary:
        """Every inter-chunk gap of every round, pooled (chunk-weighted)."""
        return Summary.of(gap for s in self.samples for gap in s.itl)

    @property
    def rounds(self) -> int:
        return len(self.samples)

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.samples]

    @property
    def empty_rounds(self) -> int:
        """Rounds in which the engine generated no token."""
        return sum(1 for s in self.samples if s.empty)

    @property
    def decode_agreement(self) -> Summary:
        """Client-derived decode rate over the engine's, per round."""
        return Summary.of(s.decode_agreement for s in self.samples)

    @property
    def pass_rate(self) -> float:
        """Share of rounds that passed every quality check (1.0 when there are no checks)."""
        if self.quality is None:
            return 1.0
        rate = getattr(self.quality, "pass_rate", 1.0)
        return float(rate) if rate is not None and not math.isnan(rate) else 1.0

    def summaries(self) -> dict[str, dict[str, Any]]:
        out = {name: self.summary(name).to_dict() for name in FIGURES}
        out["itl"] = self.itl.to_dict()
        return out

    def to_dict(self, include_samples: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "test_id": self.test_id,
            "label": self.label,
            "model": self.model.to_dict(),
            "settings": self.settings,
            "request": self.request,
            "cache_busting": self.cache_busting,
            "versions": self.versions,
            "rounds": self.rounds,
            "warmup_rounds": self.warmup_rounds,
            "warmup_load_s": self.warmup_load_s,
            "discarded": list(self.discarded),
            "summaries": self.summaries(),
        }
        if include_samples:
            data["samples"] = [s.to_dict() for s in self.samples]
        if self.quality is not None and hasattr(self.quality, "to_dict"):
            data["quality"] = self.quality.to_dict()
        data["findings"] = [f.to_dict() for f in self.findings if hasattr(f, "to_dict")]
        return data


__all__ = ["FIGURES", "Measurement"]
