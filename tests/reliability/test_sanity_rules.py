"""The plausibility rules of :mod:`pytest_tokrate.core.sanity`, at their edges.

The fault catalogue drives each rule end to end through a server; these pin the limits
(what is still accepted) on the pure function, with the report of a real round.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from pytest_tokrate.core.measure import EngineReport, StampedChunk
from pytest_tokrate.core.sanity import MAX_TOKENS, TIME_SLACK_NS, check_round
from pytest_tokrate.errors import ServerError

OLLAMA = SimpleNamespace(name="ollama", url="http://gpu-box:11434")
EMBEDDED = SimpleNamespace(name="embedded")
CHUNKS = [StampedChunk("Hello", 1), StampedChunk(" there", 2)]
GOOD = EngineReport(
    output_tokens=8, prompt_tokens=30, decode_tokens=7, decode_ns=60_000_000,
    prefill_ns=20_000_000, load_ns=5_000_000, total_ns=90_000_000, done_reason="length",
)  # fmt: skip
ELAPSED = 100_000_000  # the client saw 0.1 s


def check(report: EngineReport, backend: object = OLLAMA, **options: object) -> None:
    check_round(backend, report, CHUNKS, ELAPSED, {"num_predict": 8, **options})


def test_a_plausible_report_passes() -> None:
    check(GOOD)
    check(replace(GOOD, output_tokens=9))  # one token of slack for an end-of-generation token
    check(replace(GOOD, decode_ns=int(ELAPSED * 1.25 + TIME_SLACK_NS)))  # at the bound
    check(replace(GOOD, output_tokens=5000), num_predict=-1)  # no limit asked
    check(replace(GOOD, output_tokens=500, token_count_estimated=True))  # a re-count
    check(EngineReport())  # nothing reported: nothing to refuse


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"output_tokens": 10}, "(eval_count)=10 for a request limited to num_predict=8"),
        ({"prefill_ns": -1}, "prefill_ns (prompt_eval_duration)=-1, a negative duration"),
        ({"prompt_tokens": MAX_TOKENS + 1}, "more tokens than any model's context holds"),
        ({"output_tokens": 0}, "=0 (no token generated) while it streamed 2 chunks of text"),
        ({"decode_ns": int(ELAPSED * 1.25 + TIME_SLACK_NS) + 1}, "while the whole request took"),
    ],
)  # fmt: skip
def test_impossible_reports_name_field_value_and_server(change: dict[str, int], words: str) -> None:
    with pytest.raises(ServerError) as caught:
        check(replace(GOOD, **change))
    message = str(caught.value)
    assert words in message and message.startswith("Ollama at http://gpu-box:11434 reported ")
    assert "the round was discarded" in message and "Check the server's version" in message


def test_the_embedded_engine_is_named_and_called_a_bug() -> None:
    with pytest.raises(ServerError, match=r"^the embedded engine reported decode_ns=-3, .* bug"):
        check(replace(GOOD, decode_ns=-3), backend=EMBEDDED)
