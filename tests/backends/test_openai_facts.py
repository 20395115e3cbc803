"""The model facts OpenAI-compatible servers report (llama.cpp's ``meta`` and ``/props``,
vLLM's ``/v1/models`` and ``/version``): parsed, then read from the stand-in over real files."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from standin import EngineHost, OpenAIStandin
from standin.httpserver import Exchange, StandinServer
from standin.openai_server import BUILD_INFO, VLLM_VERSION

from pytest_tokrate.backends.base import ModelInfo, Request
from pytest_tokrate.backends.gguf import FTYPE_NAMES
from pytest_tokrate.backends.llamacpp import LlamaCppBackend
from pytest_tokrate.backends.models import resolve_model
from pytest_tokrate.backends.openai import OpenAIBackend
from pytest_tokrate.backends.openai_facts import (
    file_label,
    identity,
    listed_model,
    quantization_from_filename,
    quantization_from_ftype,
    server_facts,
    server_kind,
)
from pytest_tokrate.core.runner import Runner
from pytest_tokrate.core.settings import RunSettings
from pytest_tokrate.machine.fingerprint import environment

MODEL = "smollm2:135m"

# -- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(FTYPE_NAMES))
def test_every_llamacpp_file_type_name_reads_as_ollamas_name(code: int) -> None:
    # The names come from llama.cpp itself (llama_ftype_name), guessed or not.
    import llama_cpp

    for flag in (0, 1024):  # LLAMA_FTYPE_GUESSED prefixes "(guessed) "
        name = llama_cpp.llama_ftype_name(code | flag).decode()
        assert quantization_from_ftype(name) == FTYPE_NAMES[code], name


@pytest.mark.parametrize("name", [None, 3, "", "unknown, may not work", "(guessed) unknown"])
def test_no_file_type_gives_no_quantization(name: object) -> None:
    assert quantization_from_ftype(name) is None


@pytest.mark.parametrize(
    ("path", "quant"),
    [
        ("/models/SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
        ("gemma-2-2b-it-q2_K.gguf", "Q2_K"),
        ("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "Q4_K_M"),
        ("Meta-Llama-3.1-8B-Instruct-IQ4_XS.gguf", "IQ4_XS"),
        ("phi-3-mini-4k-instruct-fp16.gguf", "F16"),
        ("ggml-model-f16.gguf", "F16"),
        (r"C:\models\mistral-7b-BF16.gguf", "BF16"),
        ("Llama-3.2-1B-Instruct-UD-Q4_K_XL.gguf", "Q4_K_XL"),
        ("Qwen/Qwen2.5-7B-Instruct-AWQ", "AWQ"),
        ("Q8_0-but-not-really/llama-3-8b.gguf", None),  # only the file's own name counts
        ("/models/llama-3-8b-instruct.gguf", None),
        ("/models/mq4_1x.gguf", None),  # a type must stand alone between separators
        (None, None),
        ("none", None),  # a llama.cpp router's placeholder
    ],
)
def test_quantization_from_the_file_name(path: str | None, quant: str | None) -> None:
    assert quantization_from_filename(path) == quant


def test_file_label_drops_the_directory_but_keeps_a_hub_id() -> None:
    assert file_label("/srv/a/model.Q4_0.gguf") == "model.Q4_0.gguf"
    assert file_label("models/model.Q4_0.gguf") == "model.Q4_0.gguf"
    assert file_label("Qwen/Qwen2.5-0.5B", hub_ids=True) == "Qwen/Qwen2.5-0.5B"
    assert file_label("/srv/Qwen2.5-0.5B/", hub_ids=True) == "Qwen2.5-0.5B"
    assert file_label("  ") is None and file_label(7) is None


LLAMA_ENTRY = {"id": "file.gguf", "owned_by": "llamacpp", "meta": {"n_params": 5, "size": 9}}


@pytest.mark.parametrize(
    ("listing", "model", "found"),
    [
        ({"data": [{"id": "a"}, {"id": "b", "max_model_len": 8}]}, "b", 1),
        ({"data": [{"id": "a", "aliases": ["x", "y"]}, {"id": "b"}]}, "y", 0),
        ({"data": [LLAMA_ENTRY]}, "any-name", 0),  # one llama.cpp model answers any name
        ({"data": [{"id": "a"}]}, "b", None),  # one entry, but not llama.cpp: no guess
        ({"data": [LLAMA_ENTRY, {"id": "b"}]}, "c", None),
        ({"data": "nonsense"}, "a", None),
        (["not", "a", "listing"], "a", None),
        ({"data": [None, 3, {"id": "a"}]}, "a", 2),
    ],
)
def test_the_listing_entry_of_the_model(listing: Any, model: str, found: int | None) -> None:
    entry = listed_model(listing, model)
    assert entry is (None if found is None else listing["data"][found])


def test_server_kind_and_facts_of_an_unknown_server() -> None:
    assert server_kind(LLAMA_ENTRY) == "llama.cpp"
    assert server_kind({"id": "m", "owned_by": "vllm"}) == "vllm"
    assert server_kind({"id": "m", "owned_by": "openai"}) is None
    facts = server_facts({"id": "m", "owned_by": "openai"}, {"props": {"model_path": "x.gguf"}})
    assert facts.digest is None and facts.quantization is None and facts.server is None


def test_llamacpp_facts_survive_wrong_types_and_a_router_placeholder() -> None:
    entry = {
        "id": "m",
        "owned_by": "llamacpp",
        "meta": {"n_params": "many", "size": -1, "n_ctx_train": 4096.0, "ftype": 7},
    }
    props = {"model_path": "none", "default_generation_settings": {"n_ctx": 0},
             "build_info": "b1-router"}  # fmt: skip
    facts = server_facts(entry, {"props": props})
    assert facts.parameter_count is None and facts.size_bytes is None
    assert facts.context_length == 4096 and facts.loaded_context_length is None
    assert facts.quantization is None and facts.digest is None  # nothing names a file
    assert facts.server_version == "b1-router"
    assert server_facts(entry, {"props": ["not", "props"]}).server_version is None


def test_identity_is_of_the_file_not_its_directory() -> None:
    same = identity("llama.cpp", {"file": "a.Q4_0.gguf", "size": 10})
    assert same == identity("llama.cpp", {"file": "a.Q4_0.gguf", "size": 10, "n_vocab": None})
    assert same != identity("llama.cpp", {"file": "a.Q2_K.gguf", "size": 10})
    assert same is not None and same.startswith("llama.cpp-facts:") and len(same) == 32
    assert identity("llama.cpp", {"n_params": 5, "size": 10}) is None  # no file named


# -- against the stand-in ------------------------------------------------------------


def settings() -> RunSettings:
    return RunSettings(rounds=1, warmup=0, options={"num_predict": 4, "temperature": 0.0})


@pytest.fixture(scope="module")
def embedded_q41() -> Iterator[ModelInfo]:
    """The embedded engine's own facts of the Q4_1 file the stand-in serves."""
    backend = LlamaCppBackend(resolve_model("smollm2"))
    yield backend.model_info()
    backend.close()


@pytest.fixture
def q2k_server() -> Iterator[OpenAIStandin]:
    """`llama-server --alias smollm2:135m -m SmolLM2-135M-Instruct.Q2_K.gguf`: another
    file behind the same name (the real requantised weights)."""
    engine = EngineHost({MODEL: "smollm2-q2_k"})
    server = OpenAIStandin(engine).start()
    yield server
    server.stop()
    engine.close()


def requests_to(server: StandinServer, path: str) -> int:
    return sum(1 for _, seen in server.request_log if seen == path)


def test_llamacpp_server_facts(openai_standin: OpenAIStandin, embedded_q41: ModelInfo) -> None:
    before = len(openai_standin.request_log)
    b = OpenAIBackend(MODEL, host=openai_standin.url)
    info = b.model_info()
    assert b.model_info() == info  # read once
    assert [p for _, p in openai_standin.request_log[before:]] == ["/v1/models", "/props"]
    assert info.quantization == embedded_q41.quantization == "Q4_1"
    assert info.extra["quantization_source"] == "server (meta.ftype)"
    assert info.parameter_count == embedded_q41.parameter_count
    assert info.context_length == embedded_q41.context_length == 8192
    assert info.embedding_length == embedded_q41.embedding_length
    assert info.extra["loaded_context_length"] == openai_standin.n_ctx
    # llama.cpp reports the tensors' bytes: a little under the file's.
    assert embedded_q41.size_bytes is not None and info.size_bytes is not None
    assert 0.9 * embedded_q41.size_bytes < info.size_bytes < embedded_q41.size_bytes
    assert info.digest and info.digest.startswith("llama.cpp-facts:")
    assert info.extra["model_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert info.server_version == BUILD_INFO and info.format == "gguf"
    b.close()


def test_another_file_behind_the_same_name_is_another_model(
    openai_standin: OpenAIStandin, q2k_server: OpenAIStandin
) -> None:
    b41 = OpenAIBackend(MODEL, host=openai_standin.url)
    b2k = OpenAIBackend(MODEL, host=q2k_server.url)
    m41 = Runner(b41).run(Request(prompt="Hi"), settings()).model
    m2k = Runner(b2k).run(Request(prompt="Hi"), settings()).model
    assert m41.name == m2k.name == MODEL
    assert (m41.quantization, m2k.quantization) == ("Q4_1", "Q2_K")
    assert m41.digest != m2k.digest and m2k.digest is not None
    assert m41.size_bytes and m2k.size_bytes and m2k.size_bytes < m41.size_bytes
    assert m41.parameter_count == m2k.parameter_count  # same weights, fewer bits
    # The fingerprint of the run sees the change through ModelInfo.to_dict().
    env41 = environment(m41.to_dict(), {})["model"]
    env2k = environment(m2k.to_dict(), {})["model"]
    assert env41["name"] == env2k["name"]
    assert (env41["digest"], env41["quantization"]) == (m41.digest, "Q4_1")
    assert (env2k["digest"], env2k["quantization"]) == (m2k.digest, "Q2_K")
    assert env2k["parameter_count"] == m2k.parameter_count
    b41.close()
    b2k.close()


def test_an_older_llamacpp_build_names_the_type_by_the_file(
    openai_standin: OpenAIStandin, embedded_q41: ModelInfo
) -> None:
    current = OpenAIBackend(MODEL, host=openai_standin.url).model_info()
    openai_standin.legacy_llamacpp = True  # no meta.ftype, no props.model_ftype
    old = OpenAIBackend(MODEL, host=openai_standin.url).model_info()
    assert old.quantization == "Q4_1" and old.extra["quantization_source"] == "file name"
    assert old.digest == current.digest  # the same file, whatever the build says of it
    assert old.parameter_count == embedded_q41.parameter_count
    assert old.extra["loaded_context_length"] == openai_standin.n_ctx  # from /props


def test_vllm_server_facts(openai_standin: OpenAIStandin) -> None:
    openai_standin.flavour = "vllm"
    before = len(openai_standin.request_log)
    info = OpenAIBackend(MODEL, host=openai_standin.url).model_info()
    assert [p for _, p in openai_standin.request_log[before:]] == ["/v1/models", "/version"]
    assert info.context_length == info.extra["loaded_context_length"] == openai_standin.n_ctx
    assert info.server_version == f"vllm {VLLM_VERSION}"
    assert info.quantization == "Q4_1" and info.extra["quantization_source"] == "file name"
    assert info.digest and info.digest.startswith("vllm-facts:")
    assert info.parameter_count is None and info.size_bytes is None  # vLLM does not say


def test_a_bare_server_gives_no_facts_and_no_error(openai_standin: OpenAIStandin) -> None:
    openai_standin.flavour = "bare"
    before = len(openai_standin.request_log)
    b = OpenAIBackend(MODEL, host=openai_standin.url)
    info = Runner(b).run(Request(prompt="Hi"), settings()).model
    facts = (info.digest, info.quantization, info.parameter_count, info.size_bytes,
             info.context_length, info.server_version)  # fmt: skip
    assert facts == (None,) * 6
    paths = [p for _, p in openai_standin.request_log[before:]]
    assert paths == ["/v1/models", "/v1/chat/completions"]  # no /props, no /version


class PropsFailServer(OpenAIStandin):
    """A llama.cpp server whose /props fails (as any endpoint may, e.g. 503 while a
    model loads)."""

    def route(self, ex: Exchange) -> None:
        if ex.path == "/props":
            self.proto.send_error(ex, 503, "Loading model")
            return
        super().route(ex)


def test_facts_when_props_fails(standin_engine: EngineHost) -> None:
    with PropsFailServer(standin_engine) as server:
        b = OpenAIBackend(MODEL, host=server.url)
        info = b.model_info()
        assert requests_to(server, "/props") == 1
        b.close()
    # The listing's meta is all there is: no error, and no made-up identity.
    assert info.quantization == "Q4_1"
    assert info.extra["quantization_source"] == "server (meta.ftype)"
    assert info.parameter_count and info.size_bytes and info.server_version is None
    assert info.digest is None  # its file name comes from /props
