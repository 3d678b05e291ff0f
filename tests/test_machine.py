"""The machine line that every benchmark and results table carries."""

from __future__ import annotations

import torch

from sdc.lab.machine import describe, summary


def test_the_machine_line_names_the_cpu_kernels_torch_dispatches_to() -> None:
    info = describe()
    assert info["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
    assert f"({info['cpu_kernels']} kernels)" in summary(info)


def test_a_machine_recorded_before_the_kernels_were_still_reads() -> None:
    assert summary({"cpu": "AMD EPYC", "cores": 2}) == "AMD EPYC, 2 cores"
    assert summary({"cpu": "c", "cpu_kernels": "AVX2", "cores": 16, "gpu": "H200"}) == (
        "c (AVX2 kernels), 16 cores, H200"
    )
