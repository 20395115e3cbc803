"""The same checks against a real Ollama server, whenever one answers.

Skipped (with the reason) when no server is reachable. To run them::

    ollama serve &                       # or point OLLAMA_HOST at a running server
    ollama pull smollm2:135m             # any small model will do
    pytest tests/backends/test_real_ollama.py -m real_ollama -rs

The server is ``OLLAMA_HOST`` (Ollama's rules), else ``127.0.0.1:11434``; the model is
``TOKRATE_REAL_OLLAMA_MODEL``, else the smallest model the server has.
"""

from __future__ import annotations

import os

import httpx
import pytest

from pytest_tokrate.backends.base import Request
from pytest_tokrate.backends.hosts import resolve_ollama_host
from pytest_tokrate.backends.ollama import OllamaBackend
from pytest_tokrate.core.runner import Runner
from pytest_tokrate.core.settings import RunSettings
from pytest_tokrate.errors import ModelNotOnServer

pytestmark = pytest.mark.real_ollama


@pytest.fixture(scope="module")
def real_ollama() -> tuple[str, str]:
    """(url, model) of a real Ollama server, or skip saying why."""
    url = resolve_ollama_host(None)[0].url
    try:
        version = httpx.get(f"{url}/api/version", timeout=2).json()["version"]
        models = httpx.get(f"{url}/api/tags", timeout=5).json()["models"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        pytest.skip(
            f"no Ollama server answers at {url} ({type(exc).__name__}): start `ollama serve` "
            "or set OLLAMA_HOST to run the real-Ollama tests"
        )
    if "standin" in str(version):
        pytest.skip(f"{url} is a tokrate stand-in, not a real Ollama")
    model = os.environ.get("TOKRATE_REAL_OLLAMA_MODEL")
    if not model:
        if not models:
            pytest.skip(f"the Ollama server at {url} has no model: `ollama pull smollm2:135m`")
        model = min(models, key=lambda m: m.get("size") or 0)["name"]
    return url, str(model)


def test_real_server_round(real_ollama: tuple[str, str]) -> None:
    url, model = real_ollama
    b = OllamaBackend(model, host=url)
    settings = RunSettings(rounds=2, warmup=1, options={"num_predict": 16, "temperature": 0.0})
    m = Runner(b).run(Request(prompt="Write a short story about a dragon."), settings)
    for s in m.samples:
        metrics = s.extra["server_metrics"]
        assert s.output_tokens == metrics.get("eval_count", 0) and s.output_tokens
        assert s.decode_tps_engine and s.ttft and s.ttft < s.e2e
    assert m.model.server_version == httpx.get(f"{url}/api/version").json()["version"]
    assert m.model.format == "gguf" and m.model.parameter_count
    assert m.model.extra["loaded"] is True


def test_real_server_missing_model(real_ollama: tuple[str, str]) -> None:
    b = OllamaBackend("tokrate-no-such-model:0b", host=real_ollama[0])
    with pytest.raises(ModelNotOnServer, match="ollama pull tokrate-no-such-model:0b"):
        Runner(b).one_round(Request(prompt="Hi"))


def test_real_server_through_pytest(
    pytester: pytest.Pytester, real_ollama: tuple[str, str]
) -> None:
    url, model = real_ollama
    pytester.makepyfile(
        "def test_a(tokrate):\n"
        "    r = tokrate.run('Say hi.', num_predict=8)\n"
        "    assert r.model.backend == 'ollama' and r.output_tokens.median > 0\n"
    )
    result = pytester.runpytest(
        "--tokrate-backend=ollama", f"--tokrate-host={url}", f"--tokrate-model={model}",
        "--tokrate-rounds=2", "-p", "no:cacheprovider",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
