"""Placing one recording in the model's window for inference, in numpy (no torch)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def centre_recording(clip: npt.ArrayLike, window: int) -> np.ndarray:
    """A recorded clip, its mean taken off, in the middle of the window (cropped if longer):
    what `sdc.audio.window.fit_to_window` does to a centred clip, sample for sample.

    The mean goes first: a recording's DC offset (a cheap sound card's, or nicolas's in FSDD)
    carries no digit, and between the clip and the zero padding it would be a step, heard as a
    click at each end. With an offset of a third of the speech's peak, a model that got 95 of
    100 of theo's clips right (theo held out) got 91 without this, 95 with it. Training and
    evaluation, whose FSDD clips have no offset to speak of, use `fit_to_window` alone.
    """
    clip = np.asarray(clip, dtype=np.float32).reshape(-1)
    clip = clip - np.float32(clip.mean(dtype=np.float64))
    slack = window - len(clip)
    if slack < 0:
        # Rounded half to even, as torch.round rounds in `fit_to_window`.
        start = int(np.round(-slack * 0.5))
        return np.ascontiguousarray(clip[start : start + window])
    out = np.zeros(window, dtype=np.float32)
    shift = int(np.round(slack * 0.5))
    out[shift : shift + len(clip)] = clip
    return out
