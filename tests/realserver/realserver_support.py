"""A real llama.cpp ``llama-server`` process, for the tests and the batching benchmark.

The binary is the one ``scripts/llamacpp_tools.sh`` builds from the installed
llama-cpp-python's own source (so the server runs the very engine the embedded backend
runs), or the one in the directory ``TOKRATE_LLAMA_TOOLS`` names. The server binds a free
port itself (``--port 0``) and says which in its log, so two runs never race for a port.

Imported as ``realserver_support`` (pytest puts this directory on ``sys.path``; the
benchmark adds it itself). No pytest here: the benchmark uses it without pytest.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TOOLS_SCRIPT = REPO / "scripts" / "llamacpp_tools.sh"
TOOLS_ENV = "TOKRATE_LLAMA_TOOLS"
#: The first build compiles llama.cpp (5-10 min on 2 cores); later runs print the cache.
TOOLS_BUILD_LIMIT_S = 1800.0
#: Loading the 135M model takes about a second; a loaded machine may take many more.
START_LIMIT_S = 90.0

_LISTENING = re.compile(r"listening on (http://[0-9.]+:\d+)")
# The per-request summary llama-server logs from the same counters as its ``timings``
# object: "eval time = 187.35 ms / 16 tokens (...)" (not the "prompt eval time" line).
_EVAL_LINE = re.compile(r"(?<!prompt )eval time =\s*([0-9.]+) ms /\s*(\d+) tokens")


class ToolsMissing(Exception):
    """No llama-server to run; the message says why and how to get one."""


class ServerFailed(Exception):
    """llama-server did not start or did not answer; the message holds its log's tail."""


def find_llama_server(environ: Mapping[str, str] | None = None) -> Path:
    """The llama-server binary: in ``$TOKRATE_LLAMA_TOOLS``, else in the directory
    ``scripts/llamacpp_tools.sh`` prints (building it the first time)."""
    env = os.environ if environ is None else environ
    named = env.get(TOOLS_ENV, "").strip()
    if named:
        directory, source = Path(named), f"{TOOLS_ENV}={named}"
    else:
        directory, source = _tools_from_script(), f"bash {TOOLS_SCRIPT.relative_to(REPO)}"
    binary = directory / "llama-server"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise ToolsMissing(
            f"no executable llama-server in {directory} (the directory {source} gave): run "
            f"`bash scripts/llamacpp_tools.sh` to build it, or point {TOOLS_ENV} at a "
            "directory holding llama-server."
        )
    return binary


def _tools_from_script() -> Path:
    try:
        done = subprocess.run(
            ["bash", str(TOOLS_SCRIPT)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=TOOLS_BUILD_LIMIT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolsMissing(f"`bash {TOOLS_SCRIPT}` could not run: {exc}") from None
    lines = done.stdout.split()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.splitlines()[-15:])
        raise ToolsMissing(
            f"`bash scripts/llamacpp_tools.sh` failed (exit {done.returncode}) and printed no "
            f"tools directory; its last lines:\n{tail}\nFix the build (it needs .venv from "
            f"scripts/setup.sh, cmake, a C++ compiler and PyPI for the sdist), or set "
            f"{TOOLS_ENV} to a directory holding llama-server."
        )
    return Path(lines[-1])


def get_json(url: str, timeout_s: float = 5.0) -> Any:
    """GET ``url`` and parse its JSON body (``urllib``: no client of the plugin's own)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read().decode("utf-8"))


@dataclass
class LlamaServer:
    """A running llama-server: its address, process and log file."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    parallel: int
    ctx_per_slot: int

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def eval_timings(self, since: int = 0) -> list[tuple[float, int]]:
        """(decode ms, decoded tokens) of every request finished after log offset ``since``,
        as the server logged them."""
        text = self.log_text()[since:]
        return [(float(ms), int(n)) for ms, n in _EVAL_LINE.findall(text)]

    def log_size(self) -> int:
        return len(self.log_text())

    def model_id(self) -> str:
        """The name the server lists its model under (the GGUF's path, without --alias)."""
        return str(get_json(f"{self.url}/v1/models")["data"][0]["id"])

    def decoded_so_far(self) -> int:
        """Tokens decoded by the busiest slot now (``GET /slots``)."""
        decoded = [0]
        for slot in get_json(f"{self.url}/slots"):
            # ``next_token`` is one object in older builds, a list (one per sequence) now.
            nexts = slot.get("next_token") or []
            for item in nexts if isinstance(nexts, list) else [nexts]:
                decoded.append(int(item.get("n_decoded", 0)))
        return max(decoded)

    def kill(self) -> None:
        """SIGKILL: the server dies mid-whatever, as a crashed or OOM-killed one would."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not ended within ``timeout_s``."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()


def start_llama_server(
    binary: Path,
    model: Path,
    log: Path,
    *,
    parallel: int,
    threads: int,
    ctx_per_slot: int,
    extra_args: Sequence[str] = (),
) -> LlamaServer:
    """Start llama-server on a free port of 127.0.0.1 and wait until ``/health`` says ok.

    ``-c`` is the whole KV cache: with an explicit ``-np`` each slot gets ``-c / -np``, so
    it is ``parallel * ctx_per_slot``. Output goes to ``log`` (the caller shows its tail
    when something fails).
    """
    args = [
        str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", "0",
        "-np", str(parallel), "-t", str(threads), "-c", str(parallel * ctx_per_slot),
        "--no-webui", *extra_args,
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT)
    server = LlamaServer(process, "", log, parallel, ctx_per_slot)
    try:
        _wait_until_healthy(server, START_LIMIT_S)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_healthy(server: LlamaServer, limit_s: float) -> None:
    """The server logs its address once the model is loaded; then /health must say ok."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        code = server.process.poll()
        if code is not None:
            raise ServerFailed(
                f"llama-server exited with status {code} while starting; the end of its log "
                f"({server.log}):\n{server.log_tail()}"
            )
        if not server.url:
            found = _LISTENING.search(server.log_text())
            server.url = found.group(1) if found else ""
        if server.url and _health_ok(server.url):
            return
        time.sleep(0.1)
    raise ServerFailed(
        f"llama-server did not answer GET /health with status ok within {limit_s:g} s; the "
        f"end of its log ({server.log}):\n{server.log_tail()}"
    )


def _health_ok(url: str) -> bool:
    try:
        return bool(get_json(f"{url}/health", timeout_s=2.0).get("status") == "ok")
    except (OSError, ValueError, urllib.error.URLError):
        return False  # 503 while loading, or not listening yet


__all__ = [
    "TOOLS_ENV",
    "LlamaServer",
    "ServerFailed",
    "ToolsMissing",
    "find_llama_server",
    "get_json",
    "start_llama_server",
]
