"""The training-time augmentation chain: whole batches on the training device, step by step.

One clip's way through it, each step in its own file with its own probability (a clip the dice
skip passes through that step untouched; a step that is off draws no random numbers):

1. onset cut (`cuts.py`): the start of the clip's sound cut off, as a recording started late;
2. pitch and speed (`resample.py`): one speed change by resampling from cached kernels;
3. tempo (`vocoder.py`): one batched phase vocoder restores the pitch shift's duration and
   applies the random time stretch;
4. reverb (`reverb.py`): a synthetic room;
5. microphone (`microphone.py`): a random smooth frequency response;
6. gain: a random loudness in dB;
7. trim (`cuts.py`): the clip's quiet start and end cut at a random level;
8. placement: each clip at a random position of the fixed window (`sdc.audio.window`);
9. noise (`noise.py`): Gaussian noise over the whole window, padding included.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from sdc.audio.augment.cuts import OnsetCut, Trim, cut_onsets, trim_quiet_ends
from sdc.audio.augment.draws import coin, log_uniform, uniform
from sdc.audio.augment.microphone import Microphone, random_microphones
from sdc.audio.augment.noise import GaussianNoise, noise_std_for_snr
from sdc.audio.augment.resample import (
    PitchShift,
    Resamplers,
    SpeedPerturb,
    on_rate_grid,
    speed_change,
)
from sdc.audio.augment.reverb import Reverb, reverberate, synthetic_rir
from sdc.audio.augment.vocoder import (
    VOCODERS,
    TimeStretch,
    phase_vocoder_stretch,
    similar_lengths,
)
from sdc.audio.window import fit_to_window
from sdc.config.fields import check, option, probability


@dataclass
class Gain:
    p: float = probability(0.0)
    db: tuple[float, float] = option((-12.0, 6.0), low=-60.0, high=20.0)
    """Loudness change in dB, drawn uniformly per clip (before noise, so SNR is unaffected)."""


@dataclass
class RandomPlacement:
    p: float = probability(1.0)
    """Probability that a clip goes to a uniformly random position instead of the centre."""


@dataclass
class AugmentConfig:
    """`data.augment`: the chain's steps in the order they run."""

    vocoder: str = option("phase_locked", choices=VOCODERS)
    """How the pitch shift's and the time stretch's phase vocoder sets its phases:
    `phase_locked` keeps each harmonic whole; `plain` is librosa's and torchaudio's."""
    onset_cut: OnsetCut = field(default_factory=OnsetCut)
    pitch_shift: PitchShift = field(default_factory=PitchShift)
    speed: SpeedPerturb = field(default_factory=SpeedPerturb)
    time_stretch: TimeStretch = field(default_factory=TimeStretch)
    reverb: Reverb = field(default_factory=Reverb)
    microphone: Microphone = field(default_factory=Microphone)
    gain: Gain = field(default_factory=Gain)
    trim: Trim = field(default_factory=Trim)
    placement: RandomPlacement = field(default_factory=RandomPlacement)
    noise: GaussianNoise = field(default_factory=GaussianNoise)


class WaveformAugment:
    """The chain, configured once. Not an `nn.Module`: it holds no learned state and is never
    saved in a checkpoint, so a trained model carries no trace of how it was augmented."""

    def __init__(self, config: AugmentConfig, sample_rate: int, window: int) -> None:
        check(asdict(config), AugmentConfig, "data.augment")
        self.config = config
        self.sample_rate = sample_rate
        self.window = window
        self.lock_phases = config.vocoder == "phase_locked"
        self._resamplers = Resamplers()

    @torch.no_grad()
    def __call__(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Augment a padded batch (B, L) of clips with `lengths`; returns (B, window)."""
        cfg, device, n = self.config, waves.device, waves.shape[0]
        lengths = lengths.to(device)
        ones = torch.ones(n, device=device)

        waves, lengths = self._cut(
            waves, lengths, cfg.onset_cut.p, cfg.onset_cut.seconds, cut_onsets
        )

        # Pitch shift and speed perturbation are one resampling; only the pitch shift's change
        # of duration is undone by the vocoder.
        factors, speed_factors, applied = ones, ones, ones
        pitched = coin(n, cfg.pitch_shift.p, device)
        if pitched.any():
            semitones = uniform(n, *cfg.pitch_shift.semitones, device) * pitched
            factors = torch.pow(2.0, semitones / 12.0)
        sped = coin(n, cfg.speed.p, device)
        if sped.any():
            # On the resampling grid already, so a clip with speed alone needs no vocoder.
            drawn = on_rate_grid(uniform(n, *cfg.speed.factor, device), self.sample_rate)
            speed_factors = torch.where(sped, drawn, ones)
            factors = factors * speed_factors
        resampled = (factors - 1).abs() > 1e-6
        if resampled.any():
            sub = torch.nonzero(resampled).squeeze(1)
            shifted, new_lengths, applied_sub = speed_change(
                waves[sub], lengths[sub], factors[sub], self.sample_rate, self._resamplers
            )
            waves, lengths = _scatter_clips(waves, lengths, sub, shifted, new_lengths)
            applied = ones.clone()
            applied[sub] = applied_sub.to(applied.dtype)

        stretched = coin(n, cfg.time_stretch.p, device)
        tempo = ones
        if stretched.any():
            tempo = torch.where(stretched, uniform(n, *cfg.time_stretch.rate, device), ones)
        # The vocoder both restores the duration the pitch shift altered and applies the tempo;
        # the speed perturbation's own change of duration is kept.
        vocoder_rate = tempo * speed_factors / applied
        needs_vocoder = (vocoder_rate - 1).abs() > 1e-6
        if needs_vocoder.any():
            for sub in similar_lengths(torch.nonzero(needs_vocoder).squeeze(1), lengths):
                trimmed = waves[sub, : int(lengths[sub].max())]
                out, new_lengths = phase_vocoder_stretch(
                    trimmed, lengths[sub], vocoder_rate[sub], lock_phases=self.lock_phases
                )
                waves, lengths = _scatter_clips(waves, lengths, sub, out, new_lengths)

        reverberant = torch.nonzero(coin(n, cfg.reverb.p, device)).squeeze(1)
        if len(reverberant):
            m = len(reverberant)
            rt60 = uniform(m, *cfg.reverb.rt60, device)
            drr = uniform(m, *cfg.reverb.drr_db, device)
            rir_length = math.ceil(float(rt60.max()) * self.sample_rate)
            rirs = synthetic_rir(rt60, drr, self.sample_rate, rir_length).to(waves.dtype)
            trimmed = waves[reverberant, : int(lengths[reverberant].max())]
            out, new_lengths = reverberate(
                trimmed, lengths[reverberant], rirs, max(self.window, trimmed.shape[1])
            )
            waves, lengths = _scatter_clips(waves, lengths, reverberant, out, new_lengths)

        coloured = torch.nonzero(coin(n, cfg.microphone.p, device)).squeeze(1)
        if len(coloured):
            trimmed = waves[coloured, : int(lengths[coloured].max())]
            waves = waves.clone()
            waves[coloured, : trimmed.shape[1]] = random_microphones(
                trimmed, lengths[coloured], cfg.microphone, self.sample_rate
            )

        louder = coin(n, cfg.gain.p, device)
        if louder.any():
            gain_db = uniform(n, *cfg.gain.db, device) * louder
            waves = waves * torch.pow(10.0, gain_db / 20).unsqueeze(1).to(waves.dtype)

        waves, lengths = self._cut(
            waves, lengths, cfg.trim.p, cfg.trim.threshold_db, trim_quiet_ends
        )

        position = torch.where(
            coin(n, cfg.placement.p, device),
            torch.rand(n, device=device),
            torch.full((n,), 0.5, device=device),
        )
        windows = fit_to_window(waves, lengths, self.window, position)

        noisy = torch.nonzero(coin(n, cfg.noise.p, device)).squeeze(1)
        if len(noisy):
            if cfg.noise.snr_db is not None:
                snr = uniform(len(noisy), *cfg.noise.snr_db, device)
                std = noise_std_for_snr(windows[noisy], lengths[noisy], snr)
            else:
                std = log_uniform(len(noisy), *cfg.noise.std, device)
            noise = torch.randn(len(noisy), self.window, device=device, dtype=windows.dtype)
            windows[noisy] += noise * std.unsqueeze(1).to(windows.dtype)
        return windows

    def _cut(
        self,
        waves: torch.Tensor,
        lengths: torch.Tensor,
        p: float,
        drawn: tuple[float, float],
        cut: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`cut(clips, lengths, values, sample_rate)` on the clips the dice pick (probability
        `p`), each with its own value drawn uniformly from `drawn`: the onset cut's and the
        trim's shared shape."""
        members = torch.nonzero(coin(waves.shape[0], p, waves.device)).squeeze(1)
        if not len(members):
            return waves, lengths
        values = uniform(len(members), *drawn, waves.device)
        out, new_lengths = cut(waves[members], lengths[members], values, self.sample_rate)
        return _scatter_clips(waves, lengths, members, out, new_lengths)


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
