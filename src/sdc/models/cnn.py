"""The write-up's CNN: 3x3 conv blocks with batch norm and max pooling, a 1x1 channel
reduction, dropout, and three linear layers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from sdc.config.fields import option

TIME_POOLINGS = ("max", "none")


@dataclass
class CnnConfig:
    """`model` for `DigitCNN` (`model=cnn`): the write-up's network."""

    _target_: str = "sdc.models.cnn.DigitCNN"
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    """Output channels of each 3x3 conv block; each block halves both axes."""
    reduced_channels: int = option(16, above=0)
    """Channels out of the 1x1 reduction before the dense head."""
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    """Widths of the hidden linear layers."""
    conv_dropout: float = option(0.0, low=0.0, high=1.0)
    dropout: float = option(0.3, low=0.0, high=1.0)
    time_pooling: str = option("max", choices=TIME_POOLINGS)
    """`max`: a max over time before the linear layers, so the head sees the same input
    wherever training placed the clip in the window; `none` flattens, and learned several times
    slower."""


def conv_block(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    """3x3 conv, batch norm, ReLU, 2x2 max pool: each block halves both axes.

    The ReLU runs after the pooling: a max and a ReLU commute exactly (both are monotonic), in
    value and in gradient (tested), and the ReLU then touches a quarter of the map. The gain is
    small (within this machine's run-to-run noise of a training step); the state dict is the
    same either way (neither layer has parameters).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=True),
        nn.Dropout2d(dropout),
    )


class TimeMaxPool(nn.Module):
    """The maximum over the time (last) axis, keeping it as a width-1 axis.

    The same as `nn.AdaptiveMaxPool2d((height, 1))` on a map of that height, but written as a
    plain reduction, which the ONNX exporter translates (it has no adaptive max pooling).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=-1, keepdim=True)


class DigitCNN(nn.Module):
    """Conv blocks, then a 1x1 conv that shrinks the channels before the dense head.

    The 1x1 reduction keeps the first linear layer small: the flattened map after the blocks is
    `reduced_channels x (n_mfcc / 2^k) x (frames / 2^k)`. With `time_pooling="max"` the time
    axis is reduced to its maximum first, so the head sees the same input wherever the digit
    sits in the window.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int = 10,
        channels: Sequence[int] | None = None,
        reduced_channels: int = CnnConfig.reduced_channels,
        hidden: Sequence[int] | None = None,
        conv_dropout: float = CnnConfig.conv_dropout,
        dropout: float = CnnConfig.dropout,
        time_pooling: str = CnnConfig.time_pooling,
    ) -> None:
        super().__init__()
        defaults = CnnConfig()
        channels = defaults.channels if channels is None else channels
        hidden = defaults.hidden if hidden is None else hidden
        in_channels, height, width = input_shape
        blocks: list[nn.Module] = []
        for out_channels in channels:
            blocks.append(conv_block(in_channels, out_channels, conv_dropout))
            in_channels = out_channels
            height, width = height // 2, width // 2
        blocks += [
            nn.Conv2d(in_channels, reduced_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(reduced_channels),
            nn.ReLU(inplace=True),
        ]
        if time_pooling == "max":
            blocks.append(TimeMaxPool())
            width = 1
        elif time_pooling not in TIME_POOLINGS:
            raise ValueError(f"time_pooling must be one of {TIME_POOLINGS}, got {time_pooling!r}")
        self.features = nn.Sequential(*blocks)
        layers: list[nn.Module] = [nn.Flatten()]
        width_in = reduced_channels * height * width
        for width_out in hidden:
            layers += [nn.Linear(width_in, width_out), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width_in = width_out
        layers.append(nn.Linear(width_in, n_classes))
        self.head = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(features))
