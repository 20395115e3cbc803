"""Client overhead of the Ollama path: the time pytest-tokrate spends per streamed chunk.

A stand-in Ollama server (tests/standin) runs in a subprocess in replay mode: it streams
real SmolLM2 tokens, recorded once from the embedded engine, as fast as it can. Two
figures, measured in one run:

1. **Per-chunk client cost** on one stream: client CPU time (this process) divided by
   the chunks received, median over repeats, for three stacks reading the same stream:

   - ``bare``: httpx + ``json.loads`` per line (the floor any Python client pays),
   - ``official``: the official ``ollama`` client's ``chat(stream=True)`` loop,
   - ``plugin``: what a tokrate test pays, ``Runner.one_round`` over ``OllamaBackend``
     (official client, our chunk mapping, the runner's clock stamps).

   Target: ``plugin`` at most 20 µs per chunk on one core.

2. **Aggregate chunk rate** with 128 concurrent streams through one shared
   ``OllamaBackend`` (one thread per stream, as the concurrency runner does), for a fixed
   time. Target: at least 20,000 chunks/s.

When the machine has two or more CPUs the client is pinned to one and the server to
another, so "one core" is literal.

    python benchmarks/bench_client_overhead.py
    python benchmarks/bench_client_overhead.py --chunks 256 --repeats 7 --streams 128 --seconds 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2:135m"
TARGET_US = 20.0
TARGET_RATE = 20_000.0


@contextlib.contextmanager
def standin(cpu: int | None) -> Iterator[str]:
    """Start the replaying stand-in in a subprocess; yield its URL."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests") + os.pathsep + str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "standin", "ollama", "--replay", "--port", "0"],
        cwd=ROOT / "tests",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if cpu is not None:
            os.sched_setaffinity(proc.pid, {cpu})
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            err = proc.stderr.read() if proc.stderr else ""
            raise SystemExit(f"the stand-in did not start: {line!r}\n{err}")
        yield line.split()[-1]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def per_chunk_cost(read_one: Callable[[], int], rounds: int, repeats: int) -> tuple[float, float]:
    """(median CPU µs per chunk, median wall µs per chunk) over ``repeats`` batches."""
    read_one()  # warm: connection, imports, caches
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0, chunks = time.process_time(), time.perf_counter(), 0
        for _ in range(rounds):
            chunks += read_one()
        cpu.append((time.process_time() - c0) / chunks * 1e6)
        wall.append((time.perf_counter() - w0) / chunks * 1e6)
    return statistics.median(cpu), statistics.median(wall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=256, help="chunks per stream")
    parser.add_argument("--rounds", type=int, default=8, help="streams per timed batch")
    parser.add_argument("--repeats", type=int, default=7, help="timed batches (median)")
    parser.add_argument("--streams", type=int, default=128, help="concurrent streams")
    parser.add_argument("--seconds", type=float, default=5.0, help="concurrent phase length")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    import httpx
    import ollama

    from pytest_tokrate.backends.base import Request
    from pytest_tokrate.backends.ollama import OllamaBackend
    from pytest_tokrate.core.runner import Runner

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pinned = len(cpus) >= 2
    client_cpu, server_cpu = (cpus[0], cpus[1]) if pinned else (None, None)
    with standin(server_cpu) as url:
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})
        options = {"num_predict": args.chunks, "temperature": 0.0}
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell a story."}],
                "stream": True, "options": options}  # fmt: skip
        bare_http = httpx.Client(base_url=url, timeout=60)
        official = ollama.Client(host=url)
        backend = OllamaBackend(MODEL, host=url)
        runner = Runner(backend)
        request = Request(messages=None, prompt="Tell a story.", options=options, timeout_s=60)

        def bare() -> int:
            n = 0
            with bare_http.stream("POST", "/api/chat", json=body) as r:
                for line in r.iter_lines():
                    if not json.loads(line)["done"]:
                        n += 1
            return n

        def client() -> int:
            n = 0
            for part in official.chat(MODEL, body["messages"], stream=True, options=options):
                if not part.done:
                    n += 1
            return n

        def plugin() -> int:
            return len(runner.one_round(request).chunks)

        print(f"stand-in: {url} (replay of real SmolLM2 tokens, {args.chunks} chunks/stream)")
        print(
            f"pinning: client on CPU {client_cpu}, server on CPU {server_cpu}"
            if pinned
            else "pinning: none (fewer than 2 CPUs)"
        )
        costs = {}
        for name, fn in (("bare", bare), ("official", client), ("plugin", plugin)):
            costs[name] = per_chunk_cost(fn, args.rounds, args.repeats)
        print("\nper-chunk client cost, one stream (median of", args.repeats, "batches):")
        for name, (cpu, wall) in costs.items():
            print(f"  {name:9s} {cpu:6.1f} µs CPU   {wall:6.1f} µs wall")
        plugin_cpu = costs["plugin"][0]
        print(
            f"  added by the official client over bare httpx: "
            f"{costs['official'][0] - costs['bare'][0]:+.1f} µs; "
            f"added by pytest-tokrate over the official client: "
            f"{plugin_cpu - costs['official'][0]:+.1f} µs"
        )
        verdict = "OK" if plugin_cpu <= TARGET_US else "MISSED"
        print(f"  plugin per chunk: {plugin_cpu:.1f} µs (target <= {TARGET_US:g} µs): {verdict}")

        chunks = [0] * args.streams
        failures: list[str] = []
        stop_at = time.perf_counter() + args.seconds

        def stream_loop(i: int) -> None:
            while time.perf_counter() < stop_at:
                try:
                    chunks[i] += len(runner.one_round(request).chunks)
                except Exception as exc:  # reported, not hidden
                    failures.append(f"{type(exc).__name__}: {exc}")
                    return

        threads = [threading.Thread(target=stream_loop, args=(i,)) for i in range(args.streams)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        rate = sum(chunks) / elapsed
        print(f"\n{args.streams} concurrent streams through one OllamaBackend, {elapsed:.1f} s:")
        print(f"  {sum(chunks)} chunks, {rate:,.0f} chunks/s aggregate")
        if failures:
            print(f"  {len(failures)} streams failed, first: {failures[0]}")
        verdict = "OK" if rate >= TARGET_RATE and not failures else "MISSED"
        print(f"  aggregate rate: {rate:,.0f} chunks/s (target >= {TARGET_RATE:,.0f}): {verdict}")
        backend.close()
        official.close()
        bare_http.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
