"""Resampling only around the sound: the same output as resampling the whole window."""

from __future__ import annotations

import pytest
import torch
import torchaudio

from sdc.audio.resample_sound import resample_sound


def windows_with(spans: list[tuple[int, int]], samples: int = 18400) -> torch.Tensor:
    generator = torch.Generator().manual_seed(len(spans))
    out = torch.zeros(len(spans), samples)
    for row, (start, stop) in enumerate(spans):
        out[row, start:stop] = torch.randn(stop - start, generator=generator)
    return out


@pytest.mark.parametrize(("orig", "new"), [(8000, 16000), (7400, 8000), (8600, 8000)])
@pytest.mark.parametrize(
    "spans",
    [
        [(8000, 11000), (7900, 10500), (8300, 11200)],  # centred clips of one batch
        [(3, 900)],  # at the window's start
        [(17800, 18400)],  # at its end
        [(0, 5), (18390, 18400)],  # sound at both ends: the whole window
        [(1000, 1000)],  # silence
    ],
)
def test_the_same_numbers_as_the_whole_window(
    orig: int, new: int, spans: list[tuple[int, int]]
) -> None:
    resample = torchaudio.transforms.Resample(orig, new)
    windows = windows_with(spans)
    heard: list[int] = []
    resample.register_forward_hook(lambda _m, args, _o: heard.append(args[0].shape[-1]))
    expected = resample(windows)
    got = resample_sound(resample, windows)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-6 * max(1.0, float(expected.abs().max()))
    if len(spans) == 3:  # centred: only a sixth of the window is resampled
        assert heard[-1] < windows.shape[-1] // 4


def test_no_resampling_is_the_identity() -> None:
    windows = windows_with([(100, 200)])
    assert resample_sound(torchaudio.transforms.Resample(8000, 8000), windows) is windows
    assert resample_sound(torch.nn.Identity(), windows) is windows
