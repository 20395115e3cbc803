"""The baseline gate's options: parsers, ini/CLI/marker layers and their precedence.

pytest glue (``pytest.Config``, ``pytest.Parser``); the values are checked by the pure
parsers of :mod:`.compare`, imported when first needed so that start-up stays cheap.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from .errors import UsageError

if TYPE_CHECKING:
    from .compare import GateSettings

#: Keyword arguments of ``@pytest.mark.tokrate`` that belong to the gate.
MARKER_KEYS = frozenset({"tolerance", "gate", "gate_metrics", "min_decode_tokens"})
_ENV_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def parse_env_name(value: object, source: str = "--tokrate-baseline-env") -> str:
    text = str(value).strip()
    if not _ENV_NAME.fullmatch(text):
        raise UsageError(
            f"{source}: invalid value {value!r}: expected a short name of letters, digits, "
            "'.', '_' and '-', e.g. ci-2cpu."
        )
    return text


def parse_other_load(value: object, source: str = "--tokrate-other-load") -> float:
    """A number of cores >= 0, or ``off`` (infinity: never withhold a verdict)."""
    text = str(value).strip().lower()
    if text == "off":
        return float("inf")
    try:
        cores = float(text)
    except ValueError:
        cores = -1.0
    if not cores >= 0 or cores == float("inf"):
        raise UsageError(
            f"{source}: invalid value {value!r}: expected a number of CPU cores >= 0 "
            "(e.g. 0.25), or off."
        )
    return cores


def parse_cli(name: str, value: str) -> object:
    """Parsers of the gate's valued options (used by ``plugin._OPTIONS``)."""
    from . import compare

    source = f"--tokrate-{name}"
    if name == "tolerance":
        return compare.parse_tolerance(value, source)
    if name == "gate-metrics":
        return compare.parse_metrics(value, source)
    if name == "gate":
        return compare.parse_mode(value, source, compare.GATE_MODES)
    if name == "missing-baseline":
        return compare.parse_mode(value, source, compare.MISSING_MODES)
    if name == "on-mismatch":
        return compare.parse_mode(value, source, compare.MISMATCH_MODES)
    if name == "on-stale":
        return compare.parse_mode(value, source, compare.STALE_MODES)
    if name == "baseline-env":
        return parse_env_name(value, source)
    if name == "other-load":
        return parse_other_load(value, source)
    if name == "min-decode-tokens":
        return compare.parse_min_tokens(value, source)
    raise AssertionError(name)  # pragma: no cover - programming error


def add_flags(group: Any, parser: pytest.Parser) -> None:
    """The gate's on/off flags, each with a boolean ini twin."""
    flags = (
        (
            "update-baselines",
            "tokrate_update_baselines",
            "Write the baselines of the tests that ran (and only those) instead of comparing; "
            "refused when the CI environment variable is set, unless "
            "--tokrate-force-update. Default: off",
        ),
        (
            "force-update",
            "tokrate_force_update",
            "With --tokrate-update-baselines: write even when CI is set, and replace "
            "baseline files that fail validation. Default: off",
        ),
    )
    for name, ini, help_text in flags:
        group.addoption(f"--tokrate-{name}", dest=ini, action="store_true", default=None,
                        help=help_text)  # fmt: skip
        parser.addini(ini, help_text, type="bool", default=False)


# -- settings --------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """Gate values given at one level of precedence (``None``: not set there)."""

    source: str
    mode: str | None = None
    metrics: tuple[str, ...] | None = None
    tolerance: Mapping[str, float] | None = None
    on_missing: str | None = None
    on_mismatch: str | None = None
    on_stale: str | None = None
    min_decode_tokens: int | None = None


def apply(settings: GateSettings, layer: Layer) -> GateSettings:
    from dataclasses import replace

    out = settings
    if layer.tolerance is not None:
        out = out.with_tolerance(layer.tolerance)
    changes: dict[str, Any] = {
        key: getattr(layer, key)
        for key in ("mode", "metrics", "on_missing", "on_mismatch", "on_stale", "min_decode_tokens")
        if getattr(layer, key) is not None
    }
    return replace(out, **changes) if changes else out


def marker_gate_layer(marker: Mapping[str, Any], where: str) -> Layer:
    from . import compare

    source = f"{where} @pytest.mark.tokrate"
    return Layer(
        source=source,
        mode=None
        if marker.get("gate") is None
        else compare.parse_mode(marker["gate"], f"{source} gate", compare.GATE_MODES),
        metrics=None
        if marker.get("gate_metrics") is None
        else compare.parse_metrics(marker["gate_metrics"], f"{source} gate_metrics"),
        tolerance=None
        if marker.get("tolerance") is None
        else compare.parse_tolerance(marker["tolerance"], f"{source} tolerance"),
        min_decode_tokens=None
        if marker.get("min_decode_tokens") is None
        else compare.parse_min_tokens(marker["min_decode_tokens"], f"{source} min_decode_tokens"),
    )


def ini_value(config: pytest.Config, name: str) -> str | None:
    value = config.getini(name)
    text = "" if value is None else str(value).strip()
    return text or None


def layers(config: pytest.Config) -> tuple[Layer, Layer]:
    def ini(name: str, parse: str, *modes: str) -> Any:
        raw = ini_value(config, name)
        if raw is None:
            return None
        # compare (and the statistics behind it) loads only when a gate ini value is set,
        # so pytest start-up with the plugin installed but unused stays cheap.
        from . import compare

        args = [getattr(compare, m) for m in modes]
        return getattr(compare, parse)(raw, f"ini {name}", *args)

    ini_layer = Layer(
        source="ini",
        mode=ini("tokrate_gate", "parse_mode", "GATE_MODES"),
        metrics=ini("tokrate_gate_metrics", "parse_metrics"),
        tolerance=ini("tokrate_tolerance", "parse_tolerance"),
        on_missing=ini("tokrate_missing_baseline", "parse_mode", "MISSING_MODES"),
        on_mismatch=ini("tokrate_on_mismatch", "parse_mode", "MISMATCH_MODES"),
        on_stale=ini("tokrate_on_stale", "parse_mode", "STALE_MODES"),
        min_decode_tokens=ini("tokrate_min_decode_tokens", "parse_min_tokens"),
    )
    get = config.getoption
    cli_layer = Layer(
        source="command line",
        mode=get("tokrate_gate"),
        metrics=get("tokrate_gate_metrics"),
        tolerance=get("tokrate_tolerance"),
        on_missing=get("tokrate_missing_baseline"),
        on_mismatch=get("tokrate_on_mismatch"),
        on_stale=get("tokrate_on_stale"),
        min_decode_tokens=get("tokrate_min_decode_tokens"),
    )
    return ini_layer, cli_layer


def flag(config: pytest.Config, name: str) -> bool:
    value = config.getoption(name)
    return bool(value) if value is not None else bool(config.getini(name))


__all__ = [
    "MARKER_KEYS",
    "Layer",
    "add_flags",
    "apply",
    "flag",
    "ini_value",
    "layers",
    "marker_gate_layer",
    "parse_cli",
    "parse_env_name",
    "parse_other_load",
]
