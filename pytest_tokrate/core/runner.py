"""Drives any backend: warm-up rounds, measured rounds, cache busting, timing.

The runner owns the clock. It stamps each event the backend yields the moment it is
received, so all backends are measured the same way, and it never counts warm-up rounds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any, Protocol

from pytest_tokrate._version import __version__
from pytest_tokrate.backends.base import Backend, Request
from pytest_tokrate.core import cache
from pytest_tokrate.core.measure import (
    EngineReport,
    RawRound,
    Sample,
    StampedChunk,
    TextChunk,
    derive_sample,
)
from pytest_tokrate.core.result import Measurement
from pytest_tokrate.core.sanity import check_round
from pytest_tokrate.core.settings import RunSettings
from pytest_tokrate.errors import InfrastructureError, RequestTimeout, ServerError
from pytest_tokrate.machine.calibration import REFERENCE

Clock = Callable[[], int]
#: Calls ``one_round`` ``rounds`` times, each after ``setup`` when there is one (the
#: pytest-benchmark bridge times each ``one_round`` call, never the set-up).
Repeat = Callable[[Callable[[], None], int, Callable[[], None] | None], None]


class Monitor(Protocol):
    """Something that watches the measured rounds (GPU telemetry, see telemetry.py)."""

    def watch(self) -> AbstractContextManager[Any]: ...


#: One probe of the machine reference: its decode rate, or rates by sample key.
Probe = float | Mapping[str, float | None] | None


def repeat_rounds(
    one_round: Callable[[], None], rounds: int, setup: Callable[[], None] | None = None
) -> None:
    for _ in range(rounds):
        if setup is not None:
            setup()
        one_round()


def repeat_until(
    one_round: Callable[[], None],
    rounds: int,
    setup: Callable[[], None] | None,
    done: Callable[[], bool],
) -> None:
    """At most ``rounds`` rounds, stopping after the first round that makes ``done()``."""
    for _ in range(rounds):
        repeat_rounds(one_round, 1, setup)
        if done():
            return


def with_normalized_counts(samples: Sequence[Sample]) -> list[Sample]:
    """Re-count each answer with the common cl100k_base yardstick (after timing, never during).

    Leaves ``normalized_tokens`` empty (and warns once) when the encoding cannot load.
    """
    from pytest_tokrate.core.tokens import count_tokens

    out = []
    for s in samples:
        if s.normalized_tokens is None:
            count = count_tokens(s.text)
            if count is None:
                return list(samples)
            s = replace(s, normalized_tokens=count)
        out.append(s)
    return out


def with_machine_reference(samples: Sequence[Sample], probes: Sequence[Probe]) -> list[Sample]:
    """Give each round the machine reference's rates *during* it: for each rate, the mean
    of the probe just before and the one just after (the next round's, or the final one),
    or the one of the two that ran. ``probes[i]`` ran before round ``i``; one more ran
    after the last. A probe is a rate (the decode reference) or rates by sample key."""
    if len(probes) != len(samples) + 1:
        return list(samples)
    rates = [p if isinstance(p, Mapping) else {REFERENCE: p} for p in probes]
    out = []
    for i, s in enumerate(samples):
        extra = dict(s.extra)
        for key in dict.fromkeys(k for r in rates[i : i + 2] if r for k in r):
            pair = [v for r in rates[i : i + 2] if r and (v := r.get(key)) is not None]
            if pair:
                extra[key] = sum(pair) / len(pair)
        out.append(replace(s, extra=extra) if extra != s.extra else s)
    return out


def _nonce() -> str:
    return uuid.uuid4().hex[:8]


class Runner:
    """Runs requests through a backend and turns them into a :class:`Measurement`."""

    def __init__(
        self,
        backend: Backend,
        clock: Clock = time.perf_counter_ns,
        nonce: Callable[[], str] = _nonce,
        monitor: Monitor | None = None,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.nonce = nonce
        self._monitor = monitor

    @property
    def monitor(self) -> Monitor:
        """GPU telemetry during measured rounds (the process-wide NVML monitor by default)."""
        if self._monitor is None:
            from pytest_tokrate.machine.telemetry import default_monitor

            self._monitor = default_monitor()
        return self._monitor

    def one_round(self, request: Request) -> RawRound:
        """Send one request and stamp every event; raises on an incomplete stream."""
        clock = self.clock
        deadline_ns = int(request.timeout_s * 1e9)
        chunks: list[StampedChunk] = []
        final: EngineReport | None = None
        t0 = clock()
        t_end = t0
        stream = self.backend.stream(request)
        try:
            for event in stream:
                t = clock()
                # Checked on the final report too: an engine that cannot be interrupted
                # (the embedded one, in prefill) must not deliver a late round as valid.
                if t - t0 > deadline_ns:
                    raise RequestTimeout(
                        f"the request ran past its timeout of {request.timeout_s:g} s "
                        f"after {len(chunks)} chunks: raise --tokrate-timeout or lower "
                        "num_predict. The partial round was discarded."
                    )
                if isinstance(event, TextChunk):
                    chunks.append(StampedChunk(event.text, t, event.tokens))
                elif isinstance(event, EngineReport):
                    final = event
                    t_end = t
                    break
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        if final is None:
            raise ServerError(
                f"the stream ended after {len(chunks)} chunks without the engine's final "
                "report (connection dropped?): the partial round was discarded."
            )
        # Corrupt metrics (negative, huge, timers longer than the request) error the round.
        check_round(self.backend, final, chunks, t_end - t0, request.options)
        return RawRound(t0_ns=t0, chunks=tuple(chunks), t_end_ns=t_end, engine=final)

    def check(self, request: Request, settings: RunSettings) -> Request:
        """The request with the call's options and timeout, refused before any round (the
        warm-up included) when the backend cannot take it: its optional
        ``check_request`` builds what only the engine knows (chat template, grammar)."""
        request = replace(request, options=dict(settings.options), timeout_s=settings.timeout_s)
        check_request = getattr(self.backend, "check_request", None)
        if callable(check_request):
            check_request(request)
        return request

    def request_for_round(self, request: Request, settings: RunSettings, measured: bool) -> Request:
        if measured and settings.cache == "bust":
            return replace(request, bust_cache=True, cache_nonce=None)
        if measured and settings.cache == "nonce":
            return replace(request, bust_cache=True, cache_nonce=self.nonce())
        return replace(request, bust_cache=False, cache_nonce=None)

    def run(
        self,
        request: Request,
        settings: RunSettings,
        on_round: Callable[[int, RawRound], None] | None = None,
        repeat: Repeat = repeat_rounds,
        until: Callable[[list[Sample]], bool] | None = None,
    ) -> Measurement:
        """Measure ``settings.rounds`` rounds; with ``settings.auto``, stop once ``until``
        (asked from ``min_rounds`` on) says so; pytest-benchmark's ``repeat`` runs all."""
        request = self.check(request, settings)
        warmup_load_s = self._warm_up(request, settings)
        samples: list[Sample] = []

        # Optional backend capability: a fixed workload timed before each round (as its
        # untimed set-up) and once after the last, so the gate can tell a slower machine
        # from a slower model (backends/reference.py).
        reference = getattr(self.backend, "machine_reference", None)
        probes: list[Probe] = []

        def probe() -> None:
            probes.append(reference(request) if callable(reference) else None)

        def measured_round() -> None:
            index = len(samples)
            raw = self.one_round(self.request_for_round(request, settings, measured=True))
            if on_round is not None:
                on_round(index, raw)
            samples.append(derive_sample(raw, index))

        def settled() -> bool:
            if until is None or len(samples) < settings.min_rounds:
                return False
            # The round just measured has only its probe before; reuse it as the after.
            return until(with_machine_reference(samples, [*probes, *probes[-1:]]))

        # Optional backend capability: untimed work before each measured round, such as
        # evicting the prompt from a server's cache (backends/ollama_cache.py).
        prepare = getattr(self.backend, "prepare_round", None)

        def before_round() -> None:
            if callable(prepare):
                prepare(self.request_for_round(request, settings, measured=True))
            if callable(reference):
                probe()

        setup = before_round if callable(reference) or callable(prepare) else None
        with self.monitor.watch() as gpu:
            if settings.auto and until is not None and repeat is repeat_rounds:
                repeat_until(measured_round, settings.rounds, setup, settled)
            else:
                repeat(measured_round, settings.rounds, setup)
        if callable(reference) and samples:
            probe()
            samples = with_machine_reference(samples, probes)
        measurement = self._measurement(request, settings, samples)
        measurement.warmup_load_s = warmup_load_s
        if gpu is not None:
            measurement.extra["gpu"] = gpu.result(sum(s.output_tokens or 0 for s in samples))
        return measurement

    def _warm_up(self, request: Request, settings: RunSettings) -> float | None:
        """The warm-up rounds; the seconds the engine spent loading the model in them."""
        loads = [
            self.one_round(self.request_for_round(request, settings, measured=False)).engine.load_ns
            for _ in range(settings.warmup)
        ]
        seen = [ns for ns in loads if ns]
        return sum(seen) / 1e9 if seen else None

    def _measurement(
        self, request: Request, settings: RunSettings, samples: list[Sample]
    ) -> Measurement:
        """The measured rounds as a result: token counts normalised, cache reuse marked."""
        samples = with_normalized_counts(samples)
        busting = cache.method(self.backend, settings.cache)
        allowed = cache.allowance(self.backend, settings.cache)
        samples = cache.mark_reuse(samples, settings.cache != "allow", allowed)
        measurement = Measurement(
            model=self.backend.model_info(),
            samples=samples,
            settings=settings.to_dict(),
            request=describe_request(request),
            cache_busting=busting,
            versions=self.versions(),
            warmup_rounds=settings.warmup,
        )
        measurement.extra["cache"] = cache.summary(samples, settings.cache, busting, allowed)
        return measurement

    def versions(self) -> dict[str, str | None]:
        info = self.backend.model_info()
        return {
            "pytest_tokrate": __version__,
            "backend": self.backend.name,
            "engine": info.engine_version,
            "server": info.server_version,
        }


def describe_request(request: Request) -> dict[str, Any]:
    """The parts of a request that define the test (hashed into baselines later)."""
    return {
        "prompt": request.prompt,
        "messages": [m.to_dict() for m in request.messages] if request.messages else None,
        "system": request.system,
        "options": dict(request.options),
        "format": request.format,
        "raw": request.raw,
    }


__all__ = [
    "InfrastructureError",
    "Monitor",
    "Repeat",
    "Runner",
    "describe_request",
    "repeat_rounds",
    "with_normalized_counts",
]
