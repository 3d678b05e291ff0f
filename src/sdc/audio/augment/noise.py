"""Gaussian noise over the whole window, padding included, at an absolute level or at a
signal-to-noise ratio relative to each clip."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sdc.config.fields import option, probability


@dataclass
class GaussianNoise:
    """Not on every clip: test clips keep clean zero padding, and a model that never saw clean
    padding fails on them (it cost a prototype 25 points)."""

    p: float = probability(0.5)
    std: tuple[float, float] = option((0.0005, 0.005), low=1e-6, high=1.0)
    """Noise standard deviation, drawn log-uniformly per clip (full scale is 1.0)."""
    snr_db: tuple[float, float] | None = option(None, low=-20.0, high=100.0)
    """When set, replaces `std`: the signal-to-noise ratio in dB, drawn uniformly per clip,
    relative to the clip's RMS over its own samples (the window's padding does not count)."""


def noise_std_for_snr(
    windows: torch.Tensor, lengths: torch.Tensor, snr_db: torch.Tensor
) -> torch.Tensor:
    """The noise standard deviation that puts each clip at `snr_db` (B,).

    The signal's power is its mean square over the clip's own samples inside the window, so a
    short clip in a long window is not judged quieter than it sounds.
    """
    samples = lengths.to(windows.device).clamp(min=1, max=windows.shape[1])
    power = windows.square().sum(dim=1) / samples
    return torch.sqrt(power * torch.pow(10.0, -snr_db / 10))
