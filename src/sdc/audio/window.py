"""Fitting variable-length clips into the fixed window the network sees.

One gather does the whole batch: output sample `t` of clip `b` reads input sample
`t - offset[b] + start[b]`, where `offset` is the zero padding put before a short clip and
`start` is where a long clip is cropped. Anything outside the clip reads as zero.
"""

from __future__ import annotations

import torch


def fit_to_window(
    waves: torch.Tensor,
    lengths: torch.Tensor,
    window: int,
    position: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pad or crop each clip of `waves` (B, L) to `window` samples.

    `position` in [0, 1] per clip says where the clip goes: 0 puts a short clip at the start
    of the window (all padding after it) and crops a long one from its start, 1 the opposite.
    None centres every clip, which is what evaluation and inference use.
    """
    batch = waves.shape[0]
    if position is None:
        position = torch.full((batch,), 0.5, device=waves.device)
    lengths = lengths.to(waves.device)
    slack = window - lengths  # > 0: room to pad; < 0: samples to crop
    shift = torch.round(slack.clamp(min=0) * position).long()
    start = torch.round((-slack).clamp(min=0) * position).long()
    t = torch.arange(window, device=waves.device)
    source = t.unsqueeze(0) - shift.unsqueeze(1) + start.unsqueeze(1)
    inside = (source >= 0) & (source < lengths.unsqueeze(1))
    if waves.shape[1] == 0:
        return waves.new_zeros(batch, window)
    gathered = waves.gather(1, source.clamp(0, waves.shape[1] - 1))
    return torch.where(inside, gathered, torch.zeros((), dtype=waves.dtype, device=waves.device))
