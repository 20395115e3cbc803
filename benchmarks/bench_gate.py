"""Does the regression gate tell the truth? False alarms and detections on real samples.

Two steps:

``record NAME``
    Runs the embedded SmolLM2-135M model for up to 40 rounds (or 60 s) under one
    condition, through the plugin's own runner, and saves every round to
    ``benchmarks/data/gate_NAME.json``: decode tok/s, TTFT, TPOT, E2E, prefill, the
    machine reference around the round (``backends/reference.py``), the CPU cores
    other processes used meanwhile (``/proc/stat``) and the share of the round this
    process's threads waited for a CPU (``/proc/self/task/*/schedstat``). Recorded once and
    committed, so the simulation is reproducible. The name's letter is the condition
    (``CONDITIONS``: what ran beside the engine), the number the session::

        python benchmarks/bench_gate.py record q1 --num-thread 1                 # 64-token answers
        python benchmarks/bench_gate.py record s1 --num-thread 1 --num-predict 8 # short answers
        python benchmarks/bench_gate.py record p1 --num-thread 1 --long-prompt   # long prompt
        python benchmarks/bench_gate.py record a1                                # 2 threads

    ``--model``, ``--num-ctx`` and ``--system-prompt`` change the configuration instead
    (``gate_changes.py`` records those conditions in turn).

    The neighbours ran beside it as ``python benchmarks/neighbour.py cpu|bw|burst`` (one
    process per neighbour, started a second before and killed after the recording).

``simulate``
    Simulates many CI runs from those sessions. A run is a window of N *consecutive*
    rounds of one session (so a burst of load hits a whole run, as it does in CI); its
    baseline is a window of 4N rounds (``--tokrate-update-baselines`` records 4x a test's
    rounds; at most the 40 a recording has) of *another* session, under any condition of
    the same pool: a baseline recorded beside one neighbour, the run beside another, as on
    a shared machine. Decode speed of 8-token answers is not judged by our rules
    (``compare.MIN_DECODE_TOKENS``); pytest-benchmark judges it.

    * A/A: both from unchanged conditions: every "regression" is a false alarm.
    * A/B synthetic: the current window's decode tok/s lowered by 15% (or every round 15%
      longer: tok/s / 1.15); the machine reference is left as recorded, as it would be
      when the model, not the machine, got slower.
    * A/B real: the current window from a slower condition (a 795-token prompt).

    Three rules on the same windows: pytest-benchmark's ``--benchmark-compare-fail=
    mean:10%`` through its own ``PercentageRegressionCheck`` on the mean time per token
    (or the mean TTFT); ours on the raw figures (``--tokrate-calibrate=off``), guarded by
    other processes' load; ours machine-adjusted (the default), guarded by this
    process's CPU wait. Ours run through the plugin's ``compare.compare_speed``::

        python benchmarks/bench_gate.py simulate     # 2000 runs per row, seed 0, ~75 s
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


class Probes:
    """How much this process waited for a CPU around one round: the time its threads
    spent runnable but not running (the plugin's ``loadprobe.wait_seconds``) and the time
    the hypervisor stole, each as a share of the round's wall time."""

    def __init__(self) -> None:
        self._wait = self._steal = self._t = 0.0

    @staticmethod
    def steal_s() -> float:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")

    def before(self) -> dict[str, float]:
        from pytest_tokrate.machine.load import wait_seconds

        self._wait, self._steal = wait_seconds() or 0.0, self.steal_s()
        self._t = time.perf_counter()
        return {}

    def after(self) -> dict[str, float]:
        from pytest_tokrate.machine.load import wait_seconds

        wall = time.perf_counter() - self._t
        return {
            "wait_share": ((wait_seconds() or 0.0) - self._wait) / wall,
            "steal_share": (self.steal_s() - self._steal) / wall,
        }


def record(
    name: str,
    rounds: int,
    max_seconds: float,
    num_thread: int,
    long_prompt: bool,
    num_predict: int = 64,
    model: str = "smollm2",
    num_ctx: int = 0,
    system: str | None = None,
) -> Path:
    """Record one session; ``model``, ``num_ctx`` and ``system`` are the configuration
    changes of ``gate_changes.py`` (a derived quantization such as ``smollm2-q8_0`` is
    requantized from the Q4_1 file on first use, into the tokrate cache directory)."""
    from pytest_tokrate.backends.base import Request
    from pytest_tokrate.backends.llamacpp import LlamaCppBackend
    from pytest_tokrate.backends.models import resolve_model
    from pytest_tokrate.core.runner import Runner
    from pytest_tokrate.core.settings import Layer, resolve
    from pytest_tokrate.machine import fingerprint
    from pytest_tokrate.machine import load as loadprobe

    options: dict[str, Any] = {"num_predict": num_predict}
    if num_thread:
        options["num_thread"] = num_thread
    if num_ctx:
        options["num_ctx"] = num_ctx
    prompt = f"{LONG_TEXT}\n\n{PROMPT}" if long_prompt else PROMPT
    settings = resolve([Layer("bench", rounds=rounds, warmup=2, options=options)])
    backend = LlamaCppBackend(resolve_model(model))
    loads: list[float] = []
    stamps: list[float] = []
    foreign: list[float | None] = []
    extra: list[dict[str, float]] = []
    probe = Probes()
    start = time.monotonic()

    def until_deadline(
        one_round: Callable[[], None], n: int, setup: Callable[[], None] | None = None
    ) -> None:
        for _ in range(n):
            if time.monotonic() - start > max_seconds:
                break
            if setup is not None:
                setup()  # the machine reference, before the round as in the plugin
            row = probe.before()
            before = loadprobe.snapshot()
            one_round()
            foreign.append(loadprobe.foreign_cores(before, loadprobe.snapshot()))
            row.update(probe.after())
            extra.append(row)

    def on_round(index: int, raw: Any) -> None:
        loads.append(os.getloadavg()[0])
        stamps.append(round(time.monotonic() - start, 3))

    request = Request(prompt=prompt, system=system)
    m = Runner(backend).run(request, settings, on_round, until_deadline)
    backend.close()
    rows = []
    for s, load, t, other, more in zip(m.samples, loads, stamps, foreign, extra, strict=True):
        row = {f: getattr(s, f) for f in FIGURES}
        row.update(t_s=t, load1=load, foreign_cores=other, output_tokens=s.output_tokens)
        row.update(more)
        row["machine_ref_tps"] = s.extra.get("machine_ref_tps")
        row["machine_ref_prefill_tps"] = s.extra.get("machine_ref_prefill_tps")
        if s.itl:
            row["decode_tps_itl"] = 1.0 / statistics.median(s.itl)
        rows.append(row)
    out = {
        "condition": name,
        "prompt_tokens": m.samples[0].prompt_tokens if m.samples else None,
        "options": options,
        "system_chars": len(system) if system else None,
        "quantization": m.model.quantization,
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


def ref_key(metric: str, *runs: Session) -> str:
    """The reference a metric is judged against, as the plugin chooses it
    (``machine.calibration.reference_key``): the prefill rate for TTFT when every
    session recorded it (sessions since the reference timed its prompt), else decode."""
    if metric == "ttft" and all(any(r.get("ref_prefill") or ()) for r in runs):
        return "ref_prefill"
    return "ref"


def sessions() -> dict[str, Session]:
    """Every recording: per round decode tok/s, TTFT, the machine reference, other
    processes' CPU cores and this process's run-queue wait."""
    out = {}
    for path in sorted(DATA.glob("gate_*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data["rounds"]
        out[data["condition"]] = {
            "decode_tps": [float(r["decode_tps"]) for r in rows],
            "ttft": [float(r["ttft"]) for r in rows],
            "ref": [r.get("machine_ref_tps") for r in rows],
            "ref_prefill": [r.get("machine_ref_prefill_tps") for r in rows],
            "foreign": [float(r.get("foreign_cores") or 0.0) for r in rows],
            "wait": [float(r.get("wait_share") or 0.0) for r in rows],
            "seconds": [float(r["e2e"]) for r in rows],
            "tokens": [int(r["output_tokens"]) for r in rows],
            "prompt_tokens": data.get("prompt_tokens"),
        }
    return out


def pool(all_sessions: dict[str, Session], prefixes: str) -> list[str]:
    """Recordings whose name is one of these letters and a number (see CONDITIONS)."""
    return [n for n in sorted(all_sessions) if re.fullmatch(rf"[{prefixes}]\d+", n)]


def _pb_fails(base_times: Sequence[float], cur_times: Sequence[float]) -> bool:
    from pytest_benchmark.utils import parse_compare_fail

    check = parse_compare_fail("mean:10%")
    current = {"mean": statistics.fmean(cur_times)}
    compared = {"mean": statistics.fmean(base_times)}
    return bool(check.fails(current, compared))


def quiet_by_load(session: Session, start: int, n: int) -> bool:
    """The guard without the machine reference: other processes may use more than
    ``BUSY_CORES`` for at most ``BUSY_SHARE`` of the window's time."""
    from pytest_tokrate.machine.load import BUSY_CORES, BUSY_SHARE, LoadTrace

    window = slice(start, start + n)
    trace = LoadTrace(
        tuple(zip(session["seconds"][window], session["foreign"][window], strict=True))
    )
    share = trace.share_over(BUSY_CORES)
    return share is not None and share <= BUSY_SHARE


def quiet_by_wait(session: Session, start: int, n: int) -> bool:
    """The guard with the machine reference: this process waited for a CPU at most
    ``WAIT_SHARE`` of the window's time."""
    from pytest_tokrate.machine.load import WAIT_SHARE

    window = slice(start, start + n)
    secs, waits = session["seconds"][window], session["wait"][window]
    return sum(s * w for s, w in zip(secs, waits, strict=True)) / sum(secs) <= WAIT_SHARE


RULES = ("pytest-benchmark", "raw", "ours")
#: Rounds per simulated CI run.
ROUNDS = (5, 10, 20)
#: Rounds of its baseline: 4x the run's, as --tokrate-update-baselines records by default
#: (``config.DEFAULT_BASELINE_ROUNDS``), at most what a recording has (40).
BASELINE_FACTOR = 4


def verdicts(
    metric: str,
    base: Session,
    cur: Session,
    windows: tuple[slice, slice],
    factor: float,
    tol: float,
) -> dict[str, str | None]:
    """Each rule's verdict, every rule on the same two windows: ``"regression"``,
    ``"improvement"``, ``"ok"`` (or ``"underpowered"`` for ours); pytest-benchmark's
    rule says only ``"regression"`` or ``"ok"``.

    ``raw``: our rule on the raw figures (``--tokrate-calibrate=off``); ``ours``: the
    plugin's default, relative to the machine reference. Both through the plugin's own
    code: ``calibration.adjusted`` and ``compare.speed_verdict``, as ``compare_speed``
    calls them (without its bootstrap interval, which no verdict depends on). ``None``:
    our rules do not judge decode speed of answers this short (``compare.answer_tokens``).
    """
    from pytest_tokrate.gate.rule import ALPHA, DECODE_METRICS, answer_tokens, speed_verdict
    from pytest_tokrate.machine.calibration import adjusted

    higher = metric == "decode_tps"
    scale = factor if higher else 1 / factor
    b = base[metric][windows[0]]
    c = [x * scale for x in cur[metric][windows[1]]]
    key = ref_key(metric, base, cur)
    b_adj = adjusted(b, base[key][windows[0]], higher) or b
    c_adj = adjusted(c, cur[key][windows[1]], higher) or c
    as_time = (lambda v: [1.0 / x for x in v]) if higher else list
    runs = [
        {"samples": {"output_tokens": s["tokens"][w]}}
        for s, w in zip((base, cur), windows, strict=True)
    ]
    pb = "regression" if _pb_fails(as_time(b), as_time(c)) else "ok"
    if metric in DECODE_METRICS and answer_tokens(*runs) is not None:
        return {"pytest-benchmark": pb, "raw": None, "ours": None}
    return {
        "pytest-benchmark": pb,
        "raw": speed_verdict(b, c, tol, higher, ALPHA)[0],
        "ours": speed_verdict(b_adj, c_adj, tol, higher, ALPHA)[0],
    }


#: Recording letters: what ran beside the engine (1 thread unless said).
CONDITIONS = {
    "q": "nothing (quiet)",
    "c": "one CPU-bound process",
    "b": "one memory-bandwidth-bound process",
    "u": "one bursty bandwidth-bound process (3 s on, 3 s off)",
    "h": "two CPU-bound processes (the engine's core is shared)",
    "v": "two bursty bandwidth-bound processes",
    "p": "nothing; 795-token prompt (the real slowdown)",
    "s": "nothing; 8-token answers",
    "k": "one memory-bandwidth-bound process; 8-token answers",
    "a": "nothing; 2 engine threads (the default)",
    "m": "one CPU-bound process; 2 engine threads",
    # gate_changes.py: configuration changes, recorded in turn on a busy shared machine
    "e": "unchanged configuration (gate_changes.py)",
    "n": "num_ctx 4096 (gate_changes.py)",
    "x": "Q8_0 requantized from Q4_1 (gate_changes.py)",
    "z": "Q4_0 requantized from Q4_1 (gate_changes.py)",
    "y": "a longer system prompt (gate_changes.py)",
    "t": "2 engine threads (gate_changes.py)",
}
#: The 1-thread, 64-token recordings under every kind of neighbour.
MIXED = "qcbuhv"
BOTH = ("decode_tps", "ttft")
#: label, baseline recordings, current recordings, factor on the current decode tok/s
#: (TTFT divided by it), metrics. The synthetic slowdowns are judged on decode tok/s
#: only: 15% is within TTFT's tolerance of 25%, so no TTFT verdict should fire there.
SCENARIOS = (
    ("A/A: no change", MIXED, MIXED, 1.0, BOTH),
    ("A/B: synthetic, decode tok/s 15% lower", MIXED, MIXED, 0.85, ("decode_tps",)),
    ("A/B: synthetic, rounds 15% longer (tok/s -13%)", MIXED, MIXED, 1 / 1.15, ("decode_tps",)),
    ("A/B: real, 795-token prompt", MIXED, "p", 1.0, BOTH),
    ("A/A: no change, 8-token answers", "sk", "sk", 1.0, BOTH),
    ("A/B: synthetic, decode tok/s 15% lower, 8-token answers", "sk", "sk", 0.85, ("decode_tps",)),
    ("A/A: no change, 2 engine threads", "am", "am", 1.0, BOTH),
)


def _share(hits: int | None, total: int) -> float | str | None:
    """A rate; ``"not gated"`` when the rule does not judge these runs; ``None``: no runs."""
    if hits is None:
        return "not gated"
    return hits / total if total else None


def simulate(trials: int, seed: int) -> list[dict[str, Any]]:
    from pytest_tokrate.gate.rule import DEFAULT_TOLERANCES

    data = sessions()
    rng = random.Random(seed)
    results = []
    for label, base_prefixes, cur_prefixes, factor, metrics in SCENARIOS:
        for metric in metrics:
            tol = DEFAULT_TOLERANCES[metric]
            for n in ROUNDS:
                base_names = [k for k in pool(data, base_prefixes) if len(data[k][metric]) >= n]
                cur_names = [k for k in pool(data, cur_prefixes) if len(data[k][metric]) >= n]
                pairs = [(b, c) for b in base_names for c in cur_names if b != c]
                if not pairs:
                    continue
                hits: dict[str, int | None] = dict.fromkeys(RULES, 0)
                judged_hits: dict[str, int | None] = dict.fromkeys(RULES, 0)
                judged = dict.fromkeys(RULES, 0)
                base_rounds = set()
                for _ in range(trials):
                    b_name, c_name = rng.choice(pairs)
                    b, c = data[b_name], data[c_name]
                    nb = min(BASELINE_FACTOR * n, len(b[metric]))
                    base_rounds.add(nb)
                    i = rng.randrange(len(b[metric]) - nb + 1)
                    j = rng.randrange(len(c[metric]) - n + 1)
                    windows = (slice(i, i + nb), slice(j, j + n))
                    by_load = quiet_by_load(b, i, nb) and quiet_by_load(c, j, n)
                    by_wait = quiet_by_wait(b, i, nb) and quiet_by_wait(c, j, n)
                    guards = {"pytest-benchmark": by_load, "raw": by_load, "ours": by_wait}
                    for rule, word in verdicts(metric, b, c, windows, factor, tol).items():
                        judged[rule] += guards[rule]
                        hit = None if word is None else word == "regression"
                        if hit is None or hits[rule] is None:
                            hits[rule] = judged_hits[rule] = None  # not gated
                            continue
                        hits[rule] += hit
                        judged_hits[rule] += hit and guards[rule]
                results.append(
                    {
                        "scenario": label,
                        "metric": metric,
                        "tolerance": tol,
                        "rounds": n,
                        "baseline_rounds": "-".join(
                            str(x) for x in sorted({min(base_rounds), max(base_rounds)})
                        ),
                        "trials": trials,
                        "recordings": f"{len(base_names)} x {len(cur_names)}"
                        if base_prefixes != cur_prefixes
                        else str(len(base_names)),
                        "rates": {k: _share(v, trials) for k, v in hits.items()},
                        "judged": {k: v / trials for k, v in judged.items()},
                        "rates_judged": {k: _share(judged_hits[k], judged[k]) for k in RULES},
                    }
                )
    return results


def describe_data() -> list[str]:
    lines = []
    for path in sorted(DATA.glob("gate_*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data["rounds"]
        d = sorted(r["decode_tps"] for r in rows)
        refs = [r["machine_ref_tps"] for r in rows if r.get("machine_ref_tps")]
        ratio = [r["decode_tps"] / r["machine_ref_tps"] for r in rows if r.get("machine_ref_tps")]
        k = len(d) // 10
        lines.append(
            f"| {data['condition']} | {CONDITIONS.get(data['condition'][0], '?')} | {len(rows)} | "
            f"{statistics.median(d):.1f} ({d[k]:.1f}..{d[-1 - k]:.1f}) | "
            f"{statistics.median(refs):.1f} | {statistics.median(ratio):.3f} | "
            f"{statistics.median(r.get('foreign_cores') or 0.0 for r in rows):.2f} | "
            f"{statistics.fmean(r.get('wait_share') or 0.0 for r in rows):.3f} | "
            f"{data['recorded_at'][11:19]} |"
        )
    return [
        "| recording | beside the engine | rounds | decode tok/s median (p10..p90) | "
        "machine reference tok/s | decode / reference | other processes, cores | "
        "own CPU wait share | recorded (UTC) |",
        "|---|---|---|---|---|---|---|---|---|",
        *lines,
    ]


def _pct(x: float | str | None) -> str:
    if isinstance(x, str):
        return x
    return "-" if x is None else f"{x * 100:.1f}%"


def markdown(results: list[dict[str, Any]]) -> list[str]:
    head = [
        "scenario",
        "metric (tolerance)",
        "rounds (baseline)",
        "recordings",
        "pytest-benchmark `mean:10%`",
        "ours, raw figures",
        "**ours** (machine-adjusted)",
        "runs judged: raw / **ours**",
        "pytest-benchmark, judged by load",
        "ours raw, judged by load",
        "**ours, judged**",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        name = {"decode_tps": "decode tok/s", "ttft": "TTFT"}[r["metric"]]
        rates, judged, quiet = r["rates"], r["judged"], r["rates_judged"]
        cells = [
            r["scenario"],
            f"{name} ({r['tolerance'] * 100:g}%)",
            f"{r['rounds']} ({r['baseline_rounds']})",
            r["recordings"],
            _pct(rates["pytest-benchmark"]),
            _pct(rates["raw"]),
            f"**{_pct(rates['ours'])}**",
            f"{_pct(judged['raw'])} / **{_pct(judged['ours'])}**",
            _pct(quiet["pytest-benchmark"]),
            _pct(quiet["raw"]),
            f"**{_pct(quiet['ours'])}**",
        ]
        lines.append("| " + " | ".join(cells) + " |")
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
    rec.add_argument("--model", default="smollm2", help="e.g. smollm2-q8_0 (requantized)")
    rec.add_argument("--num-ctx", type=int, default=0, help="0: the engine default (2048)")
    rec.add_argument(
        "--system-prompt", default=None, help="system text (default: the chat template's own)"
    )
    sim = sub.add_parser("simulate", help="simulate CI runs from the recordings")
    sim.add_argument("--trials", type=int, default=2000)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--json", type=Path, help="also write the results here")
    sub.add_parser("adaptive", help="rounds=auto against fixed rounds (bench_adaptive.py)")
    args, rest = parser.parse_known_args(argv)
    if args.command == "adaptive":  # its options (--trials, --seed, --real) are its own
        import bench_adaptive

        return int(bench_adaptive.main(rest))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "record":
        record(
            args.name,
            args.rounds,
            args.max_seconds,
            args.num_thread,
            args.long_prompt,
            args.num_predict,
            args.model,
            args.num_ctx,
            args.system_prompt,
        )
        return 0
    t = time.monotonic()
    results = simulate(args.trials, args.seed)
    print("\n".join(describe_data()))
    print()
    print("\n".join(markdown(results)))
    print(f"\n{args.trials} simulated runs per row, seed {args.seed}, {time.monotonic() - t:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
