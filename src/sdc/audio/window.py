"""Fitting variable-length clips into the fixed window the network sees.

One gather does the whole batch: output sample `t` of clip `b` reads input sample
`t - offset[b] + start[b]`, where `offset` is the zero padding put before a short clip and
`start` is where a long clip is cropped. Anything outside the clip reads as zero: the clips are
zeroed past their lengths and framed by one zero column on each side, and indices outside a
clip are clamped onto those columns. That is three times faster than masking the window.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch


def fit_to_window(
    waves: torch.Tensor,
    lengths: torch.Tensor,
    window: int,
    position: torch.Tensor | None = None,
    fade: int = 0,
) -> torch.Tensor:
    """Pad or crop each clip of `waves` (B, L) to `window` samples.

    `position` in [0, 1] per clip says where the clip goes: 0 puts a short clip at the start
    of the window (all padding after it) and crops a long one from its start, 1 the opposite.
    None centres every clip, which is what evaluation and inference use.

    `fade` > 0 ramps each clip's first and last `fade` samples up from and down to zero
    (`edge_ramp`), so that a clip which starts or ends at full level meets its zero padding
    without a step: see `edge_ramp` for why.
    """
    batch, width = waves.shape
    if position is None:
        position = torch.full((batch,), 0.5, device=waves.device)
    lengths = lengths.to(waves.device)
    slack = window - lengths  # > 0: room to pad; < 0: samples to crop
    shift = torch.round(slack.clamp(min=0) * position).long()
    start = torch.round((-slack).clamp(min=0) * position).long()
    inside = torch.arange(width, device=waves.device) < lengths.unsqueeze(1)
    framed = torch.nn.functional.pad(waves * inside, (1, 1))
    # +1 for the zero column in front; clamping sends every index outside the clip to a zero.
    offset = (start - shift + 1).unsqueeze(1)
    source = (torch.arange(window, device=waves.device) + offset).clamp_(0, width + 1)
    windows = framed.gather(1, source)
    if fade > 0:
        # Sample t of the window is sample source - 1 of its clip; outside the clip it is zero
        # whatever the ramp says.
        windows = windows * edge_ramp(source - 1, lengths.unsqueeze(1), fade).to(windows.dtype)
    return windows


def edge_ramp(position: torch.Tensor, length: torch.Tensor, fade: int) -> torch.Tensor:
    """Gain at sample `position` of a clip of `length` samples: a raised-cosine ramp over its
    first and last `fade` samples (shortened to half of a clip shorter than 2 x `fade`), 1
    between them.

    Why: a recording started late, or cut by a voice detector, begins mid-sound, and zero
    padding before it makes a step: a click, with energy in every band as a fricative's. A few
    milliseconds of ramp remove the click and keep the sound; the clip's own gradual onsets are
    all but unchanged. Measured on FSDD (round 27 of docs/accuracy.md), the click was not what
    `best` got wrong on such clips: 10 ms were level with none over two seeds.
    """
    length = length.to(position.device)
    ramp = torch.minimum(length.clamp(min=1) // 2, torch.full_like(length, fade)).clamp(min=1)
    # Distance, in samples, to the nearer edge: 1 at the first and the last sample.
    edge = torch.minimum(position + 1, length - position).clamp(min=0)
    phase = (edge.to(torch.float32) / ramp).clamp(max=1.0)
    return torch.sin(phase * (torch.pi / 2)).square()


def centre_recording(clip: npt.ArrayLike, window: int, fade: int = 0) -> np.ndarray:
    """A recorded clip, its mean taken off, in the middle of the window (cropped if longer).

    The mean goes first: a recording's DC offset (a cheap sound card's, or nicolas's in FSDD)
    carries no digit, and between the clip and the zero padding it would be a step, heard as a
    click at each end. With an offset of a third of the speech's peak, a model that got 95 of
    100 of theo's clips right (round 7 of docs/accuracy.md, theo held out) got 91 without this,
    95 with it. Inference centres clips this way; training and evaluation, whose FSDD clips
    have no offset to speak of, use `fit_to_window` alone. `fade`: as `fit_to_window`'s, the
    model's own.
    """
    clip = np.asarray(clip, dtype=np.float32).reshape(-1)
    wave = torch.as_tensor(clip - np.float32(clip.mean(dtype=np.float64))).reshape(1, -1)
    return fit_to_window(wave, torch.tensor([wave.shape[1]]), window, fade=fade)[0].numpy()
