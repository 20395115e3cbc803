"""Adaptive rounds against fixed rounds, on the real recordings of ``bench_gate.py``.

Each simulated CI run takes a baseline window of 40 consecutive rounds (what
``--tokrate-update-baselines`` records for a 10-round test: 4 x 10) of one recorded
session and feeds the rounds of *another* session of the same pool, in their recorded
order, to ``gate.sequential.settle`` after each round, from the minimum (3) until it is
settled or the maximum (20) is reached. The same run judged at a fixed 10 rounds (the
first 10 of those rounds) by the gate's normal rule (``gate.rule.speed_verdict``,
machine-adjusted, alpha 1%) stands beside it. Both gate decode tok/s (tolerance 10%) and
TTFT (25%), the defaults; the recordings have no quality checks.

* A/A: both windows unchanged: any regression is a false alarm.
* A/B synthetic: the current rounds' decode tok/s lowered by 15% or 30% (the machine
  reference left as recorded, as when the model, not the machine, got slower); detected
  when decode tok/s is judged a regression.
* A/B real (``--real``): configuration changes of ``gate_changes.py`` (Q4_1 -> Q8_0 and
  -> Q4_0 requantized, num_ctx 4096) against baselines of the unchanged sessions recorded
  alongside them; their true effects are in ``docs/gate-validation.md``.

::

    python benchmarks/bench_adaptive.py                 # 1000 runs per row, seed 0
    python benchmarks/bench_adaptive.py --real          # also the real changes
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_gate  # sibling script, not a package: found through sys.path above

from pytest_tokrate.core.stats import percentile
from pytest_tokrate.gate.rule import GateSettings, speed_verdict
from pytest_tokrate.gate.sequential import MIN_ROUNDS, settle
from pytest_tokrate.machine.calibration import adjusted

BASELINE_ROUNDS = 40
FIXED_ROUNDS = 10
MAX_ROUNDS = 20
METRICS = ("decode_tps", "ttft")
SLOWER = {"decode_tps": "regression"}


@dataclass(frozen=True)
class Scenario:
    label: str
    base_pool: str
    current_pool: str
    factor: float  # on the current decode tok/s
    #: The right verdicts (metric -> word); empty: no change, any regression is false.
    expect: dict[str, str]


SYNTHETIC = (
    Scenario("A/A: no change", bench_gate.MIXED, bench_gate.MIXED, 1.0, {}),
    Scenario("A/B: decode tok/s 15% lower", bench_gate.MIXED, bench_gate.MIXED, 0.85, SLOWER),
    Scenario("A/B: decode tok/s 30% lower", bench_gate.MIXED, bench_gate.MIXED, 0.70, SLOWER),
)
#: True effects (machine-adjusted, docs/gate-validation.md): Q8_0 decodes 13% slower
#: (TTFT 45% shorter, not counted: the run stops at the regression), Q4_0 decodes 21%
#: faster, num_ctx 4096 changes neither beyond its tolerance.
REAL = (
    Scenario("A/A: no change (gate_changes.py sessions)", "e", "e", 1.0, {}),
    Scenario("A/B real: Q4_1 -> Q8_0, decode -14% (paired, adjusted)", "e", "x", 1.0, SLOWER),
    Scenario(
        "A/B real: Q4_1 -> Q4_0, decode +14% (paired, adjusted)",
        "e",
        "z",
        1.0,
        {"decode_tps": "improvement"},
    ),
    Scenario("A/B real: num_ctx 2048 -> 4096, no change", "e", "n", 1.0, {}),
)


def run_record(session: bench_gate.Session, start: int, n: int, factor: float) -> dict[str, Any]:
    """``n`` consecutive rounds of a recorded session as ``gate.records.run_record``
    stores them (the figures the gate reads), decode tok/s multiplied by ``factor``."""
    window = slice(start, start + n)
    return {
        "rounds": n,
        "machine_ref_threads": 1,
        "samples": {
            "decode_tps": [v * factor for v in session["decode_tps"][window]],
            "ttft": session["ttft"][window],
            "output_tokens": session["tokens"][window],
            "machine_ref_tps": session["ref"][window],
        },
        "quality": None,
    }


def fixed_verdicts(
    base: dict[str, Any], cur: dict[str, Any], settings: GateSettings
) -> dict[str, str]:
    """The gate's normal rule at a fixed number of rounds, metric -> verdict
    (``rule.compare_speed`` without its bootstrap interval, which no verdict reads)."""
    out = {}
    for metric in METRICS:
        higher = metric == "decode_tps"
        b = adjusted(base["samples"][metric], base["samples"]["machine_ref_tps"], higher)
        c = adjusted(cur["samples"][metric], cur["samples"]["machine_ref_tps"], higher)
        verdict = speed_verdict(
            b or [], c or [], settings.tolerance(metric), higher, settings.alpha
        )
        out[metric] = verdict[0]
    return out


def right(verdicts: dict[str, str], expect: dict[str, str]) -> bool:
    """A/B: every expected verdict given; A/A (nothing expected): a false alarm."""
    if not expect:
        return "regression" in verdicts.values()
    return all(verdicts.get(m) == v for m, v in expect.items())


def adaptive(
    base: dict[str, Any], session: bench_gate.Session, start: int, factor: float, s: GateSettings
) -> tuple[int, dict[str, str], bool]:
    """Rounds used, the verdicts at the stop, and whether it settled."""
    for n in range(MIN_ROUNDS, MAX_ROUNDS + 1):
        look = settle(base, run_record(session, start, n, factor), s, MIN_ROUNDS, MAX_ROUNDS)
        if look.settled:
            return n, look.verdicts, True
    return MAX_ROUNDS, look.verdicts, False


def simulate(scenario: Scenario, trials: int, rng: random.Random) -> dict[str, Any] | None:
    data = bench_gate.sessions()
    bases = [
        k
        for k in bench_gate.pool(data, scenario.base_pool)
        if len(data[k]["decode_tps"]) >= BASELINE_ROUNDS
    ]
    currents = [
        k
        for k in bench_gate.pool(data, scenario.current_pool)
        if len(data[k]["decode_tps"]) >= MAX_ROUNDS
    ]
    pairs = [(b, c) for b in bases for c in currents if b != c]
    if not pairs:
        return None
    settings = GateSettings(metrics=METRICS)
    runs = []
    for _ in range(trials):
        b_name, c_name = rng.choice(pairs)
        b, c = data[b_name], data[c_name]
        i = rng.randrange(len(b["decode_tps"]) - BASELINE_ROUNDS + 1)
        j = rng.randrange(len(c["decode_tps"]) - MAX_ROUNDS + 1)
        base = run_record(b, i, BASELINE_ROUNDS, 1.0)
        n, verdicts, settled = adaptive(base, c, j, scenario.factor, settings)
        fixed = fixed_verdicts(base, run_record(c, j, FIXED_ROUNDS, scenario.factor), settings)
        quiet = bench_gate.quiet_by_wait(b, i, BASELINE_ROUNDS)
        runs.append(
            {
                "rounds": n,
                "settled": settled,
                "ok": settled and all(v == "ok" for v in verdicts.values()),
                "hit": right(verdicts, scenario.expect),
                "fixed": right(fixed, scenario.expect),
                "judged": quiet and bench_gate.quiet_by_wait(c, j, n),
                "fixed_judged": quiet and bench_gate.quiet_by_wait(c, j, FIXED_ROUNDS),
            }
        )
    judged = [r for r in runs if r["judged"]]
    fixed_judged = [r for r in runs if r["fixed_judged"]]
    return {
        "scenario": scenario.label,
        "sessions": f"{len(bases)} x {len(currents)}",
        "all": _rates(runs, "judged"),
        "guarded": _rates(judged, "judged"),
        "fixed": _share(runs, "fixed"),
        "fixed_guarded": _share(fixed_judged, "fixed"),
        "fixed_judged": len(fixed_judged) / len(runs),
    }


def _share(runs: list[dict[str, Any]], key: str) -> float:
    return sum(bool(r[key]) for r in runs) / len(runs) if runs else float("nan")


def _rates(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Rounds used (median, p90, mean) and the shares of the adaptive runs' outcomes."""
    used = sorted(r["rounds"] for r in runs) or [float("nan")]
    return {
        "median": statistics.median(used),
        "p90": percentile(used, 90),
        "mean": statistics.fmean(used),
        "hit": _share(runs, "hit"),
        "ok": _share(runs, "ok"),
        "open": 1.0 - _share(runs, "settled"),
        "judged": _share(runs, key),
    }


def table(rows: list[dict[str, Any]], trials: int) -> list[str]:
    head = [
        "scenario",
        "sessions",
        "runs judged: adaptive / fixed",
        f"adaptive rounds median / p90 / mean (median vs {FIXED_ROUNDS})",
        "adaptive: expected verdict (A/A: false alarm)",
        "adaptive: all ok",
        f"adaptive: not settled at {MAX_ROUNDS}",
        f"fixed {FIXED_ROUNDS} rounds: expected verdict (A/A: false alarm)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        for label, a, fixed in (
            ("judged", r["guarded"], r["fixed_guarded"]),
            ("all runs", r["all"], r["fixed"]),
        ):
            cells = (
                f"{r['scenario']} ({label})",
                r["sessions"],
                f"{r['all']['judged']:.0%} / {r['fixed_judged']:.0%}",
                f"{a['median']:g} / {a['p90']:g} / {a['mean']:.1f} "
                f"({a['median'] / FIXED_ROUNDS:.0%})",
                f"{a['hit']:.1%}",
                f"{a['ok']:.1%}",
                f"{a['open']:.1%}",
                f"{fixed:.1%}",
            )
            lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        f"\n{trials} simulated runs per scenario; baseline {BASELINE_ROUNDS} rounds; adaptive "
        f"from {MIN_ROUNDS} to {MAX_ROUNDS} rounds. A/A: a regression on any metric is a false "
        "alarm; A/B: the expected verdict of decode tok/s. Judged: the runs whose verdict the "
        "plugin gives (this process waited for a CPU at most 10% of the rounds used, "
        "machine.load.WAIT_SHARE); all runs: as if no verdict were withheld."
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", action="store_true", help="also the real changes")
    args = parser.parse_args(argv)
    t = time.monotonic()
    rng = random.Random(args.seed)
    scenarios = SYNTHETIC + (REAL if args.real else ())
    rows = [r for s in scenarios if (r := simulate(s, args.trials, rng)) is not None]
    print("\n".join(table(rows, args.trials)))
    print(f"seed {args.seed}, {time.monotonic() - t:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
