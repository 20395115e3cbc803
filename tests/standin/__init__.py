"""Protocol-exact stand-in servers over the real embedded engine (test infrastructure).

No Ollama (or llama-server) can be installed where the tests run, so the server backends
are tested against local HTTP servers that speak the same wire protocols and answer with
real tokens and real timings from pytest-tokrate's embedded llama.cpp engine:

- :class:`OllamaStandin`: Ollama's API (``/api/chat``, ``/api/generate``, ``/api/show``,
  ``/api/ps``, ``/api/tags``, ``/api/version``), see ``ollama_server.py``;
- :class:`OpenAIStandin`: ``/v1/chat/completions`` in three flavours (llama.cpp, vLLM,
  bare), see ``openai_server.py``;
- faults on demand (``server.faults.arm("drop", after=3)``), see ``faults.py``;
- ``EngineHost(replay=True)`` streams real tokens recorded once, with no delay.

As pytest fixtures: ``ollama_standin``, ``openai_standin``, ``standin_factory``
(``fixtures.py``, loaded by ``tests/conftest.py``). From a shell::

    python -m standin ollama --port 11434        # run from tests/ (or with it on sys.path)
"""

from __future__ import annotations

from .engine import DEFAULT_MODELS, EngineHost
from .faults import FAULTS, Fault, FaultPlan, register_fault
from .httpserver import DROP, END, Piece
from .ollama_server import OllamaStandin
from .openai_server import OpenAIStandin

__all__ = [
    "DEFAULT_MODELS",
    "DROP",
    "END",
    "FAULTS",
    "EngineHost",
    "Fault",
    "FaultPlan",
    "OllamaStandin",
    "OpenAIStandin",
    "Piece",
    "register_fault",
]
