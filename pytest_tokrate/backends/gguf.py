"""GGUF model files for the embedded engine: their digest, llama.cpp's quantization type
names, and requantisation to another type.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from pytest_tokrate.errors import BackendUnavailable, InfrastructureError, UsageError

# llama.cpp's enum llama_ftype -> the names `ollama show` uses for quantization levels.
FTYPE_NAMES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
}  # fmt: skip
FTYPE_BY_NAME = {name: code for code, name in FTYPE_NAMES.items()}

_DIGESTS: dict[tuple[str, int, int], str] = {}
_QUANTIZE_LOCK = threading.Lock()


def import_llama_cpp() -> Any:
    """llama-cpp-python, imported only when the embedded engine is used (it is heavy)."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise BackendUnavailable(
            f"the embedded engine needs llama-cpp-python, which cannot be imported ({exc}): "
            'install it with `pip install "pytest-tokrate[embedded]"`.'
        ) from None
    return llama_cpp


def file_digest(path: Path) -> str:
    """sha256 of a model file, cached per (path, size, mtime) for the process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = "sha256:" + h.hexdigest()
    return _DIGESTS[key]


def quantize(source: Path, target: Path, quant: str) -> Path:
    """Requantise a GGUF file with llama.cpp (written to a temporary file, then renamed)."""
    llama_cpp = import_llama_cpp()
    if quant not in FTYPE_BY_NAME:
        raise UsageError(f"unknown quantization {quant!r}: use one of {', '.join(FTYPE_BY_NAME)}.")
    with _QUANTIZE_LOCK:
        if target.is_file():
            return target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create the model cache directory {target.parent} ({exc.strerror}): "
                "set TOKRATE_CACHE_DIR to a writable directory."
            ) from None
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = FTYPE_BY_NAME[quant]
        params.allow_requantize = True
        params.nthread = os.cpu_count() or 1
        # llama.cpp logs every tensor it converts through llama-cpp-python's logger,
        # which prints to sys.stderr: hundreds of lines in the user's terminal otherwise.
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
            code = llama_cpp.llama_model_quantize(
                str(source).encode(), str(tmp).encode(), ctypes.byref(params)
            )
        if code != 0 or not tmp.is_file():
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise InfrastructureError(
                f"llama.cpp could not requantize {source} to {quant} (code {code})."
            )
        os.replace(tmp, target)
    return target


__all__ = ["FTYPE_BY_NAME", "FTYPE_NAMES", "file_digest", "import_llama_cpp", "quantize"]
