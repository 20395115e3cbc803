"""A test's baseline is found by the test, not by the model's name in its id.

With ``--tokrate-model=a`` a test's id carries the model (``test_x[a]``), and so does
its baseline file. A run on model ``b`` has no file of its own; it is judged against the
baseline of the same test on the project's *reference model*: the first model listed
when the baselines were recorded (``reference_model`` in each file). With several
models recorded, each model that has a baseline is compared with its own.
"""

from __future__ import annotations

from pathlib import Path

from pytest_tokrate.errors import BaselineError
from pytest_tokrate.gate.files import SUFFIX, _safe
from pytest_tokrate.gate.store import Baseline, load


def without_model(test_id: str, model_id: str | None) -> str | None:
    """``test_x[a-3]`` without the model ``a``: ``test_x[3]``; ``None`` when the id does
    not carry the model (it is not parametrized by it)."""
    if not model_id:
        return None
    head, sep, name = test_id.rpartition("::")
    start = name.find("[")
    if start < 0 or not name.endswith("]"):
        return None
    inside = name[start + 1 : -1]
    tokens = inside.split("-")
    # The model's own id may hold dashes: find it as a run of whole tokens.
    width = model_id.count("-") + 1
    for i in range(len(tokens) - width + 1):
        if "-".join(tokens[i : i + width]) == model_id:
            rest = "-".join(tokens[:i] + tokens[i + width :])
            bare = name[:start] + (f"[{rest}]" if rest else "")
            return f"{head}{sep}{bare}"
    return None


def baseline_test_key(baseline: Baseline) -> str | None:
    """The test a baseline file belongs to, whatever the model (older files: derived)."""
    key = baseline.data.get("test_key")
    if isinstance(key, str):
        return key
    model = baseline.data.get("model_id") or baseline.model
    return without_model(baseline.test_id, str(model) if model else None)


def _model_id(baseline: Baseline) -> str | None:
    value = baseline.data.get("model_id") or baseline.model
    return None if value is None else str(value)


def reference_baseline(directory: Path, key: str, env: str) -> Baseline | None:
    """The baseline of test ``key`` in environment ``env`` recorded on the reference
    model (the first listed at recording; the latest recording wins), else the latest
    recorded on any model; ``None`` when the test has no baseline on any model.

    Only the files of the test's own directory are read; a file that fails validation
    is skipped here (it is reported when its own test runs)."""
    if not directory.is_dir():
        return None
    found: list[Baseline] = []
    for path in sorted(directory.glob(f"*@{_safe(env)}{SUFFIX}")):
        if not path.is_file():
            continue
        try:
            baseline = load(path)
        except BaselineError:
            continue
        if baseline.environment == env and baseline_test_key(baseline) == key:
            found.append(baseline)
    if not found:
        return None
    reference = [b for b in found if b.data.get("reference_model") == _model_id(b)]
    pool = reference or found
    return max(pool, key=lambda b: str(b.data.get("recorded_at", "")))


__all__ = ["baseline_test_key", "reference_baseline", "without_model"]
