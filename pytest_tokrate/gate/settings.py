"""The gate's settings: parsers of its option values, and the layers of precedence that
set them (ini, marker, command line), resolved by the one mechanism of
:mod:`pytest_tokrate.core.settings`. Pure: the pytest glue that reads the layers from a
``pytest.Config`` is :mod:`pytest_tokrate.plugin.gate_options`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pytest_tokrate.core.numbers import parse_float, shown
from pytest_tokrate.core.settings import Setting, resolve_layers
from pytest_tokrate.errors import UsageError

if TYPE_CHECKING:
    from pytest_tokrate.gate.rule import GateSettings

#: Keyword arguments of ``@pytest.mark.tokrate`` that belong to the gate.
MARKER_KEYS = frozenset(
    {"tolerance", "gate", "gate_metrics", "min_decode_tokens", "accept_tradeoff", "on_unsettled"}
)
#: A baseline environment: it is part of every baseline file's name (``test@ENV.json``),
#: so it starts with a letter or digit (never ``.``, ``..``, ``_``, which
#: ``gate.files`` would rewrite to one shared ``_``) and does not end with ``.`` (a
#: trailing dot is dropped from file names, so ``ci.`` would share ``ci``'s file).
_ENV_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9_-])?")


def parse_env_name(value: object, source: str = "--tokrate-baseline-env") -> str:
    text = str(value).strip()
    if not _ENV_NAME.fullmatch(text):
        raise UsageError(
            f"{source}: invalid value {shown(value)}: expected a short name of letters, digits, "
            "'.', '_' and '-' (at most 64) that starts with a letter or digit and does not "
            "end with '.', e.g. ci-2cpu."
        )
    return text


#: A bound on --tokrate-other-load: more cores than any machine has.
MAX_OTHER_LOAD = 100_000.0


def parse_other_load(value: object, source: str = "--tokrate-other-load") -> float:
    """A number of cores >= 0, or ``off`` (infinity: never withhold a verdict)."""
    if isinstance(value, str) and value.strip().lower() == "off":
        return float("inf")
    expected = "a number of CPU cores >= 0 (e.g. 0.25), or off"
    return parse_float(source, value, 0.0, MAX_OTHER_LOAD, expected, "a number of CPU cores")


#: The gate's options that set a layer of its settings, as the marker and ini spell them
#: (in the order their values are checked) -> the layer field each sets.
LAYER_FIELDS = {
    "gate": "mode",
    "gate_metrics": "metrics",
    "tolerance": "tolerance",
    "missing_baseline": "on_missing",
    "on_mismatch": "on_mismatch",
    "on_stale": "on_stale",
    "min_decode_tokens": "min_decode_tokens",
    "accept_tradeoff": "tradeoffs",
    "on_unsettled": "on_unsettled",
}


def _layer_parsers() -> dict[str, Callable[[object, str], Any]]:
    """The parser ``(value, source)`` of each option of :data:`LAYER_FIELDS`."""
    # rule.py (and the statistics behind it) loads only when a gate value is parsed, so
    # pytest start-up with the plugin installed but unused stays cheap.
    from pytest_tokrate.gate import rule

    def mode(choices: tuple[str, ...]) -> Callable[[object, str], str]:
        return lambda value, source: rule.parse_mode(value, source, choices)

    return {
        "gate": mode(rule.GATE_MODES),
        "gate_metrics": rule.parse_metrics,
        "tolerance": rule.parse_tolerance,
        "missing_baseline": mode(rule.MISSING_MODES),
        "on_mismatch": mode(rule.MISMATCH_MODES),
        "on_stale": mode(rule.STALE_MODES),
        "min_decode_tokens": rule.parse_min_tokens,
        "accept_tradeoff": rule.parse_tradeoff,
        "on_unsettled": mode(rule.UNSETTLED_MODES),
    }


def parse_cli(name: str, value: str) -> object:
    """Parsers of the gate's valued options (used by ``plugin._OPTIONS``)."""
    source = f"--tokrate-{name}"
    if name == "baseline-env":
        return parse_env_name(value, source)
    if name == "other-load":
        return parse_other_load(value, source)
    return _layer_parsers()[name.replace("-", "_")](value, source)


# -- settings --------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """Gate values given at one level of precedence, parsed (``None``: not set there)."""

    source: str
    mode: str | None = None
    metrics: tuple[str, ...] | None = None
    tolerance: Mapping[str, float] | None = None
    on_missing: str | None = None
    on_mismatch: str | None = None
    on_stale: str | None = None
    min_decode_tokens: int | None = None
    tradeoffs: tuple[Any, ...] | None = None
    on_unsettled: str | None = None


def parse_layer(source: str, values: Mapping[str, Any], prefix: str) -> Layer:
    """A layer from raw values keyed by option (``gate_metrics``), each named in errors
    as ``prefix + option``; keys of other options are ignored."""
    fields = {
        LAYER_FIELDS[option]: parse(values[option], prefix + option)
        for option, parse in _layer_parsers().items()
        if values.get(option) is not None
    }
    return Layer(source=source, **fields)


def parsed_layer(source: str, values: Mapping[str, Any]) -> Layer:
    """A layer from values already parsed (by argparse), keyed by option."""
    return Layer(source=source, **{LAYER_FIELDS[o]: values.get(o) for o in LAYER_FIELDS})


def marker_gate_layer(marker: Mapping[str, Any], where: str) -> Layer:
    """The gate's layer of ``@pytest.mark.tokrate(...)`` on test ``where``."""
    source = f"{where} @pytest.mark.tokrate"
    return parse_layer(source, {k: v for k, v in marker.items() if k in MARKER_KEYS}, f"{source} ")


_REPLACED = tuple(field for field in LAYER_FIELDS.values() if field != "tolerance")
_GATE_SETTINGS: tuple[Setting[Any], ...] = (
    *(Setting(name, None) for name in _REPLACED),
    # Every layer's tolerance is kept, to be applied in turn: a ``*`` resets the speed
    # metrics of the layers below it (GateSettings.with_tolerance).
    Setting("tolerance", (), lambda setting, value: (value,), lambda below, above: below + above),
)


def resolve_gate(layers: Iterable[Layer]) -> GateSettings:
    """The gate's settings over layers given lowest precedence first."""
    from pytest_tokrate.gate.rule import GateSettings

    resolved = resolve_layers(layers, _GATE_SETTINGS)
    settings = GateSettings()
    for tolerance in resolved["tolerance"].value:
        settings = settings.with_tolerance(tolerance)
    changes = {
        name: resolved[name].value for name in _REPLACED if resolved[name].source != "default"
    }
    return replace(settings, **changes)


__all__ = [
    "LAYER_FIELDS",
    "MARKER_KEYS",
    "Layer",
    "marker_gate_layer",
    "parse_cli",
    "parse_env_name",
    "parse_layer",
    "parse_other_load",
    "parsed_layer",
    "resolve_gate",
]
