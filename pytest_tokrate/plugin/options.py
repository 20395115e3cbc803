"""The plugin's options: every --tokrate-* flag with its ini twin (the session settings
read from them: :mod:`.session_config`).

pytest glue; values are checked by the pure parsers in :mod:`pytest_tokrate.core.settings`
and the features' own modules, which load only when an option of theirs is used.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest

from pytest_tokrate.core.settings import (
    BACKENDS,
    CACHE_MODES,
    CALIBRATE_MODES,
    DEFAULT_BASELINE_ROUNDS,
    DEFAULT_MAX_ROUNDS,
    DEFAULT_MIN_ROUNDS,
    DEFAULT_NUM_CTX,
    DEFAULT_NUM_PREDICT,
    DEFAULT_ROUNDS,
    DEFAULT_TIMEOUT_S,
    DEFAULT_WARMUP,
    MAX_ROUNDS,
    MAX_WARMUP,
    MISSING_MODEL_MODES,
    parse_baseline_rounds,
    parse_busy_retries,
    parse_choice,
    parse_int,
    parse_option_pair,
    parse_rounds,
    parse_timeout,
)
from pytest_tokrate.errors import UsageError


def _argparse_type(parser: Callable[[str], object]) -> Callable[[str], object]:
    """Wrap one of our parsers so argparse shows its message (value and fix)."""

    def parse(text: str) -> object:
        try:
            return parser(text)
        except UsageError as exc:
            message = str(exc)
            # argparse already says "argument --tokrate-x: "; drop our copy of the name.
            if message.startswith("--tokrate-"):
                message = message.partition(": ")[2] or message
            raise argparse.ArgumentTypeError(message) from None

    parse.__name__ = getattr(parser, "__name__", "value")
    return parse


def _text_option(value: str) -> str | None:
    """A free-text value, stripped; blank (``--tokrate-model=`` from an unset ``$MODEL``)
    stores ``None``, so the option counts as not given and its ini twin applies."""
    return value.strip() or None


def _host_option(value: str) -> str:
    """Check a host string (or a comma-separated fleet) by Ollama's rules; keep it."""
    from pytest_tokrate.backends.hosts import split_hosts

    split_hosts(value, "--tokrate-host")
    return value


def _server_setting_option(value: str) -> tuple[str, object]:
    from pytest_tokrate.backends.server_settings import parse_server_setting

    return parse_server_setting(value, "--tokrate-server-setting")


# name, ini name, help, type, cli type, default shown in help
_OPTIONS: list[tuple[str, str, str, Callable[[str], object] | None]] = [
    ("model", "tokrate_model",
     "Model(s) to measure, comma-separated: smollm2, smollm2-q2_k, a .gguf path, or a server "
     "model such as gemma2:2b. Default: none (tokrate tests are skipped, or error under CI)",
     None),
    ("backend", "tokrate_backend",
     "Backend: auto (embedded for smollm2 and .gguf paths, else ollama), embedded, ollama, "
     "openai. Default: auto",
     lambda v: parse_choice("--tokrate-backend", v, BACKENDS)),
    ("host", "tokrate_host",
     "Server address, Ollama rules ([scheme://]host[:port][/path]); several, separated "
     "by commas, make a fleet: xdist worker gwN measures against server N mod their "
     "number (run with -n equal to it). "
     "Default: $OLLAMA_HOST, else http://127.0.0.1:11434 (openai backend: "
     "$OPENAI_BASE_URL, else http://127.0.0.1:8080/v1)",
     _host_option),
    ("rounds", "tokrate_rounds",
     "Measured rounds per prompt, or auto: measure until the gate's verdict on every gated "
     "metric is settled (between --tokrate-min-rounds and --tokrate-max-rounds; without a "
     f"baseline, until the medians are known within 2%). Default: {DEFAULT_ROUNDS}",
     lambda v: parse_rounds("--tokrate-rounds", v)),
    ("max-rounds", "tokrate_max_rounds",
     f"With --tokrate-rounds=auto: the most rounds measured. Default: {DEFAULT_MAX_ROUNDS}",
     lambda v: parse_int("--tokrate-max-rounds", v, 2, MAX_ROUNDS)),
    ("min-rounds", "tokrate_min_rounds",
     "With --tokrate-rounds=auto: the fewest rounds measured before a verdict may settle. "
     f"Default: {DEFAULT_MIN_ROUNDS}",
     lambda v: parse_int("--tokrate-min-rounds", v, 2, MAX_ROUNDS)),
    ("warmup", "tokrate_warmup",
     f"Warm-up rounds before measuring (never counted). Default: {DEFAULT_WARMUP}",
     lambda v: parse_int("--tokrate-warmup", v, 0, MAX_WARMUP)),
    ("num-predict", "tokrate_num_predict",
     f"Generation length in tokens (num_predict). Default: {DEFAULT_NUM_PREDICT}",
     lambda v: parse_option_pair(f"num_predict={v}", "--tokrate-num-predict")[1]),
    ("num-ctx", "tokrate_num_ctx",
     f"Context size in tokens (num_ctx). Default: {DEFAULT_NUM_CTX}",
     lambda v: parse_option_pair(f"num_ctx={v}", "--tokrate-num-ctx")[1]),
    ("timeout", "tokrate_timeout",
     f"Per-request timeout in seconds. Default: {DEFAULT_TIMEOUT_S:g}",
     lambda v: parse_timeout("--tokrate-timeout", v)),
    ("cache", "tokrate_cache",
     "Prompt cache in measured rounds: bust (defeat it without changing the prompt: "
     "honest prefill figures), nonce (put a unique line before the system prompt; changes "
     "what the model reads) or allow. Default: bust",
     lambda v: parse_choice("--tokrate-cache", v, CACHE_MODES)),
    ("missing-model", "tokrate_missing_model",
     "What a tokrate test does when no model is chosen: skip, error, or auto (error when "
     "the CI environment variable is set, else skip). Default: auto",
     lambda v: parse_choice("--tokrate-missing-model", v, MISSING_MODEL_MODES)),
    ("api-key-env", "tokrate_api_key_env",
     "Name of the environment variable holding the API key of an OpenAI-compatible "
     "server (the key itself is never recorded). Default: none",
     None),
    ("min-pass-rate", "tokrate_min_pass_rate",
     "Minimum share of measured rounds that must pass every quality check, 0-1 or a "
     "percentage such as 80%. Default: 1 (every round)",
     lambda v: _quality_option("--tokrate-min-pass-rate", v)),
    ("busy-retries", "tokrate_busy_retries",
     "Retries, with doubling back-off from 0.5 s, when a server answers 503 busy (or 429) "
     "before the round errors. Default: 3",
     lambda v: parse_busy_retries("--tokrate-busy-retries", v)),
    ("calibrate", "tokrate_calibrate",
     "Time a fixed reference decode around each measured round on the embedded engine and "
     "judge speed relative to it, so a slower machine is not taken for a slower model: on "
     "or off. Default: on",
     lambda v: parse_choice("--tokrate-calibrate", v, CALIBRATE_MODES)),
    ("baseline-dir", "tokrate_baseline_dir",
     "Directory of the baseline files, relative to the rootdir. Default: baselines",
     None),
    ("baseline-env", "tokrate_baseline_env",
     "Environment name in baseline file names (TEST@ENV.json), to keep baselines per kind "
     "of machine. Default: the backend (embedded, ollama, openai)",
     lambda v: _gate_option("baseline-env", v)),
    ("baseline-rounds", "tokrate_baseline_rounds",
     "Rounds measured when --tokrate-update-baselines writes baselines: a multiple of each "
     "test's rounds (4x) or a number of rounds (at least the test's own). A more precise "
     f"baseline lets short CI runs catch smaller regressions. Default: {DEFAULT_BASELINE_ROUNDS}",
     lambda v: parse_baseline_rounds("--tokrate-baseline-rounds", v)),
    ("tolerance", "tokrate_tolerance",
     "Change tolerated before a significant difference from the baseline is a regression: "
     "10% for every speed metric, or per metric, e.g. decode_tps=10%,ttft=25%,pass_rate=10% "
     "(points). Default: decode_tps=10%,ttft=25%,pass_rate=10%",
     lambda v: _gate_option("tolerance", v)),
    ("gate-metrics", "tokrate_gate_metrics",
     "Metrics compared with the baseline, comma-separated (decode_tps, ttft, tpot, e2e, "
     "prefill_tps, e2e_tps, pass_rate, ...), or none. Default: decode_tps,ttft,pass_rate",
     lambda v: _gate_option("gate-metrics", v)),
    ("min-decode-tokens", "tokrate_min_decode_tokens",
     "Shortest answer, in tokens (median of the rounds), whose per-token decode figures "
     "(decode tok/s, TPOT) are compared with the baseline; shorter answers have too few "
     "decode steps to time, and only their TTFT and pass rate are judged. Default: 32",
     lambda v: _gate_option("min-decode-tokens", v)),
    ("accept-tradeoff", "tokrate_accept_tradeoff",
     "When the model or its quantization changed: a pass-rate drop beyond the tolerance "
     "that is accepted for a significant speed gain, e.g. '5 points for decode_tps +30%' "
     "(several separated by ';'), or none. Default: none (any such drop fails)",
     lambda v: _gate_option("accept-tradeoff", v)),
    ("on-unsettled", "tokrate_on_unsettled",
     "With --tokrate-rounds=auto, a test whose verdict was still open at "
     "--tokrate-max-rounds: warn, or fail. Default: warn",
     lambda v: _gate_option("on-unsettled", v)),
    ("gate", "tokrate_gate",
     "Regression gate: enforce (a regression fails its test), report (regressions are "
     "warnings) or off (no comparison). Default: enforce",
     lambda v: _gate_option("gate", v)),
    ("missing-baseline", "tokrate_missing_baseline",
     "A test without a baseline: warn, or fail (strict, for CI). Default: warn",
     lambda v: _gate_option("missing-baseline", v)),
    ("on-mismatch", "tokrate_on_mismatch",
     "A baseline recorded in another environment (hardware, or the measurement method; "
     "a changed model, engine, option or prompt is judged, not a mismatch): warn, skip or "
     "fail. Default: warn",
     lambda v: _gate_option("on-mismatch", v)),
    ("on-stale", "tokrate_on_stale",
     "A test significantly better than its baseline beyond the tolerance (stale "
     "baseline): warn or fail. Default: warn",
     lambda v: _gate_option("on-stale", v)),
    ("other-load", "tokrate_other_load",
     "CPU cores other processes may use while a test measures on the embedded engine "
     "without the machine reference; over it for more than 20% of the test, its speed "
     "verdict is withheld as untrustworthy (with the reference, the guard is the engine's "
     "own wait for a CPU, over 10% of the time). A number, or off (never withhold). "
     "Default: 0.3",
     lambda v: _gate_option("other-load", v)),
    ("concurrency", "tokrate_concurrency",
     "Concurrency levels of tokrate.sweep(): requests kept in flight, comma-separated "
     "(e.g. 1,8,32,128). Default: 1",
     lambda v: _report_option("concurrency", v)),
    ("gen-lengths", "tokrate_gen_lengths",
     "Generation lengths (num_predict) of tokrate.sweep(), comma-separated (e.g. 16,64,256). "
     "Default: the num_predict in effect",
     lambda v: _report_option("gen-lengths", v)),
    ("prompt-lengths", "tokrate_prompt_lengths",
     "Prompt lengths of tokrate.sweep() in cl100k tokens, comma-separated (e.g. 128,1024). "
     "Default: the prompt as given",
     lambda v: _report_option("prompt-lengths", v)),
    ("report-json", "tokrate_report_json",
     "Write a JSON report of the run (tests, models, sweep levels, raw samples, "
     "fingerprints, verdicts) to PATH. Default: none",
     lambda v: _report_option("report-json", v)),
    ("report-md", "tokrate_report_md",
     "Write a Markdown summary to PATH (it is also appended to $GITHUB_STEP_SUMMARY when "
     "that is set). Default: none",
     lambda v: _report_option("report-md", v)),
    ("plots", "tokrate_plots",
     "Write PNG plots (latency and throughput vs concurrency, tok/s vs generation length, "
     "speed vs quality) to DIR; needs matplotlib. Default: none",
     lambda v: _report_option("plots", v)),
]  # fmt: skip


def _report_option(name: str, value: str) -> object:
    from pytest_tokrate.plugin.reports import parse_cli

    return parse_cli(name, value)


def _gate_option(name: str, value: str) -> object:
    from pytest_tokrate.gate.settings import parse_cli

    return parse_cli(name, value)


def _quality_option(source: str, value: object) -> float:
    from pytest_tokrate.quality.checks import parse_min_pass_rate

    return parse_min_pass_rate(source, value)


def _escape(help_text: str) -> str:
    return help_text.replace("%", "%%")


def add_options(parser: pytest.Parser) -> None:
    """Declare every --tokrate-* option and its ini twin (``plugin.pytest_addoption``)."""
    group = parser.getgroup("tokrate", "LLM speed and quality (pytest-tokrate)")
    for name, ini, help_text, type_ in _OPTIONS:
        # argparse %-formats help texts: a literal "10%" would crash `pytest --help`.
        kwargs: dict[str, Any] = {"dest": ini, "default": None, "help": _escape(help_text)}
        kwargs["type"] = _text_option if type_ is None else _argparse_type(type_)
        group.addoption(f"--tokrate-{name}", **kwargs)
        parser.addini(ini, help_text, default=None)
    group.addoption(
        "--tokrate-option",
        dest="tokrate_options",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        type=_argparse_type(parse_option_pair),
        help="Generation option passed to the model, repeatable (e.g. num_thread=2, "
        "temperature=0.7, stop='[\"\\n\"]'). Default: none",
    )
    parser.addini(
        "tokrate_options",
        "Generation options, one KEY=VALUE per line. Default: none",
        type="linelist",
        default=[],
    )
    group.addoption(
        "--tokrate-server-setting",
        dest="tokrate_server_settings",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        type=_argparse_type(_server_setting_option),
        help="Server setting recorded with every result, repeatable: kv_cache_type=q8_0, "
        "flash_attention=on, num_parallel=4, ... (or OLLAMA_KV_CACHE_TYPE=q8_0). "
        "Default: none",
    )
    parser.addini(
        "tokrate_server_settings",
        "Server settings recorded with every result, one KEY=VALUE per line. Default: none",
        type="linelist",
        default=[],
    )
    from pytest_tokrate.plugin.gate_options import add_flags

    add_flags(group, parser)


__all__ = ["add_options"]
