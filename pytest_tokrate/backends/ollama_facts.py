"""What Ollama says about a round and about a model, read without any I/O.

The final ``done: true`` chunk of a stream carries the server's own counters
(``eval_count``, ``eval_duration``, ``prompt_eval_count``, ``prompt_eval_duration``,
``load_duration``, ``total_duration``; nanoseconds, and *absent* when zero), which become
the round's :class:`~pytest_tokrate.core.measure.EngineReport`.

The model's facts come from ``/api/show`` (architecture, parameter count, quantization,
context and embedding length, family, format), ``/api/tags`` (digest, file size) and
``/api/ps`` (how much of the loaded model sits in GPU memory).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pytest_tokrate.backends.base import ModelInfo
from pytest_tokrate.core.measure import EngineReport
from pytest_tokrate.errors import ServerError

METRIC_FIELDS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)


def canonical_name(name: str) -> str:
    """The form Ollama lists a model under: lower case, default host/namespace dropped,
    ``:latest`` added when no tag is given (``llama3.2`` -> ``llama3.2:latest``)."""
    text = name.strip().lower()
    for prefix in ("registry.ollama.ai/", "library/"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    if ":" not in text.rsplit("/", 1)[-1]:
        text += ":latest"
    return text


def find_listed(entries: Iterable[Any], model: str) -> Any:
    """The entry of a ``/api/tags`` or ``/api/ps`` listing that is ``model``, or ``None``.

    ``/api/ps`` entries also carry a ``name``; ``/api/tags`` entries only a ``model``.
    """
    wanted = canonical_name(model)
    return next(
        (m for m in entries if canonical_name(m.model or getattr(m, "name", None) or "") == wanted),
        None,
    )


def engine_report(part: Any, retries: int, url: str, cached: int | None = None) -> EngineReport:
    """The round's engine figures, from the final ``done: true`` chunk; ``cached`` is its
    ``prompt_eval_cached_count`` where the server sent one."""
    metrics = {name: getattr(part, name, None) for name in METRIC_FIELDS}
    for name, value in metrics.items():
        if value is not None and value < 0:
            raise ServerError(
                f"Ollama at {url} reported {name}={value}, a negative value: the "
                "round was discarded. The server's metrics are corrupt; check its version."
            )
    eval_count = metrics["eval_count"] or 0  # absent means zero (omitempty)
    if eval_count >= 2 and not metrics["eval_duration"]:
        # Ollama times every decode step; without the timer the engine rate would
        # silently become the client's, a different figure than the baseline's.
        raise ServerError(
            f"Ollama at {url} reported eval_count={eval_count} with no eval_duration "
            "(absent or 0): the engine's decode rate cannot be computed and the round was "
            "discarded. The server's metrics are corrupt; check its version."
        )
    extra: dict[str, Any] = {"server_metrics": {k: v for k, v in metrics.items() if v is not None}}
    if retries:
        extra["busy_retries"] = retries
    prompt = metrics["prompt_eval_count"] or 0
    if cached is not None:
        extra["server_metrics"]["prompt_eval_cached_count"] = cached
        cached = min(cached, prompt)
    return EngineReport(
        output_tokens=eval_count,
        prompt_tokens=prompt,
        prompt_tokens_cached=cached,
        prompt_tokens_processed=prompt - cached if cached is not None else None,
        decode_tokens=eval_count,
        decode_ns=metrics["eval_duration"] or None,
        prefill_ns=metrics["prompt_eval_duration"] or None,
        load_ns=metrics["load_duration"] or 0,
        total_ns=metrics["total_duration"],
        done_reason=part.done_reason,
        extra=extra,
    )


def model_info(
    show: Any,
    tag: Any,
    ps: Any,
    *,
    model: str,
    backend: str,
    url: str,
    server_version: str,
    server_settings: Mapping[str, object],
) -> ModelInfo:
    """The model's facts from ``/api/show``, its ``/api/tags`` entry and its ``/api/ps``
    entry (``None`` when the model is not loaded)."""
    info: Mapping[str, Any] = show.modelinfo or {}
    details = show.details
    arch = info.get("general.architecture")
    loaded_size = _int(getattr(ps, "size", None))
    vram = _int(getattr(ps, "size_vram", None))
    extra: dict[str, Any] = {
        "host": url,
        "client": f"ollama-python {_client_version()}",
        "capabilities": list(show.capabilities or []),
        "families": list(getattr(details, "families", None) or []),
        "loaded": ps is not None,
        "loaded_size_bytes": loaded_size,
        "loaded_context_length": _int(getattr(ps, "context_length", None)),
        "gpu_fraction": round(vram / loaded_size, 4) if vram is not None and loaded_size else None,
        "server_settings": dict(server_settings),
    }
    return ModelInfo(
        name=model,
        backend=backend,
        architecture=arch,
        parameter_count=_int(info.get("general.parameter_count")),
        parameter_size=getattr(details, "parameter_size", None),
        quantization=getattr(details, "quantization_level", None),
        context_length=_int(info.get(f"{arch}.context_length")),
        embedding_length=_int(info.get(f"{arch}.embedding_length")),
        family=getattr(details, "family", None),
        format=getattr(details, "format", None),
        digest=getattr(tag, "digest", None),
        engine_version=f"ollama {server_version}",
        server_version=server_version,
        size_bytes=_int(getattr(tag, "size", None)),
        size_vram_bytes=vram,
        extra=extra,
    )


def _client_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ollama")
    except PackageNotFoundError:  # pragma: no cover - vendored copies
        return "unknown"


def _int(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError, OverflowError):  # OverflowError: a server's infinity
        return None


def validation_summary(exc: Exception) -> str:
    """A pydantic validation error (the client's reading of a chunk) in one line."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        text = (str(exc).strip().splitlines() or [""])[0]
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    parts = []
    for err in errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg')}, got {err.get('input')!r}")
    return "; ".join(parts)


__all__ = [
    "METRIC_FIELDS",
    "canonical_name",
    "engine_report",
    "find_listed",
    "model_info",
    "validation_summary",
]
