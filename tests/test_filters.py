"""The numpy filters of the torch-free inference path equal scipy.signal's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from sdc.audio.filters import butterworth_highpass, resample_poly

RATIOS = [(2, 1), (1, 2), (80, 441), (160, 441), (1, 6), (3, 2), (2, 3), (147, 20)]


@pytest.mark.parametrize("length", [1, 2, 7, 100, 8000, 44100])
@pytest.mark.parametrize(("up", "down"), RATIOS)
def test_resample_poly_equals_scipy(length: int, up: int, down: int) -> None:
    x = np.random.default_rng(length).standard_normal(length)
    expected = signal.resample_poly(x, up, down)
    got = resample_poly(x, up, down)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_resample_poly_keeps_a_tone_and_reduces_the_ratio() -> None:
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 440 * t)
    down = resample_poly(tone, 2, 4)  # 16 kHz -> 8 kHz, given unreduced
    expected = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    assert len(down) == 8000
    assert np.abs(down[200:-200] - expected[200:-200]).max() < 1e-3


@pytest.mark.parametrize(("rate", "cutoff"), [(8000, 150.0), (16000, 150.0), (44100, 60.0)])
@pytest.mark.parametrize("length", [1, 5, 3000, 200_000])
def test_highpass_equals_scipy_started_in_steady_state(
    rate: int, cutoff: float, length: int
) -> None:
    rng = np.random.default_rng(rate + length)
    x = rng.standard_normal(length) + 0.3  # an offset: the start must not ring
    sos = signal.butter(2, cutoff, "highpass", fs=rate, output="sos")
    expected, _ = signal.sosfilt(sos, x, zi=signal.sosfilt_zi(sos) * x[0])
    np.testing.assert_allclose(butterworth_highpass(x, rate, cutoff), expected, atol=1e-9)


def test_highpass_removes_an_offset_and_keeps_speech_frequencies() -> None:
    t = np.arange(8000) / 8000
    filtered = butterworth_highpass(0.5 + np.sin(2 * np.pi * 1000 * t), 8000, 150.0)
    assert abs(filtered[4000:].mean()) < 1e-3
    assert 0.95 < filtered[4000:].std() * np.sqrt(2) < 1.05
