"""The load probe: other processes' CPU use, read from the kernel while a test runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pytest_tokrate.machine.load import LoadSampler, LoadTrace

needs_proc = pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs /proc/stat")


def test_trace_mean_and_share() -> None:
    trace = LoadTrace(((1.0, 0.0), (1.0, 2.0), (2.0, 1.0)))
    assert trace.seconds == 4.0
    assert trace.mean() == pytest.approx(1.0)
    assert trace.share_over(1.5) == pytest.approx(0.25)
    assert trace.share_over(0.5) == pytest.approx(0.75)
    assert LoadTrace(()).mean() is None and LoadTrace(()).share_over(1) is None


@needs_proc
def test_sampler_sees_another_process_burning_cpu() -> None:
    burn = "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass\n"
    sampler = LoadSampler(interval_s=0.1)
    sampler.start()
    proc = subprocess.Popen([sys.executable, "-c", burn])
    proc.wait()
    trace = sampler.stop()
    assert trace is not None and trace.seconds >= 1.4
    assert len(trace.intervals) >= 10
    # the burner kept a core busy: at least most of one core was someone else's
    assert trace.mean() is not None and trace.mean() > 0.6


WAIT_PROBE = """
import os, subprocess, sys, time
from pytest_tokrate.machine.load import LoadSampler
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, shared with the burner
burn = "import time\\nend = time.time() + 1.5\\nwhile time.time() < end: pass\\n"
sampler = LoadSampler(interval_s=0.1)
sampler.start()
proc = subprocess.Popen([sys.executable, "-c", burn])  # inherits the one-core affinity
end = time.time() + 1.2
while time.time() < end:
    pass
proc.wait()
print(sampler.stop().wait_share)
"""


@needs_proc
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_sampler_sees_this_process_waiting_for_a_cpu() -> None:
    """Two busy processes pinned to one core: each runs about half the time, so this
    process waits for the CPU roughly half of it (run in a child, to keep the test
    process's own affinity)."""
    out = subprocess.run(
        [sys.executable, "-c", WAIT_PROBE], capture_output=True, text=True, check=True
    )
    assert float(out.stdout) > 0.25, out.stdout


@needs_proc
def test_a_quiet_process_hardly_waits() -> None:
    sampler = LoadSampler(interval_s=0.1)
    sampler.start()
    import time

    time.sleep(0.5)  # sleeping is not waiting for a CPU
    trace = sampler.stop()
    assert trace is not None and trace.wait_share is not None
    assert trace.wait_share < 0.1


def test_a_long_wait_for_the_cpu_is_said_with_the_option_that_helps() -> None:
    from pytest_tokrate.machine.load import HINT_WAIT_SHARE, wait_hint

    assert wait_hint(None, 2, 2) is None and wait_hint(HINT_WAIT_SHARE, 2, 2) is None
    hint = wait_hint(0.89, 2, 2) or ""
    assert hint.startswith("the engine waited for a CPU 89% of the time")
    assert "(2 thread(s) on 2 usable core(s)" in hint and "num_thread=1" in hint
    assert "num_thread=7" in (wait_hint(0.5, None, 8) or "")  # the default: every core
