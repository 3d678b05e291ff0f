"""The front end: fixed-length waveform in, normalized MFCC image out.

It is part of the model (and of every checkpoint and export), so training, evaluation, inference
and the exported graph can never compute features differently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torchaudio
from torch import nn

from sdc.audio.vtlp import warp_filters
from sdc.config.fields import option

NORMALIZATIONS = ("global", "utterance", "speech", "none")
SPEECH_RANGE_DB = 35.0
"""`speech` normalization: frames within this many dB of a clip's loudest frame are its speech."""


@dataclass
class MfccConfig:
    """`features` for `MfccFrontend`: the write-up's 40 MFCCs over 23 ms frames every 11.5 ms,
    0 Hz to Nyquist, standardized with the training set's statistics."""

    _target_: str = "sdc.audio.features.MfccFrontend"
    sample_rate: int = option(8000, above=0)
    clip_seconds: float = option(2.3, above=0.0)
    n_mfcc: int = option(40, above=0)
    n_mels: int = option(64, above=0)
    frame_seconds: float = option(0.023, above=0.0)
    hop_seconds: float = option(0.0115, above=0.0)
    n_fft: int = option(256, above=0)
    """The 184-sample frame is zero-padded to a 256-point FFT."""
    f_min: float = option(0.0, low=0.0)
    f_max: float | None = option(None, above=0.0)
    """None: the Nyquist frequency (4 kHz at 8 kHz)."""
    top_db: float = option(80.0, above=0.0)
    normalize: str = option("global", choices=NORMALIZATIONS)
    """See `MfccFrontend`."""


class MfccFrontend(nn.Module):
    """40 MFCCs over 23 ms frames every 11.5 ms (the write-up's recipe) plus normalization.

    Normalization, chosen by `normalize`:
    - `global`: each coefficient is standardized with the mean and standard deviation of the
      clean training windows, stored as buffers. Raw MFCCs span very different scales (c0 is in
      the hundreds, high coefficients near one), which slows and destabilizes training; the
      statistics come from the training split only, so nothing leaks from validation or test.
    - `utterance`: cepstral mean and variance normalization per clip, which removes a fixed
      channel (microphone) colouring and loudness: more robust to recordings unlike FSDD. But
      the statistics are taken over the whole window, which a digit fills only a fifth of, so
      they are mostly those of the silence around it and change with how long the digit took.
    - `speech`: the same per-clip normalization with statistics from the clip's speech frames
      only (mean log-mel energy within `SPEECH_RANGE_DB` of its loudest frame), so the padding
      and the speaking rate do not set them.
    - `none`: raw MFCCs.
    """

    def __init__(
        self,
        sample_rate: int = MfccConfig.sample_rate,
        clip_seconds: float = MfccConfig.clip_seconds,
        n_mfcc: int = MfccConfig.n_mfcc,
        n_mels: int = MfccConfig.n_mels,
        frame_seconds: float = MfccConfig.frame_seconds,
        hop_seconds: float = MfccConfig.hop_seconds,
        n_fft: int = MfccConfig.n_fft,
        f_min: float = MfccConfig.f_min,
        f_max: float | None = MfccConfig.f_max,
        top_db: float = MfccConfig.top_db,
        normalize: str = MfccConfig.normalize,
    ) -> None:
        super().__init__()
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        self.sample_rate = sample_rate
        self.window = round(clip_seconds * sample_rate)
        self.normalize = normalize
        win_length = round(frame_seconds * sample_rate)
        self.hop_length = round(hop_seconds * sample_rate)
        self.n_mfcc = n_mfcc
        # torchaudio's MFCC, unrolled: the power spectrum is taken from the real and imaginary
        # parts instead of a complex abs(), which is a fifth of the front end's time on a CPU
        # and has no ONNX equivalent.
        self.spectrogram = torchaudio.transforms.Spectrogram(
            n_fft=max(n_fft, win_length),
            win_length=win_length,
            hop_length=self.hop_length,
            power=None,
        )
        self.mel_scale = torchaudio.transforms.MelScale(
            n_mels=n_mels,
            sample_rate=sample_rate,
            f_min=f_min,
            f_max=f_max if f_max is not None else sample_rate / 2,
            n_stft=max(n_fft, win_length) // 2 + 1,
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB("power", top_db=top_db)
        dct = torchaudio.functional.create_dct(n_mfcc, n_mels, norm="ortho")
        self.register_buffer("dct", dct)
        self.register_buffer("mean", torch.zeros(n_mfcc, 1))
        self.register_buffer("std", torch.ones(n_mfcc, 1))
        self.register_buffer("fitted", torch.tensor(normalize != "global"))

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(channels, coefficients, frames) of one clip's features."""
        frames = self.window // self.hop_length + 1
        return (1, self.n_mfcc, frames)

    def raw(self, windows: torch.Tensor) -> torch.Tensor:
        """MFCCs of (B, window) waveforms as (B, 1, n_mfcc, frames), before normalization.

        The transforms get (B, 1, L), not (B, L): with the latter, torchaudio takes the 80 dB
        `top_db` floor over the whole batch and a clip's features would depend on its neighbours.
        The result equals `torchaudio.transforms.MFCC` with the same settings (tested).
        """
        return self._from_decibels(self._decibels(windows))

    def _decibels(self, windows: torch.Tensor, warp: torch.Tensor | None = None) -> torch.Tensor:
        squares = torch.view_as_real(self.spectrogram(windows.unsqueeze(1))).square()
        # Two slices added, not `.sum(dim=-1)`: a reduction over a last axis of length 2 is
        # ten times slower on a CPU (90 ms against 9 ms for 256 clips here).
        power = squares[..., 0] + squares[..., 1]  # (B, 1, freq, frames)
        if warp is None:
            return self.to_db(self.mel_scale(power))
        filters = warp_filters(self.mel_scale.fb, warp).unsqueeze(1)  # (B, 1, freq, mels)
        return self.to_db(torch.matmul(power.transpose(-1, -2), filters).transpose(-1, -2))

    def _from_decibels(self, decibels: torch.Tensor) -> torch.Tensor:
        return torch.matmul(decibels.transpose(-1, -2), self.dct).transpose(-1, -2)

    def forward(self, windows: torch.Tensor, warp: torch.Tensor | None = None) -> torch.Tensor:
        """Normalized features (B, 1, coefficients, frames) of (B, window) waveforms.

        `warp`: a VTLP factor per clip (training only, see `vtlp.py`), applied to the power
        spectrum before the mel filters.

        Always in float32, also under mixed precision (`trainer=gpu`): a loud frame's mel power
        overflows float16 (its largest value is 65,504) and quiet ones underflow, so autocast
        is switched off here and left on for the network.
        """
        if torch.is_autocast_enabled(windows.device.type):
            with torch.autocast(windows.device.type, enabled=False):
                return self.forward(windows.float(), warp)
        decibels = self._decibels(windows, warp)
        features = self._from_decibels(decibels)
        if self.normalize == "global":
            return (features - self.mean) / self.std
        if self.normalize == "utterance":
            mean = features.mean(dim=-1, keepdim=True)
            std = features.std(dim=-1, keepdim=True)
            return (features - mean) / (std + 1e-5)
        if self.normalize == "speech":
            energy = decibels.mean(dim=-2, keepdim=True)  # (B, 1, 1, frames)
            loudest = energy.amax(dim=-1, keepdim=True)
            weight = (energy >= loudest - SPEECH_RANGE_DB).to(features.dtype)
            count = weight.sum(dim=-1, keepdim=True)
            mean = (features * weight).sum(dim=-1, keepdim=True) / count
            var = ((features - mean).square() * weight).sum(dim=-1, keepdim=True) / count
            return (features - mean) / (var.sqrt() + 1e-5)
        return features

    @torch.no_grad()
    def fit(self, batches: Iterable[torch.Tensor]) -> None:
        """Set the global statistics from clean training windows (streamed, in float64)."""
        mean, std = feature_statistics(self.raw(w.to(self.mean.device)) for w in batches)
        self.mean.copy_(mean)
        self.std.copy_(std)
        self.fitted.fill_(True)


@torch.no_grad()
def feature_statistics(batches: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation (n, 1) of each feature row of (B, 1, n, frames) batches,
    over all clips and frames; streamed and summed in float64, returned in float32."""
    total: torch.Tensor | float = 0.0
    total_sq: torch.Tensor | float = 0.0
    count = 0
    for features in batches:
        feats = features.double().cpu()
        total = total + feats.sum(dim=(0, 1, 3)).unsqueeze(1)
        total_sq = total_sq + (feats**2).sum(dim=(0, 1, 3)).unsqueeze(1)
        count += feats.shape[0] * feats.shape[3]
    if count == 0:
        raise ValueError("cannot fit feature statistics on no data")
    mean = total / count
    std = (total_sq / count - mean**2).clamp(min=1e-8).sqrt()
    return mean.float(), std.float()
