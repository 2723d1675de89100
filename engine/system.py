"""What a training process and its GPUs are using: CPU (percent of one core, over the time since
the last sample), resident memory, and through NVIDIA's NVML bindings (nvidia-ml-py, optional)
GPU utilisation, memory and power. Without NVML, or on CPU, the GPU fields are absent. Torch-free:
the queue worker samples its GPUs with it too."""

from __future__ import annotations

import os
import time
from typing import Any

_NVML: Any = None  # the pynvml module once initialised; False when it cannot be


def nvml():
    """pynvml, initialised once, or None (not installed, no driver, no GPU)."""
    global _NVML
    if _NVML is None:
        try:
            import pynvml

            pynvml.nvmlInit()
            _NVML = pynvml
        except Exception:  # ImportError, NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded ...
            _NVML = False
    return _NVML or None


def gpu_sample(handle: Any) -> dict[str, float]:
    """Utilisation (%), memory used/total (MB) and power (W) of one NVML device handle."""
    lib = nvml()
    out: dict[str, float] = {}
    if lib is None:
        return out
    try:
        out["gpu_util"] = float(lib.nvmlDeviceGetUtilizationRates(handle).gpu)
        memory = lib.nvmlDeviceGetMemoryInfo(handle)
        out["gpu_mem_used_mb"] = round(memory.used / 2**20, 1)
        out["gpu_mem_total_mb"] = round(memory.total / 2**20, 1)
        out["gpu_power_w"] = round(lib.nvmlDeviceGetPowerUsage(handle) / 1000.0, 1)
    except Exception:  # a device that does not report a field (power on some boards)
        pass
    return out


def gpu_handle(index: int | None = None, uuid: str | None = None) -> Any:
    """The NVML handle of a device by its UUID (what torch reports) or physical index."""
    lib = nvml()
    if lib is None:
        return None
    try:
        if uuid:
            return lib.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        return lib.nvmlDeviceGetHandleByIndex(index or 0)
    except Exception:
        return None


def gpus_sample(indices: list[int]) -> list[dict[str, float]]:
    """One sample per physical GPU index (the queue worker's --gpus), each with its "index"."""
    samples = []
    for index in indices:
        handle = gpu_handle(index=index)
        if handle is not None:
            samples.append({"index": index, **gpu_sample(handle)})
    return samples


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            resident = int(handle.read().split()[1])
        return round(resident * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


class SystemSampler:
    """This process's CPU and memory, and its GPU's use (NVML handle from `gpu_uuid`)."""

    def __init__(self, gpu_uuid: str | None = None, gpu_index: int | None = None) -> None:
        self._last_wall = time.monotonic()
        self._last_cpu = _cpu_seconds()
        self._gpu = gpu_handle(index=gpu_index, uuid=gpu_uuid) if (gpu_uuid or gpu_index is not None) else None

    def sample(self) -> dict[str, float]:
        wall, cpu = time.monotonic(), _cpu_seconds()
        out: dict[str, float] = {}
        if wall > self._last_wall:
            out["cpu_percent"] = round(100.0 * (cpu - self._last_cpu) / (wall - self._last_wall), 1)
        self._last_wall, self._last_cpu = wall, cpu
        rss = _rss_mb()
        if rss is not None:
            out["rss_mb"] = rss
        if self._gpu is not None:
            out.update(gpu_sample(self._gpu))
        return out


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system
