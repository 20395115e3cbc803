"""Fault injection for the stand-in servers: a registry of named faults.

A fault is armed on a server, for every request or for matching ones::

    server.faults.arm("busy", times=2)                        # the next two requests: 503
    server.faults.arm("drop", after=3, prompt_contains="X")   # requests whose prompt has X
    server.faults.arm("error_midstream", model="smollm2:135m")

or chosen per request with the headers ``X-Tokrate-Fault: NAME`` and
``X-Tokrate-Fault-Args: {"after": 3}`` (JSON). A fault has two hooks: ``answer`` may
answer the request itself (an error status, a dying server), and ``wrap`` transforms the
stream of :class:`~standin.httpserver.Piece` objects on its way to the wire: delay it,
cut it, corrupt it, drop the connection. The protocol (Ollama NDJSON or OpenAI SSE)
supplies the error shapes through ``ex.note["protocol"]``, so one fault serves both.

New faults subclass :class:`Fault` and register with :func:`register_fault`.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from .httpserver import DROP, END, Exchange, Piece


class WireProtocol(Protocol):
    """What a fault needs from the server's protocol."""

    def error_piece(self, message: str) -> Piece: ...

    def send_error(self, ex: Exchange, status: int, message: str) -> None: ...

    busy_message: str


class Fault:
    """Base class. ``params`` names the accepted keyword arguments and their defaults."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}

    def __init__(self, **kwargs: Any) -> None:
        unknown = set(kwargs) - set(self.params)
        if unknown:
            raise TypeError(
                f"fault {self.name!r} takes {sorted(self.params)}, got {sorted(unknown)}"
            )
        self.args = {**self.params, **kwargs}

    def answer(self, ex: Exchange, proto: WireProtocol) -> bool:
        """Answer the request instead of the engine; True when it did."""
        return False

    def wrap(self, ex: Exchange, proto: WireProtocol, pieces: Iterator[Piece]) -> Iterator[Piece]:
        return pieces


FAULTS: dict[str, type[Fault]] = {}


def register_fault(cls: type[Fault]) -> type[Fault]:
    if not cls.name or cls.name in FAULTS:
        raise ValueError(f"fault name {cls.name!r} is empty or taken")
    FAULTS[cls.name] = cls
    return cls


def _after(pieces: Iterator[Piece], count: int) -> Generator[Piece, None, Piece | None]:
    """Pass pieces through until ``count`` pieces with text went by. Stops early at the
    final piece, which it holds back and returns (``held = yield from _after(...)``)."""
    seen = 0
    if count <= 0:
        return None
    for piece in pieces:
        if piece.final:
            return piece
        yield piece
        if piece.text:
            seen += 1
            if seen >= count:
                return None
    return None


@register_fault
class SlowFirstToken(Fault):
    """Wait ``delay_s`` before the engine starts, so the first piece (and the response
    headers, sent with it) come late; the engine is not held while waiting."""

    name = "slow_first_token"
    params: ClassVar[dict[str, Any]] = {"delay_s": 2.0}

    def wrap(self, ex: Exchange, proto: WireProtocol, pieces: Iterator[Piece]) -> Iterator[Piece]:
        time.sleep(float(self.args["delay_s"]))
        yield from pieces


@register_fault
class Stall(Fault):
    """After ``after`` text pieces, go quiet for ``delay_s`` (a read timeout mid-stream).
    The engine stays busy meanwhile, as a stuck server's would."""

    name = "stall"
    params: ClassVar[dict[str, Any]] = {"after": 2, "delay_s": 5.0}

    def wrap(self, ex: Exchange, proto: WireProtocol, pieces: Iterator[Piece]) -> Iterator[Piece]:
        held = yield from _after(pieces, int(self.args["after"]))
        time.sleep(float(self.args["delay_s"]))
        if held is not None:
            yield held
        yield from pieces


@register_fault
class Paced(Fault):
    """A server whose speed does not drift: text pieces leave at ``tokens_per_second``
    (one token per piece, the engine's own pace being faster), and the final piece's
    ``eval_duration`` is the time the paced stream took from its first token to its last,
    as the server would time it. A dedicated inference box is this steady; this shared
    2-core machine is not (the stand-in's own decode rate moves by 10-27% between runs
    minutes apart), so tests of the gate's verdicts on server figures pace the server:
    14 tok/s against 20 is a server 30% slower, and nothing else moves."""

    name = "paced"
    #: ``spread``: each response's rate drawn uniformly within +-spread of it (seeded), for
    #: a server whose speed does vary from request to request.
    params: ClassVar[dict[str, Any]] = {"tokens_per_second": 20.0, "spread": 0.0, "seed": 0}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rng = random.Random(int(self.args["seed"]))

    def wrap(self, ex: Exchange, proto: WireProtocol, pieces: Iterator[Piece]) -> Iterator[Piece]:
        spread = float(self.args["spread"])
        rate = float(self.args["tokens_per_second"]) * (1 + self._rng.uniform(-spread, spread))
        step = 1.0 / rate
        first: float | None = None
        sent = 0
        for piece in pieces:
            if piece.text:
                now = time.perf_counter()
                if first is None:
                    first = now
                time.sleep(max(0.0, first + sent * step - now))
                sent += 1
            if piece.final and isinstance(piece.obj, dict) and first is not None:
                elapsed = max(time.perf_counter() - first, step)
                piece.obj["eval_duration"] = round(elapsed * 1e9)
                piece.obj["total_duration"] = max(
                    int(piece.obj.get("total_duration") or 0), piece.obj["eval_duration"]
                )
            yield piece


@register_fault
class Busy(Fault):
    """The server's queue is full: 503 with the server's own message."""

    name = "busy"
    params: ClassVar[dict[str, Any]] = {"status": 503}

    def answer(self, ex: Exchange, proto: WireProtocol) -> bool:
        proto.send_error(ex, int(self.args["status"]), proto.busy_message)
        return True


@register_fault
class Status(Fault):
    """Answer with an error status and message before any byte of the stream."""

    name = "status"
    params: ClassVar[dict[str, Any]] = {
        "status": 500,
        "message": "model runner has unexpectedly stopped",
    }

    def answer(self, ex: Exchange, proto: WireProtocol) -> bool:
        proto.send_error(ex, int(self.args["status"]), str(self.args["message"]))
        return True


@register_fault
class ErrorMidstream(Fault):
    """After ``after`` text pieces, send the protocol's error object and end the body."""

    name = "error_midstream"
    params: ClassVar[dict[str, Any]] = {
        "after": 2,
        "message": "model runner has unexpectedly stopped, this may be due to resource "
        "limitations or an internal error, check ollama server logs for details",
    }

    def wrap(self, ex: Exchange, proto: WireProtocol, pieces: Iterator[Piece]) -> Iterator[Piece]:
        yield from _after(pieces, int(self.args["after"]))
        yield proto.error_piece(str(self.args["message"]))
        yield END


@register_fault
class Drop(Fault):
    """After ``after`` text pieces, drop the connection (no terminating chunk)."""

    name = "drop"
    params: ClassVar[dict[str, Any]] = {"after": 2}

    def wrap(self, ex: Exchange, proto: WireProtocol, pieces: Iterator[Piece]) -> Iterator[Piece]:
        yield from _after(pieces, int(self.args["after"]))
        yield DROP


@register_fault
class Truncate(Fault):
    """After ``after`` text pieces, end the body cleanly, without the final piece."""

    name = "truncate"
    params: ClassVar[dict[str, Any]] = {"after": 2}

    def wrap(self, ex: Exchange, proto: WireProtocol, pieces: Iterator[Piece]) -> Iterator[Piece]:
        yield from _after(pieces, int(self.args["after"]))
        yield END


@register_fault
class Malformed(Fault):
    """After ``after`` text pieces, send ``line`` verbatim (not JSON), then carry on."""

    name = "malformed"
    params: ClassVar[dict[str, Any]] = {"after": 2, "line": '{"model":"x","created_at":'}

    def wrap(self, ex: Exchange, proto: WireProtocol, pieces: Iterator[Piece]) -> Iterator[Piece]:
        held = yield from _after(pieces, int(self.args["after"]))
        yield Piece(raw=str(self.args["line"]).encode())
        if held is not None:
            yield held
        yield from pieces


def _set_path(obj: dict[str, Any], path: str, value: Any, delete: bool = False) -> None:
    keys = path.split(".")
    for key in keys[:-1]:
        nxt = obj.get(key)
        if not isinstance(nxt, dict):
            return
        obj = nxt
    if delete:
        obj.pop(keys[-1], None)
    else:
        obj[keys[-1]] = value


@register_fault
class FinalFields(Fault):
    """Rewrite fields of the final piece: ``set`` (dotted paths -> values) and ``drop``.

    Wrong types (``eval_count: "many"``), absurd values (negative durations, zero
    ``eval_duration``, huge counts) and missing metrics all go through here.
    """

    name = "final_fields"
    params: ClassVar[dict[str, Any]] = {"set": {}, "drop": []}

    def wrap(self, ex: Exchange, proto: WireProtocol, pieces: Iterator[Piece]) -> Iterator[Piece]:
        for piece in pieces:
            if piece.final and piece.obj is not None:
                for path, value in dict(self.args["set"]).items():
                    _set_path(piece.obj, path, value)
                for path in list(self.args["drop"]):
                    _set_path(piece.obj, path, None, delete=True)
            yield piece


@register_fault
class WrongType(FinalFields):
    """Shorthand: one field of the final piece gets a value of the wrong type."""

    name = "wrong_type"
    params: ClassVar[dict[str, Any]] = {"field": "eval_count", "value": "many"}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.args = {"set": {self.args["field"]: self.args["value"]}, "drop": []}


@register_fault
class Die(Fault):
    """The server process dies: this connection drops and the listener closes, at once
    or (``after`` > 0) after that many text pieces of the stream."""

    name = "die"
    params: ClassVar[dict[str, Any]] = {"after": 0}

    @staticmethod
    def _die(ex: Exchange) -> None:
        # The listener closes before the client sees its connection drop, so the next
        # request finds nothing listening, as after a real crash (handlers run in their
        # own threads, so stopping the server from here cannot wait for itself).
        server = ex.note.get("server")
        if server is not None:
            server.stop()
        ex.abort()

    def answer(self, ex: Exchange, proto: WireProtocol) -> bool:
        if int(self.args["after"]) > 0:
            return False
        self._die(ex)
        return True

    def wrap(self, ex: Exchange, proto: WireProtocol, pieces: Iterator[Piece]) -> Iterator[Piece]:
        yield from _after(pieces, int(self.args["after"]))
        self._die(ex)
        yield DROP


@register_fault
class CutLine(Fault):
    """After ``after`` text pieces, send the first ``fraction`` of the next object's
    serialised bytes and end the body there: a truncated NDJSON line or SSE event."""

    name = "cut_line"
    params: ClassVar[dict[str, Any]] = {"after": 2, "fraction": 0.5}

    def wrap(self, ex: Exchange, proto: WireProtocol, pieces: Iterator[Piece]) -> Iterator[Piece]:
        held = yield from _after(pieces, int(self.args["after"]))
        victim = held if held is not None else next(pieces, None)
        if victim is not None and victim.obj is not None:
            data = json.dumps(victim.obj, separators=(",", ":")).encode()
            yield Piece(raw=data[: max(1, int(len(data) * float(self.args["fraction"])))])
        yield END


def _replace_text(obj: Any, old: str, new: str) -> Any:
    if isinstance(obj, dict):
        return {k: _replace_text(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace_text(v, old, new) for v in obj]
    return new if isinstance(obj, str) and obj == old else obj


@register_fault
class IdleChunks(Fault):
    """After ``after`` text pieces, keep the stream busy with copies of the last piece
    whose text is emptied, one every ``interval_s`` for ``duration_s``, then carry on: a
    stuck server that never trips a per-read timeout."""

    name = "idle_chunks"
    params: ClassVar[dict[str, Any]] = {"after": 1, "interval_s": 0.1, "duration_s": 5.0}

    def wrap(self, ex: Exchange, proto: WireProtocol, pieces: Iterator[Piece]) -> Iterator[Piece]:
        seen = 0
        for piece in pieces:
            yield piece
            if piece.text and piece.obj is not None and not piece.final:
                seen += 1
                if seen == int(self.args["after"]):
                    idle = Piece(obj=_replace_text(piece.obj, piece.text, ""))
                    end = time.monotonic() + float(self.args["duration_s"])
                    while time.monotonic() < end:
                        time.sleep(float(self.args["interval_s"]))
                        yield idle


@register_fault
class InjectText(Fault):
    """Replace the text of the ``index``-th text piece with ``text`` (model output a
    report must escape, a planted secret, ...); the engine's counts are left as they are."""

    name = "inject_text"
    params: ClassVar[dict[str, Any]] = {"text": "<script>alert(1)</script>", "index": 0}

    def wrap(self, ex: Exchange, proto: WireProtocol, pieces: Iterator[Piece]) -> Iterator[Piece]:
        seen = 0
        for piece in pieces:
            if piece.text and piece.obj is not None and not piece.final:
                if seen == int(self.args["index"]):
                    text = str(self.args["text"])
                    piece = Piece(obj=_replace_text(piece.obj, piece.text, text), text=text)
                seen += 1
            yield piece


@dataclass
class Arm:
    """One armed fault and which requests it applies to."""

    fault: Fault
    times: int | None = None  # None: every matching request
    model: str | None = None
    path: str | None = None
    prompt_contains: str | None = None
    fired: int = 0

    def matches(self, ex: Exchange, model: str | None, prompt: str) -> bool:
        if self.path is not None and ex.path != self.path:
            return False
        if self.model is not None and (model or "").lower() != self.model.lower():
            return False
        return self.prompt_contains is None or self.prompt_contains in prompt


@dataclass
class FaultPlan:
    """The faults armed on one server."""

    arms: list[Arm] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def arm(
        self,
        name: str,
        *,
        times: int | None = None,
        model: str | None = None,
        path: str | None = None,
        prompt_contains: str | None = None,
        **params: Any,
    ) -> Arm:
        if name not in FAULTS:
            raise KeyError(f"unknown fault {name!r}; known: {', '.join(sorted(FAULTS))}")
        arm = Arm(FAULTS[name](**params), times, model, path, prompt_contains)
        with self._lock:
            self.arms.append(arm)
        return arm

    def clear(self) -> None:
        with self._lock:
            self.arms.clear()

    def select(self, ex: Exchange, model: str | None, prompt: str) -> list[Fault]:
        """The faults for this request (consuming one use of each limited arm)."""
        chosen: list[Fault] = []
        header = ex.headers.get("X-Tokrate-Fault")
        if header:
            args = json.loads(ex.headers.get("X-Tokrate-Fault-Args") or "{}")
            chosen.append(FAULTS[header.strip()](**args))
        with self._lock:
            for arm in self.arms:
                if arm.times is not None and arm.fired >= arm.times:
                    continue
                if arm.matches(ex, model, prompt):
                    arm.fired += 1
                    chosen.append(arm.fault)
        return chosen


__all__ = ["DROP", "END", "FAULTS", "Arm", "Fault", "FaultPlan", "WireProtocol", "register_fault"]
