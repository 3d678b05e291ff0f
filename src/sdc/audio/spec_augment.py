"""SpecAugment: time and frequency masks on the feature image, during training only.

It acts on the front end's output, so it runs in the LightningModule's training step, after the
front end and before the network. It holds no state: nothing of it is saved in a checkpoint,
and evaluation, inference and export never see it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sdc.audio.augment.draws import coin
from sdc.config.fields import option, probability


@dataclass
class SpecAugmentConfig:
    """`spec_augment`: masks on the feature image of training clips."""

    p: float = probability(0.0)
    """Probability that a clip is masked at all."""
    freq_masks: int = option(2, low=0)
    freq_width: int = option(8, low=0)
    """Each frequency mask covers 0 to `freq_width` rows (coefficients)."""
    time_masks: int = option(2, low=0)
    time_width: int = option(20, low=0)
    """Each time mask covers 0 to `time_width` frames (11.5 ms each with the default hop)."""


def _band_mask(n: int, size: int, masks: int, max_width: int, device: torch.device) -> torch.Tensor:
    """(n, size) True where any of `masks` random bands of width 0..`max_width` falls."""
    masked = torch.zeros(n, size, dtype=torch.bool, device=device)
    positions = torch.arange(size, device=device)
    for _ in range(masks):
        width = torch.randint(0, max_width + 1, (n, 1), device=device)
        start = (torch.rand(n, 1, device=device) * (size - width + 1)).long()
        masked |= (positions >= start) & (positions < start + width)
    return masked


def spec_augment(features: torch.Tensor, config: SpecAugmentConfig) -> torch.Tensor:
    """Mask bands of (B, C, F, T) features with zero, the mean of normalized features."""
    batch, _, freqs, frames = features.shape
    device = features.device
    chosen = coin(batch, config.p, device).view(batch, 1, 1)
    freq = _band_mask(batch, freqs, config.freq_masks, min(config.freq_width, freqs), device)
    time = _band_mask(batch, frames, config.time_masks, min(config.time_width, frames), device)
    masked = (freq.unsqueeze(2) | time.unsqueeze(1)) & chosen
    return features.masked_fill(masked.unsqueeze(1), 0.0)
