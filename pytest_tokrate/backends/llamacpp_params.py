"""Load-time settings of the embedded engine, with the defaults of llama.cpp's own tools.

llama-cpp-python's ``Llama`` has defaults of its own that differ from those of
``llama-bench``, ``llama-server`` and ``llama-cli`` (common/common.h, llama-bench.cpp):
flash attention off instead of ``auto``, a logical batch of 512 instead of 2048. The
embedded engine follows llama.cpp's tools, so that its figures are the engine's figures
(docs/engine-parity.md measures the difference). Every setting here is fixed when a
context is created, so each distinct :class:`LoadParams` is its own context.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_tokrate.core.settings import DEFAULT_NUM_CTX
from pytest_tokrate.errors import UsageError

#: llama.cpp's ``llama_flash_attn_type`` (include/llama.h).
FLASH_ATTN_TYPES = {"auto": -1, "off": 0, "on": 1}
#: ggml type numbers of the KV cache types llama.cpp's tools accept (ggml/include/ggml.h).
GGML_TYPES = {
    "f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8,
    "iq4_nl": 20, "bf16": 30,
}  # fmt: skip

#: llama.cpp's tools' logical and physical batch sizes (common/common.h ``n_batch``,
#: ``n_ubatch``); llama-cpp-python's ``Llama`` defaults the logical one to 512.
DEFAULT_BATCH = 2048
DEFAULT_UBATCH = 512


@dataclass(frozen=True)
class LoadParams:
    """What a context is created with; equal values share one context."""

    n_ctx: int = DEFAULT_NUM_CTX
    n_batch: int = DEFAULT_BATCH
    n_ubatch: int = DEFAULT_UBATCH
    flash_attn: str = "auto"
    type_k: str = "f16"
    type_v: str = "f16"
    use_mmap: bool = True

    def settings(self, flash_attn_active: bool | None) -> dict[str, Any]:
        """The values the engine ran with, in option names: recorded with every result.
        ``flash_attn_active`` is what ``auto`` resolved to (``None``: not known)."""
        return {
            "flash_attn": self.flash_attn,
            "flash_attn_active": flash_attn_active,
            "type_k": self.type_k,
            "type_v": self.type_v,
            "num_batch": self.n_batch,
            "num_ubatch": self.n_ubatch,
            "use_mmap": self.use_mmap,
        }

    def describe(self) -> str:
        """``num_ctx=2048, num_batch=2048, ...``: for error messages."""
        shown = {"num_ctx": self.n_ctx, **self.settings(None)}
        shown.pop("flash_attn_active")
        return ", ".join(f"{key}={value}" for key, value in shown.items())


def load_params(opts: Mapping[str, Any]) -> LoadParams:
    """The load-time settings of a request's options (validated by core/settings.py).

    As llama.cpp does, the logical batch is capped at the context and the physical one
    at the logical one, so the recorded values are the ones in effect.
    """
    n_ctx = int(opts.get("num_ctx") or DEFAULT_NUM_CTX)
    n_batch = min(int(opts.get("num_batch") or DEFAULT_BATCH), n_ctx)
    mmap = opts.get("use_mmap")
    params = LoadParams(
        n_ctx=n_ctx,
        n_batch=n_batch,
        n_ubatch=min(int(opts.get("num_ubatch") or DEFAULT_UBATCH), n_batch),
        flash_attn=str(opts.get("flash_attn") or "auto"),
        type_k=str(opts.get("type_k") or "f16"),
        type_v=str(opts.get("type_v") or "f16"),
        use_mmap=True if mmap is None else bool(mmap),
    )
    if params.flash_attn == "off" and params.type_v not in ("f32", "f16", "bf16"):
        # llama.cpp refuses the context (src/llama-context.cpp): say why before it does.
        raise UsageError(
            f"option 'type_v': a quantized V cache ({params.type_v}) needs flash attention, "
            "but flash_attn is off: set flash_attn=auto or on, or type_v=f16."
        )
    return params


@functools.cache
def _llama_class(base: type) -> type:
    """llama-cpp-python's ``Llama`` (``base``), taking llama.cpp's three flash attention
    types.

    llama-cpp-python 0.3.36 turns its boolean ``flash_attn`` into ENABLED or DISABLED
    (llama.py, ``context_params.flash_attn_type``), so ``auto`` cannot be passed, and the
    context is created inside ``__init__`` from ``self.context_params``. Reading that
    attribute through this property sets the type asked for, so the context is created
    with it, once.
    """

    class _Llama(base):  # type: ignore[misc]
        def __init__(self, *args: Any, flash_attn_type: int, **kwargs: Any) -> None:
            self._flash_attn_type = flash_attn_type
            super().__init__(*args, **kwargs)

        @property
        def context_params(self) -> Any:
            params = self.__dict__["_tokrate_context_params"]
            params.flash_attn_type = self._flash_attn_type
            return params

        @context_params.setter
        def context_params(self, value: Any) -> None:
            self.__dict__["_tokrate_context_params"] = value

    return _Llama


_log_lock = threading.Lock()


@contextlib.contextmanager
def _llama_log(lc: Any) -> Iterator[list[str]]:
    """llama.cpp's log lines while the block runs (it says there what ``auto`` chose);
    llama-cpp-python's own log callback is put back after."""
    lines: list[str] = []

    @lc.llama_log_callback  # type: ignore[untyped-decorator]
    def capture(level: int, text: bytes, user_data: Any) -> None:
        lines.append(text.decode("utf-8", errors="replace"))

    from llama_cpp._logger import llama_log_callback

    with _log_lock:
        lc.llama_log_set(capture, ctypes.c_void_p(0))
        try:
            yield lines
        finally:
            lc.llama_log_set(llama_log_callback, ctypes.c_void_p(0))


def flash_attn_active(mode: str, log: list[str]) -> bool | None:
    """Whether flash attention runs, as llama.cpp's log says (src/llama-context.cpp): the
    type the context got (``flash_attn = enabled``) and, for ``auto``, what it resolved to
    ("Flash Attention enabled" / "... not supported, set to disabled"), or that a quantized
    V cache turned it on. Without those lines: the mode asked for, ``None`` for auto."""
    text = "".join(log)
    if "Flash Attention not supported" in text or "forcing off" in text:
        return False
    if "Flash Attention enabled" in text or "enabling flash_attn" in text:
        return True
    found = re.search(r"flash_attn\s*=\s*(enabled|disabled)", text)
    if found is not None:
        return found.group(1) == "enabled"
    return None if mode == "auto" else mode == "on"


def create_llama(lc: Any, path: str, params: LoadParams, threads: int) -> tuple[Any, bool | None]:
    """A ``Llama`` with these settings, and whether flash attention is active in it."""
    cls = _llama_class(lc.Llama)
    with (
        _llama_log(lc) as log,
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stderr(devnull),
    ):
        llm = cls(
            model_path=path,
            n_ctx=params.n_ctx,
            n_batch=params.n_batch,
            n_ubatch=params.n_ubatch,
            n_threads=threads,
            n_threads_batch=threads,
            type_k=GGML_TYPES[params.type_k],
            type_v=GGML_TYPES[params.type_v],
            use_mmap=params.use_mmap,
            verbose=False,
            no_perf=False,
            flash_attn_type=FLASH_ATTN_TYPES[params.flash_attn],
        )
    return llm, flash_attn_active(params.flash_attn, log)


__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_UBATCH",
    "FLASH_ATTN_TYPES",
    "GGML_TYPES",
    "LoadParams",
    "create_llama",
    "flash_attn_active",
    "load_params",
]
