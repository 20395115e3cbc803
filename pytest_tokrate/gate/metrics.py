"""The metrics the gate can judge: how each is shown, which way is better, and the
defaults (which metrics are gated, how much change each tolerates). Pure data.

:mod:`.parsers` checks option values against these names; :mod:`.rule` judges them;
:mod:`.judge` and the console script show them.
"""

from __future__ import annotations

#: Metrics gated unless told otherwise (see README for why these).
DEFAULT_METRICS: tuple[str, ...] = ("decode_tps", "ttft", "pass_rate")
#: Tolerated change per metric: relative for speed, absolute points for the pass rate.
DEFAULT_TOLERANCES: dict[str, float] = {"decode_tps": 0.10, "ttft": 0.25, "pass_rate": 0.10}
#: Tolerance of a speed metric without its own default.
FALLBACK_TOLERANCE = 0.10

#: metric -> (display name, display scale, unit shown, higher is better)
METRICS: dict[str, tuple[str, float, str, bool]] = {
    "decode_tps": ("decode tok/s", 1.0, "", True),
    "decode_tps_client": ("decode tok/s (client)", 1.0, "", True),
    "decode_tps_engine": ("decode tok/s (engine)", 1.0, "", True),
    "prefill_tps": ("prefill tok/s", 1.0, "", True),
    "e2e_tps": ("end-to-end tok/s", 1.0, "", True),
    "normalized_tps": ("normalized tok/s", 1.0, "", True),
    "ttft": ("TTFT", 1000.0, " ms", False),
    "tpot": ("TPOT", 1000.0, " ms", False),
    "e2e": ("E2E latency", 1000.0, " ms", False),
    "pass_rate": ("pass rate", 100.0, "%", True),
}

__all__ = [
    "DEFAULT_METRICS",
    "DEFAULT_TOLERANCES",
    "FALLBACK_TOLERANCE",
    "METRICS",
]
