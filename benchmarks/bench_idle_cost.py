"""Idle cost: pytest start-up with pytest-tokrate installed but unused.

Runs ``python -m pytest --co -q`` on an empty test directory, alternating a run with the
plugin loaded and one with ``-p no:tokrate`` so drift on a shared machine hits both
equally, and prints the median of the paired differences, in wall time and in CPU time
(user + system of the child process). On a busy machine the wall times swing by far more
than the effect measured; CPU time barely moves, so it is the figure to read there.
Target: at most 20 ms added.

Python's bytecode cache is on in the measured runs, as after ``pip install`` (which
compiles every module): with PYTHONDONTWRITEBYTECODE set, each start-up would compile,
and pytest would assertion-rewrite, every module of the plugin from source again.
``--no-bytecode-cache`` measures that case.

``--instructions`` also counts the instructions of one start-up of each kind under
valgrind (callgrind), which no other load on the machine can disturb, and converts the
difference to milliseconds at the CPU time per instruction of the timed runs.

    python benchmarks/bench_idle_cost.py            # 40 pairs
    python benchmarks/bench_idle_cost.py --pairs 80 --importtime
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 20.0


def startup_seconds(cwd: Path, extra: list[str], bytecode: bool = True) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one pytest start-up."""
    cmd = [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", *extra]
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("CI", None)
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # Exit code 5: no tests collected, which is what an empty directory gives.
    if proc.returncode not in (0, 5):
        raise SystemExit(f"pytest failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed, cpu


def instructions(cwd: Path, extra: list[str]) -> int:
    """Instructions executed by one pytest start-up (the main process), under callgrind."""
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "pytest",
        "--co",
        "-q",
        "-p",
        "no:cacheprovider",
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "CI")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONMALLOC"] = "malloc"  # lets valgrind see allocations as it expects
    err = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True).stderr
    main_pid = re.search(r"==(\d+)== Command:", err)
    refs = dict(re.findall(r"==(\d+)== I\s+refs:\s+([\d,]+)", err))
    if main_pid is None or main_pid.group(1) not in refs:
        raise SystemExit(f"could not read callgrind's instruction count:\n{err[-2000:]}")
    # A forked child reports the parent's count so far plus its own: keep the main process.
    return int(refs[main_pid.group(1)].replace(",", ""))


def plugin_import_ms() -> list[tuple[int, str]]:
    """Cumulative import time (µs) of each module pulled in by the plugin, pytest preloaded."""
    code = "import pytest; import pytest_tokrate.plugin"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True
    )
    seen = False
    rows: list[tuple[int, str]] = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        if name.strip() == "pytest":
            seen = True
            continue
        if seen:
            rows.append((int(parts[1]), name))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=40, help="alternating pairs of runs")
    ap.add_argument("--importtime", action="store_true", help="also list the plugin's imports")
    ap.add_argument(
        "--no-bytecode-cache", action="store_true", help="compile every module on each start-up"
    )
    ap.add_argument(
        "--instructions", action="store_true", help="also count instructions under valgrind"
    )
    args = ap.parse_args()
    bytecode = not args.no_bytecode_cache
    with tempfile.TemporaryDirectory(prefix="tokrate-idle-") as tmp:
        cwd = Path(tmp)
        for _ in range(3):  # warm the file-system cache and write the .pyc files
            startup_seconds(cwd, [], bytecode)
            startup_seconds(cwd, ["-p", "no:tokrate"], bytecode)
        pairs: list[tuple[tuple[float, float], tuple[float, float]]] = []
        for i in range(args.pairs):
            # Alternate which goes first so a slow spell does not favour one side.
            if i % 2:
                a = startup_seconds(cwd, [], bytecode)
                b = startup_seconds(cwd, ["-p", "no:tokrate"], bytecode)
            else:
                b = startup_seconds(cwd, ["-p", "no:tokrate"], bytecode)
                a = startup_seconds(cwd, [], bytecode)
            pairs.append((a, b))
        counts = None
        if args.instructions:
            if shutil.which("valgrind") is None:
                raise SystemExit("--instructions needs valgrind on the PATH")
            counts = (instructions(cwd, []), instructions(cwd, ["-p", "no:tokrate"]))
    cache = "bytecode cache on" if bytecode else "no bytecode cache"
    print(f"pytest --co -q on an empty directory, {args.pairs} alternating pairs, {cache}")
    added = {}
    for k, kind in enumerate(("wall", "CPU")):
        with_ms = statistics.median(a[k] for a, _ in pairs) * 1000
        without_ms = statistics.median(b[k] for _, b in pairs) * 1000
        added[kind] = statistics.median(a[k] - b[k] for a, b in pairs) * 1000
        print(
            f"  {kind:<4} with pytest-tokrate {with_ms:7.1f} ms, with -p no:tokrate "
            f"{without_ms:7.1f} ms; added {added[kind]:6.1f} ms (median of paired "
            f"differences), ratio {with_ms / without_ms:.3f}"
        )
    verdict = "within" if added["CPU"] <= TARGET_MS else "OVER"
    print(f"  target <= {TARGET_MS:.0f} ms added (CPU time): {verdict}")
    if counts is not None:
        with_i, without_i = counts
        cpu_without = statistics.median(b[1] for _, b in pairs)
        ms = (with_i - without_i) / without_i * cpu_without * 1000
        print(
            f"  instructions: {with_i / 1e6:.0f} M with, {without_i / 1e6:.0f} M without; "
            f"added {(with_i - without_i) / 1e6:.0f} M ({with_i / without_i - 1:+.1%}), "
            f"about {ms:.1f} ms at this machine's CPU time per instruction"
        )
    if args.importtime:
        print("plugin imports (cumulative µs, pytest already loaded):")
        for us, name in plugin_import_ms():
            if us >= 300:
                print(f"  {us:7d}  {name}")


if __name__ == "__main__":
    main()
