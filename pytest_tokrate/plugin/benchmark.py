"""Bridge to pytest-benchmark: tokrate rounds timed by pytest-benchmark's own fixture.

``tokrate.run(prompt, benchmark=benchmark)`` sends each measured round through
``benchmark.pedantic(..., rounds=N, iterations=1)``. pytest-benchmark therefore times every
request itself (its table shows the per-request latency: min, max, mean, median, IQR, and
OPS = requests per second), and stores the rounds in its own JSON storage
(``--benchmark-autosave``, ``--benchmark-json``, ``--benchmark-compare``). tokrate stamps
the same rounds with its own clock, and puts its figures (tok/s, TTFT, TPOT, normalized
tok/s, words, pass rate) into ``benchmark.extra_info["tokrate"]``, which pytest-benchmark
saves with the benchmark. Warm-up rounds run before, outside pytest-benchmark's timing.

Only public pytest-benchmark API is used (``pedantic``, ``extra_info``, ``disabled``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pytest_tokrate.errors import UsageError

if TYPE_CHECKING:
    from pytest_tokrate.core.result import Measurement
    from pytest_tokrate.core.runner import Repeat


def _check(benchmark: Any) -> None:
    if not callable(getattr(benchmark, "pedantic", None)) or not hasattr(benchmark, "extra_info"):
        raise UsageError(
            f"tokrate.run(benchmark={benchmark!r}): pass pytest-benchmark's `benchmark` "
            "fixture (install pytest-benchmark and add `benchmark` to the test's arguments)."
        )


_USED_TWICE = (
    "the pytest-benchmark fixture records one benchmark per test, and it was already used "
    "in this test: pass benchmark= to a single tokrate.run() per test (split the other "
    "runs into their own tests)."
)


def pedantic_repeat(benchmark: Any) -> Repeat:
    """A round driver that lets pytest-benchmark time each measured round."""
    _check(benchmark)
    if getattr(benchmark, "stats", None) is not None:  # set once the fixture has run
        raise UsageError(_USED_TWICE)
    if getattr(benchmark, "disabled", False):
        # --benchmark-disable: pedantic() would run the target only once; measure normally.
        from pytest_tokrate.core.runner import repeat_rounds

        return repeat_rounds

    def repeat(
        one_round: Callable[[], None], rounds: int, setup: Callable[[], None] | None = None
    ) -> None:
        try:
            benchmark.pedantic(one_round, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
        except Exception as exc:
            if type(exc).__name__ == "FixtureAlreadyUsed":
                raise UsageError(_USED_TWICE) from None
            raise

    return repeat


def _clean(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else x


def extra_info(m: Measurement) -> dict[str, Any]:
    """tokrate's figures of one measurement, as stored in pytest-benchmark's extra_info."""
    rate = getattr(m.quality, "pass_rate", None) if m.quality is not None else None
    return {
        "model": m.model.name,
        "backend": m.model.backend,
        "label": m.label,
        "rounds": m.rounds,
        "warmup_rounds": m.warmup_rounds,
        "unit_note": "benchmark times are per request (E2E); rates in tokens/s",
        "decode_tps_median": _clean(m.decode_tps.median),
        "e2e_tps_median": _clean(m.e2e_tps.median),
        "normalized_tps_median": _clean(m.normalized_tps.median),
        "prefill_tps_median": _clean(m.prefill_tps.median),
        "ttft_s_median": _clean(m.ttft.median),
        "ttft_s_p90": _clean(m.ttft.p90),
        "tpot_s_median": _clean(m.tpot.median),
        "e2e_s_median": _clean(m.e2e.median),
        "output_tokens_median": _clean(m.output_tokens.median),
        "words_median": _clean(m.words.median),
        "pass_rate": None if rate is None else float(rate),
    }


def record(benchmark: Any, m: Measurement) -> None:
    benchmark.extra_info["tokrate"] = extra_info(m)


__all__ = ["extra_info", "pedantic_repeat", "record"]
