"""Resampling only around the sound: the same output as resampling the whole window."""

from __future__ import annotations

import pytest
import torch
import torchaudio

import sdc.audio.resample_sound as resample_sound_module
from sdc.audio.resample_sound import resample_sound, resampled
from sdc.audio.sound_stretch import sound_stretch


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
@pytest.mark.parametrize("threads", [1, 2])  # a matrix product on one, torchaudio's on two
def test_the_same_numbers_as_the_whole_window(
    orig: int,
    new: int,
    spans: list[tuple[int, int]],
    threads: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.set_num_threads(threads)  # conftest puts torch's threads back
    resample = torchaudio.transforms.Resample(orig, new)
    windows = windows_with(spans)
    heard: list[int] = []
    on_these_threads = resample_sound_module._on_these_threads

    def spy(module: torchaudio.transforms.Resample, part: torch.Tensor) -> torch.Tensor:
        heard.append(part.shape[-1])
        return on_these_threads(module, part)

    monkeypatch.setattr(resample_sound_module, "_on_these_threads", spy)
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


@pytest.mark.parametrize(
    ("orig", "new"), [(8000, 16000), (7400, 8000), (8600, 8000), (16000, 8000)]
)
@pytest.mark.parametrize("samples", [18400, 1001, 7])
def test_the_matrix_product_resamples_as_torchaudio_does(orig: int, new: int, samples: int) -> None:
    resample = torchaudio.transforms.Resample(orig, new)
    windows = torch.randn(3, samples, generator=torch.Generator().manual_seed(samples))
    expected = resample(windows)
    got = resampled(resample, windows)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-6 * float(expected.abs().max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_the_sound_stretch_spans_every_windows_sound(dtype: torch.dtype) -> None:
    windows = windows_with([(8000, 11000), (7900, 10500), (8300, 11200)]).to(dtype)
    assert sound_stretch(windows) == (7900, 11200)
    assert sound_stretch(windows[:1]) == (8000, 11000)
    edges = torch.zeros(2, 50, dtype=dtype)
    edges[0, 0], edges[1, 49] = 1.0, -1.0
    assert sound_stretch(edges) == (0, 50)
    assert sound_stretch(torch.zeros(2, 50, dtype=dtype)) is None
