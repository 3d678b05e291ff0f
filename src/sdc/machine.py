"""What machine a figure was measured on: every benchmark and results table says so."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch


def _cpu_model() -> str:
    """The CPU's marketing name where Linux tells it, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict[str, Any]:
    """CPU, cores, torch threads and versions, and the GPU when there is one."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def summary(info: dict[str, Any] | None = None) -> str:
    """One line for a table's caption: `CPU, N cores[, GPU]`."""
    info = info or describe()
    text = f"{info['cpu']}, {info['cores']} cores"
    return f"{text}, {info['gpu']}" if "gpu" in info else text
