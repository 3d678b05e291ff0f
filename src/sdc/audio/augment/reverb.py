"""A synthetic room: exponentially decaying noise as an impulse response, one batched FFT."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sdc.config.fields import option, probability


@dataclass
class Reverb:
    p: float = probability(0.0)
    rt60: tuple[float, float] = option((0.1, 0.6), low=0.01, high=2.0)
    """Reverberation time in seconds (decay by 60 dB), drawn uniformly per clip."""
    drr_db: tuple[float, float] = option((0.0, 15.0), low=-20.0, high=40.0)
    """Direct-to-reverberant energy ratio in dB: low is a far microphone in a live room."""


def synthetic_rir(
    rt60: torch.Tensor, drr_db: torch.Tensor, sample_rate: int, length: int
) -> torch.Tensor:
    """Room impulse responses (B, length): a direct path, then exponentially decaying noise.

    The tail's amplitude falls by 60 dB after `rt60[b]` seconds; its energy is `drr_db[b]` below
    the direct path's. Each response has unit energy, so reverberation keeps a clip's loudness.
    """
    t = torch.arange(length, device=rt60.device, dtype=rt60.dtype) / sample_rate
    decay = torch.exp(-math.log(1000.0) * t / rt60.unsqueeze(1))
    tail = torch.randn(len(rt60), length, device=rt60.device, dtype=rt60.dtype) * decay
    tail[:, 0] = 0.0
    tail_energy = tail.square().sum(dim=1, keepdim=True).clamp(min=1e-12)
    tail = tail * torch.sqrt(torch.pow(10.0, -drr_db / 10).unsqueeze(1) / tail_energy)
    tail[:, 0] = 1.0
    return tail / tail.square().sum(dim=1, keepdim=True).sqrt()


def reverberate(
    waves: torch.Tensor, lengths: torch.Tensor, rirs: torch.Tensor, max_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convolve each clip with its impulse response by one batched FFT.

    The reverberant tail lengthens a clip, but never past `max_length` (the window), so that a
    long clip is not cropped at its start to make room for its own echo.
    """
    width = waves.shape[1] + rirs.shape[1] - 1
    n_fft = 1 << (width - 1).bit_length()
    spectrum = torch.fft.rfft(waves, n_fft) * torch.fft.rfft(rirs, n_fft)
    out = torch.fft.irfft(spectrum, n_fft)[:, :width]
    grown = (lengths + rirs.shape[1] - 1).clamp(max=max_length)
    new_lengths = torch.maximum(lengths, grown)
    mask = torch.arange(width, device=out.device) < new_lengths.unsqueeze(1)
    return out * mask, new_lengths
