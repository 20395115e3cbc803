"""A small threaded HTTP/1.1 server with chunked streaming, the base of both stand-ins.

One thread per connection (``ThreadingHTTPServer``), keep-alive, ``TCP_NODELAY`` on every
connection (Go's net/http sets it too, so each streamed line leaves at once), response
headers sent lazily with the first streamed piece (as Go does), and an ``abort()`` that
drops the connection mid-body for the fault tests.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .wire import go_json


@dataclass
class Piece:
    """One unit of a streamed body: a JSON object, or raw bytes written as they are."""

    obj: dict[str, Any] | None = None
    raw: bytes | None = None
    final: bool = False  # the object carrying the metrics (done:true / usage / finish)
    text: str = ""  # the generated text this piece carries (faults count these)


#: Yielded by a fault: drop the connection now (no terminating chunk).
DROP = Piece(raw=b"")
#: Yielded by a fault: end the body now, cleanly, without the protocol's trailer.
END = Piece(raw=b"")


class Exchange:
    """One request and its response."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self.handler = handler
        self.method = handler.command
        split = urlsplit(handler.path)
        self.path = split.path
        self.query = split.query
        self.headers = handler.headers
        self.t_start_ns = time.perf_counter_ns()
        self.headers_sent = False
        self.finished = False
        self._body: bytes | None = None
        self.note: dict[str, Any] = {}  # what a protocol handler wants faults to see

    def body(self) -> bytes:
        if self._body is None:
            length = int(self.headers.get("Content-Length") or 0)
            self._body = self.handler.rfile.read(length) if length > 0 else b""
        return self._body

    def _write(self, data: bytes) -> None:
        self.handler.wfile.write(data)

    def send(self, status: int, body: bytes, content_type: str) -> None:
        h = self.handler
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if self.method != "HEAD":
            self._write(body)
        self.headers_sent = self.finished = True

    def send_json(
        self, status: int, obj: Any, content_type: str = "application/json; charset=utf-8"
    ) -> None:
        self.send(status, go_json(obj), content_type)

    def send_text(self, status: int, text: str) -> None:
        self.send(status, text.encode(), "text/plain; charset=utf-8")

    def begin_stream(self, content_type: str) -> None:
        h = self.handler
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        self.headers_sent = True

    def write_chunk(self, data: bytes) -> None:
        if data:
            self._write(b"%x\r\n%b\r\n" % (len(data), data))

    def end_stream(self) -> None:
        self._write(b"0\r\n\r\n")
        self.finished = True

    def abort(self) -> None:
        """Drop the connection without finishing the body."""
        self.handler.close_connection = True
        with contextlib.suppress(OSError):
            self.handler.connection.shutdown(socket.SHUT_RDWR)
        self.finished = True


Route = Callable[[Exchange], None]


def write_stream(
    ex: Exchange,
    pieces: Iterator[Piece],
    frame: Callable[[Piece], bytes],
    content_type: str,
    on_error: Callable[[Exchange, Exception], Piece | None],
    trailer: bytes = b"",
) -> None:
    """Write pieces as a chunked body. An exception from ``pieces`` becomes an error
    answer before the first byte, else ``on_error``'s piece (an error line) and the end."""
    try:
        try:
            for piece in pieces:
                if piece is DROP:
                    ex.abort()
                    return
                if piece is END:
                    if not ex.headers_sent:
                        ex.begin_stream(content_type)
                    ex.end_stream()
                    return
                if not ex.headers_sent:
                    ex.begin_stream(content_type)
                ex.write_chunk(frame(piece))
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as exc:
            piece = on_error(ex, exc)
            if piece is None:
                return
            if not ex.headers_sent:
                ex.begin_stream(content_type)
            ex.write_chunk(frame(piece))
            ex.end_stream()
            return
        if not ex.headers_sent:
            ex.begin_stream(content_type)
        ex.write_chunk(trailer)
        ex.end_stream()
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tokrate-standin"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _dispatch(self) -> None:
        ex = Exchange(self)
        try:
            self.server.app.handle(ex)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug in the stand-in: answer 500 so the client sees it
            if not ex.headers_sent:
                with contextlib.suppress(OSError):
                    ex.send_json(500, {"error": f"stand-in bug: {type(exc).__name__}: {exc}"})
            else:
                ex.abort()
        if not ex.finished:
            ex.abort()

    do_GET = do_POST = do_HEAD = do_DELETE = do_PUT = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: StandinServer) -> None:
        self.app = app
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (timeouts, dropped streams) are part of the tests.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class StandinServer:
    """Base class: owns the listening socket and the serving thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self.requests = 0
        self.request_log: list[tuple[str, str]] = []
        self._count_lock = threading.Lock()

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> StandinServer:
        self._httpd = _Server(self._address, self)
        self._port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        """The port it listens (or, once stopped, listened) on."""
        assert self._port is not None, "start() the server first"
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def stop_soon(self) -> None:
        """Stop from inside a request handler (``shutdown`` would wait for itself)."""
        if self._httpd is not None:
            threading.Thread(target=self.stop, daemon=True).start()

    def __enter__(self) -> StandinServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- dispatch -----------------------------------------------------------------------

    def handle(self, ex: Exchange) -> None:
        with self._count_lock:
            self.requests += 1
            self.request_log.append((ex.method, ex.path))
            del self.request_log[:-200]
        self.route(ex)

    def route(self, ex: Exchange) -> None:  # pragma: no cover - overridden
        ex.send_text(404, "404 page not found")


__all__ = ["DROP", "END", "Exchange", "Piece", "StandinServer", "write_stream"]
