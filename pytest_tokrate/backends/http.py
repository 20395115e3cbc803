"""What the two server backends (Ollama, OpenAI-compatible) share over HTTP.

Their common constructor part (model, address, declared server settings, the busy-retry
policy), the bounded back-off for a busy server (Ollama answers 503 beyond its queue,
OpenAI-compatible servers 429 or 503), the httpx timeouts and connection limits, and the
words their error messages are made of. httpx itself is passed in, never imported here,
so that importing a backend module stays cheap.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from pytest_tokrate.backends.hosts import Host
from pytest_tokrate.errors import BackendUnavailable, InfrastructureError, RequestTimeout

#: Requests the client keeps in flight at once. Ollama queues what its slots cannot serve
#: (OLLAMA_MAX_QUEUE, default 512) and answers 503 beyond that.
MAX_PARALLEL = 512
DEFAULT_BUSY_RETRIES = 3
DEFAULT_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
#: Connect timeout, and the whole timeout of the requests that only ask what a server is.
PROBE_TIMEOUT_S = 10.0


def import_client(*modules: str, backend: str, package: str, extra: str) -> tuple[Any, ...]:
    """Import the client libraries a backend needs, or say which extra installs them."""
    try:
        return tuple(importlib.import_module(name) for name in modules)
    except ImportError as exc:
        raise BackendUnavailable(
            f"the {backend} needs {package} ({exc}): install it with "
            f'`pip install "pytest-tokrate[{extra}]"`.'
        ) from None


def backoff_delays(retries: int, base_s: float) -> list[float]:
    """Waits before each retry of a busy server: base, 2*base, 4*base, ... capped."""
    return [min(base_s * 2**i, MAX_BACKOFF_S) for i in range(retries)]


class BusyRetry:
    """The retries of one request to a busy server: how many were made, and the waits."""

    __slots__ = ("_delays", "_sleep", "count")

    def __init__(self, retries: int, base_s: float, sleep: Callable[[float], None]) -> None:
        self._delays = backoff_delays(retries, base_s)
        self._sleep = sleep
        self.count = 0

    def left(self) -> bool:
        return self.count < len(self._delays)

    def wait(self) -> None:
        """Sleep the next back-off step before the request is sent again."""
        self._sleep(self._delays[self.count])
        self.count += 1

    def spent(self) -> str:
        """How much retrying was done, for the message when the server stays busy."""
        waited = sum(self._delays[: self.count])
        return f"after {self.count} retries over {waited:.1f} s"


def request_timeout(httpx: Any, timeout_s: float) -> Any:
    """httpx's timeout for one request: the request's own, connecting at most the probe's."""
    return httpx.Timeout(timeout_s, connect=min(timeout_s, PROBE_TIMEOUT_S))


def connection_limits(httpx: Any) -> Any:
    """Keep a connection alive for every request that may be in flight at once."""
    return httpx.Limits(max_connections=None, max_keepalive_connections=MAX_PARALLEL)


def reason(exc: BaseException) -> str:
    """An exception as error text: its type, and its message when it has one."""
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def silence_error(
    httpx: Any, exc: BaseException, url: str, waited: tuple[float, str], check: str
) -> BackendUnavailable | RequestTimeout | None:
    """The error for a timeout before the server said anything, or ``None`` for any other
    exception. ``waited`` is the read timeout and where it came from; ``check`` a command
    that shows whether the server answers.

    Neither case is "not running, start it" (that is a refused connection or an unknown
    host): a stopped (SIGSTOP) or deadlocked server still has its socket, so the kernel
    accepts the connection and nothing is ever read back; a connect that times out had
    no answer at all (host down, packets dropped, or a frozen server's queue full).
    """
    timeout_s, source = waited
    if isinstance(exc, httpx.ConnectTimeout):
        return BackendUnavailable(
            f"nothing answered the connection to {url} within "
            f"{min(timeout_s, PROBE_TIMEOUT_S):g} s ({reason(exc)}): the host may be down, a "
            "firewall may drop the packets, or the server may be frozen with its queue full. "
            f"Check that it runs and answers (`{check}`), or set --tokrate-host to where it "
            "runs."
        )
    if isinstance(exc, httpx.TimeoutException):  # ReadTimeout, WriteTimeout, PoolTimeout
        return RequestTimeout(
            f"the server at {url} accepted the connection but sent nothing within "
            f"{timeout_s:g} s ({source}; {reason(exc)}): it may be frozen or overloaded. "
            f"Check it (`{check}`), or raise --tokrate-timeout if it is only slow."
        )
    return None


def discarded(received: int) -> str:
    """What became of a round that failed after ``received`` chunks of text."""
    if received:
        return f"the partial round ({received} chunks) was discarded"
    return "the round was discarded"


class ServerOptions(TypedDict, total=False):
    """The keyword arguments every server backend's constructor takes (see
    :class:`ServerBackend` for their defaults)."""

    server_settings: Mapping[str, object] | None
    busy_retries: int
    backoff_s: float
    sleep: Callable[[float], None]
    timeout_s: float | None


class ServerBackend:
    """The part of a server backend's state that does not depend on the server's API:
    the model, the address and where it came from, the server settings the user declared
    (recorded, not sent), the busy-retry policy, and how long the requests that only ask
    what the server is wait for an answer: ``timeout_s`` (--tokrate-timeout) when given,
    else :data:`PROBE_TIMEOUT_S`. ``sleep`` is injectable for tests."""

    max_parallel = MAX_PARALLEL
    #: Each server backend names its own exact method once it knows the server.
    cache_busting = "none"

    def __init__(
        self,
        model: str,
        address: tuple[Host, str],
        *,
        server_settings: Mapping[str, object] | None = None,
        busy_retries: int = DEFAULT_BUSY_RETRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
        sleep: Callable[[float], None] = time.sleep,
        timeout_s: float | None = None,
    ) -> None:
        self.model = model
        self.url = address[0].url
        self._address_source = address[1]
        self.server_settings = dict(sorted((server_settings or {}).items()))
        self.busy_retries = busy_retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        self.probe_timeout_s = PROBE_TIMEOUT_S if timeout_s is None else float(timeout_s)
        self._probe_source = (
            "the start-up check's limit, which --tokrate-timeout sets"
            if timeout_s is None
            else "--tokrate-timeout"
        )

    def _busy_retry(self) -> BusyRetry:
        return BusyRetry(self.busy_retries, self.backoff_s, self._sleep)

    def _silence(
        self, httpx: Any, exc: BaseException, check: str, waited: tuple[float, str] | None = None
    ) -> InfrastructureError | None:
        """:func:`silence_error` for the requests that ask what the server is (``waited``:
        their timeout and its source, the start-up probe's unless given)."""
        waited = waited or (self.probe_timeout_s, self._probe_source)
        return silence_error(httpx, exc, self.url, waited, check)

    def _address_note(self) -> str:
        """Where the address came from, unless the user passed it: for "not reachable"."""
        if self._address_source == "--tokrate-host":
            return ""
        return f", address from {self._address_source}"


__all__ = [
    "DEFAULT_BACKOFF_S",
    "DEFAULT_BUSY_RETRIES",
    "MAX_BACKOFF_S",
    "MAX_PARALLEL",
    "PROBE_TIMEOUT_S",
    "BusyRetry",
    "ServerBackend",
    "ServerOptions",
    "backoff_delays",
    "connection_limits",
    "discarded",
    "import_client",
    "reason",
    "request_timeout",
    "silence_error",
]
