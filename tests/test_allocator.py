"""glibc's malloc keeps freed memory for the next step instead of handing it to the kernel."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from sdc.training.allocator import keep_freed_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# A training step's pattern: a large activation made, filled and freed, again and again. The
# first steps grow the heap until a freed block fits the next request; the later ones are counted.
STEPS = """
import json, resource, torch
from sdc.training.allocator import keep_freed_memory
applied = keep_freed_memory()
def steps(n):
    for _ in range(n):
        x = torch.empty(50 * 2**20 // 4)  # 50 MB, above glibc's largest mmap threshold
        x.fill_(1.0)
        del x
steps(10)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
steps(10)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": applied, "faults": faults}))
"""


def _steps(malloc: str | None) -> dict[str, int | bool]:
    env = {k: v for k, v in os.environ.items() if k not in ("SDC_MALLOC", "GLIBC_TUNABLES")}
    if malloc is not None:
        env["SDC_MALLOC"] = malloc
    done = subprocess.run(
        [sys.executable, "-c", STEPS], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt's options are glibc's")
def test_freed_memory_is_reused_not_faulted_in_again() -> None:
    kept, default = _steps(None), _steps("default")
    assert kept["applied"] is True and default["applied"] is False
    # glibc's default maps each 50 MB block anew: 10 x 12,800 pages faulted in.
    assert default["faults"] > 100_000
    # Kept: every block reuses one freed before it.
    assert kept["faults"] < 1_000


def test_sdc_malloc_default_leaves_glibc_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDC_MALLOC", "Default ")
    assert keep_freed_memory() is False
