"""Backends: the embedded llama.cpp engine, Ollama and OpenAI-compatible servers."""

from __future__ import annotations

from .base import Backend, Event, Message, ModelInfo, Request

__all__ = ["Backend", "Event", "Message", "ModelInfo", "Request"]
