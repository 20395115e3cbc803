"""The machine reference: a fixed decode workload timed around every measured round.

A shared CPU machine is not equally fast all day: other tenants of the host take memory
bandwidth, a neighbour process takes a core, the clock changes. On this project's 2-core
machine undisturbed recordings of one unchanged test, minutes apart, had medians from
121.7 to 133.3 tok/s, and nothing inside the VM could see why (``benchmarks/data``). A
baseline recorded at one moment and a run at another then differ by the machine, not by
the model.

So before each measured round, and once after the last, the embedded backend decodes a
few tokens of one fixed model (the bundled SmolLM2-135M Q4_1) on one thread, whatever
the test's thread count; each round is given the mean rate of the probes just before
and just after it (``runner.with_machine_reference``).
The reference never changes with the test's model, prompt or options, so the ratio of a
test's figures to it cancels the machine's speed of the moment and keeps what the test
changed; the gate compares those ratios (see :mod:`pytest_tokrate.gate.rule`).

Cost: one model load per session (memory-mapped, shared with a SmolLM2 under test) and
about 0.33 s per probe here (its 16-token prompt and 12 decode steps).
``--tokrate-calibrate=off`` turns it off. Only the embedded engine has it: a server's
speed does not follow this process's CPU.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

#: Single-token decode steps timed per probe, after the prompt.
STEPS = 12
#: The prompt, evaluated as one batch and timed: the prefill reference (16 tokens: a
#: batch long enough to time, about 0.15 s on one thread here).
_PROMPT = b"The weather today is sunny and warm, with a light breeze from the sea and"
#: Context size of the reference: prompt plus steps, with room to spare.
_N_CTX = 64
#: Threads of the reference workload, whatever the test uses: it measures the machine.
THREADS = 1


class MachineReference:
    """Times the fixed reference workload; ``None`` when it cannot run here."""

    def __init__(self, llama_cpp: Any) -> None:
        self._llama_cpp = llama_cpp
        self._llm: Any = None
        self._tokens: list[int] = []
        self._lock = threading.Lock()
        self.unavailable: str | None = None

    def _load(self) -> Any:
        if self._llm is None and self.unavailable is None:
            try:
                from pytest_tokrate.backends.models import smollm2_path

                path = smollm2_path()
                with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
                    self._llm = self._llama_cpp.Llama(
                        model_path=str(path),
                        n_ctx=_N_CTX,
                        n_threads=THREADS,
                        n_threads_batch=THREADS,
                        verbose=False,
                    )
                self._tokens = list(self._llm.tokenize(_PROMPT, add_bos=True))
            except Exception as exc:  # the reference is optional: never fail a test on it
                self.unavailable = f"{type(exc).__name__}: {exc}"
        return self._llm

    def tokens_per_second(self) -> float | None:
        """Decode rate of the reference workload now (see :meth:`rates`)."""
        return self.rates()[0]

    def rates(self) -> tuple[float | None, float | None]:
        """Decode rate of the reference workload now, on :data:`THREADS` thread(s).

        The workload never follows the test's configuration, its thread count included:
        a reference run with the test's threads would move with them and cancel the
        very change a test makes (``num_thread`` 1 -> 2 read as no change).

        Returns ``(decode tok/s, prefill tok/s)``: prefill is bound by arithmetic and
        decode by memory bandwidth, and a busy host slows them differently, so TTFT is
        judged relative to the prefill rate and per-token figures to the decode rate."""
        with self._lock:
            llm = self._load()
            if llm is None:
                return None, None
            try:
                llm.reset()
                t = time.perf_counter()
                llm.eval(self._tokens)
                prefill_s = time.perf_counter() - t
                steps = self._tokens[1:] or self._tokens
                t = time.perf_counter()
                for i in range(STEPS):
                    llm.eval([steps[i % len(steps)]])
                elapsed = time.perf_counter() - t
            except Exception as exc:
                self.unavailable = f"{type(exc).__name__}: {exc}"
                self.close()
                return None, None
            decode = STEPS / elapsed if elapsed > 0 else None
            prefill = len(self._tokens) / prefill_s if prefill_s > 0 else None
            return decode, prefill

    def close(self) -> None:
        if self._llm is not None:
            with contextlib.suppress(Exception):
                self._llm.close()
            self._llm = None


_shared: MachineReference | None = None
_shared_lock = threading.Lock()


def shared(llama_cpp: Any) -> MachineReference:
    """One reference per process: every embedded backend times the same workload."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = MachineReference(llama_cpp)
        return _shared


__all__ = ["STEPS", "THREADS", "MachineReference", "shared"]
