"""The true effect of each configuration change, measured round against round.

``gate_changes.py`` records each condition in sessions of its own, minutes apart; on a
shared machine whose speed moves by half within minutes, the raw ratio of two such
sessions is mostly the machine. Here one process holds every configuration at once and
runs them in turn, one round each, in a shuffled order per cycle: each change's round is
compared with the unchanged round of the same cycle, seconds apart, and the effect is the
median of those per-cycle ratios with a bootstrap 95% interval::

    python benchmarks/gate_paired.py record --cycles 24   # 5.5 min here, into benchmarks/data
    python benchmarks/gate_paired.py show

``num_thread`` 1 -> 2 is left out: two engine threads on this 2-core shared machine ran a
warm-up round past the 120 s timeout during ``gate_changes.py record``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_gate  # sibling scripts, not a package: found through sys.path above
from gate_conditions import BASE, CHANGES

PAIRED = bench_gate.DATA / "paired_changes.json"
#: The changes measured here (see the module docstring for the one left out).
LETTERS = ("n", "x", "z", "y")
FIGURES = ("decode_tps", "ttft", "machine_ref_tps")


def _round(backends: dict[str, Any], letter: str) -> dict[str, float | None]:
    """One measured round of one configuration, through the plugin's own runner."""
    from pytest_tokrate.backends.base import Request
    from pytest_tokrate.core.runner import Runner
    from pytest_tokrate.core.settings import Layer, resolve

    config = CHANGES[letter].record
    options: dict[str, Any] = {"num_predict": 64, "num_thread": 1}
    if "num_ctx" in config:
        options["num_ctx"] = config["num_ctx"]
    settings = resolve([Layer("paired", rounds=1, warmup=0, options=options)])
    request = Request(prompt=bench_gate.PROMPT, system=config.get("system"))
    sample = Runner(backends[config.get("model", "smollm2")]).run(request, settings).samples[0]
    return {
        "decode_tps": sample.decode_tps,
        "ttft": sample.ttft,
        "machine_ref_tps": sample.extra.get("machine_ref_tps"),
        "machine_ref_prefill_tps": sample.extra.get("machine_ref_prefill_tps"),
    }


def record(cycles: int, seed: int = 0) -> Path:
    from pytest_tokrate.backends.llamacpp import LlamaCppBackend
    from pytest_tokrate.backends.models import resolve_model

    models = ("smollm2", "smollm2-q8_0", "smollm2-q4_0")
    backends = {m: LlamaCppBackend(resolve_model(m)) for m in models}
    letters = [BASE, *LETTERS]
    for letter in letters:  # warm-up: load every model and context once
        _round(backends, letter)
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for cycle in range(cycles):
        rng.shuffle(letters)
        for letter in letters:
            rows.append({"cycle": cycle, "condition": letter, **_round(backends, letter)})
    for backend in backends.values():
        backend.close()
    out = {
        "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cycles": cycles,
        "conditions": {k: CHANGES[k].label for k in (BASE, *LETTERS)},
        "rounds": rows,
    }
    PAIRED.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"{PAIRED}: {len(rows)} rounds")
    return PAIRED


def _value(row: dict[str, Any], metric: str, machine: bool) -> float | None:
    prefill = metric == "ttft" and row.get("machine_ref_prefill_tps")
    value, ref = (
        row.get(metric),
        row.get("machine_ref_prefill_tps" if prefill else "machine_ref_tps"),
    )
    if value is None:
        return None
    if not machine:
        return float(value)
    if not ref:
        return None
    return float(value) / float(ref) if metric == "decode_tps" else float(value) * float(ref)


def paired_effect(
    letter: str, metric: str, machine: bool, resamples: int = 2000
) -> tuple[float, float, float]:
    """Median over cycles of (changed round / unchanged round) - 1, with a percentile
    bootstrap 95% interval (fixed seed)."""
    rows = json.loads(PAIRED.read_text(encoding="utf-8"))["rounds"]
    by_cycle: dict[tuple[int, str], float | None] = {
        (r["cycle"], r["condition"]): _value(r, metric, machine) for r in rows
    }
    ratios = []
    for (cycle, cond), value in by_cycle.items():
        base = by_cycle.get((cycle, BASE))
        if cond == letter and value is not None and base:
            ratios.append(value / base)
    rng = random.Random(0)
    medians = sorted(
        statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples)
    )
    low, high = medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]
    return statistics.median(ratios) - 1.0, low - 1.0, high - 1.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run every configuration in turn")
    rec.add_argument("--cycles", type=int, default=24)
    sub.add_parser("show", help="print each change's paired effect")
    args = parser.parse_args(argv)
    if args.command == "record":
        if args.cycles < 1:
            parser.error(f"--cycles {args.cycles}: record at least 1 cycle")
        record(args.cycles)
        return 0
    if not PAIRED.is_file():
        parser.error(f"{PAIRED} does not exist: run `gate_paired.py record` first")
    for letter in LETTERS:
        for metric in ("decode_tps", "ttft"):
            for machine in (False, True):
                effect = paired_effect(letter, metric, machine)
                print(
                    f"{CHANGES[letter].label:32} {metric:10} "
                    f"{'adjusted' if machine else 'raw':8} {effect[0] * 100:+6.1f}% "
                    f"[{effect[1] * 100:+.1f}, {effect[2] * 100:+.1f}]"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
