"""Sweeps: concurrency, generation-length and prompt-length levels over one Runner.

A concurrency level of N keeps N requests in flight as a closed loop: N slots (threads),
each sending its next request the moment its previous one ends, until the level's request
count is reached. Per level we keep every request's sample (TTFT, TPOT, E2E, decode rate)
and the aggregate throughput, total output tokens / wall time of the level.

A request that fails with an infrastructure error (HTTP 503, dropped connection, timeout)
is recorded in the level's ``errors`` and its slot moves on; the level reports what it
measured and the next level runs. Usage errors and bugs stop the sweep.

Pure: no pytest. The backend's ``stream()`` is called from several threads; a backend that
serves one request at a time (``max_parallel == 1``, the embedded engine) queues them, and
the sweep says so in its notes rather than pretending to batch.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .backends.base import ModelInfo, Request
from .config import RunSettings
from .errors import InfrastructureError, UsageError
from .levels import Levels
from .measure import RawRound, Sample, derive_sample
from .prompts import prompt_of_length
from .result import Measurement
from .runner import Runner, describe_request, with_normalized_counts
from .stats import Summary

TTFT_NOTE = "under concurrency TTFT includes the time a request waits for a free slot"


class SweepWarning(UserWarning):
    """Some requests of a sweep failed; the levels report what they measured."""


@dataclass
class SweepLevel:
    """One level of a sweep: its settings, every completed request and every error."""

    concurrency: int
    num_predict: int | None  # requested generation length of this level
    prompt_length: int | None  # requested prompt length in cl100k tokens (None: as given)
    requests: int  # requests attempted
    measurement: Measurement
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    gpu: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        parts = [f"c={self.concurrency}"]
        if self.num_predict is not None:
            parts.append(f"n={self.num_predict}")
        if self.prompt_length is not None:
            parts.append(f"p={self.prompt_length}")
        return " ".join(parts)

    @property
    def samples(self) -> list[Sample]:
        return self.measurement.samples

    @property
    def completed(self) -> int:
        return len(self.measurement.samples)

    @property
    def failed(self) -> int:
        return len(self.errors)

    @property
    def output_tokens_total(self) -> int:
        return sum(s.output_tokens or 0 for s in self.measurement.samples)

    @property
    def normalized_tokens_total(self) -> int | None:
        counts = [s.normalized_tokens for s in self.measurement.samples]
        if not counts or any(c is None for c in counts):
            return None
        return sum(c for c in counts if c is not None)

    @property
    def throughput(self) -> float | None:
        """Aggregate tok/s: total output tokens of the level / wall time of the level."""
        if not self.completed or self.wall_s <= 0:
            return None
        return self.output_tokens_total / self.wall_s

    @property
    def normalized_throughput(self) -> float | None:
        """Aggregate tok/s counted with the cl100k_base yardstick."""
        total = self.normalized_tokens_total
        if total is None or self.wall_s <= 0:
            return None
        return total / self.wall_s

    @property
    def ttft(self) -> Summary:
        return self.measurement.ttft

    @property
    def tpot(self) -> Summary:
        return self.measurement.tpot

    @property
    def e2e(self) -> Summary:
        return self.measurement.e2e

    @property
    def decode_tps(self) -> Summary:
        """Per-request decode rate."""
        return self.measurement.decode_tps

    @property
    def e2e_tps(self) -> Summary:
        return self.measurement.e2e_tps

    @property
    def prompt_tokens(self) -> Summary:
        return self.measurement.prompt_tokens

    def error_counts(self) -> list[tuple[str, int]]:
        """Distinct error messages with how often each occurred, most frequent first."""
        return Counter(self.errors).most_common()

    def to_dict(self, include_samples: bool = True) -> dict[str, Any]:
        m = self.measurement
        data: dict[str, Any] = {
            "name": self.name,
            "concurrency": self.concurrency,
            "num_predict": self.num_predict,
            "prompt_length": self.prompt_length,
            "requests": self.requests,
            "completed": self.completed,
            "failed": self.failed,
            "errors": [{"message": msg, "count": n} for msg, n in self.error_counts()],
            "wall_s": self.wall_s,
            "output_tokens_total": self.output_tokens_total,
            "normalized_tokens_total": self.normalized_tokens_total,
            "throughput_tps": self.throughput,
            "normalized_throughput_tps": self.normalized_throughput,
            "summaries": m.summaries(),
            "gpu": self.gpu,
            "request": m.request,
        }
        if include_samples:
            data["samples"] = [s.to_dict() for s in m.samples]
        return data


@dataclass
class SweepResult:
    """Every level of one ``tokrate.sweep()`` on one model."""

    model: ModelInfo
    levels: list[SweepLevel]
    varied: tuple[str, ...]
    max_parallel: int | None
    backend: str
    settings: dict[str, Any]
    cache_busting: str
    versions: dict[str, str | None]
    notes: list[str] = field(default_factory=list)
    warmup_rounds: int = 0
    test_id: str | None = None
    label: str | None = None

    @property
    def serialised(self) -> bool:
        """True when the engine serves one request at a time (throughput cannot scale)."""
        return self.max_parallel == 1

    @property
    def errors(self) -> list[str]:
        return [e for level in self.levels for e in level.errors]

    def level(
        self,
        concurrency: int | None = None,
        num_predict: int | None = None,
        prompt_length: int | None = None,
    ) -> SweepLevel:
        """The level with these values (unnamed values match anything); exactly one must match."""
        found = [
            lv
            for lv in self.levels
            if (concurrency is None or lv.concurrency == concurrency)
            and (num_predict is None or lv.num_predict == num_predict)
            and (prompt_length is None or lv.prompt_length == prompt_length)
        ]
        if len(found) != 1:
            have = ", ".join(lv.name for lv in self.levels)
            raise UsageError(
                f"sweep.level(concurrency={concurrency}, num_predict={num_predict}, "
                f"prompt_length={prompt_length}) matches {len(found)} levels; the levels are: "
                f"{have}."
            )
        return found[0]

    def to_dict(self, include_samples: bool = True) -> dict[str, Any]:
        return {
            "test_id": self.test_id,
            "label": self.label,
            "model": self.model.to_dict(),
            "backend": self.backend,
            "varied": list(self.varied),
            "max_parallel": self.max_parallel,
            "serialised": self.serialised,
            "settings": self.settings,
            "cache_busting": self.cache_busting,
            "versions": self.versions,
            "warmup_rounds": self.warmup_rounds,
            "notes": list(self.notes),
            "levels": [lv.to_dict(include_samples) for lv in self.levels],
        }


# -- the closed loop -------------------------------------------------------------------------


@dataclass
class _LoopOutcome:
    raws: list[tuple[int, RawRound]]
    errors: list[str]
    wall_s: float


def closed_loop(
    runner: Runner, make_request: Callable[[], Request], concurrency: int, total: int
) -> _LoopOutcome:
    """Keep ``concurrency`` requests in flight until ``total`` requests were sent."""
    lock = threading.Lock()
    counter = itertools.count()
    raws: list[tuple[int, RawRound]] = []
    errors: list[str] = []
    fatal: list[BaseException] = []

    def slot() -> None:
        while True:
            with lock:
                if fatal:
                    return
                index = next(counter)
            if index >= total:
                return
            try:
                raw = runner.one_round(make_request())
            except InfrastructureError as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            except BaseException as exc:  # usage error or bug: stop every slot
                with lock:
                    fatal.append(exc)
                return
            with lock:
                raws.append((index, raw))

    clock = runner.clock
    start = clock()
    if concurrency == 1:
        slot()
    else:
        threads = [
            threading.Thread(target=slot, name=f"tokrate-slot-{i}", daemon=True)
            for i in range(concurrency)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    wall_s = (clock() - start) / 1e9
    if fatal:
        raise fatal[0]
    raws.sort(key=lambda pair: pair[0])
    return _LoopOutcome(raws, errors, wall_s)


def _notes(levels: Levels, max_parallel: int | None, backend: str) -> list[str]:
    notes = []
    top = max(levels.concurrency)
    if top > 1:
        if max_parallel == 1:
            notes.append(
                f"the {backend} engine serves one request at a time (max_parallel = 1): "
                "concurrent requests queue, so aggregate throughput stays flat while TTFT and "
                "E2E grow with concurrency; it does not batch"
            )
        elif max_parallel is not None and max_parallel < top:
            notes.append(
                f"the {backend} backend serves at most {max_parallel} requests at a time: "
                f"levels above {max_parallel} queue"
            )
        notes.append(TTFT_NOTE)
    return notes


def run_sweep(
    runner: Runner,
    request: Request,
    settings: RunSettings,
    levels: Levels,
    test_id: str | None = None,
    label: str | None = None,
) -> SweepResult:
    """Warm up once, then run every level (prompt length x generation length x concurrency)."""
    if request.messages is not None and any(p is not None for p in levels.prompt_lengths):
        raise UsageError(
            "prompt_lengths= pads a prompt given as text: pass prompt='...' rather than "
            "messages=[...] to sweep prompt lengths."
        )
    base = replace(request, options=dict(settings.options), timeout_s=settings.timeout_s)
    for _ in range(settings.warmup):
        runner.one_round(runner.request_for_round(base, settings, measured=False))
    backend = runner.backend
    max_parallel = getattr(backend, "max_parallel", None)
    model = backend.model_info()
    busting = backend.cache_busting if settings.cache == "bust" else "none"
    result = SweepResult(
        model=model,
        levels=[],
        varied=levels.varied,
        max_parallel=max_parallel,
        backend=backend.name,
        settings=settings.to_dict(),
        cache_busting=busting,
        versions=runner.versions(),
        notes=_notes(levels, max_parallel, backend.name),
        warmup_rounds=settings.warmup,
        test_id=test_id,
        label=label,
    )
    for prompt_length in levels.prompt_lengths:
        prompt_req = base
        if prompt_length is not None:
            prompt_req = replace(base, prompt=prompt_of_length(base.prompt or "", prompt_length))
        for num_predict in levels.gen_lengths:
            options = dict(settings.options)
            if num_predict is not None:
                options["num_predict"] = num_predict
            level_req = replace(prompt_req, options=options)
            level_settings = replace(settings, options=options)
            for concurrency in levels.concurrency:
                result.levels.append(
                    _run_level(
                        runner,
                        level_req,
                        level_settings,
                        concurrency,
                        levels.requests_for(concurrency, settings.rounds),
                        prompt_length,
                        model,
                        busting,
                        test_id,
                    )
                )
    if result.errors and not any(lv.completed for lv in result.levels):
        raise InfrastructureError(
            f"every request of the sweep failed ({len(result.errors)} errors); the first: "
            f"{result.errors[0]}"
        )
    return result


def _run_level(
    runner: Runner,
    request: Request,
    settings: RunSettings,
    concurrency: int,
    total: int,
    prompt_length: int | None,
    model: ModelInfo,
    busting: str,
    test_id: str | None,
) -> SweepLevel:
    def make_request() -> Request:
        return runner.request_for_round(request, settings, measured=True)

    with runner.monitor.watch() as gpu:
        outcome = closed_loop(runner, make_request, concurrency, total)
    samples = [derive_sample(raw, i) for i, (_, raw) in enumerate(outcome.raws)]
    samples = with_normalized_counts(samples)
    level_settings = settings.to_dict()
    level_settings.update({"concurrency": concurrency, "requests": total})
    measurement = Measurement(
        model=model,
        samples=samples,
        settings=level_settings,
        request=describe_request(request),
        cache_busting=busting,
        versions=runner.versions(),
        test_id=test_id,
    )
    level = SweepLevel(
        concurrency=concurrency,
        num_predict=int(request.options["num_predict"])
        if "num_predict" in request.options
        else None,
        prompt_length=prompt_length,
        requests=total,
        measurement=measurement,
        errors=outcome.errors,
        wall_s=outcome.wall_s,
    )
    measurement.label = level.name
    if gpu is not None:
        level.gpu = gpu.result(level.output_tokens_total)
    return level


__all__ = [
    "TTFT_NOTE",
    "SweepLevel",
    "SweepResult",
    "SweepWarning",
    "closed_loop",
    "run_sweep",
]
