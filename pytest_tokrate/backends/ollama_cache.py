"""Defeating Ollama's prompt cache without changing the prompt, and checking it held.

Ollama has no per-request switch for its prompt cache: a request whose prompt starts like
the one before reuses that prefix from the KV cache, and ``prompt_eval_duration`` then
covers only the rest. So before each measured round an untimed *eviction* request, a
short raw prompt unrelated to any test, replaces the slot's cached prefix; the measured
request then shares at most a start-of-text token with what the slot holds
(``ALLOWANCE``). The same load-time options are sent, so the eviction never reloads the
model.

Each round is checked from the server's own counter ``prompt_eval_cached_count`` (Ollama
sends it since PR #17943, 2026; the official client drops fields it does not declare, so
the client used here keeps them). When a round still reused its prompt (several parallel
slots, or a host-memory prompt cache that restores evicted prefixes), the method
escalates for the next rounds: several evictions (one per slot, up to ``MAX_SLOTS``), then
a reload of the model (unload, then an empty load request: an empty cache). Servers too
old to send the counter cannot be checked; their rounds are recorded as unverified.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

#: The eviction prompt: raw text no chat template starts with.
EVICTION_PROMPT = "0 1 2 3"
#: Cached tokens an eviction cannot avoid: a start-of-text token both prompts begin with.
ALLOWANCE = 1
#: Evictions per round at the second step: enough for Ollama's usual OLLAMA_NUM_PARALLEL.
MAX_SLOTS = 4
#: The steps, in the order they are tried.
LADDER = ("evict", f"evict x{MAX_SLOTS}", "reload")

#: Options that decide how Ollama loads a model; an eviction with others would reload it.
_GENERATION_ONLY = ("num_predict", "stop", "seed", "temperature", "top_k", "top_p", "min_p")


def keeping_extra_fields(ollama: Any) -> type:
    """A subclass of the official client whose responses keep fields the client does not
    declare (``prompt_eval_cached_count``): its pydantic models ignore unknown keys.

    The response class is chosen in ``Client._request``; where a client version has no
    such method, the plain client is returned and rounds stay unverified.
    """
    base = ollama.Client
    if not callable(getattr(base, "_request", None)):
        return base  # type: ignore[no-any-return]
    wider: dict[type, type] = {}

    def widened(cls: type) -> type:
        if cls not in wider:
            config = {**getattr(cls, "model_config", {}), "extra": "allow"}
            wider[cls] = type(cls.__name__, (cls,), {"model_config": config})
        return wider[cls]

    def _request(self: Any, cls: type, *args: Any, **kwargs: Any) -> Any:
        return base._request(self, widened(cls), *args, **kwargs)

    return type("TokrateOllamaClient", (base,), {"_request": _request})


def cached_count(part: Any) -> int | None:
    """``prompt_eval_cached_count`` of a final chunk; ``None`` when the server sent none."""
    extra = getattr(part, "model_extra", None) or {}
    value = extra.get("prompt_eval_cached_count")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


class Evictor:
    """The cache-defeating steps of one backend: what to do before a round, and the
    escalation after a round that reused its prompt. Thread-safe."""

    def __init__(self, generate: Callable[..., Any]) -> None:
        self._generate = generate
        self._step = 0
        self._lock = threading.Lock()

    @property
    def method(self) -> str:
        return LADDER[self._step]

    def before_round(self, model: str, options: Mapping[str, Any], keep_alive: Any) -> None:
        """Untimed: make the next request find no prefix of its prompt in any slot."""
        load_options = {k: v for k, v in options.items() if k not in _GENERATION_ONLY}
        step = self.method
        if step == "reload":
            self._generate(model=model, prompt="", keep_alive=0)
            self._generate(model=model, prompt="", options=load_options or None,
                           keep_alive=keep_alive)  # fmt: skip
            return
        times = MAX_SLOTS if step != "evict" else 1
        for _ in range(times):
            self._generate(
                model=model,
                prompt=EVICTION_PROMPT,
                raw=True,
                options={**load_options, "num_predict": 1, "temperature": 0},
                keep_alive=keep_alive,
                stream=False,
            )

    def after_round(self, cached: int | None) -> None:
        """Climb one step when the round reused more than the allowance."""
        if cached is None or cached <= ALLOWANCE:
            return
        with self._lock:
            self._step = min(self._step + 1, len(LADDER) - 1)


__all__ = [
    "ALLOWANCE",
    "EVICTION_PROMPT",
    "LADDER",
    "MAX_SLOTS",
    "Evictor",
    "cached_count",
    "keeping_extra_fields",
]
