"""Where a batch of windows holds sound: the stretch outside which every sample is zero.

Inference centres each clip in zeros, so most of a window is silence that resampling and the
speech embedding can skip; they need this stretch first, for every call.
"""

from __future__ import annotations

import numpy as np
import torch


def sound_stretch(windows: torch.Tensor) -> tuple[int, int] | None:
    """The first sample index that is not zero in some window of `windows` (B, samples), and
    one past the last; None when every sample is zero.

    On a CPU through numpy: a quarter to a sixth of the time of torch's `ne`, `any` and
    `nonzero` on one thread (23 against 103 us for two 2.3 s windows at 8 kHz).
    """
    if windows.device.type == "cpu" and windows.dtype in (torch.float32, torch.float64):
        sound = np.flatnonzero(windows.detach().numpy().any(axis=0))
    else:
        sound = windows.ne(0).any(dim=0).nonzero().flatten().tolist()
    if len(sound) == 0:
        return None
    return int(sound[0]), int(sound[-1]) + 1
