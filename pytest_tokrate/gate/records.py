"""What a baseline file stores of a measurement: per-round samples, summaries, the pass
rate, the test's definition and the environment's fingerprint. Pure.

:mod:`.store` validates and writes the files (:mod:`.files` names them); this module
builds their content from a :class:`~pytest_tokrate.core.result.Measurement`.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from typing import Any

from pytest_tokrate.machine.calibration import PREFILL_REFERENCE, REFERENCE
from pytest_tokrate.machine.fingerprint import definition, environment
from pytest_tokrate.machine.reference import THREADS as REFERENCE_THREADS

#: Version of the baseline file format (``schemas/baseline.schema.json``).
SCHEMA_VERSION = 1
#: Figures whose raw per-round samples are stored (all that a gate may use).
STORED_FIGURES = (
    "decode_tps",
    "decode_tps_client",
    "prefill_tps",
    "e2e_tps",
    "ttft",
    "tpot",
    "e2e",
    "output_tokens",
    "prompt_tokens",
)
_SUMMARY_KEYS = ("n", "median", "mean", "stdev", "min", "max", "p90", "median_ci95")


def _round(value: Any) -> Any:
    """Six significant digits: more than any measurement here resolves, and stable diffs."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        if value.is_integer() and abs(value) < 1e15:
            return int(value)  # token counts: 16, not 16.0
        return float(f"{value:.6g}")
    if isinstance(value, (list, tuple)):
        return [_round(v) for v in value]
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value


def quality_record(measurement: Any) -> dict[str, Any] | None:
    """The pass rate as a proportion (passed of total rounds) and per-check outcomes."""
    quality = getattr(measurement, "quality", None)
    if quality is None:
        return None
    raw: dict[str, Any] = quality.to_dict() if hasattr(quality, "to_dict") else {}
    total = raw.get("total") or raw.get("rounds") or measurement.rounds
    rate = float(measurement.pass_rate)
    passed = raw.get("passed")
    if not isinstance(passed, int):
        passed = round(rate * total)
    checks = raw.get("checks")
    return {
        "pass_rate": _round(rate),
        "passed": int(passed),
        "total": int(total),
        "checks": _round(checks if isinstance(checks, dict) else {"outcomes": checks}),
    }


def check_definitions(measurement: Any) -> Any:
    """What the quality checks of a measurement were (hashed into its definition)."""
    quality = getattr(measurement, "quality", None)
    if quality is None:
        return None
    for attr in ("definition", "definitions", "specs"):
        value = getattr(quality, attr, None)
        if value is not None:
            return value() if callable(value) else value
    raw = quality.to_dict() if hasattr(quality, "to_dict") else {}
    checks = raw.get("checks")
    if isinstance(checks, dict):
        return sorted(checks)
    if isinstance(checks, list):
        return [c.get("name", c.get("check")) if isinstance(c, dict) else str(c) for c in checks]
    return None


def run_record(measurement: Any) -> dict[str, Any]:
    """The stored form of one measurement (one ``tokrate.run`` call)."""
    samples: dict[str, list[Any]] = {}
    summaries: dict[str, dict[str, Any]] = {}
    from pytest_tokrate.core.result import FIGURES

    for figure in STORED_FIGURES:
        getter = FIGURES[figure][0]
        values = [getter(s) for s in measurement.samples]
        if figure != "decode_tps" and all(v is None for v in values):
            continue
        samples[figure] = _round(
            [v if v is None or isinstance(v, int) else float(v) for v in values]
        )
        full = measurement.summary(figure).to_dict()
        summaries[figure] = _round({k: full[k] for k in _SUMMARY_KEYS})
    # The machine reference of each round (backends/reference.py), for machine-adjusted
    # comparisons; absent when the backend has none or --tokrate-calibrate=off.
    extra: dict[str, Any] = {}
    for key in (REFERENCE, PREFILL_REFERENCE):
        refs = [s.extra.get(key) for s in measurement.samples]
        if any(isinstance(v, float) for v in refs):
            samples[key] = _round([v if isinstance(v, float) else None for v in refs])
            extra["machine_ref_threads"] = REFERENCE_THREADS
    return {
        **extra,
        "definition": definition(
            measurement.request, measurement.settings, check_definitions(measurement)
        ),
        "rounds": measurement.rounds,
        "warmup": measurement.warmup_rounds,
        "samples": samples,
        "summaries": summaries,
        "quality": quality_record(measurement),
    }


def run_key(measurement: Any) -> str:
    """Which entry of the file a measurement is: its label, ``run 1`` for the first."""
    return str(measurement.label or "run 1")


def measurement_environment(measurement: Any) -> dict[str, Any]:
    return environment(
        measurement.model.to_dict(), measurement.versions, measurement.cache_busting or None
    )


def build(
    test_id: str,
    env: str,
    fingerprint: Mapping[str, Any],
    runs: Mapping[str, Any],
    models: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete baseline document; ``models`` adds ``test_key``, ``model_id`` and
    ``reference_model`` (see :func:`pytest_tokrate.gate.project.without_model`)."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return {
        "schema_version": SCHEMA_VERSION,
        "test_id": test_id,
        "environment": env,
        "recorded_at": now.isoformat().replace("+00:00", "Z"),
        **{k: v for k, v in (models or {}).items() if v is not None},
        "fingerprint": dict(fingerprint),
        "runs": dict(runs),
    }


__all__ = [
    "SCHEMA_VERSION",
    "STORED_FIGURES",
    "build",
    "check_definitions",
    "measurement_environment",
    "quality_record",
    "run_key",
    "run_record",
]
