"""pytest glue of the gate's options: its flags, and what the gate reads from a
``pytest.Config`` (where baselines live, the ini and command-line layers of its settings).
The values are parsed by :mod:`pytest_tokrate.gate.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_tokrate.gate.settings import (
    LAYER_FIELDS,
    Layer,
    parse_env_name,
    parse_layer,
    parse_other_load,
    parsed_layer,
)
from pytest_tokrate.plugin.session_config import cli_or_ini, cli_value, ini_flag, ini_value


def add_flags(group: Any, parser: pytest.Parser) -> None:
    """The gate's on/off flags, each with a boolean ini twin."""
    flags = (
        (
            "update-baselines",
            "tokrate_update_baselines",
            "Write the baselines of the tests that ran (and only those) instead of comparing; "
            "refused when the CI environment variable is set, unless "
            "--tokrate-force-update. Default: off",
        ),
        (
            "force-update",
            "tokrate_force_update",
            "With --tokrate-update-baselines: write even when CI is set, and replace "
            "baseline files that fail validation. Default: off",
        ),
    )
    for name, ini, help_text in flags:
        group.addoption(f"--tokrate-{name}", dest=ini, action="store_true", default=None,
                        help=help_text)  # fmt: skip
        # Read as text and parsed by ini_flag: pytest's own "bool" error names no setting.
        parser.addini(ini, help_text, default=None)


def layers(config: pytest.Config) -> tuple[Layer, Layer]:
    """The ini layer (parsed here) and the command-line layer (parsed by argparse)."""
    ini = {option: ini_value(config, f"tokrate_{option}") for option in LAYER_FIELDS}
    ini_layer = parse_layer("ini", ini, "ini tokrate_") if any(ini.values()) else Layer("ini")
    cli = {option: config.getoption(f"tokrate_{option}") for option in LAYER_FIELDS}
    return ini_layer, parsed_layer("command line", cli)


def flag(config: pytest.Config, name: str) -> bool:
    """A gate flag: the command line's, else its ini twin's (checked), else off."""
    value = config.getoption(name)
    return bool(value) if value is not None else ini_flag(config, name)


@dataclass(frozen=True)
class GateOptions:
    """Where the gate finds and writes baselines, and how it judges, for one session."""

    rootpath: Path
    #: The directory of the baseline files.
    root: Path
    #: --tokrate-baseline-env: the environment name in file names, else the backend's.
    env_override: str | None
    #: --tokrate-other-load: CPU cores other processes may use (``inf``: never withhold).
    other_load: float
    update: bool
    force: bool
    ini_layer: Layer
    cli_layer: Layer

    @classmethod
    def read(cls, config: pytest.Config) -> GateOptions:
        from pytest_tokrate.machine.load import BUSY_CORES

        raw_dir = cli_value(config, "tokrate_baseline_dir") or ini_value(
            config, "tokrate_baseline_dir"
        )
        rootpath = Path(config.rootpath)
        env = cli_or_ini(config, "tokrate_baseline_env", parse_env_name, None)
        ini_layer, cli_layer = layers(config)
        other_load = cli_or_ini(config, "tokrate_other_load", parse_other_load, BUSY_CORES)
        return cls(
            rootpath=rootpath,
            root=rootpath / (raw_dir or "baselines"),
            env_override=env,
            other_load=other_load,
            update=flag(config, "tokrate_update_baselines"),
            force=flag(config, "tokrate_force_update"),
            ini_layer=ini_layer,
            cli_layer=cli_layer,
        )

    def display(self, path: Path) -> str:
        """A path as shown to the user: relative to the rootdir when it lies under it."""
        try:
            return path.relative_to(self.rootpath).as_posix()
        except ValueError:
            return str(path)

    def env_for(self, backend: str | None) -> str:
        return self.env_override or backend or "default"


__all__ = ["GateOptions", "add_flags", "flag", "layers"]
