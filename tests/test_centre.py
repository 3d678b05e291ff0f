"""Inference's numpy centring is training's `fit_to_window` centring, sample for sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdc.audio.centre import centre_recording
from sdc.audio.window import fit_to_window


@pytest.mark.parametrize("length", [1, 7, 100, 999, 1000, 1001, 1002, 2500, 2501])
def test_numpy_centring_equals_fit_to_window(length: int) -> None:
    rng = np.random.default_rng(length)
    clip = (rng.standard_normal(length) * 0.1 + 0.05).astype(np.float32)
    wave = torch.as_tensor(clip - np.float32(clip.mean(dtype=np.float64))).reshape(1, -1)
    expected = fit_to_window(wave, torch.tensor([length]), 1000)[0].numpy()
    out = centre_recording(clip, 1000)
    assert out.dtype == np.float32 and out.shape == (1000,)
    np.testing.assert_array_equal(out, expected)
