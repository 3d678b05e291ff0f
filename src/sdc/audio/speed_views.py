"""Test-time speed views: each window heard again a little faster and a little slower.

A model trained with speed perturbation has learned that a digit said 5% faster is the same
digit; what it is unsure of in one hearing it often gets right on average over a few. On
`best`'s trials, averaging the class probabilities over five speeds (0.925-1.075) raised the
held-out speakers' accuracy by 0.7 points and the worst speaker's by 1.6; the two outer speeds
alone, which `best` hears, do as well at two-fifths of the cost (docs/results.md).

A view resamples the whole window, padding and noise included, as `speed_change` resamples a
clip (rates on its 50 Hz grid, so the kernels stay short), then fits it back to the window
around its centre: a faster view gains zero padding at both ends, a slower one loses a little
of each end, which evaluation's centred clips never reach.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from sdc.audio.augment.resample import on_rate_grid
from sdc.audio.resample_sound import resample_sound


def speeds_on_grid(speeds: Sequence[float], sample_rate: int) -> list[float]:
    """The speeds the views really play at: rounded as `speed_change` rounds them."""
    return on_rate_grid(torch.tensor(list(speeds), dtype=torch.float64), sample_rate).tolist()


class SpeedViews(nn.Module):
    """(B, window) windows -> one (B, window) batch per speed (1.0: the windows unchanged)."""

    def __init__(self, speeds: Sequence[float], sample_rate: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.speeds = speeds_on_grid(speeds, sample_rate)
        self.resamplers = nn.ModuleList()
        for speed in self.speeds:
            if speed == 1.0:
                self.resamplers.append(nn.Identity())
                continue
            resample = torchaudio.transforms.Resample(round(speed * sample_rate), sample_rate)
            # Built from the speeds alone, so not saved: a checkpoint saved without views loads
            # into a model with them, and the other way round.
            resample.register_buffer("kernel", resample.kernel, persistent=False)
            self.resamplers.append(resample)

    def forward(self, windows: torch.Tensor) -> list[torch.Tensor]:
        views = []
        for speed, resample in zip(self.speeds, self.resamplers, strict=True):
            if speed == 1.0:
                views.append(windows)
                continue
            played = resample_sound(resample, windows)
            # Back to the window around its centre; the sizes are known when the model is
            # built, so an exported graph keeps only its batch axis dynamic.
            slack = self.window - played.shape[1]
            if slack >= 0:
                views.append(F.pad(played, (slack // 2, slack - slack // 2)))
            else:
                start = -slack // 2
                views.append(played[:, start : start + self.window])
        return views
