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
    """CPU, cores, torch threads and versions, and the GPU when there is one.

    `cpu_kernels` is the instruction set torch's CPU kernels were dispatched for (AVX2,
    AVX512, ...): two VMs sold under one CPU name can differ in it, and then a seeded training
    follows another trajectory, so a figure names it.
    """
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def summary(info: dict[str, Any] | None = None) -> str:
    """One line for a table's caption: `CPU (kernels), N cores[, GPU]`."""
    info = info or describe()
    kernels = f" ({info['cpu_kernels']} kernels)" if info.get("cpu_kernels") else ""
    text = f"{info['cpu']}{kernels}, {info['cores']} cores"
    return f"{text}, {info['gpu']}" if "gpu" in info else text
