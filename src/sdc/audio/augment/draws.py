"""The random draws every training-time augmentation uses, waveform and feature steps alike.

One rule holds for all of them: a step that is off (p <= 0) draws no random numbers, so adding
a step leaves the random stream, and thus the runs, of recipes that do not use it unchanged
(and `make results` may reuse their trials).
"""

from __future__ import annotations

import math

import torch


def uniform(
    size: int | tuple[int, ...], low: float, high: float, device: torch.device
) -> torch.Tensor:
    return torch.rand(size, device=device) * (high - low) + low


def log_uniform(
    size: int | tuple[int, ...], low: float, high: float, device: torch.device
) -> torch.Tensor:
    return torch.exp(uniform(size, math.log(low), math.log(high), device))


def coin(n: int, p: float, device: torch.device) -> torch.Tensor:
    """True with probability `p` for each of `n` clips; no draw at all when `p <= 0`."""
    if p <= 0:
        return torch.zeros(n, dtype=torch.bool, device=device)
    return torch.rand(n, device=device) < p
