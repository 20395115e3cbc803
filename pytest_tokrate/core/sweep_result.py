"""What a sweep measured: one :class:`SweepLevel` per level, gathered in a :class:`SweepResult`.

Each level holds its settings, the :class:`~pytest_tokrate.core.result.Measurement` of its
completed requests, the errors of the failed ones and its wall time, from which the
aggregate throughput follows. The driver that fills them is :mod:`pytest_tokrate.core.sweep`.

Pure: no pytest.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pytest_tokrate.backends.base import ModelInfo
from pytest_tokrate.core.measure import Sample
from pytest_tokrate.core.result import Measurement
from pytest_tokrate.core.stats import Summary
from pytest_tokrate.errors import UsageError


@dataclass
class SweepLevel:
    """One level of a sweep: its settings, every completed request and every error."""

    concurrency: int
    num_predict: int | None  # requested generation length of this level
    prompt_length: int | None  # requested prompt length in cl100k tokens (None: as given)
    requests: int  # requests attempted
    measurement: Measurement
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    gpu: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        parts = [f"c={self.concurrency}"]
        if self.num_predict is not None:
            parts.append(f"n={self.num_predict}")
        if self.prompt_length is not None:
            parts.append(f"p={self.prompt_length}")
        return " ".join(parts)

    @property
    def gen_length(self) -> int | None:
        """The generation length of this cell (``sweep(gen_lengths=...)``; ``num_predict``)."""
        return self.num_predict

    @property
    def samples(self) -> list[Sample]:
        return self.measurement.samples

    @property
    def completed(self) -> int:
        return len(self.measurement.samples)

    @property
    def failed(self) -> int:
        return len(self.errors)

    @property
    def output_tokens_total(self) -> int:
        return sum(s.output_tokens or 0 for s in self.measurement.samples)

    @property
    def normalized_tokens_total(self) -> int | None:
        counts = [s.normalized_tokens for s in self.measurement.samples]
        if not counts or any(c is None for c in counts):
            return None
        return sum(c for c in counts if c is not None)

    @property
    def throughput(self) -> float | None:
        """Aggregate tok/s: total output tokens of the level / wall time of the level."""
        if not self.completed or self.wall_s <= 0:
            return None
        return self.output_tokens_total / self.wall_s

    @property
    def normalized_throughput(self) -> float | None:
        """Aggregate tok/s counted with the cl100k_base yardstick."""
        total = self.normalized_tokens_total
        if total is None or self.wall_s <= 0:
            return None
        return total / self.wall_s

    @property
    def ttft(self) -> Summary:
        return self.measurement.ttft

    @property
    def tpot(self) -> Summary:
        return self.measurement.tpot

    @property
    def e2e(self) -> Summary:
        return self.measurement.e2e

    @property
    def decode_tps(self) -> Summary:
        """Per-request decode rate."""
        return self.measurement.decode_tps

    @property
    def e2e_tps(self) -> Summary:
        return self.measurement.e2e_tps

    @property
    def prompt_tokens(self) -> Summary:
        return self.measurement.prompt_tokens

    def error_counts(self) -> list[tuple[str, int]]:
        """Distinct error messages with how often each occurred, most frequent first."""
        return Counter(self.errors).most_common()

    def to_dict(self, include_samples: bool = True) -> dict[str, Any]:
        m = self.measurement
        data: dict[str, Any] = {
            "name": self.name,
            "concurrency": self.concurrency,
            "num_predict": self.num_predict,
            "prompt_length": self.prompt_length,
            "requests": self.requests,
            "completed": self.completed,
            "failed": self.failed,
            "errors": [{"message": msg, "count": n} for msg, n in self.error_counts()],
            "wall_s": self.wall_s,
            "output_tokens_total": self.output_tokens_total,
            "normalized_tokens_total": self.normalized_tokens_total,
            "throughput_tps": self.throughput,
            "normalized_throughput_tps": self.normalized_throughput,
            "summaries": m.summaries(),
            "gpu": self.gpu,
            "request": m.request,
        }
        if include_samples:
            data["samples"] = [s.to_dict() for s in m.samples]
        return data


@dataclass
class SweepResult:
    """Every level of one ``tokrate.sweep()`` on one model."""

    model: ModelInfo
    levels: list[SweepLevel]
    varied: tuple[str, ...]
    max_parallel: int | None
    backend: str
    settings: dict[str, Any]
    cache_busting: str
    versions: dict[str, str | None]
    notes: list[str] = field(default_factory=list)
    warmup_rounds: int = 0
    test_id: str | None = None
    label: str | None = None

    @property
    def serialised(self) -> bool:
        """True when the engine serves one request at a time (throughput cannot scale)."""
        return self.max_parallel == 1

    @property
    def errors(self) -> list[str]:
        return [e for level in self.levels for e in level.errors]

    def level(
        self,
        concurrency: int | None = None,
        gen_length: int | None = None,
        prompt_length: int | None = None,
        *,
        num_predict: int | None = None,
    ) -> SweepLevel:
        """The cell of the grid with these values: the names are those of ``sweep()``
        (``concurrency``, ``gen_lengths``, ``prompt_lengths``), in the singular. A value
        left out matches anything; exactly one cell must match. ``num_predict=`` is the
        same as ``gen_length=`` (the generation option it sets)."""
        if num_predict is not None and gen_length is not None and num_predict != gen_length:
            raise UsageError(
                f"sweep.level(gen_length={gen_length}, num_predict={num_predict}): both name "
                "the generation length; give one."
            )
        gen = gen_length if gen_length is not None else num_predict
        found = [
            lv
            for lv in self.levels
            if (concurrency is None or lv.concurrency == concurrency)
            and (gen is None or lv.num_predict == gen)
            and (prompt_length is None or lv.prompt_length == prompt_length)
        ]
        if len(found) != 1:
            have = ", ".join(lv.name for lv in self.levels)
            raise UsageError(
                f"sweep.level(concurrency={concurrency}, gen_length={gen}, "
                f"prompt_length={prompt_length}) matches {len(found)} levels; the levels are "
                f"{have} (c: concurrency, n: gen_length, p: prompt_length). Name more of the "
                "values, e.g. s.level(concurrency=1, gen_length=64)."
            )
        return found[0]

    def to_dict(self, include_samples: bool = True) -> dict[str, Any]:
        return {
            "test_id": self.test_id,
            "label": self.label,
            "model": self.model.to_dict(),
            "backend": self.backend,
            "varied": list(self.varied),
            "max_parallel": self.max_parallel,
            "serialised": self.serialised,
            "settings": self.settings,
            "cache_busting": self.cache_busting,
            "versions": self.versions,
            "warmup_rounds": self.warmup_rounds,
            "notes": list(self.notes),
            "levels": [lv.to_dict(include_samples) for lv in self.levels],
        }


__all__ = ["SweepLevel", "SweepResult"]
