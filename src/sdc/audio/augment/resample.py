"""Pitch shift and speed perturbation as one speed change by resampling.

Rates are rounded to a 50 Hz grid, so the few resampling kernels needed are tiny and cached, and
the clips that share a rate are resampled together. Resampling moves the formants with the
pitch, as a shorter vocal tract does, so a wide upward range imitates women's and children's
voices from adult men's. A fresh `torchaudio.transforms.PitchShift` per clip would rebuild a long
sinc kernel every call (about a second a clip).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio

from sdc.config.fields import option, probability


@dataclass
class PitchShift:
    """Pitch by resampling, duration restored by the vocoder: formants move with the pitch.
    Women's and children's voices sit 4-12 semitones above FSDD's men."""

    p: float = probability(0.5)
    semitones: tuple[float, float] = option((-2.0, 2.0), low=-12.0, high=12.0)


@dataclass
class SpeedPerturb:
    """Playback speed: > 1 is higher and shorter, pitch and tempo together (Kaldi-style).

    Equal to a pitch shift of 12*log2(factor) semitones plus a time stretch with rate `factor`,
    and done as exactly that, in one resampling: the phase vocoder only runs when a pitch shift
    or a time stretch is also drawn for the clip.
    """

    p: float = probability(0.0)
    factor: tuple[float, float] = option((0.9, 1.1), low=0.5, high=2.0)


RATE_GRID_HZ = 50
"""Resampling rates are rounded to this grid: gcd(8000, 8000 + k*50) >= 50 keeps kernels short."""


class Resamplers:
    """Resampling kernels cached per (from, to, device, dtype): built once, reused each batch."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int, str, torch.dtype], torchaudio.transforms.Resample] = {}

    def __call__(
        self, waves: torch.Tensor, orig_freq: int, new_freq: int
    ) -> torchaudio.transforms.Resample:
        key = (orig_freq, new_freq, str(waves.device), waves.dtype)
        if key not in self._cache:
            self._cache[key] = torchaudio.transforms.Resample(
                orig_freq, new_freq, dtype=waves.dtype
            ).to(waves.device)
        return self._cache[key](waves)


def on_rate_grid(factors: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Round speed factors to those `speed_change` can apply exactly."""
    return torch.round(sample_rate * factors / RATE_GRID_HZ) * RATE_GRID_HZ / sample_rate


def speed_change(
    waves: torch.Tensor,
    lengths: torch.Tensor,
    factors: torch.Tensor,
    sample_rate: int,
    resamplers: Resamplers,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Play each clip `factors[b]` times faster (higher and shorter) by resampling.

    Returns the new padded batch, the new lengths and the factors actually applied after
    rounding to the rate grid (the caller compensates the duration with exactly those).
    """
    applied = on_rate_grid(factors, sample_rate)
    grid = torch.round(applied * sample_rate)
    new_lengths = torch.ceil(lengths.to(applied.dtype) / applied).long()
    out = waves.new_zeros(waves.shape[0], int(new_lengths.max()))
    # A loop over the distinct rates in the batch, not over clips; each group is cut to its own
    # longest clip, so one long clip in the batch does not make every resampling long.
    for rate in torch.unique(grid).tolist():
        members = torch.nonzero(grid == rate).squeeze(1)
        group = waves[members, : int(lengths[members].max())]
        rate = int(rate)
        shifted = group if rate == sample_rate else resamplers(group, rate, sample_rate)
        width = min(shifted.shape[1], out.shape[1])
        out[members, :width] = shifted[:, :width]
    mask = torch.arange(out.shape[1], device=out.device) < new_lengths.unsqueeze(1)
    return out * mask, new_lengths, applied
