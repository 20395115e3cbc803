"""The prompt cache of OpenAI-compatible servers in measured rounds, without I/O: which
method defeats it without changing the prompt's text, the request fields that apply it,
and, where a server offers none, a note saying so.

llama.cpp ``llama-server``: ``"cache_prompt": false`` (``cache_prompt=false``)
    Read in llama-cpp-python 0.3.36's vendored llama.cpp: the per-request field
    (tools/server/server-schema.cpp, default from ``--cache-prompt``, on) decides, in
    server-context.cpp where a slot takes its task, whether ``n_past`` is the slot's
    common prefix with the new prompt or 0. At 0 the slot keeps no token
    (``keep_first(0)``) and evaluates the whole prompt. This also covers the host-memory
    prompt cache (``--cache-ram``) and context checkpoints: a saved prompt restored into
    the slot at selection is discarded by the same ``n_past = 0``, and checkpoints are
    only consulted when ``n_past > 0``. ``timings.cache_n`` and
    ``usage.prompt_tokens_details.cached_tokens`` both report ``n_past``: 0 for such a
    round, which the runner verifies.
vLLM: a fresh random ``cache_salt`` per measured round (``cache_salt``)
    The salt goes into the hash of the prompt's first block, so no block cached under
    another salt (or none) matches (vllm-project/vllm#17045). First released in 0.9.0
    (the fix of CVE-2025-46570, advisory GHSA-4qjh-9fv9-r85r); older releases drop
    unknown fields, so a salt would do nothing there and no method is claimed. A 0.9
    server on the V0 engine refuses the field with HTTP 400; the backend then drops it.
Any other server: no per-request switch exists (``none``); the exact text is sent and the
    rounds' ``usage.prompt_tokens_details.cached_tokens``, where reported, still flag a
    round that reused a cache (core/cache.py).

``--tokrate-cache=nonce`` keeps the old way (a nonce line before the system prompt, put
in by :class:`~pytest_tokrate.backends.base.Request`); no field is sent then.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from pytest_tokrate.backends.base import Request
from pytest_tokrate.backends.openai_facts import LLAMACPP, VLLM

CACHE_PROMPT_OFF = "cache_prompt=false"
CACHE_SALT = "cache_salt"
NO_METHOD = "none"
#: The first vLLM release whose chat and completion requests take ``cache_salt``.
VLLM_CACHE_SALT_SINCE = (0, 9, 0)

_RELEASE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def release(version: object) -> tuple[int, int, int] | None:
    """``(0, 10, 1)`` from ``"vllm 0.10.1+cu128"`` or ``"0.10.1"``; ``None`` if no number."""
    found = _RELEASE.search(version) if isinstance(version, str) else None
    if found is None:
        return None
    major, minor, patch = found.groups()
    return int(major), int(minor), int(patch or 0)


def cache_method(server: str | None, version: str | None) -> tuple[str, str | None]:
    """How measured rounds defeat the prompt cache of a server of this kind (``LLAMACPP``,
    ``VLLM`` or ``None``) and version, and a note where they cannot."""
    if server == LLAMACPP:
        return CACHE_PROMPT_OFF, None
    if server == VLLM:
        number = release(version)
        if number is not None and number >= VLLM_CACHE_SALT_SINCE:
            return CACHE_SALT, None
        since = ".".join(map(str, VLLM_CACHE_SALT_SINCE))
        return NO_METHOD, (
            f"{version or 'vLLM (version unknown)'} predates cache_salt ({since}): automatic "
            "prefix caching may serve measured rounds from cache; the rounds' cached_tokens "
            "(--enable-prompt-tokens-details) show when it did"
        )
    return NO_METHOD, (
        "the server offers no per-request switch for its prompt cache, so prefix caching "
        "may apply; the rounds' usage.prompt_tokens_details.cached_tokens, where reported, "
        "show when it did (--tokrate-cache=nonce defeats it by changing the prompt)"
    )


def refused_salt(body: dict[str, Any], message: str) -> str | None:
    """When the server's error ``message`` refuses the ``cache_salt`` of ``body`` (vLLM 0.9
    on its V0 engine does, with HTTP 400): the salt is taken out of ``body`` and the note
    for the rounds sent without it is returned; ``None`` for any other error."""
    if CACHE_SALT not in body or CACHE_SALT not in message:
        return None
    del body[CACHE_SALT]
    return (
        f"the server refused cache_salt ({message}); rounds were sent without it, so "
        "prefix caching may apply"
    )


def cache_fields(method: str, request: Request) -> dict[str, Any]:
    """The request fields that keep a measured round (``bust_cache`` set, no nonce) out of
    the server's prompt cache by ``method``; none for other rounds."""
    if not request.bust_cache or request.cache_nonce is not None:
        return {}
    if method == CACHE_PROMPT_OFF:
        return {"cache_prompt": False}
    if method == CACHE_SALT:
        # 32 random bytes: no earlier round, nor any other client, can share the salt.
        return {"cache_salt": secrets.token_urlsafe(32)}
    return {}


__all__ = [
    "CACHE_PROMPT_OFF",
    "CACHE_SALT",
    "NO_METHOD",
    "VLLM_CACHE_SALT_SINCE",
    "cache_fields",
    "cache_method",
    "refused_salt",
    "release",
]
