"""Environment or configuration: what differs between a baseline and now, in words. Pure.

*Environment* is what a change to the project cannot change: the hardware the embedded
engine ran on (CPU model and cores, GPUs, driver) and the measurement method. For a
server the environment is the name the user gives it (``--tokrate-baseline-env``, part
of the baseline file's name): this client's hardware does not set the server's speed.
A different environment makes a baseline *not comparable*.

*Configuration* is everything the project chooses: the model (name, file digest,
quantization, parameter count), the engine and server versions, declared server
settings, generation options, cache mode, the prompt and system text, the quality
checks. A different configuration is *judged*: the verdict names each difference
(``num_thread 1 -> 2``, ``model a -> b (F16 -> Q2_K)``, ``system prompt: +212
characters``), and the figures whose meaning a change removes are shown, not judged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_tokrate.machine.fingerprint import Change

#: Environment fields of an embedded-engine baseline, as dotted paths.
ENVIRONMENT: tuple[str, ...] = (
    "hardware.system",
    "hardware.machine",
    "hardware.cpu_model",
    "hardware.cpu_count",
    "hardware.cpus_usable",
    "hardware.gpus",
    "hardware.gpu_driver",
    "plugin.method",
)
#: A server's environment is its baseline environment name; of the fingerprint only the
#: measurement method is compared.
SERVER_ENVIRONMENT: tuple[str, ...] = ("plugin.method",)
_MISSING = object()


def _get(data: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``dotted``, or ``_MISSING`` when a part is absent (an older file)."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def environment_changes(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> list[Change]:
    """Environment fields that differ: a non-empty list means "not comparable"."""
    backend = _get(current, "engine.backend")
    fields = ENVIRONMENT if backend in ("embedded", None, _MISSING) else SERVER_ENVIRONMENT
    out = []
    for path in fields:
        before, after = _get(baseline, path), _get(current, path)
        if before is not _MISSING and after is not _MISSING and before != after:
            out.append(Change(path, before, after))
    return out


@dataclass(frozen=True)
class ConfigChange:
    """One difference of configuration, with the words the verdict shows."""

    #: ``model``, ``engine``, ``server settings``, ``options.NAME``, ``cache``,
    #: ``prompt``, ``system``, ``messages``, ``format``, ``raw`` or ``checks``.
    field: str
    text: str

    def __str__(self) -> str:
        return self.text


def _show(value: Any) -> str:
    if value is None or value is _MISSING:
        return "default"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _model_change(base: Mapping[str, Any], cur: Mapping[str, Any]) -> ConfigChange | None:
    """``model a -> b (Q4_1 -> Q2_K)``, or ``model a: another file (...)`` for a file
    swapped behind one name; ``None`` when the model is the same."""
    details = []
    for key, label in (("quantization", ""), ("parameter_count", " parameters")):
        before, after = base.get(key), cur.get(key)
        if before != after and not (before is None and after is None):
            details.append(f"{_show(before)}{label} -> {_show(after)}{label}")
    digest_moved = base.get("digest") != cur.get("digest")
    name_moved = base.get("name") != cur.get("name")
    if not (name_moved or digest_moved or details):
        return None
    if digest_moved and not details and base.get("digest") and cur.get("digest"):
        details.append(f"digest {str(base['digest'])[:12]} -> {str(cur['digest'])[:12]}")
    tail = f" ({', '.join(details)})" if details else ""
    if name_moved:
        return ConfigChange("model", f"model {base.get('name')} -> {cur.get('name')}{tail}")
    return ConfigChange("model", f"model {cur.get('name')}: another file{tail}")


def _engine_changes(base: Mapping[str, Any], cur: Mapping[str, Any]) -> list[ConfigChange]:
    out = []
    for key, label in (
        ("backend", "backend"),
        ("engine_version", "engine"),
        ("server_version", "server"),
        ("server_settings", "server settings"),
        ("cache_method", "prompt cache method"),
        ("engine_settings", "engine settings"),
    ):
        before, after = base.get(key, _MISSING), cur.get(key, _MISSING)
        if before is _MISSING or after is _MISSING or before == after:
            continue
        if key == "server_settings":
            out.extend(_option_changes(before or {}, after or {}, "server setting "))
        elif key == "engine_settings":
            # A setting one of the runs did not record (an older release) is not a change.
            shared = set(before or {}) & set(after or {})
            out.extend(
                _option_changes(
                    {k: before[k] for k in shared}, {k: after[k] for k in shared}, "engine "
                )
            )
        else:
            out.append(ConfigChange("engine", f"{label} {_show(before)} -> {_show(after)}"))
    return out


def _option_changes(
    base: Mapping[str, Any], cur: Mapping[str, Any], prefix: str = ""
) -> list[ConfigChange]:
    return [
        ConfigChange(
            f"options.{key}", f"{prefix}{key} {_show(base.get(key))} -> {_show(cur.get(key))}"
        )
        for key in sorted(set(base) | set(cur))
        if base.get(key) != cur.get(key)
    ]


def _length_words(before: Any, after: Any, unit: str) -> str:
    if not isinstance(before, int) or not isinstance(after, int):
        return "changed"
    if before == 0:
        return f"added ({after} {unit})"
    if after == 0:
        return "removed"
    if before == after:
        return f"changed (same length, {after} {unit})"
    return f"{after - before:+d} {unit}"


def _first_difference(before: Any, after: Any, part: str) -> str:
    """``, from line 3 of 7``: where the text first differs, from the per-line hashes both
    runs recorded (the text itself is never stored); empty when unknown."""
    if not isinstance(before, list) or not isinstance(after, list) or not before or not after:
        return ""
    index = next(
        (i for i, (b, a) in enumerate(zip(before, after, strict=False)) if b != a),
        min(len(before), len(after)),
    )
    if index >= len(after):
        return ""  # only lines removed at the end
    unit = "message" if part == "messages" else "line"
    return f", from {unit} {index + 1} of {len(after)}"


def _text_changes(base: Mapping[str, Any], cur: Mapping[str, Any]) -> list[ConfigChange]:
    """Which of prompt, system text, messages, output format and raw mode changed; one
    ``prompt or system text changed`` when the baseline predates that detail."""
    if base.get("prompt") == cur.get("prompt"):
        return []
    before, after = base.get("text"), cur.get("text")
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return [ConfigChange("prompt", "prompt or system text changed")]
    out = []
    words = {"prompt": "prompt", "system": "system prompt", "messages": "messages"}
    for part, label in words.items():
        b, a = before.get(part) or {}, after.get(part) or {}
        if b.get("hash") != a.get("hash"):
            unit = "messages" if part == "messages" else "characters"
            where = _first_difference(b.get("lines"), a.get("lines"), part)
            size = _length_words(b.get("size"), a.get("size"), unit)
            out.append(ConfigChange(part, f"{label}: {size}{where}"))
    if before.get("format") != after.get("format"):
        out.append(ConfigChange("format", "output format (format=) changed"))
    if before.get("raw") != after.get("raw"):
        out.append(
            ConfigChange("raw", f"raw mode {_show(before.get('raw'))} -> {_show(after.get('raw'))}")
        )
    return out or [ConfigChange("prompt", "prompt or system text changed")]


def configuration_changes(
    baseline_fingerprint: Mapping[str, Any],
    current_fingerprint: Mapping[str, Any],
    baseline_definition: Mapping[str, Any],
    current_definition: Mapping[str, Any],
) -> list[ConfigChange]:
    """Every configuration difference between a baseline run and the current run."""
    out: list[ConfigChange] = []
    model = _model_change(
        baseline_fingerprint.get("model") or {}, current_fingerprint.get("model") or {}
    )
    if model is not None:
        out.append(model)
    out += _engine_changes(
        baseline_fingerprint.get("engine") or {}, current_fingerprint.get("engine") or {}
    )
    base, cur = baseline_definition, current_definition
    if base.get("hash") == cur.get("hash"):
        return out
    options = _option_changes(base.get("options") or {}, cur.get("options") or {})
    # An option the test set is named once, as the test's change, not again as the engine's.
    named = {c.field for c in options}
    out = [c for c in out if not (c.text.startswith("engine ") and c.field in named)]
    out += options
    if base.get("cache") != cur.get("cache"):
        out.append(
            ConfigChange("cache", f"cache {_show(base.get('cache'))} -> {_show(cur.get('cache'))}")
        )
    out += _text_changes(base, cur)
    if base.get("checks") != cur.get("checks"):
        out.append(ConfigChange("checks", "quality checks changed"))
    if not any(c.field not in ("model", "engine") for c in out):
        out.append(ConfigChange("definition", "test definition changed"))
    return out


#: Options whose change makes whole-answer figures meaningless to compare: the answer's
#: length is set by them.
_LENGTH_OPTIONS = frozenset({"options.num_predict", "options.max_tokens", "options.stop"})


def unjudged(changes: Sequence[ConfigChange]) -> dict[str, str]:
    """Metrics whose meaning these changes removed, each with why: shown, not judged."""
    out: dict[str, str] = {}
    for change in changes:
        if change.field in _LENGTH_OPTIONS:
            name = change.field.removeprefix("options.")
            for metric in ("e2e", "e2e_tps"):
                out.setdefault(metric, f"{name} changed, so the answers' length did")
        if change.field == "checks":
            out["pass_rate"] = "the quality checks changed; only the minimum pass rate applies"
    return out


def model_changed(changes: Sequence[ConfigChange]) -> bool:
    """Whether the model or its file (quantization) changed: a trade-off to judge."""
    return any(change.field == "model" for change in changes)


__all__ = [
    "ENVIRONMENT",
    "SERVER_ENVIRONMENT",
    "ConfigChange",
    "configuration_changes",
    "environment_changes",
    "model_changed",
    "unjudged",
]
