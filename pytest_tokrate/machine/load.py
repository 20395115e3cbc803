"""How much CPU *other* processes used while a test measured (Linux ``/proc/stat``).

On a shared machine a run can be slow because the code got slower or because something
else took the CPU. The gate cannot tell those apart from timings alone, so it asks the
kernel: CPU time spent by the whole machine (including time stolen by a hypervisor),
minus this process's own CPU time, over the wall time. The result is in cores: 0 on a
quiet machine, 1.0 when another process kept one core busy.

A sampler thread takes this figure every quarter second while a test runs, because load
comes in bursts: a test whose average looks harmless can have half its rounds stalled.

Any other busy process counts, even on a core the engine does not use: on this project's
2-core machine a 1-thread engine ran at a median 130 tok/s beside a CPU-bound process on
the other core and at 83 beside one streaming memory (``benchmarks/data``, c2 and b2);
CPU counters cannot tell those apart. A 2-thread engine fell to about 39 tok/s as soon
as another process took a core (m1, m2).

The sampler also reads how long this process's own threads waited for a CPU while
runnable (``/proc/self/task/*/schedstat``). When the speed figures are judged relative to
the machine reference (``calibration.py``), a neighbour that merely slows the machine
slows the reference as much, and what still spoils a comparison is the engine being kept
off the cores: that wait share is then the guard (``WAIT_SHARE``), and a neighbour on a
core the engine does not use no longer withholds the verdict.

Only meaningful when the engine runs inside this process (the embedded backend); a local
server's work counts as "other" here. Nothing is measured where ``/proc/stat`` does not
exist.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

#: CPU cores other processes may use while a test measures (see the module docstring).
BUSY_CORES = 0.3
#: Share of a test's time over that limit beyond which its speed verdict is withheld.
BUSY_SHARE = 0.2
#: Share of a test's time its own threads may wait for a CPU (runnable, not running) when
#: its speed is judged relative to the machine reference (see ``calibration.py``).
WAIT_SHARE = 0.1
#: Seconds between two samples of the sampler thread.
INTERVAL_S = 0.25
_STAT = "/proc/stat"


@dataclass(frozen=True)
class CpuSnapshot:
    wall_s: float
    machine_s: float | None  # busy + stolen CPU seconds of the whole machine
    own_s: float  # CPU seconds of this process (all threads)


def _machine_seconds() -> float | None:
    try:
        with open(_STAT, encoding="ascii") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    values = [int(v) for v in fields[1:9]]
    values += [0] * (8 - len(values))
    busy = values[0] + values[1] + values[2] + values[5] + values[6] + values[7]
    return busy / float(os.sysconf("SC_CLK_TCK"))


def wait_seconds() -> float | None:
    """Run-queue wait of this process's threads so far (``/proc/self/task/*/schedstat``:
    time runnable but not running), or ``None`` where the kernel does not say."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    total, seen = 0, False
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat", encoding="ascii") as fh:
                total += int(fh.read().split()[1])
                seen = True
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9 if seen else None


def snapshot() -> CpuSnapshot:
    return CpuSnapshot(time.monotonic(), _machine_seconds(), time.process_time())


def foreign_cores(start: CpuSnapshot, end: CpuSnapshot) -> float | None:
    """Average cores used by other processes between two snapshots (``None``: unknown)."""
    wall = end.wall_s - start.wall_s
    if start.machine_s is None or end.machine_s is None or wall <= 0:
        return None
    other = (end.machine_s - start.machine_s) - (end.own_s - start.own_s)
    return max(other / wall, 0.0)


@dataclass(frozen=True)
class LoadTrace:
    """Other processes' CPU use over consecutive intervals: ``(seconds, cores)`` pairs."""

    intervals: tuple[tuple[float, float], ...]
    #: Share of the wall time this process's threads waited for a CPU (summed over
    #: threads; ``None``: unknown).
    wait_share: float | None = None

    @property
    def seconds(self) -> float:
        return sum(s for s, _ in self.intervals)

    def mean(self) -> float | None:
        total = self.seconds
        return sum(s * c for s, c in self.intervals) / total if total > 0 else None

    def share_over(self, limit: float) -> float | None:
        """Share of the time during which other processes used more than ``limit`` cores."""
        total = self.seconds
        return sum(s for s, c in self.intervals if c > limit) / total if total > 0 else None


class LoadSampler:
    """Samples :func:`foreign_cores` on a thread between :meth:`start` and :meth:`stop`."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._snapshots: list[CpuSnapshot] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Run-queue wait at start: only the difference over the whole test is used, so it
        # is read at start and stop, not at every sample.
        self._wait_start: float | None = None

    def start(self) -> None:
        first = snapshot()
        if first.machine_s is None:
            return  # no /proc/stat: nothing to measure
        self._snapshots.append(first)
        self._wait_start = wait_seconds()
        self._thread = threading.Thread(target=self._loop, name="tokrate-load", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._snapshots.append(snapshot())

    def stop(self) -> LoadTrace | None:
        """The trace, or ``None`` when the load cannot be measured here."""
        if self._thread is None:
            return None
        self._stop.set()
        self._thread.join()
        self._snapshots.append(snapshot())
        wait_end = wait_seconds()
        intervals = []
        for a, b in zip(self._snapshots, self._snapshots[1:], strict=False):
            cores = foreign_cores(a, b)
            if cores is not None and b.wall_s > a.wall_s:
                intervals.append((b.wall_s - a.wall_s, cores))
        if not intervals:
            return None
        first, last = self._snapshots[0], self._snapshots[-1]
        wall = last.wall_s - first.wall_s
        wait = None
        if self._wait_start is not None and wait_end is not None and wall > 0:
            wait = max(wait_end - self._wait_start, 0.0) / wall
        return LoadTrace(tuple(intervals), wait)


#: Share of a test's time the engine may wait for a CPU before the output says so.
HINT_WAIT_SHARE = 0.25


def wait_hint(wait_share: float | None, threads: int | None, usable: int) -> str | None:
    """What to do when the engine spent much of its time waiting for a CPU (its threads
    outnumbered the free cores): the words for the test's output, or ``None``."""
    if wait_share is None or wait_share <= HINT_WAIT_SHARE:
        return None
    used = threads if threads else usable
    fewer = max(1, min(used, usable) - 1)
    return (
        f"the engine waited for a CPU {wait_share:.0%} of the time it measured ({used} "
        f"thread(s) on {usable} usable core(s), sharing them with this process and others): "
        f"its speed figures are below what the model can do here; give it fewer threads "
        f"(--tokrate-option num_thread={fewer}) or run on a quieter machine"
    )


__all__ = [
    "BUSY_CORES",
    "BUSY_SHARE",
    "HINT_WAIT_SHARE",
    "WAIT_SHARE",
    "CpuSnapshot",
    "LoadSampler",
    "LoadTrace",
    "foreign_cores",
    "snapshot",
    "wait_hint",
    "wait_seconds",
]
