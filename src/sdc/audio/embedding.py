"""A pretrained front end: waveform window in, a sequence of Google speech embeddings out.

The MFCC front end leaves everything about voices to a network trained on FSDD's six men. This
one starts from a network that heard a large corpus of speech (`sdc.pretrained.speech_embedding`)
and keeps it frozen (or trains only its top, `finetune_layers`), so a model trains only a small
head on top (`model=embedding_head`), and a voice, accent or microphone FSDD lacks is less new
to it.

It is part of the model like the MFCC front end: the frozen weights are buffers and parameters of
this module, saved in every checkpoint and export, so inference needs neither the download nor
the `onnx` package. They are loaded, with the normalization statistics, by `fit`, which training
calls once before the first epoch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torchaudio
from torch import nn

from sdc.audio.features import feature_statistics
from sdc.audio.resample_sound import resample_sound
from sdc.audio.vtlp import warp_filters
from sdc.config.fields import MISSING, option
from sdc.pretrained.speech_embedding import CONVOLUTIONS, DIM, SAMPLE_RATE, SpeechEmbedding

NORMALIZATIONS = ("global", "none")


@dataclass
class SpeechEmbeddingConfig:
    """`features` for `SpeechEmbeddingFrontend` (`features=speech_embedding`)."""

    _target_: str = "sdc.audio.embedding.SpeechEmbeddingFrontend"
    sample_rate: int = option(8000, above=0)
    clip_seconds: float = option(2.3, above=0.0)
    weights_dir: str = MISSING
    """Where the pinned weights are cached after their first download."""
    normalize: str = option("global", choices=NORMALIZATIONS)
    """`global`: each of the 96 numbers standardized with training-set statistics; `none`."""
    pad_seconds: float = option(0.0, low=0.0)
    """Silence (s) on each side of the window before the embedding (see the class)."""
    finetune_layers: int = option(0, low=0, high=CONVOLUTIONS)
    """The embedding's last convolutions (of 20) that train with the head; 0: all frozen."""
    finetune_lr_scale: float = option(0.1, above=0.0)
    """Their learning rate as a fraction of the head's."""


class SpeechEmbeddingFrontend(nn.Module):
    """(B, window) waveforms at `sample_rate` -> (B, 1, 96, steps) embeddings, one every 80 ms.

    The clip is resampled to the embedding's 16 kHz (8 kHz audio has nothing above 4 kHz, and
    that is the same in training and use). `normalize="global"` standardizes each of the 96
    numbers with the mean and standard deviation of the clean training windows, as the MFCC
    front end's `global` does; `none` keeps them raw.

    `pad_seconds` of silence go on each side of the window before the embedding. Without them a
    digit at the very start of the window has no silence in the one 0.775 s stretch that holds
    it whole, and the last 70 ms of a 2.3 s window are in no stretch at all: a model trained
    without padding recognized 41% of the random split's test clips placed at the window's
    start and 88% at its end; padded by 0.4 s at test time only, 99% and 99%
    (docs/results.md). sdc's own inference centres every utterance, so it never meets such a
    window; a caller who feeds windows directly may. `features=speech_embedding` pads by 0.4 s;
    the default here, none, is how checkpoints saved before the option existed were trained.

    `finetune_layers`: the embedding's last convolutions that train with the head (0, the
    default: all frozen), at `finetune_lr_scale` times the head's learning rate, so that the
    pretrained weights move slowly instead of being overwritten by a head's large first steps.
    The normalization statistics stay those of the pretrained embedding; the head follows the
    change.
    """

    def __init__(
        self,
        sample_rate: int = SpeechEmbeddingConfig.sample_rate,
        clip_seconds: float = SpeechEmbeddingConfig.clip_seconds,
        weights_dir: str = "data/pretrained",
        normalize: str = SpeechEmbeddingConfig.normalize,
        pad_seconds: float = SpeechEmbeddingConfig.pad_seconds,
        finetune_layers: int = SpeechEmbeddingConfig.finetune_layers,
        finetune_lr_scale: float = SpeechEmbeddingConfig.finetune_lr_scale,
    ) -> None:
        super().__init__()
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        if not finetune_lr_scale > 0:
            raise ValueError(f"finetune_lr_scale must be > 0, got {finetune_lr_scale!r}")
        self.sample_rate = sample_rate
        self.window = round(clip_seconds * sample_rate)
        self.weights_dir = weights_dir
        self.normalize = normalize
        self.pad = round(pad_seconds * sample_rate)
        self.resample = (
            torchaudio.transforms.Resample(sample_rate, SAMPLE_RATE)
            if sample_rate != SAMPLE_RATE
            else nn.Identity()
        )
        self.embedding = SpeechEmbedding()
        self.embedding.unfreeze_last(finetune_layers)
        self.lr_scale = finetune_lr_scale
        resampled = self.resample(torch.zeros(1, self.window + 2 * self.pad)).shape[-1]
        self.steps = SpeechEmbedding.steps(resampled)
        if self.steps < 1:
            raise ValueError(
                f"clip_seconds={clip_seconds}: the speech embedding needs windows of at least 0.8 s"
            )
        self.register_buffer("mean", torch.zeros(DIM, 1))
        self.register_buffer("std", torch.ones(DIM, 1))
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(channels, embedding size, steps) of one clip's features."""
        return (1, DIM, self.steps)

    def raw(self, windows: torch.Tensor, warp: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings (B, 1, 96, steps) before normalization.

        `warp`: a VTLP factor per clip (training only), applied to the 16 kHz power spectrum.
        """
        embedding = self.embedding
        if self.pad:
            windows = nn.functional.pad(windows, (self.pad, self.pad))
        waves = self.resample(windows) if self.training else resample_sound(self.resample, windows)
        if warp is None:
            return embedding(waves).transpose(1, 2).unsqueeze(1)
        filters = warp_filters(embedding.mel, warp).unsqueeze(1)  # (B, 1, 257, 32)
        image = embedding.log_mel(embedding.power(waves), filters)
        return embedding.embed(image).transpose(1, 2).unsqueeze(1)

    def forward(self, windows: torch.Tensor, warp: torch.Tensor | None = None) -> torch.Tensor:
        """Normalized embeddings (B, 1, 96, steps), always in float32 (see `MfccFrontend`)."""
        if torch.is_autocast_enabled(windows.device.type):
            with torch.autocast(windows.device.type, enabled=False):
                return self.forward(windows.float(), warp)
        features = self.raw(windows, warp)
        if self.normalize == "global":
            return (features - self.mean) / self.std
        return features

    @torch.no_grad()
    def load_pretrained(self) -> None:
        """Copy the pinned weights in (downloading them into `weights_dir` on first use)."""
        self.embedding.load_pinned(self.weights_dir)

    @torch.no_grad()
    def fit(self, batches: Iterable[torch.Tensor]) -> None:
        """Load the pretrained weights, then set the statistics from clean training windows."""
        self.load_pretrained()
        mean, std = feature_statistics(self.raw(w.to(self.mean.device)) for w in batches)
        self.mean.copy_(mean)
        self.std.copy_(std)
        self.fitted.fill_(True)
