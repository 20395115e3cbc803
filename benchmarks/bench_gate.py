"""Does the regression gate tell the truth? False alarms and detections on real samples.

Two steps:

``record NAME``
    Runs the embedded SmolLM2-135M model for up to 40 rounds (or 100 s) under one
    condition and saves every round (decode tok/s, TTFT, TPOT, E2E, prefill, and the CPU
    cores other processes used meanwhile, from ``/proc/stat``) to
    ``benchmarks/data/gate_NAME.json``. Recorded once and committed, so the simulation is
    reproducible. The name's letter is the condition, the number the session::

        python benchmarks/bench_gate.py record t1 --num-thread 1                 # 64-token answers
        python benchmarks/bench_gate.py record s1 --num-thread 1 --num-predict 8 # short answers
        python benchmarks/bench_gate.py record l1 --num-thread 1 --long-prompt   # long prompt
        python benchmarks/bench_gate.py record a1                                # 2 threads

``simulate``
    Simulates many CI runs from those sessions. A run is a window of N *consecutive*
    rounds of one session (so a burst of load hits a whole run, as it does in CI); its
    baseline is a window of another session of the same condition.

    * A/A: both from the unchanged condition: every "regression" is a false alarm.
    * A/B synthetic: the current window's decode tok/s lowered by 15% (or every round 15%
      longer: tok/s / 1.15).
    * A/B real: the current window from a slower condition (a 795-token prompt).

    Our rule runs through the plugin's own code (``compare.speed_verdict``) and its load
    guard (``loadprobe``: a window is judged only when other processes used more than
    0.3 cores for at most 20% of its time); pytest-benchmark's
    ``--benchmark-compare-fail=mean:10%`` through its own ``PercentageRegressionCheck``,
    on the mean time per token (or the mean TTFT)::

        python benchmarks/bench_gate.py simulate     # 2000 runs per row, seed 0, ~40 s
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import re
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
PROMPT = "Write a short story about a robot learning to paint."
#: A long, varied text put in front of the prompt for the "longctx" condition.
LONG_TEXT = " ".join(
    f"Note {i}: the {c} robot moved the {o} to shelf {i % 7} before noon."
    for i, (c, o) in enumerate(
        (c, o)
        for c in ("red", "blue", "green", "yellow", "silver", "black")
        for o in ("brush", "canvas", "easel", "palette", "lamp", "chair", "box")
    )
)
FIGURES = ("decode_tps", "ttft", "tpot", "e2e", "prefill_tps")


# -- recording --------------------------------------------------------------------------


def record(
    name: str,
    rounds: int,
    max_seconds: float,
    num_thread: int,
    long_prompt: bool,
    num_predict: int = 64,
) -> Path:
    from pytest_tokrate import fingerprint, loadprobe
    from pytest_tokrate.backends.base import Request
    from pytest_tokrate.backends.llamacpp import LlamaCppBackend
    from pytest_tokrate.config import Layer, resolve
    from pytest_tokrate.models import resolve_model
    from pytest_tokrate.runner import Runner

    options: dict[str, Any] = {"num_predict": num_predict}
    if num_thread:
        options["num_thread"] = num_thread
    prompt = f"{LONG_TEXT}\n\n{PROMPT}" if long_prompt else PROMPT
    settings = resolve([Layer("bench", rounds=rounds, warmup=2, options=options)])
    backend = LlamaCppBackend(resolve_model("smollm2"))
    loads: list[float] = []
    stamps: list[float] = []
    foreign: list[float | None] = []
    start = time.monotonic()

    def until_deadline(one_round: Callable[[], None], n: int) -> None:
        for _ in range(n):
            if time.monotonic() - start > max_seconds:
                break
            before = loadprobe.snapshot()
            one_round()
            foreign.append(loadprobe.foreign_cores(before, loadprobe.snapshot()))

    def on_round(index: int, raw: Any) -> None:
        loads.append(os.getloadavg()[0])
        stamps.append(round(time.monotonic() - start, 3))

    m = Runner(backend).run(Request(prompt=prompt), settings, on_round, until_deadline)
    backend.close()
    rows = []
    for s, load, t, other in zip(m.samples, loads, stamps, foreign, strict=True):
        row = {f: getattr(s, f) for f in FIGURES}
        row.update(t_s=t, load1=load, foreign_cores=other, output_tokens=s.output_tokens)
        rows.append(row)
    out = {
        "condition": name,
        "prompt_tokens": m.samples[0].prompt_tokens if m.samples else None,
        "options": options,
        "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hardware": fingerprint.hardware(),
        "model": m.model.name,
        "engine": m.versions.get("engine"),
        "rounds": rows,
    }
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"gate_{name}.json"
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    med = statistics.median(r["decode_tps"] for r in rows)
    print(f"{path}: {len(rows)} rounds in {time.monotonic() - start:.0f} s, median {med:.1f} tok/s")
    return path


# -- simulation ------------------------------------------------------------------------


Session = dict[str, Any]


def sessions() -> dict[str, Session]:
    """Every recording: decode tok/s, TTFT and other processes' CPU cores per round, and
    the load those may reach before the gate withholds its verdict."""
    from pytest_tokrate.loadprobe import BUSY_CORES

    out = {}
    for path in sorted(DATA.glob("gate_*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data["rounds"]
        out[data["condition"]] = {
            "decode_tps": [float(r["decode_tps"]) for r in rows],
            "ttft": [float(r["ttft"]) for r in rows],
            "foreign": [float(r.get("foreign_cores") or 0.0) for r in rows],
            "seconds": [float(r["e2e"]) for r in rows],
            "limit": BUSY_CORES,
        }
    return out


def pool(all_sessions: dict[str, Session], prefix: str) -> list[str]:
    """Recordings of one condition: a1, a2, ... (2 threads), t1, ... (1 thread), l1, ...
    (1 thread, long prompt)."""
    return [name for name in sorted(all_sessions) if re.fullmatch(rf"{prefix}\d+", name)]


def _pb_fails(base_times: Sequence[float], cur_times: Sequence[float]) -> bool:
    from pytest_benchmark.utils import parse_compare_fail

    check = parse_compare_fail("mean:10%")
    current = {"mean": statistics.fmean(cur_times)}
    compared = {"mean": statistics.fmean(base_times)}
    return bool(check.fails(current, compared))


def verdicts(
    metric: str, base: Sequence[float], cur: Sequence[float], tol: float, alphas: Sequence[float]
) -> dict[str, bool]:
    """Whether each rule declares a regression (our rule through the plugin's own code)."""
    from pytest_tokrate.compare import speed_verdict

    higher = metric == "decode_tps"
    out = {
        f"ours p<{a:g}": speed_verdict(base, cur, tol, higher, a)[0] == "regression" for a in alphas
    }
    change = statistics.median(cur) / statistics.median(base) - 1
    out["tolerance only"] = change < -tol if higher else change > tol
    # pytest-benchmark compares times: seconds per token for a rate, seconds for TTFT.
    as_time = (lambda v: [1.0 / x for x in v]) if higher else list
    out["pytest-benchmark mean:10%"] = _pb_fails(as_time(base), as_time(cur))
    return out


def quiet_enough(session: Session, start: int, n: int) -> bool:
    """The plugin's load guard on a window: the share of its time during which other
    processes used more than the limit must not exceed BUSY_SHARE."""
    from pytest_tokrate.loadprobe import BUSY_SHARE, LoadTrace

    trace = LoadTrace(
        tuple(
            zip(
                session["seconds"][start : start + n],
                session["foreign"][start : start + n],
                strict=True,
            )
        )
    )
    share = trace.share_over(session["limit"])
    return share is not None and share <= BUSY_SHARE


#: label, baseline recordings, current recordings, factor on the current decode tok/s
#: (TTFT divided by it), metrics. The synthetic slowdowns are judged on decode tok/s
#: only: 15% is within TTFT's tolerance of 25%, so no TTFT verdict should fire there.
BOTH = ("decode_tps", "ttft")
SCENARIOS = (
    ("A/A: no change (1 thread)", "t", "t", 1.0, BOTH),
    ("A/B: synthetic, decode tok/s 15% lower (1 thread)", "t", "t", 0.85, ("decode_tps",)),
    (
        "A/B: synthetic, rounds 15% longer, tok/s -13% (1 thread)",
        "t",
        "t",
        1 / 1.15,
        ("decode_tps",),
    ),
    ("A/B: real, long prompt (1 thread)", "t", "l", 1.0, BOTH),
    ("A/A: no change, 8-token answers (1 thread)", "s", "s", 1.0, BOTH),
    ("A/B: synthetic, decode tok/s 15% lower, 8-token answers", "s", "s", 0.85, ("decode_tps",)),
    ("A/A: no change (2 threads)", "a", "a", 1.0, ("decode_tps",)),
)


def tolerance_table(trials: int, seed: int, tolerances: Sequence[float]) -> list[str]:
    """False alarms and detections of our rule on judged runs, by decode tok/s tolerance."""
    from pytest_tokrate.compare import ALPHA, speed_verdict

    data = sessions()
    rng = random.Random(seed)
    head = ["recordings", "change", "rounds", *(f"tolerance {t * 100:g}%" for t in tolerances)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for prefix, what in (("t", "64-token answers"), ("s", "8-token answers")):
        names = pool(data, prefix)
        for factor, change in ((1.0, "none (A/A)"), (0.85, "decode tok/s -15%")):
            for n in (5, 10):
                pairs = [(b, c) for b in names for c in names if b != c]
                hits = [0] * len(tolerances)
                judged = 0
                for _ in range(trials if pairs else 0):
                    b, c = (data[k] for k in rng.choice(pairs))
                    i = rng.randrange(len(b["decode_tps"]) - n + 1)
                    j = rng.randrange(len(c["decode_tps"]) - n + 1)
                    if not (quiet_enough(b, i, n) and quiet_enough(c, j, n)):
                        continue
                    judged += 1
                    base = b["decode_tps"][i : i + n]
                    cur = [x * factor for x in c["decode_tps"][j : j + n]]
                    for k, tol in enumerate(tolerances):
                        hits[k] += speed_verdict(base, cur, tol, True, ALPHA)[0] == "regression"
                cells = [_pct(h / judged) if judged else "-" for h in hits]
                lines.append(
                    f"| {what} ({len(names)}) | {change} | {n} | " + " | ".join(cells) + " |"
                )
    return lines


def simulate(trials: int, seed: int, alphas: Sequence[float]) -> list[dict[str, Any]]:
    from pytest_tokrate.compare import DEFAULT_TOLERANCES

    data = sessions()
    rng = random.Random(seed)
    results = []
    for label, base_prefix, cur_prefix, factor, metrics in SCENARIOS:
        for metric in metrics:
            tol = DEFAULT_TOLERANCES[metric]
            for n in (5, 10):
                base_names = [k for k in pool(data, base_prefix) if len(data[k][metric]) >= n]
                cur_names = [k for k in pool(data, cur_prefix) if len(data[k][metric]) >= n]
                pairs = [(b, c) for b in base_names for c in cur_names if b != c]
                if not pairs:
                    continue
                counts: dict[str, int] = {}
                quiet: dict[str, int] = {}
                judged = 0
                changes = []
                for _ in range(trials):
                    b_name, c_name = rng.choice(pairs)
                    b, c = data[b_name], data[c_name]
                    i = rng.randrange(len(b[metric]) - n + 1)
                    j = rng.randrange(len(c[metric]) - n + 1)
                    base = b[metric][i : i + n]
                    scale = factor if metric == "decode_tps" else 1 / factor
                    cur = [x * scale for x in c[metric][j : j + n]]
                    ok = quiet_enough(b, i, n) and quiet_enough(c, j, n)
                    changes.append(statistics.median(cur) / statistics.median(base) - 1)
                    judged += ok
                    for rule, hit in verdicts(metric, base, cur, tol, alphas).items():
                        counts[rule] = counts.get(rule, 0) + int(hit)
                        quiet[rule] = quiet.get(rule, 0) + int(hit and ok)
                results.append(
                    {
                        "scenario": label,
                        "metric": metric,
                        "tolerance": tol,
                        "rounds": n,
                        "trials": trials,
                        "recordings": f"{len(base_names)} x {len(cur_names)}"
                        if base_prefix != cur_prefix
                        else str(len(base_names)),
                        "median_change": statistics.median(changes),
                        "rates": {k: v / trials for k, v in counts.items()},
                        "judged": judged / trials,
                        "rates_judged": {k: v / judged for k, v in quiet.items()} if judged else {},
                    }
                )
    return results


def describe_data() -> list[str]:
    lines = []
    for path in sorted(DATA.glob("gate_*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data["rounds"]
        d = sorted(r["decode_tps"] for r in rows)
        t = sorted(r["ttft"] for r in rows)
        other = [r.get("foreign_cores") or 0.0 for r in rows]
        limit = sessions()[data["condition"]]["limit"]
        k = len(d) // 10
        lines.append(
            f"| {data['condition']} | {len(rows)} | {data.get('prompt_tokens')} | "
            f"{data['options'].get('num_thread', 'default')} | "
            f"{statistics.median(d):.1f} ({d[k]:.1f}..{d[-1 - k]:.1f}) | "
            f"{statistics.median(t) * 1000:.0f} ({t[k] * 1000:.0f}..{t[-1 - k] * 1000:.0f}) | "
            f"{statistics.median(other):.2f} | "
            f"{sum(o > limit for o in other)}/{len(other)} | {data['recorded_at']} |"
        )
    return [
        "| recording | rounds | prompt tokens | threads | decode tok/s median (p10..p90) | "
        "TTFT ms median (p10..p90) | other processes, CPU cores (median) | rounds over "
        "the busy limit | "
        "recorded (UTC) |",
        "|---|---|---|---|---|---|---|---|---|",
        *lines,
    ]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def markdown(results: list[dict[str, Any]], alphas: Sequence[float]) -> list[str]:
    """The main table (per scenario), then what each part of our rule buys."""
    from pytest_tokrate.compare import ALPHA

    ours = f"ours p<{ALPHA:g}"
    pb = "pytest-benchmark mean:10%"
    head = [
        "scenario",
        "metric (tolerance)",
        "rounds",
        "recordings",
        "median change",
        "runs judged",
        "pytest-benchmark `mean:10%`, all runs",
        "ours without the load guard, all runs",
        "pytest-benchmark, judged runs",
        "**ours**, judged runs",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        name = {"decode_tps": "decode tok/s", "ttft": "TTFT"}[r["metric"]]
        rates, quiet = r["rates"], r["rates_judged"]
        lines.append(
            "| "
            + " | ".join(
                [
                    r["scenario"],
                    f"{name} ({r['tolerance'] * 100:g}%)",
                    str(r["rounds"]),
                    r["recordings"],
                    f"{r['median_change'] * 100:+.1f}%",
                    _pct(r["judged"]),
                    _pct(rates[pb]),
                    _pct(rates[ours]),
                    _pct(quiet.get(pb)),
                    f"**{_pct(quiet.get(ours))}**",
                ]
            )
            + " |"
        )
    variants = ["tolerance only", *(f"ours p<{a:g}" for a in alphas)]
    lines += [
        "",
        "Judged runs, decode tok/s: the tolerance alone, and with the significance test at "
        "three levels",
        "",
        "| scenario | rounds | " + " | ".join(variants) + " |",
        "|---|---|" + "---|" * len(variants),
    ]
    for r in results:
        if r["metric"] != "decode_tps" or "real" in r["scenario"]:
            continue
        quiet = r["rates_judged"]
        cells = [_pct(quiet.get(v)) for v in variants]
        lines.append(f"| {r['scenario']} | {r['rounds']} | " + " | ".join(cells) + " |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="record rounds of one condition")
    rec.add_argument("name")
    rec.add_argument("--rounds", type=int, default=150)
    rec.add_argument("--max-seconds", type=float, default=100.0)
    rec.add_argument("--num-thread", type=int, default=0, help="0: the engine default")
    rec.add_argument("--long-prompt", action="store_true")
    rec.add_argument("--num-predict", type=int, default=64)
    sim = sub.add_parser("simulate", help="simulate CI runs from the recordings")
    sim.add_argument("--trials", type=int, default=2000)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.command == "record":
        record(
            args.name,
            args.rounds,
            args.max_seconds,
            args.num_thread,
            args.long_prompt,
            args.num_predict,
        )
        return 0
    alphas = (0.05, 0.01, 0.001)
    t = time.monotonic()
    results = simulate(args.trials, args.seed, alphas)
    print("\n".join(describe_data()))
    print()
    print("\n".join(markdown(results, alphas)))
    print()
    print("Judged runs, decode tok/s, our rule at other tolerances:")
    print()
    print("\n".join(tolerance_table(args.trials, args.seed, (0.10, 0.15, 0.20))))
    print(f"\n{args.trials} simulated runs per row, seed {args.seed}, {time.monotonic() - t:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
