"""Measurements rebuilt from their dictionaries: the inverse of ``to_dict()``.

A pytest-xdist controller holds only the JSON its workers sent; rebuilding a measurement
lets it use the same code as a serial run (the terminal tables, the model trade-off).
The raw samples round-trip exactly, so every summary recomputes to the same value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from pytest_tokrate.backends.base import ModelInfo
from pytest_tokrate.core.measure import Sample
from pytest_tokrate.core.result import Measurement


@dataclass(frozen=True)
class PassCounts:
    """What a rebuilt measurement keeps of its quality result: rounds passed of judged
    (the trade-off reads these; per-check detail stays in the dictionary)."""

    passed_rounds: int
    total: int

    @property
    def pass_rate(self) -> float:
        return self.passed_rounds / self.total if self.total else math.nan


#: Sample.to_dict() names times with their unit; the dataclass fields do not.
_RENAMED = {"ttft_s": "ttft", "tpot_s": "tpot", "e2e_s": "e2e", "itl_s": "itl", "load_s": "load"}
_SAMPLE_FIELDS = frozenset(f.name for f in fields(Sample))
_MODEL_FIELDS = frozenset(f.name for f in fields(ModelInfo))


def sample_from_dict(entry: Mapping[str, Any]) -> Sample:
    """The inverse of ``Sample.to_dict()`` (which leaves ``extra`` out)."""
    values = {_RENAMED.get(k, k): v for k, v in entry.items()}
    values = {k: v for k, v in values.items() if k in _SAMPLE_FIELDS}
    values["itl"] = tuple(values.get("itl") or ())
    if values.get("e2e") is None:  # NaN is written as null
        values["e2e"] = math.nan
    return Sample(**values)


def measurement_from_dict(entry: Mapping[str, Any]) -> Measurement:
    """A measurement rebuilt from ``Measurement.to_dict()`` (or a report entry): model,
    samples, settings, quality counts. Findings stay in the dictionary."""
    model = ModelInfo(**{k: v for k, v in entry["model"].items() if k in _MODEL_FIELDS})
    quality = entry.get("quality")
    counts = None
    if isinstance(quality, Mapping) and quality.get("total"):
        counts = PassCounts(int(quality["passed"]), int(quality["total"]))
    return Measurement(
        model=model,
        samples=[sample_from_dict(s) for s in entry.get("samples") or ()],
        settings=dict(entry.get("settings") or {}),
        request=dict(entry.get("request") or {}),
        cache_busting=str(entry.get("cache_busting") or ""),
        versions=dict(entry.get("versions") or {}),
        warmup_rounds=int(entry.get("warmup_rounds") or 0),
        warmup_load_s=entry.get("warmup_load_s"),
        discarded=list(entry.get("discarded") or ()),
        test_id=entry.get("test_id"),
        label=entry.get("label"),
        quality=counts,
        extra={k: entry[k] for k in ("gpu", "cache") if entry.get(k) is not None},
    )


__all__ = ["PassCounts", "measurement_from_dict", "sample_from_dict"]
