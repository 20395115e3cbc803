"""The embedded engine's load-time settings (flash attention, KV cache types, batches) on
the real SmolLM2 model through the real engine: they reach llama.cpp, each set of them is
its own context, and they are recorded with the result."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pytest_tokrate.backends.base import Request
from pytest_tokrate.backends.llamacpp import LlamaCppBackend
from pytest_tokrate.backends.llamacpp_params import (
    FLASH_ATTN_TYPES,
    GGML_TYPES,
    LoadParams,
    flash_attn_active,
    load_params,
)
from pytest_tokrate.backends.models import resolve_model
from pytest_tokrate.core.engine_options import FLASH_ATTN_MODES, KV_CACHE_TYPES
from pytest_tokrate.core.result import Measurement
from pytest_tokrate.core.runner import Runner
from pytest_tokrate.core.settings import Layer, parse_option_pair, resolve, validate_options
from pytest_tokrate.errors import UsageError

pytestmark = pytest.mark.e2e

PROMPT = "Name three colours."


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppBackend]:
    backend = LlamaCppBackend(resolve_model("smollm2"), reference=False)
    yield backend
    backend.close()


def run(engine: LlamaCppBackend, **options: Any) -> Measurement:
    """Two measured rounds of a short answer through the runner, as a test gets them."""
    options = {"num_predict": 6, "num_thread": 1, **options}
    settings = resolve([Layer("test", rounds=2, warmup=0, options=options)])
    return Runner(engine).run(Request(prompt=PROMPT), settings)


def context_params(engine: LlamaCppBackend, params: LoadParams) -> Any:
    """The parameters llama.cpp's context was created with."""
    return engine._instances[params].context_params


def test_defaults_are_llama_cpp_tools_defaults(engine: LlamaCppBackend) -> None:
    m = run(engine)
    assert m.model.extra["engine_settings"] == {
        "flash_attn": "auto",
        # llama.cpp resolved auto on this CPU backend (its log says which way)
        "flash_attn_active": True,
        "type_k": "f16",
        "type_v": "f16",
        "num_batch": 2048,
        "num_ubatch": 512,
        "use_mmap": True,
    }
    params = context_params(engine, LoadParams())
    assert (params.n_batch, params.n_ubatch) == (2048, 512)
    assert (params.type_k, params.type_v) == (GGML_TYPES["f16"], GGML_TYPES["f16"])


@pytest.mark.parametrize(("mode", "active"), [("on", True), ("off", False)])
def test_flash_attn_on_and_off_run_and_are_recorded(
    engine: LlamaCppBackend, mode: str, active: bool
) -> None:
    m = run(engine, flash_attn=mode)
    assert all(s.output_tokens and s.decode_tps for s in m.samples)
    assert m.model.extra["engine_settings"]["flash_attn"] == mode
    assert m.model.extra["engine_settings"]["flash_attn_active"] is active
    assert m.request["options"]["flash_attn"] == mode  # the test's definition names it


def test_a_quantized_kv_cache_runs(engine: LlamaCppBackend) -> None:
    m = run(engine, type_k="q8_0", type_v="Q8_0", num_ubatch=256)
    assert all(s.output_tokens for s in m.samples)
    settings = m.model.extra["engine_settings"]
    assert (settings["type_k"], settings["type_v"], settings["num_ubatch"]) == ("q8_0", "q8_0", 256)
    # llama.cpp turns flash attention on for a quantized V cache when it is auto
    assert settings["flash_attn_active"] is True
    params = context_params(engine, LoadParams(type_k="q8_0", type_v="q8_0", n_ubatch=256))
    assert (params.type_k, params.type_v, params.n_ubatch) == (8, 8, 256)


def test_each_load_time_setting_is_its_own_context(engine: LlamaCppBackend) -> None:
    run(engine, flash_attn="off")
    off = engine._instances[LoadParams(flash_attn="off")]
    run(engine, flash_attn="on")
    on = engine._instances[LoadParams(flash_attn="on")]
    assert on is not off
    run(engine, flash_attn="on", num_predict=4)  # a generation option: same context
    assert engine._instances[LoadParams(flash_attn="on")] is on
    assert len(engine._instances) <= 2  # memory stays bounded


def test_batches_are_capped_as_llama_cpp_caps_them() -> None:
    params = load_params({"num_ctx": 1024, "num_batch": 4096, "num_ubatch": 2048})
    assert (params.n_ctx, params.n_batch, params.n_ubatch) == (1024, 1024, 1024)
    assert load_params({"use_mmap": False}).use_mmap is False


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("flash_attn", "maybe", "expected auto, on or off"),
        ("type_k", "q9_0", "expected one of f32, f16, bf16, q8_0, q4_0"),
        ("type_v", "fp16", "expected one of f32, f16, bf16, q8_0, q4_0"),
        ("num_ubatch", 0, "expected an integer >= 1"),
    ],
)
def test_a_bad_value_is_a_usage_error_naming_option_value_and_choices(
    option: str, value: object, expected: str
) -> None:
    with pytest.raises(UsageError) as info:
        validate_options({option: value})
    assert f"option {option!r}: invalid value {value!r}: {expected}" in str(info.value)


def test_cli_spellings_are_normalised() -> None:
    assert parse_option_pair("flash_attn=true") == ("flash_attn", "on")
    assert parse_option_pair("flash_attn=0") == ("flash_attn", "off")
    assert parse_option_pair("flash_attn=AUTO") == ("flash_attn", "auto")
    assert parse_option_pair("type_v=Q4_0") == ("type_v", "q4_0")


def test_a_quantized_v_cache_without_flash_attention_is_refused(engine: LlamaCppBackend) -> None:
    with pytest.raises(UsageError, match=r"quantized V cache .*flash_attn is off"):
        run(engine, flash_attn="off", type_v="q8_0")


def test_option_names_and_engine_tables_agree() -> None:
    assert set(FLASH_ATTN_TYPES) == set(FLASH_ATTN_MODES)
    assert set(GGML_TYPES) == set(KV_CACHE_TYPES)


def test_what_runs_is_read_from_llama_cpp_log() -> None:
    resolved = ["llama_context: flash_attn = auto\n", "resolve_fused_ops: Flash Attention enabled"]
    assert flash_attn_active("auto", resolved) is True
    assert flash_attn_active("auto", ["Flash Attention not supported, set to disabled"]) is False
    assert flash_attn_active("on", ["llama_context: flash_attn = disabled"]) is False
    assert flash_attn_active("auto", []) is None  # an engine that says nothing: unknown
    assert flash_attn_active("on", []) is True
