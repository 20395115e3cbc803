"""Pure parts: sweep level parsing and precedence, Markdown escaping, the Pareto frontier."""

from __future__ import annotations

import pytest

from pytest_tokrate.core.levels import LevelLayer, Levels, parse_levels, resolve_levels
from pytest_tokrate.errors import UsageError
from pytest_tokrate.reports.markdown import md_escape, md_fence
from pytest_tokrate.reports.plots import _pareto


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (8, (8,)),
        ("1,8,32,128", (1, 8, 32, 128)),
        (" 4 , 2 ", (4, 2)),
        ([1, 8], (1, 8)),
        (("16", 64), (16, 64)),
    ],
)
def test_levels_accepted(value: object, expected: tuple[int, ...]) -> None:
    assert parse_levels("concurrency", value) == expected


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "invalid level 0"),
        (-3, "invalid level -3"),
        ("1,0", "invalid level 0"),
        ("1,-8", "invalid level -8"),
        ("a", "invalid level 'a'"),
        ("", "no level given"),
        ("1,,2", "invalid level ''"),
        (True, "invalid level True"),
        (2.5, "invalid value 2.5"),
        ([1, 1], "listed twice"),
        (5000, "above the limit"),
    ],
)
def test_bad_levels_name_the_value(value: object, shown: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_levels("--tokrate-concurrency", value)
    message = str(exc.value)
    assert message.startswith("--tokrate-concurrency: ")
    assert shown in message


def test_zero_level_message_says_what_a_level_counts() -> None:
    with pytest.raises(UsageError, match="counts requests in flight and must be at least 1"):
        parse_levels("concurrency", 0)
    with pytest.raises(UsageError, match="counts tokens"):
        parse_levels("gen_lengths", "16,0", "gen_lengths")


def test_precedence_highest_layer_wins_per_dimension() -> None:
    levels = resolve_levels(
        [
            LevelLayer("ini", concurrency="1,2", requests=4),
            LevelLayer("marker", gen_lengths=[16, 64]),
            LevelLayer("command line", concurrency="8"),
        ]
    )
    assert levels == Levels(concurrency=(8,), gen_lengths=(16, 64), requests=4)
    assert levels.varied == ("gen_length",)
    assert resolve_levels([]) == Levels()
    with pytest.raises(UsageError, match="marker requests"):
        resolve_levels([LevelLayer("marker", requests=0)])


def test_requests_per_level_default_lets_every_slot_send_twice() -> None:
    levels = Levels(concurrency=(1, 2, 8))
    assert levels.requests_for(1, rounds=5) == 5  # like tokrate.run()
    assert levels.requests_for(2, rounds=5) == 5
    assert levels.requests_for(8, rounds=5) == 16
    assert Levels(requests=3).requests_for(8, rounds=5) == 3


def test_markdown_escape_neutralises_model_output() -> None:
    hostile = "| col | <script>alert(1)</script> **bold** [x](http://e) `code`\n# head & co"
    out = md_escape(hostile)
    assert "\n" not in out
    assert "<" not in out and ">" not in out
    assert "&amp;" in out and "&lt;script&gt;" in out
    # every pipe, emphasis, bracket, backtick and hash is escaped
    for ch in "|*[]`#":
        assert all(out[i - 1] == "\\" for i, c in enumerate(out) if c == ch)
    assert md_escape("x" * 300, limit=20).endswith("…")
    assert len(md_escape("x" * 300, limit=20)) == 20


def test_fence_is_longer_than_any_backtick_run_inside() -> None:
    text = "answer: ```python\nprint(1)\n```` and ` more"
    block = md_fence(text)
    fence = block.splitlines()[0].removesuffix("text")
    assert set(fence) == {"`"} and len(fence) == 5
    assert block.endswith("\n" + fence)


def test_pareto_frontier_keeps_only_undominated_models() -> None:
    points = [("fp16", 50.0, 95.0), ("q8", 80.0, 94.0), ("q2", 120.0, 60.0), ("bad", 70.0, 50.0)]
    frontier = _pareto(points)
    assert [name for name, _, _ in frontier] == ["q2", "q8", "fp16"]
