"""GPU telemetry through NVML (``pynvml`` from the ``nvidia-ml-py`` package), when present.

During measured rounds a sampler thread reads, for every NVIDIA GPU of this machine,
utilization (%), memory in use (bytes) and power draw (W). Energy comes from the
driver's energy counter (``nvmlDeviceGetTotalEnergyConsumption``, Volta and later) or,
where that is unsupported, from integrating the power samples over time. Divided by the
output tokens of the rounds it gives joules per output token.

Without ``pynvml`` or without an NVIDIA driver everything here reports "absent" with the
reason; nothing raises. NVML is loaded lazily and only once per process. The NVML module
is injectable (``GpuMonitor(nvml=...)``) because it is the one boundary that cannot run on
a machine without a GPU.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: Seconds between two samples of the sampler thread.
DEFAULT_INTERVAL_S = 0.1
#: At most this many rows of the raw time series are kept per watch (evenly thinned).
MAX_SERIES_ROWS = 600


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _import_pynvml() -> Any:
    import pynvml

    return pynvml


@dataclass
class GpuStatus:
    """Whether GPU telemetry is available, and the devices it sees."""

    available: bool
    reason: str | None = None
    driver: str | None = None
    devices: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "reason": self.reason,
            "driver": self.driver,
            "devices": [dict(d) for d in self.devices],
        }

    def line(self) -> str:
        """One line for reports."""
        if not self.available:
            return f"GPU telemetry: absent ({self.reason})"
        names = ", ".join(
            f"{d['name']} ({d['memory_total_bytes'] / 2**30:.0f} GiB)" for d in self.devices
        )
        return f"GPU telemetry: {names}; driver {self.driver}"


@dataclass
class _Reading:
    t_s: float
    utilization_pct: float | None
    memory_used_bytes: float | None
    power_w: float | None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


class GpuWatch:
    """Samples every GPU on a thread between :meth:`start` and :meth:`stop`."""

    def __init__(self, nvml: Any, handles: list[Any], interval_s: float) -> None:
        self._nvml = nvml
        self._handles = handles
        self._interval_s = interval_s
        self._readings: list[_Reading] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._duration_s = 0.0
        self._energy_start: float | None = None
        self._energy_end: float | None = None

    def _energy_mj(self) -> float | None:
        total = 0.0
        try:
            for h in self._handles:
                total += float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h))
        except Exception:  # unsupported on this GPU or driver: integrate power instead
            return None
        return total

    def _read(self) -> _Reading:
        util: list[float] = []
        mem: list[float] = []
        power: list[float] = []
        nvml = self._nvml
        for h in self._handles:
            with contextlib.suppress(Exception):
                util.append(float(nvml.nvmlDeviceGetUtilizationRates(h).gpu))
            with contextlib.suppress(Exception):
                mem.append(float(nvml.nvmlDeviceGetMemoryInfo(h).used))
            with contextlib.suppress(Exception):
                power.append(float(nvml.nvmlDeviceGetPowerUsage(h)) / 1000.0)  # mW -> W
        n = len(self._handles)
        return _Reading(
            t_s=time.perf_counter() - self._t0,
            # utilization is averaged over devices; memory and power add up
            utilization_pct=sum(util) / len(util) if util else None,
            memory_used_bytes=sum(mem) if len(mem) == n else None,
            power_w=sum(power) if len(power) == n else None,
        )

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._readings.append(self._read())

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._energy_start = self._energy_mj()
        self._readings.append(self._read())
        self._thread = threading.Thread(target=self._loop, name="tokrate-gpu", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._readings.append(self._read())
        self._energy_end = self._energy_mj()
        self._duration_s = time.perf_counter() - self._t0

    def _energy(self) -> tuple[float | None, str | None]:
        if self._energy_start is not None and self._energy_end is not None:
            return (self._energy_end - self._energy_start) / 1000.0, "counter"
        points = [(r.t_s, r.power_w) for r in self._readings if r.power_w is not None]
        if len(points) < 2:
            return None, None
        joules = 0.0
        for (t_a, p_a), (t_b, p_b) in itertools.pairwise(points):
            joules += (t_b - t_a) * (p_a + p_b) / 2.0
        return joules, "power-integral"

    def result(self, output_tokens: int | None) -> dict[str, Any]:
        """The telemetry of the watched span; J/token when ``output_tokens`` is known."""
        util = [r.utilization_pct for r in self._readings if r.utilization_pct is not None]
        mem = [r.memory_used_bytes for r in self._readings if r.memory_used_bytes is not None]
        power = [r.power_w for r in self._readings if r.power_w is not None]
        energy, source = self._energy()
        per_token = energy / output_tokens if energy is not None and output_tokens else None
        rows = self._readings
        if len(rows) > MAX_SERIES_ROWS:
            step = len(rows) / MAX_SERIES_ROWS
            rows = [rows[int(i * step)] for i in range(MAX_SERIES_ROWS)]
        return {
            "available": True,
            "duration_s": self._duration_s,
            "readings": len(self._readings),
            "interval_s": self._interval_s,
            "utilization_pct_mean": _mean(util),
            "utilization_pct_max": max(util) if util else None,
            "memory_used_bytes_max": max(mem) if mem else None,
            "power_w_mean": _mean(power),
            "power_w_max": max(power) if power else None,
            "energy_j": energy,
            "energy_source": source,
            "output_tokens": output_tokens,
            "j_per_token": per_token,
            "series": [[r.t_s, r.utilization_pct, r.memory_used_bytes, r.power_w] for r in rows],
        }


class GpuMonitor:
    """Finds NVIDIA GPUs once and hands out :class:`GpuWatch` samplers.

    ``nvml`` is a zero-argument callable returning the ``pynvml`` module (the default
    imports it); tests without a GPU pass a fake here.
    """

    def __init__(
        self,
        nvml: Callable[[], Any] = _import_pynvml,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self._load = nvml
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._status: GpuStatus | None = None
        self._nvml: Any = None
        self._handles: list[Any] = []

    def status(self) -> GpuStatus:
        with self._lock:
            if self._status is None:
                self._status = self._probe()
            return self._status

    def _probe(self) -> GpuStatus:
        try:
            nvml = self._load()
        except ImportError:
            return GpuStatus(
                False,
                "pynvml is not installed; on an NVIDIA machine install "
                '`pip install "pytest-tokrate[gpu]"`',
            )
        try:
            nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            return GpuStatus(False, f"no NVIDIA driver or GPU found by NVML: {_text(exc)}")
        try:
            count = int(nvml.nvmlDeviceGetCount())
            driver = _text(nvml.nvmlSystemGetDriverVersion())
            devices = []
            handles = []
            for index in range(count):
                h = nvml.nvmlDeviceGetHandleByIndex(index)
                handles.append(h)
                devices.append(
                    {
                        "index": index,
                        "name": _text(nvml.nvmlDeviceGetName(h)),
                        "memory_total_bytes": int(nvml.nvmlDeviceGetMemoryInfo(h).total),
                    }
                )
        except Exception as exc:
            return GpuStatus(False, f"NVML could not list the GPUs: {_text(exc)}")
        if not devices:
            return GpuStatus(False, "NVML found no GPU", driver=driver)
        self._nvml = nvml
        self._handles = handles
        return GpuStatus(True, driver=driver, devices=devices)

    @contextlib.contextmanager
    def watch(self) -> Iterator[GpuWatch | None]:
        """Sample the GPUs while the block runs; yields ``None`` when there is no GPU."""
        if not self.status().available:
            yield None
            return
        watch = GpuWatch(self._nvml, self._handles, self.interval_s)
        watch.start()
        try:
            yield watch
        finally:
            watch.stop()


_default: list[GpuMonitor] = []
_default_lock = threading.Lock()


def default_monitor() -> GpuMonitor:
    """The process-wide monitor over the real NVML (probed once, on first use)."""
    with _default_lock:
        if not _default:
            _default.append(GpuMonitor())
        return _default[0]


__all__ = ["DEFAULT_INTERVAL_S", "GpuMonitor", "GpuStatus", "GpuWatch", "default_monitor"]
