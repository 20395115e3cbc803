"""Host strings (Ollama's rules) and declared server settings: pure, no network."""

from __future__ import annotations

import pytest
from ollama._client import _parse_host  # the official client is the oracle

from pytest_tokrate.backends.hosts import (
    check_host_settings,
    parse_host,
    resolve_ollama_host,
    resolve_openai_base,
)
from pytest_tokrate.backends.server_settings import parse_server_setting, parse_server_settings
from pytest_tokrate.errors import UsageError

# The examples of the official client's own doctests, and a few more.
CLIENT_CASES = [
    None, "", "1.2.3.4", ":56789", "1.2.3.4:56789", "http://1.2.3.4", "https://1.2.3.4",
    "https://1.2.3.4:56789", "example.com", "example.com:56789", "http://example.com",
    "https://example.com", "https://example.com:56789", "example.com/", "example.com:56789/",
    "example.com/path", "example.com:56789/path", "https://example.com:56789/path",
    "example.com:56789/path/", "[0001:002:003:0004::1]", "[0001:002:003:0004::1]:56789",
    "http://[0001:002:003:0004::1]", "https://[0001:002:003:0004::1]",
    "https://[0001:002:003:0004::1]:56789", "[0001:002:003:0004::1]/",
    "[0001:002:003:0004::1]:56789/path/", "0.0.0.0", "localhost", "Gpu-Box:11434/a/b/",
]  # fmt: skip


@pytest.mark.parametrize("value", CLIENT_CASES)
def test_same_url_as_the_official_client(value: str | None) -> None:
    assert parse_host(value).url == _parse_host(value)


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("  http://box:1234  ", "http://box:1234"),
        ("'http://box:1234'", "http://box:1234"),
        ('"box"', "http://box:11434"),
        ("HTTPS://Box", "https://box:443"),
        ("::1", "http://[::1]:11434"),
    ],
)
def test_quotes_spaces_and_bare_ipv6(value: str, url: str) -> None:
    assert parse_host(value).url == url


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("ftp://box", "scheme 'ftp'"),
        ("box:abc", "port 'abc' is not a number"),
        ("box:70000", "outside 1-65535"),
        ("box:0", "outside 1-65535"),
        ("box:", "port after ':' is empty"),
        ("http://", "no host after the scheme"),
        ("my box", "contains spaces"),
        ("box?x=1", "query string"),
        ("[::1", "closing ']'"),
        ("[zz::1]", "not an IPv6 address"),
        ("bo$x", "not a host name"),
    ],
)
def test_unparseable_hosts_name_the_value(value: str, why: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_host(value, "--tokrate-host")
    message = str(info.value)
    assert message.startswith("--tokrate-host: cannot parse the host ")
    assert repr(value.strip()) in message or "***" in message
    assert why in message
    assert "e.g. http://127.0.0.1:11434" in message


def test_credentials_are_refused_without_being_echoed() -> None:
    with pytest.raises(UsageError) as info:
        parse_host("http://admin:hunter2@box:11434")
    assert "hunter2" not in str(info.value)
    assert "credentials" in str(info.value)


def test_ollama_host_precedence() -> None:
    env = {"OLLAMA_HOST": "envbox:1"}
    assert resolve_ollama_host("clibox", env)[0].url == "http://clibox:11434"
    assert resolve_ollama_host("clibox", env)[1] == "--tokrate-host"
    assert resolve_ollama_host(None, env) == (parse_host("envbox:1"), "OLLAMA_HOST")
    assert resolve_ollama_host("  ", {})[0].url == "http://127.0.0.1:11434"
    with pytest.raises(UsageError, match=r"^OLLAMA_HOST: cannot parse the host 'x:y'"):
        resolve_ollama_host(None, {"OLLAMA_HOST": "x:y"})


@pytest.mark.parametrize(
    ("value", "env", "url"),
    [
        (None, {}, "http://127.0.0.1:8080/v1"),
        (None, {"OPENAI_BASE_URL": "https://api.example.com/v1"}, "https://api.example.com:443/v1"),
        ("http://localhost:11434", {}, "http://localhost:11434/v1"),
        ("https://openrouter.ai/api/v1", {}, "https://openrouter.ai:443/api/v1"),
        ("box:9000/v2/", {}, "http://box:9000/v2"),
    ],
)
def test_openai_base_url(value: str | None, env: dict[str, str], url: str) -> None:
    assert resolve_openai_base(value, env)[0].url == url


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("http://127.0.0.1:8080/v1/chat/completions", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:8080/v1/chat/completions/", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:8080/v1/completions", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:8080/v1/models/", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:8080/chat/completions", "http://127.0.0.1:8080/v1"),
        ("box:8000/completions", "http://box:8000/v1"),
        ("box:8000/models", "http://box:8000/v1"),
        ("https://openrouter.ai/api/v1/chat/completions", "https://openrouter.ai:443/api/v1"),
        ("http://gw:80/llm/v1/chat/completions", "http://gw:80/llm/v1"),
        ("http://gw:80/llm/chat/completions", "http://gw:80/llm/v1"),
    ],
)
def test_openai_endpoint_urls_are_reduced_to_the_api_base(value: str, url: str) -> None:
    assert resolve_openai_base(value, {})[0].url == url


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080/v1"),
        ("http://gw:80/llm/v1", "http://gw:80/llm/v1"),  # a proxy prefix is kept
        ("http://gw:80/llm", "http://gw:80/llm/v1"),
        ("https://gw/proxy/openai/", "https://gw:443/proxy/openai/v1"),
    ],
)
def test_openai_other_paths_are_kept_as_the_base(value: str, url: str) -> None:
    assert resolve_openai_base(value, {})[0].url == url


def test_openai_endpoint_in_the_environment_is_reduced_too() -> None:
    env = {"OPENAI_BASE_URL": "https://api.example.com/v1/chat/completions"}
    assert resolve_openai_base(None, env) == (
        parse_host("https://api.example.com/v1"),
        "OPENAI_BASE_URL",
    )


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("http://127.0.0.1:11434/api/chat", "http://127.0.0.1:11434"),
        ("http://127.0.0.1:11434/api/generate/", "http://127.0.0.1:11434"),
        ("box/api/tags", "http://box:11434"),
        ("box:1/api/version", "http://box:1"),
        ("box:11434/ollama/api/chat", "http://box:11434/ollama"),  # proxy prefix kept
        ("box:11434/ollama/", "http://box:11434/ollama"),
        ("box:11434/api", "http://box:11434/api"),  # not an endpoint: a prefix, kept
    ],
)
def test_ollama_endpoint_urls_are_reduced_to_the_server_root(value: str, url: str) -> None:
    assert resolve_ollama_host(value, {})[0].url == url
    assert resolve_ollama_host(None, {"OLLAMA_HOST": value}) == (
        parse_host(url),
        "OLLAMA_HOST",
    )


def test_parse_host_itself_keeps_endpoint_paths_like_the_client() -> None:
    # The reduction belongs to the backends' resolvers; parse_host stays the client's rules.
    value = "http://127.0.0.1:11434/api/chat"
    assert parse_host(value).url == _parse_host(value) == value


def test_check_host_settings_follows_the_backends_in_use() -> None:
    check_host_settings(None, "ini tokrate_host", ["embedded"], {"OLLAMA_HOST": "bad:port"})
    with pytest.raises(UsageError, match="OLLAMA_HOST"):
        check_host_settings(None, "ini tokrate_host", ["ollama"], {"OLLAMA_HOST": "bad:port"})
    with pytest.raises(UsageError, match="OPENAI_BASE_URL"):
        check_host_settings(None, "x", ["openai"], {"OPENAI_BASE_URL": "ftp://x"})
    with pytest.raises(UsageError, match=r"^ini tokrate_host: cannot parse"):
        check_host_settings("a b", "ini tokrate_host", ["ollama"], {})


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("kv_cache_type=q8_0", ("kv_cache_type", "q8_0")),
        ("OLLAMA_KV_CACHE_TYPE=FP16", ("kv_cache_type", "f16")),
        ("OLLAMA_FLASH_ATTENTION=0", ("flash_attention", "off")),
        ("flash_attention=true", ("flash_attention", "on")),
        ("OLLAMA_NUM_PARALLEL=4", ("num_parallel", 4)),
        ("x_vllm_tp= 2 ", ("x_vllm_tp", "2")),
    ],
)
def test_server_settings_are_normalised(text: str, pair: tuple[str, object]) -> None:
    assert parse_server_setting(text) == pair


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kv_cache_type=q5_1", "invalid value 'q5_1' for server setting 'kv_cache_type'"),
        ("num_parallel=0", "an integer >= 1"),
        ("num_parallel=²", "'²' for server setting 'num_parallel': expected an integer, written"),
        (
            "OLLAMA_NUM_PARALLEL=1" + "0" * 5000,
            "(5001 characters) for server setting 'num_parallel'",
        ),
        ("context_length=99999999999", "expected an integer from 1 to 16777216."),
        ("kv_cache=q8_0", "Did you mean 'kv_cache_type'?"),
        ("kv_cache_type", "expected KEY=VALUE"),
    ],
)
def test_bad_server_settings_name_the_value(text: str, message: str) -> None:
    with pytest.raises(UsageError, match="--tokrate-server-setting") as info:
        parse_server_setting(text)
    assert message in str(info.value)


def test_server_settings_lines_skip_comments_and_later_wins() -> None:
    lines = ["# seeds", "kv_cache_type=q4_0", "", "OLLAMA_KV_CACHE_TYPE=q8_0"]
    assert parse_server_settings(lines, "ini") == {"kv_cache_type": "q8_0"}


@pytest.mark.parametrize(
    ("value", "fix"),
    [
        ("http://h:11434/v1/chat/completions", "--tokrate-host=http://h:11434,"),
        ("http://h:11434/v1", "--tokrate-host=http://h:11434,"),
        ("http://h:11434/v1/completions", "--tokrate-host=http://h:11434,"),
        ("http://gw/ollama/v1/models", "--tokrate-host=http://gw:80/ollama,"),
    ],
)
def test_ollama_refuses_an_openai_compatible_path(value: str, fix: str) -> None:
    with pytest.raises(UsageError) as info:
        resolve_ollama_host(value, {})
    message = str(info.value)
    assert message.startswith(f"--tokrate-host: {value!r} is an address of the OpenAI-compatible")
    assert fix in message and "--tokrate-backend=openai" in message


@pytest.mark.parametrize("endpoint", ["/api/chat", "/api/generate", "/api/tags"])
def test_openai_refuses_an_ollama_endpoint(endpoint: str) -> None:
    value = f"http://h:11434{endpoint}"
    with pytest.raises(UsageError) as info:
        resolve_openai_base(value, {})
    message = str(info.value)
    assert message.startswith(f"--tokrate-host: {value!r} is an address of Ollama's own API")
    assert "--tokrate-host=http://h:11434 " in message and "--tokrate-backend=ollama" in message


def test_a_proxy_base_path_without_an_api_suffix_keeps_working() -> None:
    assert resolve_ollama_host("http://proxy/llm", {})[0].url == "http://proxy:80/llm"
    assert resolve_openai_base("http://proxy/llm", {})[0].url == "http://proxy:80/llm/v1"
    assert resolve_openai_base("https://openrouter.ai/api/v1", {})[0].url.endswith("/api/v1")


def test_check_host_settings_refuses_the_other_protocol_at_start_up() -> None:
    value = "http://h:8080/v1/chat/completions"
    check_host_settings(value, "ini tokrate_host", ["openai"], {})
    with pytest.raises(UsageError, match=r"^ini tokrate_host: .* OpenAI-compatible"):
        check_host_settings(value, "ini tokrate_host", ["ollama"], {})
    with pytest.raises(UsageError, match=r"^OLLAMA_HOST: .* OpenAI-compatible"):
        check_host_settings(None, "ini tokrate_host", ["ollama"], {"OLLAMA_HOST": value})
