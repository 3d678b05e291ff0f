"""One front end and the network on it: a whole classifier, or one member of an ensemble.

`DigitClassifier` holds one or more members and averages their probabilities. Members differ in
what they hear (MFCCs, a pretrained embedding) and how their features are augmented, and are
trained on the same waveform batches, each by its own loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from sdc.audio.spec_augment import SpecAugmentConfig, spec_augment
from sdc.models.batchnorm_folding import fuse_conv_bn


class Member(nn.Module):
    """(B, window) waveforms -> logits (B, n_classes) through `frontend` then `net`."""

    def __init__(
        self,
        frontend: Mapping[str, Any],
        net: Mapping[str, Any],
        n_classes: int,
        spec_augment: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # Plain data with a default, so checkpoints saved before SpecAugment existed still load.
        self.spec_augment = SpecAugmentConfig(**(spec_augment or {}))
        self.frontend = instantiate(frontend)
        self.net = instantiate(net, input_shape=self.frontend.output_shape, n_classes=n_classes)
        # channels_last made the CNN 25% faster to train and 3.5x faster to run on a CPU; a
        # network that says `channels_last = False` (1-D convolutions) keeps the default layout.
        self.memory_format = (
            torch.channels_last
            if getattr(self.net, "channels_last", True)
            else torch.contiguous_format
        )
        self.net.to(memory_format=self.memory_format)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        features = self.frontend(windows).contiguous(memory_format=self.memory_format)
        return self.net(features)

    def training_features(self, windows: torch.Tensor, warp: torch.Tensor | None) -> torch.Tensor:
        """The front end's output with the training-only feature augmentations: VTLP's warp of
        each clip's spectrum (`warp`, a factor per clip) inside the front end, then
        SpecAugment's masks on its output."""
        features = self.frontend(windows, warp=warp)
        if self.spec_augment.p > 0:
            features = spec_augment(features, self.spec_augment)
        return features.contiguous(memory_format=self.memory_format)

    def fuse(self) -> None:
        """Batch norm folded into the convolutions (eval mode only): same logits, faster."""
        fuse_conv_bn(self.net)
        self.net.to(memory_format=self.memory_format)
