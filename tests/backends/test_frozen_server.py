"""A server that takes the connection but never answers is not "not running".

A stopped (SIGSTOP) or deadlocked server keeps its listening socket: the kernel completes
the TCP handshake and queues the connection, and nothing is ever read back. The error
must say so, and end within the timeout the user set, instead of advising to start a
server that is running. A refused connection keeps its "not reachable, start it".

The frozen servers here are real: a socket that listens and never accepts, and a real
HTTP server stopped with SIGSTOP.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from pytest_tokrate.backends.ollama import OllamaBackend
from pytest_tokrate.backends.openai import OpenAIBackend
from pytest_tokrate.errors import BackendUnavailable, RequestTimeout

TIMEOUT_S = 0.5
#: Generous: the probe must end near TIMEOUT_S, not near the 10 s start-up default.
TIME_BOX_S = 5.0
BACKENDS = {
    "ollama": lambda url, **kw: OllamaBackend("smollm2:135m", host=url, **kw),
    "openai": lambda url, **kw: OpenAIBackend("smollm2", host=f"{url}/v1", **kw),
}


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A socket that listens and never accepts: connections queue, nothing answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def stopped_url() -> Iterator[str]:
    """A real HTTP server, answering at first, then stopped with SIGSTOP."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:  # up and accepting before it is frozen
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("python -m http.server did not start within 10 s")
                time.sleep(0.05)
        os.kill(proc.pid, signal.SIGSTOP)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=10)


def _frozen_error(backend: str, url: str) -> str:
    start = time.monotonic()
    with pytest.raises(RequestTimeout) as info:
        BACKENDS[backend](url, timeout_s=TIMEOUT_S)
    assert time.monotonic() - start < TIME_BOX_S
    return str(info.value)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_a_silent_server_is_frozen_not_unreachable(backend: str, silent_url: str) -> None:
    message = _frozen_error(backend, silent_url)
    base = silent_url if backend == "ollama" else f"{silent_url}/v1"
    assert f"the server at {base} accepted the connection but sent nothing within 0.5 s" in (
        message
    )
    assert "(--tokrate-timeout; ReadTimeout" in message
    assert "it may be frozen or overloaded" in message
    assert "raise --tokrate-timeout" in message
    assert "curl " in message
    assert "not reachable" not in message and "start it" not in message


def test_a_stopped_server_is_frozen_not_unreachable(stopped_url: str) -> None:
    message = _frozen_error("ollama", stopped_url)
    assert "accepted the connection but sent nothing within 0.5 s" in message
    assert "not reachable" not in message


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_a_refused_connection_is_still_not_reachable(backend: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(BackendUnavailable) as info:
        BACKENDS[backend](url, timeout_s=TIMEOUT_S)
    message = str(info.value)
    assert "not reachable" in message and "start it" in message
    assert "accepted the connection" not in message


def test_a_frozen_server_errors_the_test_within_the_timeout(
    pytester: pytest.Pytester, silent_url: str
) -> None:
    """End to end: --tokrate-timeout bounds the start-up check, and the test errors."""
    pytester.makepyfile(
        """
        def test_speed(tokrate):
            tokrate.run("Say hi.", num_predict=2, rounds=1, warmup=0)
        """
    )
    start = time.monotonic()
    result = pytester.runpytest_subprocess(
        "--tokrate-backend=openai",
        "--tokrate-model=smollm2",
        f"--tokrate-host={silent_url}/v1",
        f"--tokrate-timeout={TIMEOUT_S}",
        "-p",
        "no:cacheprovider",
        timeout=60,
    )
    assert time.monotonic() - start < 30
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*accepted the connection but sent nothing within 0.5 s (--tokrate-timeout*"]
    )
    result.stdout.no_fnmatch_line("*not reachable*")
    result.stdout.no_fnmatch_line("*Traceback*")
