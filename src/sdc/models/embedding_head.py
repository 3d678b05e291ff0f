"""A small head for the speech embedding's sequence (`features=speech_embedding`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sdc.config.fields import option


@dataclass
class EmbeddingHeadConfig:
    """`model` for `EmbeddingHead` (`model=embedding_head`, with `features=speech_embedding`)."""

    _target_: str = "sdc.models.embedding_head.EmbeddingHead"
    channels: int = option(128, above=0)
    kernel_size: int = option(3, above=0)
    """Time steps (80 ms each) per convolution."""
    dropout: float = option(0.3, low=0.0, high=1.0)


class EmbeddingHead(nn.Module):
    """Two 1-D convolutions over the embeddings' time steps, then max and mean over time.

    Each embedding already covers 0.775 s, most of a digit; the convolutions (3 steps, 0.16 s
    more each) let the head combine the start and the end of long words, and pooling over all
    steps makes the answer the same wherever the digit sits in the window. About 89k weights
    with 128 channels; the frozen embedding in front of it has 330k more.
    """

    channels_last = False  # 1-D convolutions: the module's channels_last layout does not apply

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int = 10,
        channels: int = EmbeddingHeadConfig.channels,
        kernel_size: int = EmbeddingHeadConfig.kernel_size,
        dropout: float = EmbeddingHeadConfig.dropout,
    ) -> None:
        super().__init__()
        _, dim, _ = input_shape
        padding = kernel_size // 2
        self.convs = nn.Sequential(
            nn.Conv1d(dim, channels, kernel_size, padding=padding, bias=False),
            nn.BatchNorm1d(channels),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv1d(channels, channels, kernel_size, padding=padding, bias=False),
            nn.BatchNorm1d(channels),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * channels, n_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 1, dim, steps) -> logits (B, n_classes)."""
        x = self.convs(features.squeeze(1))
        pooled = torch.cat([x.amax(dim=-1), x.mean(dim=-1)], dim=1)
        return self.classifier(pooled)
