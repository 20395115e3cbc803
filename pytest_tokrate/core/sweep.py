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
the sweep says so in its notes rather than pretending to batch. What the levels hold is in
:mod:`pytest_tokrate.core.sweep_result`.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from pytest_tokrate.backends.base import ModelInfo, Request
from pytest_tokrate.core import cache
from pytest_tokrate.core.levels import Levels
from pytest_tokrate.core.measure import RawRound, derive_sample
from pytest_tokrate.core.prompts import prompt_of_length
from pytest_tokrate.core.result import Measurement
from pytest_tokrate.core.runner import Runner, describe_request, with_normalized_counts
from pytest_tokrate.core.settings import RunSettings
from pytest_tokrate.core.sweep_result import SweepLevel, SweepResult
from pytest_tokrate.errors import InfrastructureError, UsageError

TTFT_NOTE = "under concurrency TTFT includes the time a request waits for a free slot"


class SweepWarning(UserWarning):
    """Some requests of a sweep failed; the levels report what they measured."""


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


def _notes(levels: Levels, max_parallel: int | None, backend: str, mode: str) -> list[str]:
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
        if backend == "ollama" and mode == "bust":
            notes.append(
                "Ollama has no per-request cache switch and an eviction between rounds would "
                "disturb the requests in flight: levels above concurrency 1 put a unique line "
                "before the system prompt instead (nonce-prefix), which may change answers"
            )
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
    base = runner.check(request, settings)  # what only the engine knows, before the warm-up
    for _ in range(settings.warmup):
        runner.one_round(runner.request_for_round(base, settings, measured=False))
    backend = runner.backend
    max_parallel = getattr(backend, "max_parallel", None)
    model = backend.model_info()
    busting = cache.method(backend, settings.cache)
    result = SweepResult(
        model=model,
        levels=[],
        varied=levels.varied,
        max_parallel=max_parallel,
        backend=backend.name,
        settings=settings.to_dict(),
        cache_busting=busting,
        versions=runner.versions(),
        notes=_notes(levels, max_parallel, backend.name, settings.cache),
        warmup_rounds=settings.warmup,
        test_id=test_id,
        label=label,
    )
    for prompt_length, level_req, level_settings in _level_requests(base, settings, levels):
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


def _level_requests(
    base: Request, settings: RunSettings, levels: Levels
) -> Iterator[tuple[int | None, Request, RunSettings]]:
    """The request and settings of each prompt length x generation length, in sweep order."""
    for prompt_length in levels.prompt_lengths:
        prompt_req = base
        if prompt_length is not None:
            prompt_req = replace(base, prompt=prompt_of_length(base.prompt or "", prompt_length))
        for num_predict in levels.gen_lengths:
            options = dict(settings.options)
            if num_predict is not None:
                options["num_predict"] = num_predict
            yield (
                prompt_length,
                replace(prompt_req, options=options),
                replace(settings, options=options),
            )


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
    prepare = getattr(runner.backend, "prepare_round", None)
    # A backend that defeats the cache by an eviction between rounds (Ollama) cannot do so
    # with requests in flight; those levels fall back to the nonce line, and say so.
    nonce = settings.cache == "bust" and callable(prepare) and concurrency > 1
    if nonce:
        busting = cache.method(runner.backend, "nonce")

    def make_request() -> Request:
        measured = runner.request_for_round(request, settings, measured=True)
        if nonce:
            return replace(measured, cache_nonce=runner.nonce())
        if concurrency == 1 and callable(prepare):
            prepare(measured)  # untimed: evicts the prompt (backends/ollama_cache.py)
        return measured

    with runner.monitor.watch() as gpu:
        outcome = closed_loop(runner, make_request, concurrency, total)
    samples = [derive_sample(raw, i) for i, (_, raw) in enumerate(outcome.raws)]
    samples = with_normalized_counts(samples)
    mode = "nonce" if nonce else settings.cache
    allowed = cache.allowance(runner.backend, mode)
    samples = cache.mark_reuse(samples, mode != "allow", allowed)
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
    measurement.extra["cache"] = cache.summary(samples, mode, busting, allowed)
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


__all__ = ["TTFT_NOTE", "SweepWarning", "closed_loop", "run_sweep"]
