"""A fleet of servers: ``--tokrate-host=a,b`` under ``-n 2``, one server per xdist worker.

Two Ollama stand-ins (one engine behind both, as two boxes of one kind): each worker
measures against its own server, every result records its server, the baselines of both
share the environment name and only the controller writes them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from pytest_tokrate.backends.hosts import host_for_worker, split_hosts
from pytest_tokrate.errors import UsageError
from pytest_tokrate.plugin.session_config import fleet_header

TESTS = """
import pytest

@pytest.mark.tokrate(rounds=2, warmup=0, num_predict=2)
@pytest.mark.parametrize("word", ["red", "green", "blue", "gold"])
def test_colour(tokrate, word):
    tokrate.run(f"Say {word}.")
"""


def test_each_worker_measures_against_its_own_server(
    pytester: pytest.Pytester, standin_factory: Callable[..., Any]
) -> None:
    a, b = standin_factory("ollama"), standin_factory("ollama")
    pytester.makepyfile(test_fleet=TESTS)
    result = pytester.runpytest(
        "-n", "2", "-p", "no:cacheprovider", "--tokrate-backend=ollama",
        f"--tokrate-host={a.url},{b.url}", "--tokrate-model=smollm2:135m",
        "--tokrate-update-baselines", "--tokrate-baseline-rounds=2",
        "--tokrate-report-json=report.json",
    )  # fmt: skip
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    assert f"tokrate: fleet of 2 servers: gw0 -> {a.url}, gw1 -> {b.url}" in out
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    hosts = {m["test_id"]: m["model"]["extra"]["host"] for m in report["measurements"]}
    assert len(hosts) == 4 and set(hosts.values()) == {a.url, b.url}
    # Each server saw the requests of the tests recorded against it, and only those.
    for server in (a, b):
        asked = {body.get("prompt") for body in server.bodies if "Say " in str(body)}
        mine = {
            f"Say {t.rsplit('-', 1)[1].rstrip(']')}." for t, h in hosts.items() if h == server.url
        }
        assert asked == mine
    # One environment name for the servers of one kind; written once, by the controller.
    files = sorted(p.name for p in (pytester.path / "baselines").rglob("*.json"))
    assert len(files) == 4 and all(name.endswith("@ollama.json") for name in files)
    assert "wrote 4 baseline file(s)" in out


def test_fleet_addresses_are_checked_and_assigned() -> None:
    hosts = split_hosts("http://a:11434, b:11435", "--tokrate-host")
    assert hosts == ("http://a:11434", "b:11435")
    assert [host_for_worker(hosts, w) for w in ("gw0", "gw1", "gw2", None)] == [
        "http://a:11434", "b:11435", "http://a:11434", "http://a:11434",
    ]  # fmt: skip
    with pytest.raises(UsageError, match="server 2 of the list is empty"):
        split_hosts("http://a:1,,b:2", "--tokrate-host")
    with pytest.raises(UsageError, match="a server is listed twice"):
        split_hosts("a:1,a:1", "--tokrate-host")
    assert "run with -n 2 to use them all" in (fleet_header(hosts, 0) or "")
    assert "1 server(s) idle, use -n 2" in (fleet_header(hosts, 1) or "")
    assert fleet_header(hosts[:1], 4) is None
