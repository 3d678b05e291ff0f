"""Batched waveform augmentation that runs on the training device.

The write-up shifted pitch and stretched time clip by clip with librosa. Doing that with a fresh
`torchaudio.transforms.PitchShift` per clip costs about a second per clip (it rebuilds a long sinc
kernel every call). Here a whole batch is augmented with a handful of tensor ops:

1. pitch: a speed change by resampling. Rates are rounded to a 50 Hz grid, so the few resampling
   kernels needed are tiny and cached, and the clips that share a rate are resampled together;
2. tempo: one batched phase vocoder with a rate per clip undoes the duration change of step 1
   and applies the random time stretch, keeping pitch;
3. placement: each clip lands at a random position of the fixed window (see `window.py`);
4. noise: Gaussian noise over the whole window, padding included.

Each step has its own probability; a clip the dice skip passes through that step untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torchaudio

from sdc.audio.window import fit_to_window

RATE_GRID_HZ = 50
"""Resampling rates are rounded to this grid: gcd(8000, 8000 + k*50) >= 50 keeps kernels short."""


@dataclass
class PitchShift:
    p: float = 0.0
    semitones: tuple[float, float] = (-2.0, 2.0)


@dataclass
class TimeStretch:
    p: float = 0.0
    rate: tuple[float, float] = (0.85, 1.15)
    """> 1 speeds up (shorter clip), < 1 slows down; pitch is kept."""


@dataclass
class RandomPlacement:
    p: float = 0.0
    """Probability that a clip goes to a uniformly random position instead of the centre."""


@dataclass
class GaussianNoise:
    p: float = 0.0
    std: tuple[float, float] = (0.001, 0.005)
    """Noise standard deviation, drawn log-uniformly per clip (full scale is 1.0)."""


@dataclass
class AugmentConfig:
    pitch_shift: PitchShift = field(default_factory=PitchShift)
    time_stretch: TimeStretch = field(default_factory=TimeStretch)
    placement: RandomPlacement = field(default_factory=RandomPlacement)
    noise: GaussianNoise = field(default_factory=GaussianNoise)


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) * (high - low) + low


def _coin(n: int, p: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) < p


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
    grid = torch.round(sample_rate * factors / RATE_GRID_HZ) * RATE_GRID_HZ
    applied = grid / sample_rate
    new_lengths = torch.ceil(lengths.to(applied.dtype) / applied).long()
    out = waves.new_zeros(waves.shape[0], int(new_lengths.max()))
    # A loop over the few distinct rates in the batch, not over clips.
    for rate in torch.unique(grid).tolist():
        members = torch.nonzero(grid == rate).squeeze(1)
        if int(rate) == sample_rate:
            shifted = waves[members]
        else:
            shifted = resamplers(waves[members], int(rate), sample_rate)
        width = min(shifted.shape[1], out.shape[1])
        out[members, :width] = shifted[:, :width]
    mask = torch.arange(out.shape[1], device=out.device) < new_lengths.unsqueeze(1)
    return out * mask, new_lengths, applied


def phase_vocoder_stretch(
    waves: torch.Tensor,
    lengths: torch.Tensor,
    rates: torch.Tensor,
    n_fft: int = 256,
    hop_length: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Change each clip's duration by 1/`rates[b]` keeping its pitch: one STFT for the batch.

    This is torchaudio's `phase_vocoder` with a time step per clip instead of one per batch.
    """
    window = torch.hann_window(n_fft, device=waves.device, dtype=waves.dtype)
    spec = torch.stft(
        waves, n_fft, hop_length, window=window, center=True, return_complex=True
    )  # (B, F, T)
    batch, freqs, frames = spec.shape
    in_frames = lengths.to(waves.device) // hop_length + 1
    out_lengths = torch.round(lengths.to(rates.dtype) / rates).long()
    out_frames = int((out_lengths.max() // hop_length + 1).item())

    steps = torch.arange(out_frames, device=waves.device, dtype=rates.dtype)
    time_steps = steps.unsqueeze(0) * rates.unsqueeze(1)  # (B, K)
    valid = time_steps < in_frames.unsqueeze(1)
    # Magnitude and phase once per input frame, then gathered: cheaper than gathering complex
    # frames and taking the angle of each gathered pair.
    magnitude = torch.nn.functional.pad(spec.abs(), (0, 2))
    angle = torch.nn.functional.pad(spec.angle(), (0, 2))
    idx0 = time_steps.floor().long().clamp(max=frames)
    alphas = (time_steps - idx0).unsqueeze(1)
    idx0 = idx0.unsqueeze(1).expand(batch, freqs, out_frames)
    idx1 = idx0 + 1

    phase_advance = torch.linspace(0, math.pi * hop_length, freqs, device=waves.device)
    phase_advance = phase_advance.to(waves.dtype).unsqueeze(1)
    phase = angle.gather(2, idx1) - angle.gather(2, idx0) - phase_advance
    phase = phase - 2 * math.pi * torch.round(phase / (2 * math.pi)) + phase_advance
    phase = torch.cat([angle[..., :1], phase[..., :-1]], dim=-1)
    m0, m1 = magnitude.gather(2, idx0), magnitude.gather(2, idx1)
    stretched = torch.polar(
        (alphas * m1 + (1 - alphas) * m0) * valid.unsqueeze(1), torch.cumsum(phase, dim=-1)
    )

    out = torch.istft(
        stretched,
        n_fft,
        hop_length,
        window=window,
        center=True,
        length=int(out_lengths.max()),
    )
    mask = torch.arange(out.shape[1], device=out.device) < out_lengths.unsqueeze(1)
    return out * mask, out_lengths


class WaveformAugment:
    """The training-time chain: pitch, tempo, placement into the window, noise.

    Not an `nn.Module`: it holds no learned state and is never saved in a checkpoint, so a
    trained model carries no trace of how it was augmented.
    """

    def __init__(self, config: AugmentConfig, sample_rate: int, window: int) -> None:
        self.config = config
        self.sample_rate = sample_rate
        self.window = window
        self._resamplers = Resamplers()

    @torch.no_grad()
    def __call__(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Augment a padded batch (B, L) of clips with `lengths`; returns (B, window)."""
        cfg, device, n = self.config, waves.device, waves.shape[0]
        lengths = lengths.to(device)
        speed = torch.ones(n, device=device)
        tempo = torch.ones(n, device=device)

        pitched = _coin(n, cfg.pitch_shift.p, device)
        if pitched.any():
            semitones = _uniform(n, *cfg.pitch_shift.semitones, device) * pitched
            factors = torch.pow(2.0, semitones / 12.0)
            sub = torch.nonzero(pitched).squeeze(1)
            shifted, new_lengths, applied = speed_change(
                waves[sub], lengths[sub], factors[sub], self.sample_rate, self._resamplers
            )
            waves, lengths = _scatter_clips(waves, lengths, sub, shifted, new_lengths)
            speed[sub] = applied.to(speed.dtype)

        stretched = _coin(n, cfg.time_stretch.p, device)
        tempo = torch.where(stretched, _uniform(n, *cfg.time_stretch.rate, device), tempo)
        # The vocoder both restores the duration the speed change altered and applies the tempo.
        vocoder_rate = tempo / speed
        needs_vocoder = (vocoder_rate - 1).abs() > 1e-6
        if needs_vocoder.any():
            sub = torch.nonzero(needs_vocoder).squeeze(1)
            trimmed = waves[sub, : int(lengths[sub].max())]
            out, new_lengths = phase_vocoder_stretch(trimmed, lengths[sub], vocoder_rate[sub])
            waves, lengths = _scatter_clips(waves, lengths, sub, out, new_lengths)

        position = torch.where(
            _coin(n, cfg.placement.p, device),
            torch.rand(n, device=device),
            torch.full((n,), 0.5, device=device),
        )
        windows = fit_to_window(waves, lengths, self.window, position)

        noisy = torch.nonzero(_coin(n, cfg.noise.p, device)).squeeze(1)
        if len(noisy):
            low, high = (math.log(s) for s in cfg.noise.std)
            std = torch.exp(_uniform(len(noisy), low, high, device)).unsqueeze(1)
            noise = torch.randn(len(noisy), self.window, device=device, dtype=windows.dtype)
            windows[noisy] += noise * std
        return windows


def _scatter_clips(
    waves: torch.Tensor,
    lengths: torch.Tensor,
    members: torch.Tensor,
    clips: torch.Tensor,
    clip_lengths: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Put re-timed clips back into the batch, widening it if they grew longer."""
    width = max(waves.shape[1], clips.shape[1])
    out = torch.nn.functional.pad(waves, (0, width - waves.shape[1]))
    out[members] = torch.nn.functional.pad(clips, (0, width - clips.shape[1]))
    lengths = lengths.clone()
    lengths[members] = clip_lengths.to(lengths.dtype)
    return out, lengths
