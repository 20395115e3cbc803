"""The fingerprint: what it records, what it never records, and how a change is named."""

from __future__ import annotations

import json
import os
import re
import socket
from types import SimpleNamespace
from typing import Any

from pytest_tokrate.gate.changes import environment_changes
from pytest_tokrate.machine import fingerprint
from pytest_tokrate.machine.telemetry import GpuMonitor


def test_hardware_of_this_machine() -> None:
    hw = fingerprint.hardware()
    assert hw["cpu_count"] == os.cpu_count()
    assert 1 <= hw["cpus_usable"] <= hw["cpu_count"]
    assert hw["cpu_model"]
    assert hw["system"] and hw["machine"]
    assert isinstance(hw["gpus"], list)
    assert hw["gpu_probe"]  # "nvml" or why there is no GPU


def test_no_hostname_anywhere(measurement: Any) -> None:
    env = fingerprint.environment(measurement.model.to_dict(), measurement.versions)
    text = json.dumps(env)
    # As a whole word: a short hostname such as "vm" is also a substring of "pynvml".
    host = socket.gethostname()
    assert not re.search(rf"(?<![A-Za-z0-9]){re.escape(host)}(?![A-Za-z0-9])", text), host
    assert "host" not in json.dumps(list(env["hardware"]))


class FakeNvml:
    """Stands in for pynvml: NVIDIA GPUs are a boundary this machine cannot run."""

    class NVMLError(Exception):
        pass

    def __init__(self, fail_init: bool = False) -> None:
        self.fail_init = fail_init

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        pass

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"550.54.15"  # older pynvml releases return bytes

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(total=85_520_809_984, used=0)


def test_gpu_from_nvml_name_memory_driver() -> None:
    gpu = fingerprint.gpu_fingerprint(GpuMonitor(nvml=FakeNvml))
    assert gpu == {
        "gpus": [{"name": "NVIDIA H100 80GB HBM3", "memory_bytes": 85_520_809_984}],
        "gpu_driver": "550.54.15",
        "gpu_probe": "nvml",
    }


def test_gpu_absent_is_recorded_as_absent_with_the_reason() -> None:
    gpu = fingerprint.gpu_fingerprint(GpuMonitor(nvml=lambda: FakeNvml(fail_init=True)))
    assert gpu["gpus"] == [] and gpu["gpu_driver"] is None
    assert "NVML Shared Library Not Found" in gpu["gpu_probe"]

    def missing() -> Any:
        raise ImportError("No module named 'pynvml'")

    assert (
        "pynvml is not installed"
        in fingerprint.gpu_fingerprint(GpuMonitor(nvml=missing))["gpu_probe"]
    )


def test_environment_records_engine_model_and_plugin(measurement: Any) -> None:
    env = fingerprint.environment(measurement.model.to_dict(), measurement.versions)
    assert env["engine"]["backend"] == "embedded"
    assert env["engine"]["engine_version"].startswith("llama-cpp-python ")
    assert env["model"]["name"] == "smollm2"
    assert env["model"]["digest"].startswith("sha256:")
    assert env["model"]["quantization"] == "Q4_1"
    assert env["model"]["parameter_count"] > 100_000_000
    assert env["plugin"]["method"] == fingerprint.METHOD_VERSION


def test_definition_hash_follows_prompt_options_cache_and_checks(measurement: Any) -> None:
    request, settings = measurement.request, measurement.settings
    base = fingerprint.definition(request, settings)
    assert base == fingerprint.definition(dict(request), dict(settings))  # stable
    longer = dict(request, options={**request["options"], "num_predict": 32})
    other_prompt = dict(request, prompt="Name four colours.")
    allow = dict(settings, cache="allow")
    variants = [
        fingerprint.definition(longer, settings),
        fingerprint.definition(other_prompt, settings),
        fingerprint.definition(request, allow),
        fingerprint.definition(request, settings, checks=[{"type": "contains", "value": "red"}]),
    ]
    assert len({base["hash"], *(v["hash"] for v in variants)}) == 5
    # rounds and warm-up are not part of the definition
    more_rounds = dict(settings, rounds=50, warmup=3)
    assert fingerprint.definition(request, more_rounds)["hash"] == base["hash"]


def test_changes_name_the_field(measurement: Any) -> None:
    env = fingerprint.environment(measurement.model.to_dict(), measurement.versions)
    other = json.loads(json.dumps(env))
    other["hardware"]["cpu_model"] = "Intel Xeon Platinum 8480+"
    other["engine"]["engine_version"] = "llama-cpp-python 0.4.0"
    other["plugin"]["version"] = "9.9.9"  # a release alone keeps baselines comparable
    changes = [str(c) for c in environment_changes(env, other)]
    assert changes == [
        f"hardware.cpu_model: {env['hardware']['cpu_model']!r} -> 'Intel Xeon Platinum 8480+'",
    ]  # the engine version is configuration the gate judges, not the environment


def test_gpu_change_is_shown_readably() -> None:
    a = {"hardware": {"gpus": []}}
    b = {"hardware": {"gpus": [{"name": "NVIDIA L4", "memory_bytes": 24 * 2**30}]}}
    (change,) = environment_changes(a, b)
    assert str(change) == "hardware.gpus: none -> NVIDIA L4 (24 GiB)"
