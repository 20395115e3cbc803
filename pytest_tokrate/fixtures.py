"""The ``tokrate`` fixture object: what a test calls to measure a prompt on the model."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .backends.base import Message, Request
from .config import KNOWN_OPTIONS, Layer, RunSettings, resolve
from .errors import UsageError
from .models import ModelSpec
from .result import Measurement
from .runner import Runner
from .session import TokrateSession

#: Keyword arguments of the ``tokrate`` marker besides generation options.
MARKER_KEYS = {"rounds", "warmup", "options", "timeout", "cache"}
#: Further marker keys registered by other features (quality, gate, sweeps).
EXTRA_MARKER_KEYS: set[str] = set()

MessagesArg = Sequence[Mapping[str, str] | Message] | None


def marker_layer(kwargs: Mapping[str, Any], where: str) -> Layer:
    """Turn ``@pytest.mark.tokrate(...)`` keyword arguments into a precedence layer."""
    allowed = MARKER_KEYS | EXTRA_MARKER_KEYS | set(KNOWN_OPTIONS)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise UsageError(
            f"{where}: unknown argument(s) {', '.join(map(repr, unknown))} in "
            "@pytest.mark.tokrate: use rounds=, warmup=, timeout=, cache=, options={...} "
            "or a generation option such as num_predict=."
        )
    options = dict(kwargs.get("options") or {})
    if "options" in kwargs and not isinstance(kwargs["options"], Mapping):
        raise UsageError(
            f"{where}: @pytest.mark.tokrate(options=...) must be a dict, got {kwargs['options']!r}."
        )
    options.update({k: v for k, v in kwargs.items() if k in KNOWN_OPTIONS})
    return Layer(
        source=f"{where} @pytest.mark.tokrate",
        rounds=kwargs.get("rounds"),
        warmup=kwargs.get("warmup"),
        timeout=kwargs.get("timeout"),
        cache=kwargs.get("cache"),
        options=options or None,
    )


def _messages(messages: MessagesArg) -> tuple[Message, ...] | None:
    if messages is None:
        return None
    out = []
    for i, m in enumerate(messages):
        if isinstance(m, Message):
            out.append(m)
            continue
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise UsageError(
                f"messages[{i}] = {m!r}: each message needs 'role' and 'content', "
                "e.g. {'role': 'user', 'content': 'Hi'}."
            )
        out.append(Message(role=str(m["role"]), content=str(m["content"])))
    if not out:
        raise UsageError("messages=[]: give at least one message, or pass a prompt instead.")
    return tuple(out)


class Tokrate:
    """Measures prompts on the model this test runs against.

    ``run()`` sends a prompt for the warm-up rounds, then for the measured rounds, and
    returns a :class:`~pytest_tokrate.result.Measurement` (also reported at the end of
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

    def run(
        self,
        prompt: str | None = None,
        *,
        messages: MessagesArg = None,
        system: str | None = None,
        rounds: int | None = None,
        warmup: int | None = None,
        options: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        cache: str | None = None,
        format: str | dict[str, Any] | None = None,
        raw: bool = False,
        label: str | None = None,
        **generation_options: Any,
    ) -> Measurement:
        """Measure ``prompt`` (or chat ``messages``) and return every sample.

        Generation options may be given in ``options={...}`` or directly as keywords:
        ``tokrate.run("Hi", rounds=10, num_predict=64)``.
        """
        if (prompt is None) == (messages is None):
            raise UsageError(
                "tokrate.run() needs exactly one of prompt='...' or messages=[...]; "
                f"got prompt={prompt!r} and messages={messages!r}."
            )
        if prompt is not None and not isinstance(prompt, str):
            raise UsageError(f"tokrate.run(prompt={prompt!r}): the prompt must be a string.")
        merged = dict(options or {})
        merged.update(generation_options)
        call = Layer(
            source="tokrate.run()",
            rounds=rounds,
            warmup=warmup,
            timeout=timeout,
            cache=cache,
            options=merged or None,
        )
        settings = self.settings(call)
        request = Request(
            prompt=prompt,
            messages=_messages(messages),
            system=system,
            format=format,
            raw=raw,
        )
        backend = self.session.backend_for(self.spec)
        runner = self.runner_factory(backend)
        measurement = runner.run(request, settings)
        measurement.test_id = self.test_id
        measurement.label = label or (
            f"run {len(self.measurements) + 1}" if self.measurements else None
        )
        self.measurements.append(measurement)
        self.session.add_result(measurement)
        if self.on_result is not None:
            self.on_result(measurement)
        return measurement


__all__ = ["EXTRA_MARKER_KEYS", "MARKER_KEYS", "Tokrate", "marker_layer"]
