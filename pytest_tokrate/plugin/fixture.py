"""The ``tokrate`` fixture object: what a test calls to measure a prompt on the model."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pytest_tokrate.backends.base import Message, Request
from pytest_tokrate.backends.models import ModelSpec
from pytest_tokrate.core.measure import Sample
from pytest_tokrate.core.request_check import check_label, checked_request
from pytest_tokrate.core.result import Measurement
from pytest_tokrate.core.runner import Runner, describe_request
from pytest_tokrate.core.settings import (
    DEFAULT_ROUNDS,
    KNOWN_OPTIONS,
    Layer,
    RunSettings,
    baseline_rounds,
    resolve,
)
from pytest_tokrate.errors import UsageError, did_you_mean
from pytest_tokrate.plugin.session import TokrateSession

if TYPE_CHECKING:
    from pytest_tokrate.core.levels import LevelLayer, Levels
    from pytest_tokrate.core.sweep_result import SweepResult
    from pytest_tokrate.quality.evaluate import QualityPlan

#: Keyword arguments of the ``tokrate`` marker besides generation options.
MARKER_KEYS = {"rounds", "warmup", "options", "timeout", "cache", "max_rounds", "min_rounds"}
#: Further marker keys registered by other features (quality, gate, sweeps).
EXTRA_MARKER_KEYS: set[str] = {"checks", "min_pass_rate"}  # quality bar (quality.py)

MessagesArg = Sequence[Mapping[str, str] | Message] | None


def marker_layer(kwargs: Mapping[str, Any], where: str) -> Layer:
    """Turn ``@pytest.mark.tokrate(...)`` keyword arguments into a precedence layer."""
    allowed = MARKER_KEYS | EXTRA_MARKER_KEYS | set(KNOWN_OPTIONS)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        hints = "".join(did_you_mean(key, allowed) for key in unknown)
        raise UsageError(
            f"{where}: unknown argument(s) {', '.join(map(repr, unknown))} in "
            f"@pytest.mark.tokrate{hints}: use rounds=, warmup=, timeout=, cache=, "
            "options={...} or a generation option such as num_predict=."
        )
    if kwargs.get("options") is not None and not isinstance(kwargs["options"], Mapping):
        raise UsageError(
            f"{where}: @pytest.mark.tokrate(options=...) must be a dict, got {kwargs['options']!r}."
        )
    options = dict(kwargs.get("options") or {})
    options.update({k: v for k, v in kwargs.items() if k in KNOWN_OPTIONS})
    return Layer(
        source=f"{where} @pytest.mark.tokrate",
        rounds=kwargs.get("rounds"),
        warmup=kwargs.get("warmup"),
        max_rounds=kwargs.get("max_rounds"),
        min_rounds=kwargs.get("min_rounds"),
        timeout=kwargs.get("timeout"),
        cache=kwargs.get("cache"),
        options=options or None,
        extra={k: kwargs[k] for k in EXTRA_MARKER_KEYS if k in kwargs} or None,
    )


class Tokrate:
    """Measures prompts on the model this test runs against.

    ``run()`` sends a prompt for the warm-up rounds, then for the measured rounds, and
    returns a :class:`~pytest_tokrate.core.result.Measurement` (also reported at the end of
    the run). Values given to ``run()`` override the marker and ini, and are overridden
    by command-line options.
    """

    def __init__(
        self,
        session: TokrateSession,
        spec: ModelSpec,
        test_id: str,
        marker: Layer | None = None,
        runner_factory: Callable[..., Runner] = Runner,
        on_result: Callable[[Measurement], None] | None = None,
    ) -> None:
        self.session = session
        self.spec = spec
        self.test_id = test_id
        self.marker = marker
        self.runner_factory = runner_factory
        self.on_result = on_result
        self.measurements: list[Measurement] = []
        self.sweeps: list[SweepResult] = []
        #: Sweep levels of the marker and of the item's own parametrized level.
        self.level_layers: tuple[LevelLayer | None, LevelLayer | None] = (None, None)

    @property
    def model(self) -> str:
        """The model name this test runs against."""
        return self.spec.name

    def settings(self, call: Layer | None = None) -> RunSettings:
        cfg = self.session.config
        layers = [cfg.ini]
        if self.marker is not None:
            layers.append(self.marker)
        if call is not None:
            layers.append(call)
        layers.append(cfg.cli)
        return resolve(layers)

    def _call_settings(
        self,
        method: str,
        rounds: int | str | None,
        warmup: int | None,
        timeout: float | None,
        cache: str | None,
        options: Mapping[str, Any] | None,
        generation_options: Mapping[str, Any],
    ) -> RunSettings:
        """Resolve a call's settings (``run`` and ``sweep``)."""
        merged = dict(options or {})
        merged.update(generation_options)
        call = Layer(
            source=f"tokrate.{method}()",
            rounds=rounds,
            warmup=warmup,
            timeout=timeout,
            cache=cache,
            options=merged or None,
        )
        settings = self.settings(call)
        if self.spec.backend in ("ollama", "openai"):
            from pytest_tokrate.backends.server_settings import refuse_server_start_options

            refuse_server_start_options(settings.options, self.spec.backend)
        if settings.auto and method != "run":
            # A sweep's cells have no baseline to settle against: a fixed count.
            settings = replace(settings, auto=False, rounds=DEFAULT_ROUNDS)
        spec = self.session.config.extra.get("baseline_rounds")
        if spec is not None and method == "run":
            # Writing baselines (sweeps have none): a more precise baseline (config.py).
            settings = replace(settings, rounds=baseline_rounds(settings.rounds, spec))
        return settings

    def run(
        self,
        prompt: str | None = None,
        *,
        messages: MessagesArg = None,
        system: str | None = None,
        rounds: int | str | None = None,
        warmup: int | None = None,
        options: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        cache: str | None = None,
        format: str | dict[str, Any] | None = None,
        raw: bool = False,
        label: str | None = None,
        benchmark: Any = None,
        checks: Sequence[Any] | None = None,
        min_pass_rate: float | str | None = None,
        **generation_options: Any,
    ) -> Measurement:
        """Measure ``prompt`` (or chat ``messages``) and return every sample.

        Generation options may be given in ``options={...}`` or directly as keywords:
        ``tokrate.run("Hi", rounds=10, num_predict=64)``. With ``benchmark=benchmark``
        (pytest-benchmark's fixture) each measured round is also timed and stored by
        pytest-benchmark (see :mod:`pytest_tokrate.plugin.benchmark`). ``checks=[...]`` are
        judged on every measured round (with the marker's checks); the test fails when
        the pass rate is below ``min_pass_rate`` (default: every round must pass).
        """
        # Every argument checked before any round (core/request_check.py); the label too,
        # since a duplicate would lose a run.
        request = checked_request(
            "run", prompt=prompt, messages=messages, system=system, format=format, raw=raw
        )
        run_label = self._run_label(check_label("tokrate.run() label", label))
        settings = self._call_settings(
            "run", rounds, warmup, timeout, cache, options, generation_options
        )
        quality = self._quality_plan(checks, min_pass_rate)  # before any round: fail fast
        backend = self.session.backend_for(self.spec)
        runner = self.runner_factory(backend)
        on_round = self._progress(run_label, settings.rounds)
        if benchmark is None:
            until = self._until(runner, request, settings, run_label, quality)
            measurement = runner.run(request, settings, on_round, until=until)
        else:
            from pytest_tokrate.plugin import benchmark as benchbridge

            repeat = benchbridge.pedantic_repeat(benchmark)
            measurement = runner.run(request, settings, on_round, repeat=repeat)
        measurement.test_id = self.test_id
        measurement.label = run_label
        if quality is not None:
            measurement.quality = quality.evaluate(measurement, request)
        if benchmark is not None:
            benchbridge.record(benchmark, measurement)
        self.measurements.append(measurement)
        self.session.add_result(measurement)
        if self.on_result is not None:
            self.on_result(measurement)
        return measurement

    def _progress(self, label: str | None, rounds: int) -> Callable[[int, Any], None] | None:
        """The progress lines of one run (plugin/progress.py), if any are shown."""
        progress = self.session.progress
        return progress(self.test_id, self.spec.name, label, rounds) if progress else None

    def _until(
        self,
        runner: Runner,
        request: Request,
        settings: RunSettings,
        label: str | None,
        quality: QualityPlan | None,
    ) -> Callable[[list[Sample]], bool] | None:
        """With ``rounds="auto"``: after each round, whether the gate's verdict on the
        rounds so far is settled (the session's ``settle``, set by the gate)."""
        settle = self.session.settle
        if not settings.auto or settle is None:
            return None
        marker = dict(self.marker.extra or {}) if self.marker is not None else {}

        def until(samples: list[Sample]) -> bool:
            partial = Measurement(
                model=runner.backend.model_info(),
                samples=samples,
                settings=settings.to_dict(),
                request=describe_request(request),
                cache_busting="",
                versions=runner.versions(),
                test_id=self.test_id,
                label=label,
            )
            if quality is not None:
                partial.quality = quality.evaluate(partial, request)
            return settle(partial, marker)

        return until

    def _run_label(self, label: str | None) -> str | None:
        """The label of the next ``run()``: ``label``, else ``run N`` for the N-th run (none
        for a first unlabeled run, which baselines and reports key as ``run 1``).

        Baselines and reports keep one run per key, so a key already taken by an earlier
        run of this test on this model is refused rather than overwritten.
        """
        auto = f"run {len(self.measurements) + 1}"
        chosen = label or (auto if self.measurements else None)
        key = str(chosen or "run 1")  # as gate.records keys a run
        taken = {str(m.label or "run 1") for m in self.measurements}
        if key not in taken:
            return chosen
        if label:
            raise UsageError(
                f"tokrate.run: label {label!r} is already used by an earlier run in this "
                "test: give each run its own label."
            )
        raise UsageError(
            f"tokrate.run: this run's automatic label {key!r} is already used by an earlier "
            f"run's label={key!r} in this test: give this run its own label=, or rename "
            "the earlier one."
        )

    def _quality_plan(
        self, checks: Sequence[Any] | None, min_pass_rate: float | str | None
    ) -> QualityPlan | None:
        """The checks of a ``run()`` call and of the marker, parsed (``None``: no checks)."""
        if checks is None and (self.marker is None or not self.marker.extra):
            return None
        from pytest_tokrate.quality.evaluate import QualityPlan

        cfg = self.session.config
        return QualityPlan.build(
            self.test_id, [cfg.ini, self.marker, cfg.cli], checks, min_pass_rate
        )

    def _levels(self, call: LevelLayer) -> Levels:
        """A sweep's levels: ini < marker < ``sweep()`` call < command line < the item's
        own parametrized level."""
        from pytest_tokrate.core.levels import resolve_levels

        ini, cli = self.session.sweep_layers or (None, None)
        marker, item = self.level_layers
        return resolve_levels([x for x in (ini, marker, call, cli, item) if x is not None])

    def sweep(
        self,
        prompt: str | None = None,
        *,
        messages: MessagesArg = None,
        system: str | None = None,
        concurrency: int | Sequence[int] | str | None = None,
        gen_lengths: int | Sequence[int] | str | None = None,
        prompt_lengths: int | Sequence[int] | str | None = None,
        requests: int | None = None,
        rounds: int | None = None,
        warmup: int | None = None,
        options: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        cache: str | None = None,
        format: str | dict[str, Any] | None = None,
        raw: bool = False,
        label: str | None = None,
        **generation_options: Any,
    ) -> SweepResult:
        """Measure ``prompt`` at several levels and return a :class:`SweepResult`.

        ``concurrency=[1, 8, 32]`` keeps that many requests in flight (closed loop);
        ``gen_lengths=[16, 64, 256]`` sets num_predict per level; ``prompt_lengths=[...]``
        pads the prompt to about that many cl100k tokens. Lists multiply into a grid.
        ``requests`` per level defaults to ``rounds`` at concurrency 1, else to
        ``max(rounds, 2 * concurrency)``. Warm-up runs
        once, before the first level. Failed requests are recorded per level, not raised.
        """
        import warnings

        from pytest_tokrate.core.levels import LevelLayer
        from pytest_tokrate.core.sweep import SweepWarning, run_sweep

        request = checked_request(
            "sweep", prompt=prompt, messages=messages, system=system, format=format, raw=raw
        )
        label = check_label("tokrate.sweep() label", label)
        settings = self._call_settings(
            "sweep", rounds, warmup, timeout, cache, options, generation_options
        )
        levels = self._levels(
            LevelLayer("tokrate.sweep()", concurrency, gen_lengths, prompt_lengths, requests)
        )
        runner = self.runner_factory(self.session.backend_for(self.spec))
        result = run_sweep(runner, request, settings, levels, self.test_id, label)
        self.sweeps.append(result)
        self.session.sweeps.append(result)
        if result.errors:
            total = sum(lv.requests for lv in result.levels)
            warnings.warn(
                SweepWarning(
                    f"{self.test_id}: {len(result.errors)} of {total} requests failed in the "
                    f"sweep on {self.spec.name} ({result.errors[0]}); the levels report what "
                    "they measured and their errors."
                ),
                stacklevel=2,
            )
        return result


__all__ = ["EXTRA_MARKER_KEYS", "MARKER_KEYS", "Tokrate", "marker_layer"]
