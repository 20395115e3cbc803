"""Option precedence: one mechanism for every feature's settings. Pure.

Run settings (:mod:`.settings`), sweep levels (:mod:`.levels`) and the gate's settings
(:mod:`pytest_tokrate.gate.settings`) are each given as layers of optional values, lowest
precedence first (ini < marker < call < command line); each value set is parsed, so a bad
one fails wherever it ranks; the highest layer's wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

_Value = TypeVar("_Value")


class HasSource(Protocol):
    """A layer of precedence: where its values come from, and the values as attributes."""

    @property
    def source(self) -> str: ...


@dataclass(frozen=True)
class Setting(Generic[_Value]):
    """One value resolved over layers: the layer attribute it is read from, its default,
    how a raw value is parsed (given ``"<source> <name>"`` to name it in errors), and how
    a higher layer's value joins the one below (by default it replaces it)."""

    name: str
    default: _Value
    parse: Callable[[str, Any], _Value] = lambda setting, value: value
    merge: Callable[[_Value, _Value], _Value] = lambda below, above: above


@dataclass(frozen=True)
class Sourced(Generic[_Value]):
    """A resolved value and the source of the highest layer that set it."""

    value: _Value
    source: str = "default"


def resolve_layers(
    layers: Iterable[HasSource], settings: Sequence[Setting[Any]]
) -> dict[str, Sourced[Any]]:
    """Each setting's value over ``layers`` (lowest precedence first), by setting name."""
    out: dict[str, Sourced[Any]] = {s.name: Sourced(s.default) for s in settings}
    for layer in layers:
        for setting in settings:
            raw = getattr(layer, setting.name)
            if raw is None:  # not set at this level
                continue
            value = setting.parse(f"{layer.source} {setting.name}", raw)
            out[setting.name] = Sourced(setting.merge(out[setting.name].value, value), layer.source)
    return out


__all__ = ["HasSource", "Setting", "Sourced", "resolve_layers"]
