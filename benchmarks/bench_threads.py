"""Embedded engine threads: decode tok/s with 1 and 2 engine threads, interleaved.

Why the embedded default is every usable core but one: the Python thread that drives the
engine needs a core too. Prints each run's median and the ratio of the medians (2 / 1).

    .venv/bin/python benchmarks/bench_threads.py [--pairs 4] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import statistics

from pytest_tokrate.backends.base import Request
from pytest_tokrate.backends.llamacpp import LlamaCppBackend
from pytest_tokrate.backends.models import resolve_model
from pytest_tokrate.core.runner import Runner
from pytest_tokrate.core.settings import RunSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    backend = LlamaCppBackend(resolve_model("smollm2"), reference=False)
    medians: dict[int, list[float]] = {t: [] for t in counts}
    request = Request(prompt="Name three colours and describe each.")
    try:
        for pair in range(args.pairs):
            for t in counts if pair % 2 == 0 else counts[::-1]:  # alternate who goes first
                options = {"num_predict": 64, "num_thread": t, "temperature": 0}
                m = Runner(backend).run(request, RunSettings(rounds=3, warmup=1, options=options))
                medians[t].append(m.decode_tps.median)
    finally:
        backend.close()
    for t, values in medians.items():
        shown = ", ".join(f"{v:.1f}" for v in values)
        middle = statistics.median(values)
        print(f"{t} thread(s): decode tok/s per run {shown}; median {middle:.1f}")
    first, last = counts[0], counts[-1]
    ratio = statistics.median(medians[last]) / statistics.median(medians[first])
    print(f"ratio {last}/{first}: {ratio:.3f}")


if __name__ == "__main__":
    main()
