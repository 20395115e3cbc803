"""Machine-adjusted figures: a test's speed relative to the machine reference. Pure.

Around every measured round the embedded backend times a fixed reference workload
(``backends/reference.py``: just before the round and just after it) and the mean rate
lands in the stored samples as ``machine_ref_tps``. When a baseline and the current run
both have it, the gate compares each round's figure *relative to the reference of that
round*: a rate divided by the reference rate, a duration multiplied by it. A machine that
is 10% slower today slows the test and the reference alike and the ratio stays; a model
that got 10% slower moves the ratio only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: Key of the reference rates in a run's stored samples.
REFERENCE = "machine_ref_tps"
#: Key of the prefill rates of the reference (its prompt evaluated as one batch).
PREFILL_REFERENCE = "machine_ref_prefill_tps"
#: Figures judged relative to the prefill reference when both runs have it (the decode
#: reference otherwise): those the prompt's evaluation dominates.
PREFILL_FIGURES = frozenset({"ttft", "prefill_tps"})


def reference_key(metric: str, *runs: Mapping[str, Any]) -> str:
    """Which reference a metric is judged against: the prefill one for TTFT and prefill
    rates when every run has it, else the decode one."""
    if metric in PREFILL_FIGURES and all(reference_rates(r, PREFILL_REFERENCE) for r in runs):
        return PREFILL_REFERENCE
    return REFERENCE


def reference_rates(run: Mapping[str, Any], key: str = REFERENCE) -> list[float | None] | None:
    """The per-round reference rates stored with a run, or ``None`` when it has none."""
    values = run.get("samples", {}).get(key)
    if not isinstance(values, list) or not any(_usable(v) for v in values):
        return None
    return [float(v) if _usable(v) else None for v in values]


def _usable(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def adjusted(
    values: Sequence[Any], references: Sequence[float | None], higher_is_better: bool
) -> list[float] | None:
    """Each round's figure relative to its round's reference (rates divided by it,
    durations multiplied by it); rounds missing either are left out. ``None`` when the
    two lists do not describe the same rounds."""
    if len(values) != len(references):
        return None
    out = []
    for value, ref in zip(values, references, strict=True):
        if value is None or ref is None:
            continue
        v = float(value)
        if math.isnan(v):
            continue
        out.append(v / ref if higher_is_better else v * ref)
    return out


def footnote(base_median: float, current_median: float) -> str:
    """One line under a comparison table saying how the machine itself moved."""
    change = current_median / base_median - 1.0
    return (
        f"machine-adjusted: the machine reference (a fixed decode timed around each round) "
        f"ran {base_median:.1f} -> {current_median:.1f} tok/s ({change * 100:+.1f}%); change, "
        "CI and p compare each round relative to it, TTFT to its prefill rate "
        "(--tokrate-calibrate=off: raw figures)."
    )


__all__ = [
    "PREFILL_FIGURES",
    "PREFILL_REFERENCE",
    "REFERENCE",
    "adjusted",
    "footnote",
    "reference_key",
    "reference_rates",
]
