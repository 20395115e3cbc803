"""Server addresses: Ollama's rules for host strings. Pure (no network, no pytest).

The rules are those of the official ``ollama`` Python client (``_parse_host``), which is
what the Ollama backend talks through, so a host means the same thing to both:

=====================================  ==========================================
``None`` or ``""``                     ``http://127.0.0.1:11434``
``1.2.3.4`` / ``example.com``          ``http://<host>:11434``
``:56789``                             ``http://127.0.0.1:56789``
``http://x`` / ``https://x``           port 80 / 443
``x:56789/path/``                      ``http://x:56789/path`` (path kept, ``/`` trimmed)
``[::1]``                              ``http://[::1]:11434`` (IPv6 bracketed)
=====================================  ==========================================

Unlike the client, which turns any string into *some* URL, we refuse what cannot be
meant: an unknown scheme, a bad or out-of-range port, spaces, a query string, embedded
credentials. Surrounding spaces and quotes are stripped (as Ollama's server does for
``OLLAMA_HOST``).

A pasted endpoint URL is reduced to the address the backend wants, since the backend
appends the endpoint itself: for Ollama a trailing ``/api/chat``, ``/api/generate``, ...
is dropped (``box:11434/ollama/api/chat`` means ``http://box:11434/ollama``); for an
OpenAI-compatible server a trailing ``/chat/completions``, ``/completions`` or
``/models`` is dropped before ``/v1`` is added (``http://x:8080/v1/chat/completions``
means ``http://x:8080/v1``). Any other path is kept: it is a prefix behind a proxy.
An endpoint of the *other* protocol is refused with the address to pass instead: an
OpenAI-compatible path (``/v1``, ``/v1/chat/completions``) given to the Ollama backend,
an Ollama endpoint (``/api/chat``) given to the OpenAI backend; the backend would ask
for ``.../v1/api/chat`` or ``.../api/chat/v1/chat/completions``, which nothing serves.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from pytest_tokrate.errors import UsageError

OLLAMA_DEFAULT_PORT = 11434
#: llama.cpp's ``llama-server`` listens on 8080 by default.
OPENAI_DEFAULT_PORT = 8080
_HOSTNAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_VERSION_PATH = re.compile(r"/v\d+$")
#: Endpoints the backends append themselves; a host ending in one was pasted in full.
_OLLAMA_ENDPOINT = re.compile(r"/api/(?:chat|generate|embed|embeddings|tags|show|ps|version)$")
_OPENAI_ENDPOINT = re.compile(r"/(?:chat/completions|completions|models)$")
_Bad = Callable[[str], UsageError]


@dataclass(frozen=True)
class Host:
    """A parsed server address; ``url`` is what the HTTP client is pointed at."""

    scheme: str
    host: str  # IPv6 addresses keep their brackets
    port: int
    path: str = ""  # "" or "/a/b", never a trailing "/"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"

    def join(self, path: str) -> str:
        """The URL of an endpoint below this address (``path`` starts with ``/``)."""
        return self.url + path


def _strip(value: str) -> str:
    text = value.strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].strip()
    return text


def _masked(text: str) -> str:
    """The host string with any ``user:password@`` part hidden (never echo credentials)."""
    return re.sub(r"(://|^)[^/@]*@", r"\1***@", text)


def parse_host(
    value: str | None, source: str = "--tokrate-host", default_port: int = OLLAMA_DEFAULT_PORT
) -> Host:
    """Parse a host string by Ollama's client rules; :class:`UsageError` names the bad value."""
    text = _strip(value or "")
    if not text:
        return Host("http", "127.0.0.1", default_port)
    shown = repr(_masked(text))

    def bad(why: str) -> UsageError:
        return UsageError(
            f"{source}: cannot parse the host {shown}: {why}. Use [http[s]://]host[:port][/path], "
            "e.g. http://127.0.0.1:11434 or gpu-box:11434."
        )

    if any(c.isspace() for c in text):
        raise bad("it contains spaces")
    scheme, sep, rest = text.partition("://")
    port = default_port
    if not sep:
        scheme, rest = "http", text
    else:
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise bad(f"the scheme {scheme!r} is not http or https")
        port = 80 if scheme == "http" else 443
        if not rest:
            raise bad("there is no host after the scheme")
    if "?" in rest or "#" in rest:
        raise bad("a query string or fragment is not allowed")
    hostport, _, path = rest.partition("/")
    if "@" in hostport:
        raise bad("credentials in the address are not supported (the key goes in an "
                  "environment variable, see --tokrate-api-key-env)")  # fmt: skip
    host, port_text = _split_host_port(hostport, bad)
    if port_text is not None:
        if not port_text.isdigit():
            raise bad(f"the port {port_text!r} is not a number")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise bad(f"the port {port} is outside 1-65535")
    path = path.strip("/")
    return Host(scheme, host or "127.0.0.1", port, f"/{path}" if path else "")


def _split_host_port(hostport: str, bad: _Bad) -> tuple[str, str | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise bad("an IPv6 address is missing its closing ']'")
        inner, after = hostport[1:end], hostport[end + 1 :]
        if after and not after.startswith(":"):
            raise bad(f"unexpected {after!r} after the IPv6 address")
        _check_ipv6(inner, bad)
        return f"[{inner}]", after[1:] if after else None
    if hostport.count(":") > 1:
        # A bare IPv6 address: the client brackets it; a port cannot be told apart.
        _check_ipv6(hostport, bad)
        return f"[{hostport}]", None
    host, colon, port = hostport.partition(":")
    if host and not _HOSTNAME.match(host):
        raise bad(f"{host!r} is not a host name or address")
    if colon and not port:
        raise bad("the port after ':' is empty")
    return host.lower(), port if colon else None


def _check_ipv6(text: str, bad: _Bad) -> None:
    import ipaddress

    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        raise bad(f"{text!r} is not an IPv6 address") from None


def resolve_ollama_host(
    explicit: str | None, environ: Mapping[str, str] | None = None, source: str = "--tokrate-host"
) -> tuple[Host, str]:
    """The Ollama address and where it came from: the option, else ``OLLAMA_HOST``."""
    env = os.environ if environ is None else environ
    if explicit is not None and _strip(explicit):
        return _ollama_root(explicit, source), "--tokrate-host"
    value = env.get("OLLAMA_HOST")
    if value is not None and _strip(value):
        return _ollama_root(value, "OLLAMA_HOST"), "OLLAMA_HOST"
    return parse_host(None), "default"


def _ollama_root(value: str, source: str) -> Host:
    """The server root (any proxy prefix kept) of a host pasted with an ``/api/...`` endpoint:
    the client appends ``/api/chat`` itself, so ``.../api/chat`` would be asked twice. An
    OpenAI-compatible path (``/v1``, ``/v1/chat/completions``) is refused: the Ollama
    backend would ask ``.../v1/api/chat``, which no server answers."""
    host = parse_host(value, source)
    root = _OPENAI_ENDPOINT.sub("", host.path)
    if root != host.path or _VERSION_PATH.search(root):
        base = replace(host, path=_VERSION_PATH.sub("", root))
        raise UsageError(
            f"{source}: {_masked(_strip(value))!r} is an address of the OpenAI-compatible "
            f"API ({host.path}), but the ollama backend speaks Ollama's own API and adds "
            f"/api/chat itself: pass --tokrate-host={base.url}, or --tokrate-backend=openai "
            "to measure through the OpenAI-compatible API."
        )
    return replace(host, path=_OLLAMA_ENDPOINT.sub("", host.path))


def resolve_openai_base(
    explicit: str | None, environ: Mapping[str, str] | None = None, source: str = "--tokrate-host"
) -> tuple[Host, str]:
    """Base URL of an OpenAI-compatible server: the option, else ``OPENAI_BASE_URL``, else
    llama-server's default ``http://127.0.0.1:8080``. A trailing endpoint (``/chat/completions``,
    ``/completions``, ``/models``) is dropped, then ``/v1`` is appended unless the path
    already ends in a version segment (``/v1``, ``/api/v1``, ...); other paths are kept."""
    env = os.environ if environ is None else environ
    value = explicit
    if value is None or not _strip(value):
        value, source = env.get("OPENAI_BASE_URL"), "OPENAI_BASE_URL"
        if value is None or not _strip(value):
            value, source = None, "default"
    host = parse_host(value, source, default_port=OPENAI_DEFAULT_PORT)
    if _OLLAMA_ENDPOINT.search(host.path):
        base = replace(host, path=_OLLAMA_ENDPOINT.sub("", host.path))
        raise UsageError(
            f"{source}: {_masked(_strip(value or ''))!r} is an address of Ollama's own API "
            f"({host.path}), but the openai backend adds /v1/chat/completions itself: pass "
            f"--tokrate-host={base.url} (Ollama serves the OpenAI-compatible API under /v1), "
            "or --tokrate-backend=ollama."
        )
    path = _OPENAI_ENDPOINT.sub("", host.path)
    if not _VERSION_PATH.search(path):
        path += "/v1"
    return replace(host, path=path), source


def split_hosts(value: str | None, source: str) -> tuple[str, ...]:
    """``--tokrate-host=http://a:11434,http://b:11434``: a fleet of servers, each address
    checked (a comma never occurs in an address); one address is a fleet of one."""
    if value is None or not _strip(value):
        return ()
    hosts = tuple(_strip(part) for part in value.split(","))
    for i, host in enumerate(hosts):
        if not host:
            raise UsageError(
                f"{source}: invalid value {value!r}: server {i + 1} of the list is empty; "
                "separate addresses with single commas, e.g. http://a:11434,http://b:11434."
            )
        parse_host(host, source)
    if len(set(hosts)) != len(hosts):
        raise UsageError(f"{source}: invalid value {value!r}: a server is listed twice.")
    return hosts


def host_for_worker(hosts: Sequence[str], worker_id: str | None) -> str | None:
    """The server this process measures against: xdist worker ``gwN`` takes server
    ``N mod len(hosts)`` (with ``-n`` equal to the number of servers, one each); a run
    without workers takes the first."""
    if not hosts:
        return None
    digits = (worker_id or "")[2:]
    index = int(digits) if digits.isascii() and digits.isdigit() else 0
    return hosts[index % len(hosts)]


def check_host_settings(
    host: str | None,
    source: str,
    backends: Iterable[str],
    environ: Mapping[str, str] | None = None,
) -> None:
    """Validate the address every server backend in use will get (raises UsageError):
    the given host, else the environment variable that backend falls back to."""
    used = set(backends)
    if host is not None and _strip(host):
        parse_host(host, source)
    given = host if host is not None and _strip(host) else None
    # Each backend's own reading: an endpoint of the other protocol is refused now.
    if "ollama" in used:
        resolve_ollama_host(given, environ, source)
    if "openai" in used:
        resolve_openai_base(given, environ, source)


__all__ = [
    "OLLAMA_DEFAULT_PORT",
    "OPENAI_DEFAULT_PORT",
    "Host",
    "check_host_settings",
    "host_for_worker",
    "parse_host",
    "resolve_ollama_host",
    "resolve_openai_base",
    "split_hosts",
]
