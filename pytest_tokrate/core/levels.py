"""Sweep levels: parsing and precedence of concurrency, generation and prompt lengths.

Pure and light (the plugin imports it at start-up to validate options). Precedence, from
highest: the test item's own level (a parametrized ``tokrate_concurrency`` fixture),
command line, ``tokrate.sweep()`` arguments, ``@pytest.mark.tokrate(...)``, ini, default.
The item level ranks above the command line because it *comes from* the command line (or
marker, or ini): each item of a parametrized sweep runs exactly its own level.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from pytest_tokrate.core.gen_options import MAX_TOKENS
from pytest_tokrate.core.numbers import parse_int, shown
from pytest_tokrate.core.settings import Setting, resolve_layers
from pytest_tokrate.errors import UsageError

#: Marker keyword arguments that configure sweeps.
SWEEP_MARKER_KEYS = frozenset({"concurrency", "gen_lengths", "prompt_lengths", "requests"})
#: A bound on threads (requests in flight) per level; far above what one machine serves.
MAX_CONCURRENCY = 1024
#: A bound on requests per level (a sweep level of a million requests is a typo).
MAX_REQUESTS = 100_000
_WHOLE = re.compile(r"[+-]?[0-9]+", re.ASCII)

_EXAMPLES = {
    "concurrency": "1,8,32,128",
    "gen_lengths": "16,64,256",
    "prompt_lengths": "128,512,1024",
}


def parse_levels(setting: str, value: object, kind: str = "concurrency") -> tuple[int, ...]:
    """Levels given as ``8``, ``"1,8,32"`` or ``[1, 8, 32]``: positive integers, each once."""
    example = _EXAMPLES.get(kind, "1,8")
    if isinstance(value, bool):
        items: list[object] = [value]
    elif isinstance(value, int):
        items = [value]
    elif isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise UsageError(
            f"{setting}: invalid value {shown(value)}: expected one level or a list of levels, "
            f"e.g. {example}."
        )
    if not items or items == [""]:
        raise UsageError(f"{setting}: no level given in {shown(value)}: give e.g. {example}.")
    out: list[int] = []
    for item in items:
        level = _level(setting, item, value, kind, example)
        if level in out:
            raise UsageError(f"{setting}: level {level} is listed twice in {shown(value)}.")
        out.append(level)
    return tuple(out)


def _level(setting: str, item: object, value: object, kind: str, example: str) -> int:
    """One level of a list: a whole number (ASCII digits), at least 1, within its bound."""
    where = f"{setting}: invalid level {shown(item)} in {shown(value)}"
    whole = isinstance(item, int) or (isinstance(item, str) and _WHOLE.fullmatch(item.strip()))
    if isinstance(item, bool) or not whole:
        raise UsageError(f"{where}: levels are whole numbers, e.g. {example}.")
    level = parse_int(setting, item)  # at most 18 digits
    where = f"{setting}: invalid level {level} in {shown(value)}"
    if level < 1:
        what = "requests in flight" if kind == "concurrency" else "tokens"
        raise UsageError(f"{where}: a level counts {what} and must be at least 1, e.g. {example}.")
    if kind == "concurrency" and level > MAX_CONCURRENCY:
        raise UsageError(
            f"{setting}: concurrency {level} in {shown(value)} is above the limit of "
            f"{MAX_CONCURRENCY} requests in flight."
        )
    if level > MAX_TOKENS:
        raise UsageError(f"{where}: a length is at most {MAX_TOKENS} tokens.")
    return level


def parse_requests(setting: str, value: object) -> int:
    """Requests per level: a whole number from 1 to :data:`MAX_REQUESTS`."""
    return parse_int(setting, value, 1, MAX_REQUESTS, "a whole number >= 1 (requests per level)")


class LevelLayer(NamedTuple):
    """Sweep values given at one level of precedence; ``None`` means "not set here"."""

    source: str
    concurrency: object = None
    gen_lengths: object = None
    prompt_lengths: object = None
    requests: object = None

    @classmethod
    def from_mapping(cls, source: str, values: Mapping[str, object]) -> LevelLayer:
        return cls(
            source=source,
            concurrency=values.get("concurrency"),
            gen_lengths=values.get("gen_lengths"),
            prompt_lengths=values.get("prompt_lengths"),
            requests=values.get("requests"),
        )

    def validate(self) -> LevelLayer:
        """Parse every value now (so a bad option fails at start-up); returns self."""
        resolve_levels([self])
        return self


class Levels(NamedTuple):
    """The resolved levels of one sweep.

    ``None`` in ``gen_lengths`` means "the resolved num_predict"; in ``prompt_lengths``,
    "the prompt as given". ``requests`` (per level) ``None`` means ``rounds`` at
    concurrency 1, else ``max(rounds, 2 * concurrency)``: every slot sends at least two
    requests, so the loop is really closed.
    """

    concurrency: tuple[int, ...] = (1,)
    gen_lengths: tuple[int | None, ...] = (None,)
    prompt_lengths: tuple[int | None, ...] = (None,)
    requests: int | None = None

    @property
    def varied(self) -> tuple[str, ...]:
        """The dimensions with more than one level."""
        out = []
        if len(self.concurrency) > 1:
            out.append("concurrency")
        if len(self.gen_lengths) > 1:
            out.append("gen_length")
        if len(self.prompt_lengths) > 1:
            out.append("prompt_length")
        return tuple(out)

    def requests_for(self, concurrency: int, rounds: int) -> int:
        if self.requests is not None:
            return self.requests
        return rounds if concurrency == 1 else max(rounds, 2 * concurrency)


def _levels_of(kind: str) -> Callable[[str, object], tuple[int, ...]]:
    return lambda setting, value: parse_levels(setting, value, kind)


_LEVEL_SETTINGS: tuple[Setting[Any], ...] = (
    Setting("concurrency", (1,), _levels_of("concurrency")),
    Setting("gen_lengths", (None,), _levels_of("gen_lengths")),
    Setting("prompt_lengths", (None,), _levels_of("prompt_lengths")),
    Setting("requests", None, parse_requests),
)


def resolve_levels(layers: Iterable[LevelLayer]) -> Levels:
    """Merge layers given from lowest to highest precedence, validating each value."""
    # The settings are named as the fields of Levels.
    resolved = resolve_layers(layers, _LEVEL_SETTINGS)
    return Levels(**{name: sourced.value for name, sourced in resolved.items()})


__all__ = [
    "MAX_CONCURRENCY",
    "MAX_REQUESTS",
    "SWEEP_MARKER_KEYS",
    "LevelLayer",
    "Levels",
    "parse_levels",
    "parse_requests",
    "resolve_levels",
]
