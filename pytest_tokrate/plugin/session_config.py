"""The session's settings read from a ``pytest.Config``: each option's command-line value
(argparse already parsed it) over its ini twin (parsed here) over the default, gathered
into a :class:`~pytest_tokrate.plugin.session.SessionConfig`. The options themselves are
declared in :mod:`.options`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pytest_tokrate.core.numbers import fail
from pytest_tokrate.core.settings import (
    CALIBRATE_MODES,
    DEFAULT_BASELINE_ROUNDS,
    Layer,
    parse_baseline_rounds,
    parse_busy_retries,
    parse_choice,
    parse_option_lines,
    parse_option_pair,
    resolve,
)
from pytest_tokrate.plugin.session import (
    SessionConfig,
    build_models,
    parse_backend,
    parse_missing_model,
)

if TYPE_CHECKING:
    from pytest_tokrate.backends.models import ModelSpec

_Value = TypeVar("_Value")

#: The spellings of a boolean ini value (any case), as pytest's own ``type="bool"``.
TRUE_VALUES = frozenset({"true", "1", "yes", "on", "y", "t"})
FALSE_VALUES = frozenset({"false", "0", "no", "off", "n", "f"})


def ini_value(config: pytest.Config, name: str) -> str | None:
    """An ini value as text, ``None`` when unset or blank."""
    value = config.getini(name)
    text = "" if value is None else str(value).strip()
    return text or None


def cli_value(config: pytest.Config, name: str) -> Any:
    """An option's command-line value, ``None`` when not given or blank (an unset
    ``$VAR`` in a CI script gives ``--tokrate-x=``): its ini twin then applies."""
    value = config.getoption(name)
    if isinstance(value, str) and not value.strip():
        return None
    return value


def ini_flag(config: pytest.Config, name: str) -> bool:
    """A boolean ini value (``false`` when unset); a usage error naming the setting,
    the value and the accepted values when it is not one of them."""
    raw = ini_value(config, name)
    if raw is None:
        return False
    text = raw.lower()
    if text in TRUE_VALUES or text in FALSE_VALUES:
        return text in TRUE_VALUES
    raise fail(f"ini {name}", raw, "true or false (also 1/0, yes/no, on/off)")


def cli_or_ini(
    config: pytest.Config, name: str, parse: Callable[[str, str], _Value], default: _Value
) -> _Value:
    """Option ``name`` from the command line, else its ini twin read by
    ``parse(text, "ini <name>")``, else ``default``."""
    value: _Value | None = cli_value(config, name)
    if value is not None:
        return value
    raw = ini_value(config, name)
    return default if raw is None else parse(raw, f"ini {name}")


def _with_quality_options(config: pytest.Config, session_config: SessionConfig) -> SessionConfig:
    """Put the command line's and ini's minimum pass rate on their precedence layers."""
    cli = config.getoption("tokrate_min_pass_rate")
    ini_text = ini_value(config, "tokrate_min_pass_rate")
    ini = None
    if ini_text is not None:
        from pytest_tokrate.quality.checks import parse_min_pass_rate

        ini = parse_min_pass_rate("ini tokrate_min_pass_rate", ini_text)

    def with_rate(layer: Layer, value: object) -> Layer:
        if value is None:
            return layer
        return replace(layer, extra={**(layer.extra or {}), "min_pass_rate": value})

    return replace(
        session_config,
        cli=with_rate(session_config.cli, cli),
        ini=with_rate(session_config.ini, ini),
    )


def _generation_options(config: pytest.Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """The generation options of the ini and of the command line, each with its own
    ``num_predict`` and ``num_ctx`` shorthands folded in."""
    ini_options = parse_option_lines(config.getini("tokrate_options") or [], "ini tokrate_options")
    for key in ("num_predict", "num_ctx"):
        raw = ini_value(config, f"tokrate_{key}")
        if raw is not None:
            ini_options[key] = parse_option_pair(f"{key}={raw}", f"ini tokrate_{key}")[1]
    get = config.getoption
    cli_options: dict[str, Any] = dict(get("tokrate_options") or [])
    for key in ("num_predict", "num_ctx"):
        if get(f"tokrate_{key}") is not None:
            cli_options[key] = get(f"tokrate_{key}")
    return ini_options, cli_options


def _run_layers(config: pytest.Config) -> tuple[Layer, Layer]:
    """The ini and command-line layers of the run settings, checked now, so a bad ini is a
    usage error before any test runs."""
    ini_options, cli_options = _generation_options(config)
    ini_layer = Layer(
        source="ini",
        rounds=ini_value(config, "tokrate_rounds"),
        warmup=ini_value(config, "tokrate_warmup"),
        max_rounds=ini_value(config, "tokrate_max_rounds"),
        min_rounds=ini_value(config, "tokrate_min_rounds"),
        timeout=ini_value(config, "tokrate_timeout"),
        cache=ini_value(config, "tokrate_cache"),
        options=ini_options or None,
    )
    get = config.getoption
    cli_layer = Layer(
        source="command line",
        rounds=get("tokrate_rounds"),
        warmup=get("tokrate_warmup"),
        max_rounds=get("tokrate_max_rounds"),
        min_rounds=get("tokrate_min_rounds"),
        timeout=get("tokrate_timeout"),
        cache=get("tokrate_cache"),
        options=cli_options or None,
    )
    resolve([ini_layer, cli_layer])
    return ini_layer, cli_layer


def _build_config(config: pytest.Config) -> SessionConfig:
    def get(name: str) -> Any:
        return cli_value(config, name)

    backend = cli_or_ini(config, "tokrate_backend", parse_backend, "auto")
    model_cli = get("tokrate_model")
    source = "--tokrate-model" if model_cli is not None else "ini tokrate_model"
    model = model_cli if model_cli is not None else ini_value(config, "tokrate_model")
    models = build_models(model, backend, source)
    ini_layer, cli_layer = _run_layers(config)
    missing = get("tokrate_missing_model") or ini_value(config, "tokrate_missing_model") or "auto"
    fleet = get("tokrate_host") or ini_value(config, "tokrate_host")
    source = "--tokrate-host" if get("tokrate_host") else "ini tokrate_host"
    hosts, host = _fleet(config, fleet, source)
    return SessionConfig(
        models=models,
        backend=backend,
        host=host,
        hosts=hosts,
        cli=cli_layer,
        ini=ini_layer,
        missing_model=parse_missing_model(missing, "tokrate_missing_model"),
        api_key_env=get("tokrate_api_key_env") or ini_value(config, "tokrate_api_key_env"),
        extra={
            **_server_backend_settings(config, host, models),
            "baseline_rounds": _baseline_rounds(config),
        },
    )


def _fleet(
    config: pytest.Config, value: str | None, source: str
) -> tuple[tuple[str, ...], str | None]:
    """Every server of ``--tokrate-host`` and the one this process measures against (an
    xdist worker takes its own: backends/hosts.py ``host_for_worker``)."""
    from pytest_tokrate.backends.hosts import host_for_worker, split_hosts

    hosts = split_hosts(value, source) if value is not None else ()
    worker = getattr(config, "workerinput", {}).get("workerid")
    return hosts, host_for_worker(hosts, worker) if hosts else value


def fleet_header(hosts: tuple[str, ...], workers: int) -> str | None:
    """The report-header line of a fleet: which worker measures against which server."""
    if len(hosts) < 2:
        return None
    if workers < 1:
        return (
            f"tokrate: --tokrate-host lists {len(hosts)} servers but this run has no xdist "
            f"workers: every test runs on {hosts[0]}; run with -n {len(hosts)} to use them all"
        )
    pairs = ", ".join(f"gw{i} -> {hosts[i % len(hosts)]}" for i in range(workers))
    idle = f"; {len(hosts) - workers} server(s) idle, use -n {len(hosts)}" if workers < len(
        hosts
    ) else ""  # fmt: skip
    return f"tokrate: fleet of {len(hosts)} servers: {pairs}{idle}"


def _baseline_rounds(config: pytest.Config) -> tuple[str, int] | None:
    """How many rounds a test measures when baselines are written; ``None`` otherwise."""
    default = parse_baseline_rounds("ini tokrate_baseline_rounds", DEFAULT_BASELINE_ROUNDS)
    spec = cli_or_ini(
        config,
        "tokrate_baseline_rounds",
        lambda text, source: parse_baseline_rounds(source, text),
        default,
    )
    updating = config.getoption("tokrate_update_baselines")
    if updating is None:
        updating = ini_flag(config, "tokrate_update_baselines")
    return spec if updating else None


def _server_backend_settings(
    config: pytest.Config, host: str | None, models: tuple[ModelSpec, ...]
) -> dict[str, Any]:
    """Check the server address now (a usage error, not a failing test), and gather the
    declared server settings and the busy-retry count for the server backends."""
    backends = {m.backend for m in models}
    # Loaded only when there is something to check: keeps an unused plugin's start-up cheap.
    if host is not None or backends & {"ollama", "openai"}:
        from pytest_tokrate.backends.hosts import check_host_settings

        source = "--tokrate-host" if config.getoption("tokrate_host") else "ini tokrate_host"
        check_host_settings(host, source, backends)
    settings: dict[str, Any] = {}
    ini_settings = config.getini("tokrate_server_settings") or []
    if ini_settings:
        from pytest_tokrate.backends.server_settings import parse_server_settings

        settings = parse_server_settings(ini_settings, "ini tokrate_server_settings")
    settings.update(dict(config.getoption("tokrate_server_settings") or []))
    retries = cli_or_ini(
        config,
        "tokrate_busy_retries",
        lambda text, source: parse_busy_retries(source, text),
        3,
    )
    calibrate = cli_or_ini(
        config,
        "tokrate_calibrate",
        lambda text, source: parse_choice(source, text, CALIBRATE_MODES),
        "on",
    )
    return {"server_settings": settings, "busy_retries": retries, "calibrate": calibrate}


def build_config(config: pytest.Config) -> SessionConfig:
    """The session's settings from the command line and ini (a usage error when bad)."""
    return _with_quality_options(config, _build_config(config))


__all__ = ["build_config", "cli_or_ini", "cli_value", "ini_flag", "ini_value"]
