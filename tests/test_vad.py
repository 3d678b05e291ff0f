"""Energy-based speech finding on synthetic signals whose speech is known to the sample."""

from __future__ import annotations

import numpy as np
import pytest

from sdc.audio.vad import VadConfig, find_speech

RATE = 8000


def burst(seconds: float, amplitude: float = 0.2, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return amplitude * np.sin(2 * np.pi * freq * t)


def place(total: float, *parts: tuple[float, np.ndarray], noise: float = 0.0) -> np.ndarray:
    wave = np.zeros(round(total * RATE))
    for start, part in parts:
        i = round(start * RATE)
        wave[i : i + len(part)] += part
    return wave + np.random.default_rng(0).normal(0, noise, len(wave)) if noise else wave


def seconds(segments: np.ndarray) -> list[tuple[float, float]]:
    return [(s / RATE, e / RATE) for s, e in segments]


@pytest.mark.parametrize("noise", [0.0, 1e-4, 0.003])
def test_a_burst_is_found_where_it_is(noise: float) -> None:
    found = seconds(find_speech(place(3.0, (1.2, burst(0.4)), noise=noise), RATE))
    assert len(found) == 1
    assert found[0] == pytest.approx((1.2, 1.6), abs=0.03)


@pytest.mark.parametrize(
    "wave",
    [np.zeros(RATE), place(2.0, noise=1e-4), place(2.0, noise=0.05), np.zeros(10)],
    ids=["digital silence", "faint hiss", "loud steady noise", "ten samples"],
)
def test_silence_and_steady_noise_are_not_speech(wave: np.ndarray) -> None:
    assert len(find_speech(wave, RATE)) == 0


@pytest.mark.parametrize(
    "steady",
    [np.full(3 * RATE, 0.07), burst(3.0, 0.07, freq=50.0), burst(3.0, 0.07, freq=60.0)],
    ids=["DC offset", "50 Hz hum", "60 Hz hum"],
)
def test_a_word_under_an_offset_or_a_hum_is_found_and_they_alone_are_not(
    steady: np.ndarray,
) -> None:
    # A third of the word's peak: unfiltered, this raises the floor above the word.
    assert len(find_speech(steady, RATE)) == 0
    found = seconds(find_speech(place(3.0, (1.2, burst(0.4))) + steady, RATE))
    assert len(found) == 1
    assert found[0] == pytest.approx((1.2, 1.6), abs=0.03)


def test_short_pauses_join_long_pauses_split_and_clicks_are_dropped() -> None:
    cfg = VadConfig()
    wave = place(
        4.0,
        (0.5, burst(0.2)),
        (0.5 + 0.2 + cfg.min_silence_seconds / 2, burst(0.2)),  # one word with a stop in it
        (2.0, burst(0.3)),
        (3.5, burst(cfg.min_speech_seconds / 2)),  # a click
    )
    found = seconds(find_speech(wave, RATE, cfg))
    assert len(found) == 2
    assert found[0] == pytest.approx((0.5, 0.5 + 0.4 + cfg.min_silence_seconds / 2), abs=0.03)
    assert found[1] == pytest.approx((2.0, 2.3), abs=0.03)


@pytest.mark.parametrize("noise", [0.0, 1e-5])
def test_a_word_recorded_quietly_is_still_speech(noise: float) -> None:
    # A sine peaking at -56 dBFS (frames at -59 dB): 20 dB below FSDD's quietest speaker.
    found = seconds(find_speech(place(3.0, (1.2, burst(0.4, amplitude=0.0015)), noise=noise), RATE))
    assert len(found) == 1
    assert found[0] == pytest.approx((1.2, 1.6), abs=0.03)


def test_a_quiet_word_in_loud_noise_is_missed_rather_than_the_noise_found() -> None:
    wave = place(3.0, (1.0, burst(0.4, amplitude=0.005)), noise=0.01)
    assert len(find_speech(wave, RATE)) == 0
