"""The embedded engine loads its model in the warm-up round: that load is reported."""

from __future__ import annotations

from pytest_tokrate.backends.base import Request
from pytest_tokrate.backends.llamacpp import LlamaCppBackend
from pytest_tokrate.backends.models import resolve_model
from pytest_tokrate.core.runner import Runner
from pytest_tokrate.core.settings import RunSettings


def test_the_load_in_warm_up_is_reported_and_measured_rounds_have_none() -> None:
    backend = LlamaCppBackend(resolve_model("smollm2"), reference=False)
    try:
        settings = RunSettings(rounds=2, warmup=1, options={"num_predict": 2, "num_thread": 1})
        first = Runner(backend).run(Request(prompt="Hi"), settings)
        again = Runner(backend).run(Request(prompt="Hi"), settings)
    finally:
        backend.close()
    assert first.warmup_load_s is not None and first.warmup_load_s > 0
    assert first.to_dict()["warmup_load_s"] == first.warmup_load_s
    assert all(not s.load for s in first.samples)  # loaded before the measured rounds
    assert again.warmup_load_s is None  # the model stayed loaded
