"""What a measurement was taken on: hardware, engine, model, test definition, plugin.

Which fields make two measurements not comparable, and which are configuration the gate
judges, is decided in :mod:`pytest_tokrate.gate.changes`. A hostname is never recorded:
baselines are committed to the repository and should identify a *kind* of machine, not a
machine.

Pure apart from reading ``/proc/cpuinfo`` (or ``sysctl`` on macOS) and, when the
``pynvml`` module is installed, asking the NVIDIA driver about GPUs. Both are done once
per process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_tokrate._version import __version__

#: Bumped when the measurement method changes (formulas, clock, cache busting), so that
#: baselines recorded by an older method are "not comparable" instead of "regressed".
#: Plugin releases that do not change the method keep baselines comparable.
METHOD_VERSION = 1


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the input of every hash here."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def short_hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:16]


def _cpu_model_linux() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    # x86 says "model name"; many ARM kernels say "Hardware" or only "CPU part".
    for key in ("model name", "Hardware", "Processor", "cpu model", "CPU part"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return None


def _cpu_model_macos() -> str | None:
    try:
        out = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def cpu_model() -> str | None:
    if sys.platform.startswith("linux"):
        found = _cpu_model_linux()
    elif sys.platform == "darwin":
        found = _cpu_model_macos()
    else:
        found = None
    return found or platform.processor() or None


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def gpu_fingerprint(monitor: Any = None) -> dict[str, Any]:
    """GPUs as NVML reports them: ``{"gpus": [...], "gpu_driver": ..., "gpu_probe": ...}``.

    ``gpus`` is empty when there is no NVIDIA GPU, no driver, or ``pynvml`` (PyPI
    ``nvidia-ml-py``, the ``gpu`` extra) is not installed; ``gpu_probe`` says which.
    ``monitor`` is a :class:`~pytest_tokrate.machine.telemetry.GpuMonitor` (the process-wide one
    by default), so NVML is probed once for telemetry and fingerprint alike.
    """
    if monitor is None:
        from pytest_tokrate.machine.telemetry import default_monitor

        monitor = default_monitor()
    status = monitor.status()
    gpus = [
        {"name": d.get("name"), "memory_bytes": d.get("memory_total_bytes")} for d in status.devices
    ]
    probe = "nvml" if status.available else str(status.reason)
    return {"gpus": gpus, "gpu_driver": status.driver, "gpu_probe": probe}


@functools.lru_cache(maxsize=1)
def hardware() -> dict[str, Any]:
    """The machine's hardware fingerprint (computed once per process)."""
    return {
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable_cpus(),
        **gpu_fingerprint(),
    }


def definition(
    request: Mapping[str, Any], settings: Mapping[str, Any], checks: Any = None
) -> dict[str, Any]:
    """What defines the test: prompt, generation options, cache mode, quality checks.

    The prompt (with messages, system prompt, format, raw mode) and the checks are
    stored as hashes; options are kept readable so a change can be named. Rounds and
    warm-up are not part of it: changing them keeps a baseline comparable.
    """
    prompt = {key: request.get(key) for key in ("prompt", "messages", "system", "format", "raw")}
    parts: dict[str, Any] = {
        "prompt": short_hash(prompt),
        "options": dict(request.get("options") or {}),
        "cache": settings.get("cache"),
        "checks": short_hash(checks) if checks else None,
    }
    # ``text`` names which part of the prompt changed and by how much; it is not part of
    # the hash, so baselines recorded before it existed keep their definition's hash.
    return {"hash": short_hash(parts), **parts, "text": _text_parts(request)}


#: Lines (or messages) of a prompt whose hashes a baseline keeps.
MAX_LINES = 200


def _text_parts(request: Mapping[str, Any]) -> dict[str, Any]:
    """Size and hash of the prompt, the system text and the messages; the format's hash."""

    def part(value: Any, size: int) -> dict[str, Any]:
        out: dict[str, Any] = {"size": size, "hash": short_hash(value)[:8]}
        if isinstance(value, str):
            # A short hash per line (never the text): a change can name its first line.
            out["lines"] = [short_hash(line)[:6] for line in value.splitlines()[:MAX_LINES]]
        elif isinstance(value, list):
            out["lines"] = [short_hash(item)[:6] for item in value[:MAX_LINES]]
        return out

    messages = request.get("messages") or []
    fmt = request.get("format")
    return {
        "prompt": part(request.get("prompt"), len(str(request.get("prompt") or ""))),
        "system": part(request.get("system"), len(str(request.get("system") or ""))),
        "messages": part(messages, len(messages) if isinstance(messages, list) else 0),
        "format": None if fmt is None else short_hash(fmt)[:8],
        "raw": bool(request.get("raw")),
    }


def environment(
    model: Mapping[str, Any], versions: Mapping[str, Any], cache_method: str | None = None
) -> dict[str, Any]:
    """Fingerprint of everything but the test definition; ``cache_method``: how the
    prompt cache was defeated (``kv-reset``, ``evict``, ``nonce-prefix``...), kept when
    known so that a change of method is named."""
    out = {
        "hardware": hardware(),
        "engine": {
            "backend": model.get("backend") or versions.get("backend"),
            "engine_version": model.get("engine_version") or versions.get("engine"),
            "server_version": model.get("server_version") or versions.get("server"),
            # Declared server settings (--tokrate-server-setting) are configuration.
            "server_settings": dict((model.get("extra") or {}).get("server_settings") or {}),
            # The embedded engine's load-time settings in effect (flash attention, KV cache
            # types, batches: backends/llamacpp_params.py) are configuration too.
            "engine_settings": dict((model.get("extra") or {}).get("engine_settings") or {}),
        },
        "model": {
            "name": model.get("name"),
            "digest": model.get("digest"),
            "quantization": model.get("quantization"),
            "parameter_count": model.get("parameter_count"),
        },
        "plugin": {"version": __version__, "method": METHOD_VERSION},
    }
    if cache_method is not None:
        out["engine"]["cache_method"] = cache_method
    return out


@dataclass(frozen=True)
class Change:
    """One fingerprint field that differs between a baseline and now."""

    field: str
    baseline: Any
    current: Any

    def __str__(self) -> str:
        return f"{self.field}: {_show(self.baseline)} -> {_show(self.current)}"


def _show(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
        if not value:
            return "none"
        return ", ".join(
            f"{v.get('name')} ({int(v.get('memory_bytes') or 0) / 2**30:.0f} GiB)" for v in value
        )
    return repr(value)


__all__ = [
    "METHOD_VERSION",
    "Change",
    "canonical_json",
    "cpu_model",
    "definition",
    "environment",
    "gpu_fingerprint",
    "hardware",
    "short_hash",
]
