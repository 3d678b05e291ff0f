"""Folding batch norm into the convolution before it, for inference.

In eval mode a batch norm is a fixed per-channel affine map, so it can be merged into the
preceding convolution's weights: the same logits (to float rounding) with one pass less over
the largest activations, which on a CPU is a fifth of the CNN's inference time.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _is_conv(layer: nn.Module) -> bool:
    return isinstance(layer, (nn.Conv1d, nn.Conv2d))


def _fuse_sequence(layers: nn.Sequential) -> nn.Sequential:
    fused: list[nn.Module] = []
    for layer in layers:
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)) and fused and _is_conv(fused[-1]):
            fused[-1] = fuse_conv_bn_eval(fused[-1], layer)
        else:
            fused.append(layer)
    return nn.Sequential(*fused)


def fuse_conv_bn(module: nn.Module) -> nn.Module:
    """Fuse every 1-D or 2-D convolution directly followed by a batch norm inside
    `nn.Sequential`s, in place.

    Only for a module in eval mode: training needs the batch statistics.
    """
    if module.training:
        raise ValueError("fuse_conv_bn needs a module in eval mode")
    for name, child in module.named_children():
        fuse_conv_bn(child)
        if isinstance(child, nn.Sequential):
            setattr(module, name, _fuse_sequence(child))
    return module
