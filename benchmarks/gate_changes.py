"""Does the gate tell the truth on real configuration changes? (issue 13, item 8)

``bench_gate.py`` checks the gate against neighbours and synthetic slowdowns; this module
checks it against changes a project really makes to the embedded engine's configuration,
each recorded many times so that its true effect is known before any CI run is simulated.

``record``
    Records every condition of ``CHANGES`` in turn, ``--cycles`` times, one
    ``bench_gate.record`` session each (SmolLM2-135M, 1 thread, 64-token answers unless the
    condition changes it), and ends with one more unchanged session, so that the machine's
    drift over the recording hits every condition alike::

        python benchmarks/gate_changes.py record --cycles 2 --rounds 40 --max-seconds 130

    Sessions land in ``benchmarks/data/gate_<letter><n>.json``. The requantized files
    (``smollm2-q8_0``, ``smollm2-q4_0``) are made from the Q4_1 file by llama.cpp's own
    ``llama_model_quantize`` (``backends/gguf.py``) when missing, into the tokrate cache
    directory (``~/.cache/pytest-tokrate/models``), never into the repository.

``simulate``
    First the true effect of each change: the median of all its rounds over the median of
    all unchanged rounds, with a bootstrap 95% interval, raw and machine-adjusted. Then CI
    runs: a window of 5 or 10 consecutive rounds of one session of the condition against
    a baseline window of 4 times as many rounds of an unchanged session (another one for
    A/A), judged by pytest-benchmark's ``--benchmark-compare-fail=mean:10%`` and by our
    rule machine-adjusted, on every run and as the plugin gives it (withheld where this
    process waited for a CPU too long)::

        python benchmarks/gate_changes.py simulate   # 2000 runs per row, seed 0
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_gate  # sibling scripts, not a package: found through sys.path above
import gate_paired
from gate_conditions import BASE, CHANGES


def _next_number(letter: str) -> int:
    taken = [int(p.stem[6:]) for p in bench_gate.DATA.glob(f"gate_{letter}[0-9]*.json")]
    return max(taken, default=0) + 1


def record_all(cycles: int, rounds: int, max_seconds: float) -> None:
    """Every condition in turn, ``cycles`` times, then one more unchanged session."""
    order = [letter for _ in range(cycles) for letter in CHANGES] + [BASE]
    start = time.monotonic()
    for letter in order:
        kwargs = {"num_thread": 1, **CHANGES[letter].record}
        name = f"{letter}{_next_number(letter)}"
        bench_gate.record(name, rounds, max_seconds, long_prompt=False, **kwargs)
    print(f"{len(order)} sessions in {time.monotonic() - start:.0f} s")


# -- true effects -----------------------------------------------------------------------

Session = dict[str, Any]
METRICS = ("decode_tps", "ttft")
#: Rounds per simulated CI run; its baseline has ``bench_gate.BASELINE_FACTOR`` times as
#: many (at most what a session holds).
ROUNDS = (5, 10)


def recordings() -> dict[str, list[Session]]:
    """The sessions of each condition, in recording order."""
    data = bench_gate.sessions()
    names = bench_gate.pool(data, "".join(CHANGES))
    ordered = sorted(names, key=lambda n: (n[0], int(n[1:])))
    return {letter: [data[n] for n in ordered if n[0] == letter] for letter in CHANGES}


def _figures(session: Session, metric: str, machine: bool) -> list[float]:
    """A session's figures, raw or relative to each round's machine reference."""
    from pytest_tokrate.machine.calibration import adjusted

    values: list[float] = session[metric]
    if not machine:
        return values
    key = bench_gate.ref_key(metric, session)
    return adjusted(values, session[key], metric == "decode_tps") or []


def true_effect(
    base: list[Session], changed: list[Session], metric: str, machine: bool
) -> tuple[float, float, float]:
    """Median of every changed round over the median of every unchanged round, with
    its bootstrap 95% interval (``core.stats.bootstrap_ratio_ci``), minus 1."""
    from pytest_tokrate.core.stats import bootstrap_ratio_ci

    cur = [v for s in changed for v in _figures(s, metric, machine)]
    ref = [v for s in base for v in _figures(s, metric, machine)]
    ratio, low, high = bootstrap_ratio_ci(cur, ref)
    return ratio - 1.0, low - 1.0, high - 1.0


def expected(effect: tuple[float, float, float], metric: str) -> str:
    """What a truthful gate says of a change this large: ``regression`` or
    ``improvement`` when the whole interval is beyond the tolerance, ``ok`` when it is
    all within, ``borderline`` when the interval straddles the tolerance, ``unknown``
    when it reaches beyond the tolerance on both sides."""
    from pytest_tokrate.gate.rule import DEFAULT_TOLERANCES

    tol = DEFAULT_TOLERANCES[metric]
    _, low, high = effect if metric == "ttft" else (-effect[0], -effect[2], -effect[1])
    # Now a positive change is the bad direction for both metrics.
    if low > tol:
        return "regression"
    if high < -tol:
        return "improvement"
    if -tol <= low and high <= tol:
        return "ok"
    if low < -tol and high > tol:
        return "unknown"
    return "borderline"


# -- simulated CI runs -------------------------------------------------------------------

#: pytest-benchmark's ``mean:10%``; ours on every run, as if no guard withheld a verdict;
#: ours as the plugin runs it (machine-adjusted, a verdict withheld where this process
#: waited for a CPU more than ``WAIT_SHARE`` of the time).
RULES = ("pytest-benchmark", "ours, unguarded", "ours")
OPPOSITE = {"regression": "improvement", "improvement": "regression"}


def _one_run(
    rng: random.Random, pairs: list[tuple[Session, Session]], metric: str, n: int
) -> dict[str, str]:
    """One simulated CI run: each rule's verdict (``withheld``: no verdict)."""
    from pytest_tokrate.gate.rule import DEFAULT_TOLERANCES

    b, c = rng.choice(pairs)
    nb = min(bench_gate.BASELINE_FACTOR * n, len(b[metric]))
    i = rng.randrange(len(b[metric]) - nb + 1)
    j = rng.randrange(len(c[metric]) - n + 1)
    windows = (slice(i, i + nb), slice(j, j + n))
    words = bench_gate.verdicts(metric, b, c, windows, 1.0, DEFAULT_TOLERANCES[metric])
    quiet = bench_gate.quiet_by_wait(b, i, nb) and bench_gate.quiet_by_wait(c, j, n)
    return {
        "pytest-benchmark": str(words["pytest-benchmark"]),
        "ours, unguarded": str(words["ours"]),
        "ours": str(words["ours"]) if quiet else "withheld",
    }


def simulate_change(
    base: list[Session], changed: list[Session], metric: str, n: int, trials: int, seed: int
) -> dict[str, dict[str, int]]:
    """Counts of each rule's verdicts over ``trials`` runs of ``n`` rounds."""
    pairs = [(b, c) for b in base for c in changed if b is not c]
    rng = random.Random(seed)
    counts: dict[str, dict[str, int]] = {rule: {} for rule in RULES}
    for _ in range(trials):
        for rule, word in _one_run(rng, pairs, metric, n).items():
            counts[rule][word] = counts[rule].get(word, 0) + 1
    return counts


def _cell(counts: dict[str, int], want: str) -> tuple[str, str]:
    """(rate, wrong-direction count) over the runs given a verdict: detection of
    ``want``; for a change that should read ``ok`` every regression or improvement is
    a false alarm (and both are counted)."""
    judged = sum(v for k, v in counts.items() if k != "withheld")
    if not judged:
        return "-", "-"
    if want == "ok":
        alarms = counts.get("regression", 0) + counts.get("improvement", 0)
        return f"{alarms / judged * 100:.1f}%", "-"
    if want == "unknown":  # no direction is known to be right: both shares
        regressions, improvements = (counts.get(k, 0) / judged * 100 for k in OPPOSITE)
        return f"regression {regressions:.1f}%, improvement {improvements:.1f}%", "-"
    rate = f"{counts.get(want, 0) / judged * 100:.1f}%"
    return rate, str(counts.get(OPPOSITE[want], 0))


def _pct(effect: tuple[float, float, float]) -> str:
    return f"{effect[0] * 100:+.1f}% [{effect[1] * 100:+.1f}, {effect[2] * 100:+.1f}]"


def truths(
    data: dict[str, list[Session]], letter: str, metric: str
) -> tuple[tuple[float, float, float], list[str]]:
    """A change's true effect and the three estimates the table shows.

    The truth is the paired measurement (``gate_paired.py``: every configuration in one
    process, round against round, seconds apart), raw: the machine cannot move much
    between two rounds of one cycle, and no assumption about the reference is needed.
    Without one (``num_thread``), the sessions pooled, raw, with their intervals."""
    raw, adj = (true_effect(data[BASE], data[letter], metric, m) for m in (False, True))
    if letter in gate_paired.LETTERS and gate_paired.PAIRED.is_file():
        p_raw, p_adj = (gate_paired.paired_effect(letter, metric, m) for m in (False, True))
        return p_raw, [_pct(p_raw), _pct(p_adj), f"{raw[0] * 100:+.1f}% / {adj[0] * 100:+.1f}%"]
    return raw, ["-", "-", f"{_pct(raw)} / {_pct(adj)}"]


def _reads_as(letter: str, metric: str, effect: tuple[float, float, float]) -> tuple[str, str]:
    """(what the row measures, the verdict that is right) for one change and metric."""
    if letter == BASE:
        return "false alarm", "ok"
    want = expected(effect, metric)
    if want == "ok":
        return "false alarm", "ok"
    if want == "unknown":
        return "verdicts (true effect not established)", want
    if want == "borderline":
        want = "regression" if (effect[0] < 0) == (metric == "decode_tps") else "improvement"
        return f"flagged {want} (borderline)", want
    return f"detection ({want})", want


def table(trials: int, seed: int) -> list[str]:
    """The Markdown table: one row per change, metric and run length."""
    from pytest_tokrate.gate.rule import DEFAULT_TOLERANCES

    data = recordings()
    head = (
        "| change | metric (tolerance) | true effect: paired rounds, raw [95% CI] | paired, "
        "machine-adjusted [95% CI] | sessions pooled: raw / machine-adjusted | reads as | "
        "rounds (baseline) | pytest-benchmark `mean:10%` | wrong direction | ours, "
        "unguarded | wrong direction | ours: runs judged | **ours** (default), of judged "
        "runs | wrong direction |"
    )
    lines = [head, "|" + "---|" * head.count(" | ")]
    for letter, change in CHANGES.items():
        if len(data[letter]) < (2 if letter == BASE else 1) or not data[BASE]:
            continue  # not recorded (A/A needs two unchanged sessions)
        for metric in METRICS:
            effect, shown = truths(data, letter, metric)
            label, want = _reads_as(letter, metric, effect)
            for n in ROUNDS:
                counts = simulate_change(data[BASE], data[letter], metric, n, trials, seed)
                pb, free, ours = (_cell(counts[rule], want) for rule in RULES)
                if want == "improvement":  # pytest-benchmark's rule has no such verdict
                    pb = ("cannot say", pb[1])
                judged = 1 - counts["ours"].get("withheld", 0) / trials
                row = [
                    change.label,
                    f"{metric.replace('decode_tps', 'decode tok/s').replace('ttft', 'TTFT')} "
                    f"({DEFAULT_TOLERANCES[metric] * 100:g}%)",
                    *(["-", "-", "-"] if letter == BASE else shown),
                    label,
                    f"{n} ({min(bench_gate.BASELINE_FACTOR * n, 40)})",
                    *pb,
                    *free,
                    f"{judged * 100:.0f}%",
                    *ours,
                ]
                lines.append("| " + " | ".join(row) + " |")
    return lines


def describe() -> list[str]:
    """One line per condition: its sessions, rounds and medians."""
    lines = [
        "| condition | sessions | rounds | decode tok/s median | TTFT ms median | "
        "machine reference tok/s median | prompt tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for letter, sessions in recordings().items():
        rounds = [
            r for s in sessions for r in zip(s["decode_tps"], s["ttft"], s["ref"], strict=True)
        ]
        if not rounds:
            continue
        med = [statistics.median(x[k] for x in rounds if x[k] is not None) for k in range(3)]
        lines.append(
            f"| {CHANGES[letter].label} | {len(sessions)} | {len(rounds)} | {med[0]:.1f} | "
            f"{med[1] * 1000:.0f} | {med[2]:.1f} | {sessions[0]['prompt_tokens']} |"
        )
    return lines


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1, else an error naming the value."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="record every condition, alternating")
    rec.add_argument("--cycles", type=_positive, default=2)
    rec.add_argument("--rounds", type=_positive, default=40)
    rec.add_argument("--max-seconds", type=float, default=130.0)
    sim = sub.add_parser("simulate", help="true effects and simulated CI runs")
    sim.add_argument("--trials", type=_positive, default=2000)
    sim.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "record":
        record_all(args.cycles, args.rounds, args.max_seconds)
        return 0
    t = time.monotonic()
    print("\n".join(describe()))
    print()
    print("\n".join(table(args.trials, args.seed)))
    print(f"\n{args.trials} simulated runs per row, seed {args.seed}, {time.monotonic() - t:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
