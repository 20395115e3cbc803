"""Backends: the embedded llama.cpp engine, Ollama and OpenAI-compatible servers."""

from __future__ import annotations

from pytest_tokrate.backends.base import Backend, Event, Message, ModelInfo, Request

__all__ = ["Backend", "Event", "Message", "ModelInfo", "Request"]
