"""Plausibility of what an engine or server reports for one round, and empty answers.

A server with corrupt metrics must not hand the gate a figure it then trusts: an
``eval_duration`` of 10^18 ns turns into a decode rate of 6e-9 tok/s, a regression that
never happened; an ``eval_count`` of 10^12 into an improvement that never happened. The
runner calls :func:`check_round` on every round, before any figure is derived, and a
report that cannot be true discards the round with a
:class:`~pytest_tokrate.errors.ServerError` naming the field, the value and why it cannot
be right. The test then *errors* (infrastructure), as for any other server fault.

What counts as impossible, for any backend:

- a negative count or duration;
- more tokens than any context holds (:data:`MAX_TOKENS`);
- more generated tokens than ``num_predict`` allows (one token of slack for servers that
  count the end-of-generation token), unless the count is a re-tokenisation estimate;
- zero generated tokens reported while text was streamed;
- an engine timer longer than the whole request took on the client's clock (with slack
  for clock rates: :data:`TIME_SLACK_FACTOR` and :data:`TIME_SLACK_NS`).

:func:`empty_answer_judge` covers the opposite case, a model that answers nothing: no
figure is wrong, but TTFT and TPOT cannot exist, so the test says so instead of failing
later on a NaN. Pure: no pytest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_tokrate.core.measure import EngineReport, StampedChunk
from pytest_tokrate.errors import ServerError

#: No model has a context anywhere near this many tokens.
MAX_TOKENS = 1_000_000_000
#: Servers that count the end-of-generation token may report num_predict + 1.
NUM_PREDICT_SLACK = 1
#: An engine timer may exceed the client's view of the request by this factor plus
#: :data:`TIME_SLACK_NS` (clock rates and rounding), never more.
TIME_SLACK_FACTOR = 1.25
TIME_SLACK_NS = 250_000_000

_COUNTS = (
    "output_tokens",
    "prompt_tokens",
    "prompt_tokens_processed",
    "prompt_tokens_cached",
    "decode_tokens",
)
_DURATIONS = ("decode_ns", "prefill_ns", "load_ns", "total_ns")
#: The wire fields behind each EngineReport field, to name what the server sent.
_WIRE_FIELDS: dict[str, dict[str, str]] = {
    "ollama": {
        "output_tokens": "eval_count",
        "decode_tokens": "eval_count",
        "prompt_tokens": "prompt_eval_count",
        "decode_ns": "eval_duration",
        "prefill_ns": "prompt_eval_duration",
        "load_ns": "load_duration",
        "total_ns": "total_duration",
    },
    "openai": {
        "output_tokens": "completion_tokens",
        "decode_tokens": "timings.predicted_n",
        "prompt_tokens": "prompt_tokens",
        "prompt_tokens_processed": "timings.prompt_n",
        "prompt_tokens_cached": "timings.cache_n",
        "decode_ns": "timings.predicted_ms",
        "prefill_ns": "timings.prompt_ms",
    },
}


def _who(backend: Any) -> str:
    name = getattr(backend, "name", "")
    url = getattr(backend, "url", None)
    if name == "ollama":
        return f"Ollama at {url}"
    if name == "openai":
        return f"the server at {url}"
    return "the embedded engine" if name == "embedded" else f"the {name or 'engine'} backend"


def _remedy(backend: Any) -> str:
    if getattr(backend, "name", "") == "embedded":
        return (
            "This is a bug in pytest-tokrate or llama-cpp-python: please report it with the "
            "model file and the prompt."
        )
    return (
        "Check the server's version and log; a proxy between pytest and the server may "
        "also rewrite the stream."
    )


def _field(backend: Any, name: str) -> str:
    wire = _WIRE_FIELDS.get(getattr(backend, "name", ""), {}).get(name)
    return f"{name} ({wire})" if wire else name


def _fail(backend: Any, what: str) -> ServerError:
    return ServerError(
        f"{_who(backend)} reported {what}: the round was discarded, its figures cannot be "
        f"trusted. {_remedy(backend)}"
    )


def check_round(
    backend: Any,
    report: EngineReport,
    chunks: Sequence[StampedChunk],
    elapsed_ns: int,
    options: Mapping[str, Any],
) -> None:
    """Raise :class:`ServerError` when ``report`` cannot describe the round it ends."""
    for name in (*_COUNTS, *_DURATIONS):
        value = getattr(report, name)
        if value is not None and value < 0:
            kind = "count" if name in _COUNTS else "duration"
            raise _fail(backend, f"{_field(backend, name)}={value}, a negative {kind}")
    for name in _COUNTS:
        value = getattr(report, name)
        if value is not None and value > MAX_TOKENS:
            raise _fail(
                backend,
                f"{_field(backend, name)}={value}, more tokens than any model's context holds",
            )
    output = report.output_tokens
    limit = options.get("num_predict")
    if (
        output is not None
        and not report.token_count_estimated
        and isinstance(limit, int)
        and limit > 0
        and output > limit + NUM_PREDICT_SLACK
    ):
        raise _fail(
            backend,
            f"{_field(backend, 'output_tokens')}={output} for a request limited to "
            f"num_predict={limit}",
        )
    texts = sum(1 for c in chunks if c.text)
    if output == 0 and texts:
        raise _fail(
            backend,
            f"{_field(backend, 'output_tokens')}=0 (no token generated) while it streamed "
            f"{texts} chunks of text",
        )
    bound = elapsed_ns * TIME_SLACK_FACTOR + TIME_SLACK_NS
    for name in ("decode_ns", "prefill_ns"):
        value = getattr(report, name)
        if value is not None and value > bound:
            raise _fail(
                backend,
                f"{_field(backend, name)} of {value / 1e9:.4g} s while the whole request took "
                f"{elapsed_ns / 1e9:.4g} s on the client's clock",
            )


def empty_answer_judge(measurement: Any, context: Any) -> list[Any]:
    """Fail a measurement whose every round produced no text; warn when some did not."""
    from pytest_tokrate.core.findings import Finding

    samples = measurement.samples
    empty = [s for s in samples if not s.text]
    if not samples or not empty:
        return []
    reasons = sorted({str(s.done_reason) for s in empty})
    tokens = sorted({s.output_tokens for s in empty}, key=lambda v: -1 if v is None else v)
    detail = (
        f"done_reason {', '.join(reasons)}; {', '.join(str(t) for t in tokens)} token(s) generated"
    )
    label = f" ({measurement.label})" if getattr(measurement, "label", None) else ""
    model = measurement.model.name
    remedy = (
        "check the prompt and the stop sequences (a stop string that matches the start of "
        "every answer empties it), raise num_predict, or check the model's chat template"
    )
    if len(empty) == len(samples):
        return [
            Finding(
                "empty-answer",
                "fail",
                f"tokrate: {model} answered nothing in all {len(samples)} measured round(s) of "
                f"{context.test_id}{label} ({detail}): TTFT, TPOT and the decode rate cannot "
                f"be measured without text; {remedy}.",
                {"empty_rounds": len(empty), "rounds": len(samples)},
            )
        ]
    return [
        Finding(
            "empty-answer",
            "warn",
            f"tokrate: {model} answered nothing in {len(empty)} of {len(samples)} measured "
            f"round(s) of {context.test_id}{label} ({detail}); those rounds have no TTFT or "
            f"TPOT, so the summaries use the other {len(samples) - len(empty)}.",
            {"empty_rounds": len(empty), "rounds": len(samples)},
        )
    ]


__all__ = [
    "MAX_TOKENS",
    "NUM_PREDICT_SLACK",
    "TIME_SLACK_FACTOR",
    "TIME_SLACK_NS",
    "check_round",
    "empty_answer_judge",
]
