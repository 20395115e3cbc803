"""Batch size on a real llama.cpp server: latency and throughput against requests in flight.

Starts llama.cpp's own ``llama-server`` (built by scripts/llamacpp_tools.sh from the
installed llama-cpp-python's source) on SmolLM2 with ``-np 4`` slots; continuous batching
is llama-server's default, so requests in different slots are decoded together, one
batch per step. Then runs the plugin's own sweep (``core/sweep.py``, what
``tokrate.sweep()`` runs) through the OpenAI-compatible backend over concurrency
{1, 2, 4, 8} x generation length {16, 64, 256}: each concurrency level is a closed loop
that keeps that many requests in flight. Prints, per cell, requests/s, aggregate output
tok/s, per-request decode tok/s (the server's timings), TTFT p50 and E2E p50, and draws
the plugin's own sweep plots (reports/plots.py).

Requests per cell: ``--rounds`` at concurrency 1, else ``max(rounds, 2 x concurrency)``
(the sweep's rule: every slot of the loop sends at least two requests).

    python benchmarks/bench_batching.py
    python benchmarks/bench_batching.py --threads 2 --rounds 4 --plots docs/img/batching \\
        --json benchmarks/data/batching.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "realserver"))

from realserver_support import find_llama_server, start_llama_server  # noqa: E402

from pytest_tokrate.backends.base import Request  # noqa: E402
from pytest_tokrate.backends.models import smollm2_path  # noqa: E402
from pytest_tokrate.backends.openai import OpenAIBackend  # noqa: E402
from pytest_tokrate.core.levels import Levels  # noqa: E402
from pytest_tokrate.core.runner import Runner  # noqa: E402
from pytest_tokrate.core.settings import RunSettings  # noqa: E402
from pytest_tokrate.core.sweep import run_sweep  # noqa: E402
from pytest_tokrate.reports.document import sweep_entry  # noqa: E402
from pytest_tokrate.reports.fmt import summary_stat  # noqa: E402
from pytest_tokrate.reports.plots import write_plots  # noqa: E402
from pytest_tokrate.reports.terminal import table  # noqa: E402

#: An open-ended request: SmolLM2 writes well past 256 tokens before it stops by itself.
PROMPT = "Write a long story about a dragon who lives in a castle."
#: Room in each slot for the prompt and the longest generation.
CTX_PER_SLOT = 1024
#: The name the server lists the model under (without it, the GGUF's full path: a
#: legend too long to read in the plots).
ALIAS = "smollm2-135m"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parallel", type=int, default=4, help="llama-server slots (-np)")
    p.add_argument("--threads", type=int, default=1, help="llama-server threads (-t)")
    p.add_argument("--concurrency", default="1,2,4,8", help="requests in flight per level")
    p.add_argument("--gen-lengths", default="16,64,256", help="num_predict per level")
    p.add_argument("--rounds", type=int, default=4, help="requests per cell at concurrency 1")
    p.add_argument("--plots", type=Path, help="directory for the latency/throughput PNGs")
    p.add_argument("--json", type=Path, help="write the sweep's report entry here")
    return p.parse_args(argv)


def sweep_against_server(args: argparse.Namespace, url: str, model: str) -> dict[str, Any]:
    """The plugin's sweep over the levels; its report entry (the form reports and plots read)."""
    backend = OpenAIBackend(model, host=url)
    try:
        levels = Levels(
            concurrency=tuple(int(c) for c in args.concurrency.split(",")),
            gen_lengths=tuple(int(n) for n in args.gen_lengths.split(",")),
        )
        # num_predict bounds the warm-up round (the levels set their own): without it the
        # server generates until the story ends, hundreds of tokens.
        options = {"temperature": 0.0, "num_predict": levels.gen_lengths[0]}
        settings = RunSettings(rounds=args.rounds, warmup=1, options=options)
        result = run_sweep(Runner(backend), Request(prompt=PROMPT), settings, levels)
        result.label = f"llama-server -np {args.parallel} -t {args.threads}"
        return sweep_entry(result)
    finally:
        backend.close()


def cell_rows(entry: Mapping[str, Any]) -> list[list[str]]:
    """One row per level: the figures the study compares."""

    def fixed(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
        return "-" if value is None else f"{value * scale:.{digits}f}"

    rows = []
    for lv in sorted(entry["levels"], key=lambda lv: (lv["num_predict"], lv["concurrency"])):
        wall = lv["wall_s"]
        rows.append(
            [
                str(lv["num_predict"]),
                str(lv["concurrency"]),
                f"{lv['completed']}/{lv['requests']}",
                fixed(summary_stat(lv, "output_tokens", "median"), digits=0),
                fixed(lv["completed"] / wall if wall else None, digits=2),
                fixed(lv["throughput_tps"]),
                fixed(summary_stat(lv, "decode_tps", "median")),
                fixed(summary_stat(lv, "ttft", "p50"), 1000, 0),
                fixed(summary_stat(lv, "e2e", "p50"), 1000, 0),
            ]
        )
    return rows


def without_samples(level: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in level.items() if key != "samples"}


HEADER = [
    "n", "c", "ok", "out tok p50", "req/s", "agg tok/s", "decode tok/s/req", "TTFT p50 ms",
    "E2E p50 ms",
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    binary = find_llama_server()
    model = smollm2_path()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_llama_server(
            binary,
            model,
            Path(tmp) / "server.log",
            parallel=args.parallel,
            threads=args.threads,
            ctx_per_slot=CTX_PER_SLOT,
            extra_args=["--alias", ALIAS],
        )
        started = time.monotonic()
        try:
            entry = sweep_against_server(args, server.url, server.model_id())
        finally:
            server.stop()
        took = time.monotonic() - started
    print(f"{binary} -np {args.parallel} -t {args.threads}, SmolLM2-135M Q4_1, temperature 0")
    print(f"sweep: {took:.0f} s; cache busting: {entry['cache_busting']}")
    for line in table(cell_rows(entry), HEADER):
        print(line)
    for note in entry["notes"]:
        print(f"note: {note}")
    if args.json:
        # Per-level summaries only: every request's inter-token gaps would make it 400 KB.
        kept = {**entry, "levels": [without_samples(lv) for lv in entry["levels"]]}
        args.json.write_text(json.dumps(kept, indent=1) + "\n", encoding="utf-8")
    if args.plots:
        plotted = write_plots({"sweeps": [entry]}, args.plots)
        for title, path in plotted.files:
            print(f"plot: {title}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
