"""Helpers shared by the reliability tests (imported as ``reliability_support``)."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

#: Arguments of every inner run: one engine thread, short answers, no prompt cache games.
FAST = (
    "-p",
    "no:cacheprovider",
    "--tokrate-option=num_thread=1",
    "--tokrate-rounds=1",
    "--tokrate-warmup=0",
    "--tokrate-num-predict=8",
)
INFRA_PREFIX = "tokrate infrastructure error: "
#: ``TOKRATE_FUZZ_SCALE=10`` multiplies the examples of every generative test (a longer
#: local session; CI runs the counts as written).
FUZZ_SCALE = int(os.environ.get("TOKRATE_FUZZ_SCALE", "1"))


def fuzz_settings(count: int) -> Any:
    """Hypothesis settings of a generative test of ``count`` examples (times the scale):
    derandomized, so CI sees the same inputs every run, with no example database and no
    deadline (the time boxes are the tests' own)."""
    return settings(
        max_examples=count * FUZZ_SCALE,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def output(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


def assert_clean(result: pytest.RunResult) -> None:
    """What the user sees holds no traceback and no line of our source code."""
    text = output(result)
    assert "Traceback" not in text, text
    assert "pytest_tokrate/" not in text and "pytest_tokrate\\" not in text, text
    assert not re.search(r"^E   ", text, re.MULTILINE), text  # pytest's exception lines


@dataclass(frozen=True)
class Outcome:
    """One test case of an inner run, read back from its JUnit XML."""

    name: str
    status: str  # passed, failed, error (infrastructure), skipped
    message: str
    seconds: float


def outcomes(junit: Path) -> dict[str, Outcome]:
    """Test name (without the model parameter) -> its outcome, from a JUnit XML file."""
    out: dict[str, Outcome] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "").split("[")[0]
        status, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                message = (node.text or node.get("message") or "").strip()
                status = "skipped" if tag == "skipped" else "failed"
                if message.startswith(INFRA_PREFIX) or tag == "error":
                    status = "error"
                break
        seconds = float(case.get("time", "0"))
        previous = out.get(name)
        if previous is not None and previous.status != "passed":
            continue  # keep the call phase's failure over a teardown's pass
        out[name] = Outcome(name, status, message, seconds)
    return out
