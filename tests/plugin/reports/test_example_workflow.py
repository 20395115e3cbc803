"""The GitHub Actions example stays runnable: valid YAML, the gate on pull requests, and
only options this plugin really has (checked against ``pytest --help``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

WORKFLOW = Path(__file__).parents[3] / "examples" / "github-workflow.yml"


def test_workflow_gates_pull_requests_and_keeps_the_reports(pytester: pytest.Pytester) -> None:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert "pull_request" in data[True]  # YAML 1.1 reads the key `on` as True
    (job,) = data["jobs"].values()
    assert job["env"]["CI"] == "true"
    runs = [step.get("run", "") for step in job["steps"]]
    (command,) = [r for r in runs if r.startswith("pytest ")]
    assert "--tokrate-model=" in command
    assert "--tokrate-report-md=" in command and "--junitxml=" in command
    upload = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload"))
    assert "cancelled()" in upload["if"]  # uploaded even when the gate failed
    flags = set(re.findall(r"--tokrate-[a-z-]+", WORKFLOW.read_text()))
    help_text = pytester.runpytest("--help").stdout.str()
    unknown = sorted(f for f in flags if f not in help_text)
    assert not unknown, f"the example uses options the plugin does not have: {unknown}"
