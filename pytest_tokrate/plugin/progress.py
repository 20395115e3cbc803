"""Progress of measured rounds, shown while a test runs.

A tokrate test can take minutes (many rounds, a baseline update measuring 4x as many),
and pytest shows one dot per test. With ``-v`` each measured round gets a line under its
test; at the default verbosity a test still running after ``QUIET_S`` seconds gets a
status line every ``EVERY_S`` seconds; ``-q`` shows nothing. The lines are written past
pytest's output capture (as pytest's own live logging does), and not on xdist workers,
whose terminal nobody sees.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pytest_tokrate.core.measure import RawRound

#: A test is announced once it has run this long (seconds), then every EVERY_S.
QUIET_S = 10.0
EVERY_S = 20.0


class Progress:
    """The progress lines of one ``tokrate.run``."""

    def __init__(
        self,
        write: Callable[[str], None],
        verbosity: int,
        what: str,
        rounds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._verbosity = verbosity
        self._what = what
        self._rounds = rounds
        self._clock = clock
        self._start = clock()
        self._last = float("-inf")  # the first line comes as soon as QUIET_S passed

    def round_done(self, index: int, raw: RawRound) -> None:
        now = self._clock()
        elapsed = now - self._start
        if self._verbosity >= 1:
            self._write(f"    {self._what}: round {index + 1}/{self._rounds}{_figures(raw)}")
        elif self._verbosity == 0 and elapsed >= QUIET_S and now - self._last >= EVERY_S:
            self._last = now
            self._write(
                f"tokrate: {self._what}: round {index + 1} of at most {self._rounds}, "
                f"{elapsed:.0f} s so far"
            )


def _figures(raw: RawRound) -> str:
    """``: 24 tokens, 84.1 tok/s decode, 0.52 s`` from the round as measured."""
    engine = raw.engine
    seconds = (raw.t_end_ns - raw.t0_ns) / 1e9
    parts = []
    if engine.output_tokens is not None:
        parts.append(f"{engine.output_tokens} tokens")
    tokens = engine.decode_tokens if engine.decode_tokens is not None else engine.output_tokens
    if tokens and engine.decode_ns:
        parts.append(f"{tokens / (engine.decode_ns / 1e9):.1f} tok/s decode")
    parts.append(f"{seconds:.2f} s")
    return ": " + ", ".join(parts)


def progress_for(
    config: pytest.Config, test_id: str, model: str, label: str | None, rounds: int
) -> Callable[[int, RawRound], None] | None:
    """The per-round callback for one run, or ``None`` when nothing would be shown."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or hasattr(config, "workerinput") or config.get_verbosity() < 0:
        return None
    capture = config.pluginmanager.get_plugin("capturemanager")

    def write(line: str) -> None:
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(line)
        else:  # pragma: no cover - -p no:capture
            reporter.write_line(line)

    name = test_id.rsplit("::", 1)[-1]
    what = f"{name}{f' ({label})' if label else ''} on {model}"
    return Progress(write, config.get_verbosity(), what, rounds).round_done


def update_header(spec: tuple[str, int] | None) -> str | None:
    """The report-header line of a baseline update: how many rounds each test measures."""
    if spec is None:
        return None
    kind, number = spec
    many = f"{number}x its rounds" if kind == "x" else f"at least {number} rounds"
    return (
        f"tokrate: updating baselines: each test measures {many} (--tokrate-baseline-rounds), "
        "so this run takes longer than a plain one"
    )


__all__ = ["EVERY_S", "QUIET_S", "Progress", "progress_for", "update_header"]
