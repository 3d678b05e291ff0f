"""Reading audio files into mono float tensors at the rate a model expects, for training and
evaluation (decoding itself is `sdc.audio.decode`, which needs no torch)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torchaudio

from sdc.audio.decode import decode_audio


@lru_cache(maxsize=16)
def _resampler(orig_freq: int, new_freq: int) -> torchaudio.transforms.Resample:
    # Building a resampling kernel is costly; files of one dataset share a rate.
    return torchaudio.transforms.Resample(orig_freq, new_freq)


def resample(wave: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """Resample with a cached kernel; a no-op at equal rates."""
    if orig_freq == new_freq:
        return wave
    with torch.no_grad():
        return _resampler(int(orig_freq), int(new_freq))(wave)


def read_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """A file as a 1-D float32 tensor at `sample_rate` (`decode_audio`, then torchaudio's
    resampling, which training and evaluation use)."""
    wave, file_rate = decode_audio(path)
    return resample(torch.from_numpy(wave), file_rate, sample_rate)
