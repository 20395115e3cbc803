"""Reports of a whole run: JSON (schema-validated), Markdown summary, JUnit properties.

Pure: no pytest. The report is built in two steps so that pytest-xdist workers can each
send a JSON-ready *fragment* (their measurements, sweeps and test outcomes) to the
controller, which merges the fragments into one report. Plots and the Markdown summary
are drawn from the report dictionary alone, never from live objects.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_tokrate._version import __version__
from pytest_tokrate.core.stats import median
from pytest_tokrate.errors import ReportError
from pytest_tokrate.reports.files import write_bytes, write_json, write_text
from pytest_tokrate.reports.gate import collect as gate_verdicts
from pytest_tokrate.reports.tradeoff import model_entries, tradeoff_entries

if TYPE_CHECKING:
    from pytest_tokrate.core.result import Measurement
    from pytest_tokrate.core.sweep_result import SweepResult
    from pytest_tokrate.quality.tradeoff import TradeoffRow

SCHEMA_VERSION = 1
# The JSON Schemas live in the package's top-level schemas/ folder, not under reports/.
SCHEMA_FILE = Path(__file__).parent.parent / "schemas" / "report.schema.json"


# -- JSON-ready pieces --------------------------------------------------------------------


def yardstick(m: Measurement) -> dict[str, Any]:
    """Engine tokens beside cl100k_base tokens and whitespace words (medians over rounds).

    ``words_vs_tokens_pct`` is how far ``len(text.split())`` is from the engine's count.
    """
    samples = m.samples
    tokens = median(float(s.output_tokens) for s in samples if s.output_tokens is not None)
    words = median(float(s.words) for s in samples)
    return {
        "engine_tokens": tokens,
        "cl100k_tokens": median(
            float(s.normalized_tokens) for s in samples if s.normalized_tokens is not None
        ),
        "words": words,
        "e2e_tps": median(s.e2e_tps for s in samples),
        "normalized_tps": median(
            s.normalized_tokens / s.e2e for s in samples if s.normalized_tokens and s.e2e > 0
        ),
        "words_per_s": median(s.words / s.e2e for s in samples if s.e2e > 0),
        "words_vs_tokens_pct": (100.0 * (words - tokens) / tokens)
        if tokens and words is not None
        else None,
    }


def _pass_rate(quality: Any) -> float | None:
    rate = getattr(quality, "pass_rate", None)  # None without quality checks
    if rate is None:
        return None
    rate = float(rate)
    return None if math.isnan(rate) else rate


def _fingerprint(model: Mapping[str, Any], versions: Mapping[str, Any], m: Any) -> Any:
    try:
        from pytest_tokrate.machine import fingerprint
    except ImportError:  # pragma: no cover - module absent in a partial install
        return None
    env = getattr(fingerprint, "environment", None)
    definition = getattr(fingerprint, "definition", None)
    out: dict[str, Any] = {}
    try:
        if env is not None:
            out["environment"] = env(model, versions)
        if definition is not None and m is not None:
            out["definition"] = definition(m.request, m.settings)
    except Exception:  # a fingerprint must never break the report
        return None
    return out or None


def measurement_entry(m: Measurement) -> dict[str, Any]:
    data = m.to_dict()
    data["yardstick"] = yardstick(m)
    data["pass_rate"] = _pass_rate(m.quality)
    data["gpu"] = m.extra.get("gpu")
    data["cache"] = m.extra.get("cache")
    data["fingerprint"] = _fingerprint(data["model"], m.versions, m)
    return _jsonable_dict(data)


def sweep_entry(s: SweepResult) -> dict[str, Any]:
    data = s.to_dict()
    for level, entry in zip(s.levels, data["levels"], strict=True):
        entry["yardstick"] = yardstick(level.measurement)
        entry["pass_rate"] = _pass_rate(level.measurement.quality)
        entry["cache"] = level.measurement.extra.get("cache")
    data["fingerprint"] = _fingerprint(data["model"], s.versions, None)
    return _jsonable_dict(data)


def _jsonable_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): _jsonable(v) for k, v in value.items()}


def _jsonable(value: Any) -> Any:
    """NaN and infinities become null; tuples lists; unknown objects their str()."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def fragment(
    measurements: Sequence[Measurement],
    sweeps: Sequence[SweepResult],
    tests: Mapping[str, Mapping[str, Any]],
    *,
    tokrate_ids: Iterable[str] = (),
    outcomes: Mapping[str, int] | None = None,
    skipped_no_model: int = 0,
) -> dict[str, Any]:
    """What one process contributes to the report (JSON-ready, mergeable).

    ``tests`` maps each test id to its outcome and duration, ``outcomes`` holds pytest's
    own counts (see ``plugin/outcomes.py``): under xdist only the controller has them;
    ``tokrate_ids`` names the tests that used tokrate, wherever they ran."""
    return {
        "measurements": [measurement_entry(m) for m in measurements],
        "sweeps": [sweep_entry(s) for s in sweeps],
        "tests": {k: dict(v) for k, v in tests.items()},
        "tokrate_ids": sorted(set(tokrate_ids)),
        "outcomes": dict(outcomes or {}),
        "skipped_no_model": skipped_no_model,
    }


def merge_fragments(
    fragments: Iterable[Mapping[str, Any]], order: Sequence[str] = ()
) -> dict[str, Any]:
    """One run's data from its processes' fragments. ``order`` (test ids in the order
    they ran) orders measurements and sweeps, so an xdist run lists them as it ran."""
    out: dict[str, Any] = {"measurements": [], "sweeps": [], "tests": {}, "tokrate_ids": []}
    outcomes: dict[str, int] = {}
    skipped = 0
    for frag in fragments:
        out["measurements"].extend(frag.get("measurements", []))
        out["sweeps"].extend(frag.get("sweeps", []))
        out["tests"].update(frag.get("tests", {}))
        out["tokrate_ids"].extend(frag.get("tokrate_ids", []))
        for category, n in frag.get("outcomes", {}).items():
            outcomes[category] = outcomes.get(category, 0) + n
        skipped += frag.get("skipped_no_model", 0)
    rank = {tid: i for i, tid in enumerate(order)}
    for key in ("measurements", "sweeps"):
        out[key].sort(key=lambda e: rank.get(e.get("test_id") or "", len(rank)))
    out["tokrate_ids"] = sorted(set(out["tokrate_ids"]))
    out["outcomes"] = outcomes
    out["skipped_no_model"] = skipped
    return out


def _tests(merged: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every test of the run, sorted by id: outcome, duration, whether it used tokrate
    and how many measurements and sweeps it recorded."""
    tokrate = set(merged.get("tokrate_ids", []))
    recorded: dict[str, int] = {}
    for entry in [*merged.get("measurements", []), *merged.get("sweeps", [])]:
        tid = entry.get("test_id") or ""
        recorded[tid] = recorded.get(tid, 0) + 1
    tests_map: Mapping[str, Mapping[str, Any]] = merged.get("tests", {})
    return [
        {
            "test_id": tid,
            **dict(info),
            "tokrate": tid in tokrate or tid in recorded,
            "measurements": recorded.get(tid, 0),
        }
        for tid, info in sorted(tests_map.items())
    ]


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return out


def tokenizer_status() -> dict[str, Any]:
    from pytest_tokrate.core.tokens import ENCODING, encoding, unavailable_reason

    available = encoding() is not None
    return {
        "encoding": ENCODING,
        "available": available,
        "reason": None if available else unavailable_reason(),
    }


def environment() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        pytest_version: str | None = version("pytest")
    except PackageNotFoundError:  # pragma: no cover - reports are written under pytest
        pytest_version = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "pytest": pytest_version,
        "args": [str(a) for a in sys.argv[1:]],
    }


def _hardware() -> Any:
    try:
        from pytest_tokrate.machine.fingerprint import hardware
    except ImportError:  # pragma: no cover
        return None
    try:
        return _jsonable(hardware())
    except Exception:
        return None


def build_report(
    merged: Mapping[str, Any],
    gpu: Mapping[str, Any],
    tokenizer: Mapping[str, Any] | None = None,
    created: datetime.datetime | None = None,
    tradeoff: Sequence[TradeoffRow] = (),
) -> dict[str, Any]:
    """The whole run as one JSON-ready dictionary (see schemas/report.schema.json).

    ``summary.outcomes`` are pytest's own counts when the merged data has them (else
    one per test); ``tradeoff`` holds the rows of a run on several models."""
    measurements = list(merged.get("measurements", []))
    sweeps = list(merged.get("sweeps", []))
    tests = _tests(merged)
    verdicts = {"fail": 0, "warn": 0, "info": 0}
    for m in measurements:
        for f in m.get("findings", []):
            sev = f.get("severity")
            if sev in verdicts:
                verdicts[sev] += 1
    models: dict[str, Any] = {}
    for entry in [*measurements, *sweeps]:
        model = entry["model"]
        models.setdefault(f"{model.get('backend')}:{model.get('name')}", model)
    when = created or datetime.datetime.now(datetime.timezone.utc)
    return {
        "schema": "pytest-tokrate/report",
        "schema_version": SCHEMA_VERSION,
        "created_utc": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": {"name": "pytest-tokrate", "version": __version__},
        "environment": environment(),
        "hardware": _hardware(),
        "gpu": dict(gpu),
        "tokenizer": dict(tokenizer) if tokenizer is not None else tokenizer_status(),
        "summary": {
            "tests": len(tests),
            "outcomes": dict(merged.get("outcomes") or _count(t["outcome"] for t in tests)),
            "tokrate_tests": sum(1 for t in tests if t["tokrate"]),
            "tokrate_outcomes": _count(t["outcome"] for t in tests if t["tokrate"]),
            "measurements": len(measurements),
            "sweeps": len(sweeps),
            "sweep_levels": sum(len(s["levels"]) for s in sweeps),
            "sweep_errors": sum(lv["failed"] for s in sweeps for lv in s["levels"]),
            "verdicts": verdicts,
        },
        "models": list(models.values()),
        "tests": tests,
        "measurements": measurements,
        "sweeps": sweeps,
        "tradeoff": _jsonable(tradeoff_entries(tradeoff)),
        "tradeoff_models": _jsonable(model_entries(tradeoff)),
        "gate": gate_verdicts(measurements),
        "plots": [],
    }


def load_schema() -> dict[str, Any]:
    with SCHEMA_FILE.open(encoding="utf-8") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


def validate_report(report: Mapping[str, Any]) -> None:
    """Raise :class:`ReportError` naming the first field that breaks the schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(report), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        raise ReportError(
            f"the JSON report does not match its schema at {where}: {first.message} "
            f"({len(errors)} problem(s)); this is a pytest-tokrate bug, please report it."
        )


# -- JUnit --------------------------------------------------------------------------------------


def _num(x: Any) -> str | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return f"{float(x):.6g}"


def junit_properties(
    measurements: Sequence[Measurement], sweeps: Sequence[SweepResult]
) -> list[tuple[str, str]]:
    """Key figures as ``(name, value)`` pairs for JUnit XML ``<property>`` elements."""
    props: list[tuple[str, str]] = []

    def add(name: str, value: Any) -> None:
        text = value if isinstance(value, str) else _num(value)
        if text is not None:
            props.append((name, text))

    for m in measurements:
        prefix = f"tokrate.{m.model.name}" + (f".{m.label}" if m.label else "")
        add(f"{prefix}.decode_tps.median", m.decode_tps.median)
        add(f"{prefix}.e2e_tps.median", m.e2e_tps.median)
        add(f"{prefix}.normalized_tps.median", m.normalized_tps.median)
        add(f"{prefix}.ttft_s.p50", m.ttft.p50)
        add(f"{prefix}.ttft_s.p90", m.ttft.p90)
        add(f"{prefix}.tpot_s.median", m.tpot.median)
        add(f"{prefix}.e2e_s.p50", m.e2e.p50)
        add(f"{prefix}.output_tokens.median", m.output_tokens.median)
        add(f"{prefix}.words.median", m.words.median)
        add(f"{prefix}.rounds", m.rounds)
        add(f"{prefix}.pass_rate", _pass_rate(m.quality))
        gpu = m.extra.get("gpu") or {}
        add(f"{prefix}.j_per_token", gpu.get("j_per_token"))
        severities = [getattr(f, "severity", None) for f in m.findings]
        verdict = "fail" if "fail" in severities else "warn" if "warn" in severities else "ok"
        add(f"{prefix}.verdict", verdict)
    for s in sweeps:
        base = f"tokrate.{s.model.name}" + (f".{s.label}" if s.label else "")
        for lv in s.levels:
            prefix = f"{base}.sweep[{lv.name}]"
            add(f"{prefix}.throughput_tps", lv.throughput)
            add(f"{prefix}.normalized_throughput_tps", lv.normalized_throughput)
            add(f"{prefix}.decode_tps.median", lv.decode_tps.median)
            add(f"{prefix}.ttft_s.p50", lv.ttft.p50)
            add(f"{prefix}.ttft_s.p99", lv.ttft.p99)
            add(f"{prefix}.e2e_s.p99", lv.e2e.p99)
            add(f"{prefix}.completed", lv.completed)
            add(f"{prefix}.failed", lv.failed)
            add(f"{prefix}.j_per_token", (lv.gpu or {}).get("j_per_token"))
    return props


__all__ = [
    "SCHEMA_VERSION",
    "ReportError",
    "build_report",
    "fragment",
    "junit_properties",
    "measurement_entry",
    "merge_fragments",
    "sweep_entry",
    "tokenizer_status",
    "validate_report",
    "write_bytes",
    "write_json",
    "write_text",
]
