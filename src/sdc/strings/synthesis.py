"""Strings of digits made from isolated recordings of one speaker: trimmed to their speech,
joined with gaps from a small overlap (crossfaded) to a short pause, each digit at its own level,
with noise over the whole string on some of them. A string is one speaker's, as a PIN is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sdc.config.fields import option, probability

TRIM_FRAME_SECONDS = 0.01


@dataclass
class SynthesisConfig:
    """How training strings are made (`strings.synthesis`)."""

    min_digits: int = option(1, above=0)
    max_digits: int = option(12, above=0)
    gap_seconds: tuple[float, float] = option((-0.06, 0.3), low=-0.3, high=2.0)
    """Silence between digits, drawn uniformly; below 0 the digits overlap, crossfaded."""
    level_db: float = option(4.0, low=0.0)
    """Each digit's level moves by up to this much either way: people do not say digits evenly."""
    edge_seconds: tuple[float, float] = option((0.1, 0.4), low=0.0, high=5.0)
    """Silence before the first digit and after the last."""
    noise: float = probability(0.5)
    """How many strings get white noise over their whole length."""
    snr_db: tuple[float, float] = option((5.0, 40.0), low=-20.0, high=100.0)
    pitch: float = probability(0.5)
    """How many strings have their voice shifted (pitch and formants, duration kept): the
    isolated-digit recipe's `pitch_shift`, for voices higher and lower than FSDD's six men."""
    pitch_semitones: tuple[float, float] = option((-3.0, 7.0), low=-12.0, high=12.0)
    trim_db: float = option(30.0, above=0.0)
    """Each training clip is cut where quieter than this many dB below its loudest 10 ms:
    FSDD's own trimming leaves up to a few hundred ms of silence, which would be a pause (test
    clips: `sdc.strings.train.TEST_TRIM_DB`)."""


def trim_to_speech(clip: np.ndarray, sample_rate: int, trim_db: float) -> np.ndarray:
    """The clip from its first to its last 10 ms frame within `trim_db` of its loudest."""
    frame = max(1, round(TRIM_FRAME_SECONDS * sample_rate))
    n = len(clip) // frame
    if n < 3:
        return clip
    energy = np.mean(clip[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1)
    level = 10 * np.log10(energy + 1e-12)
    loud = np.nonzero(level > level.max() - trim_db)[0]
    return clip[loud[0] * frame : (loud[-1] + 1) * frame]


def join(
    clips: Sequence[np.ndarray], gaps: Sequence[float], sample_rate: int, edges: tuple[float, float]
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The clips one after another, `gaps[i]` seconds between clip i and i + 1 (negative:
    overlapping by that much, at most a third of the clip, linearly crossfaded), `edges` of
    silence around them. Returns the string and each clip's (start, end) in seconds."""
    out = np.zeros(round(edges[0] * sample_rate), np.float32)
    times = []
    for i, clip in enumerate(clips):
        clip = np.asarray(clip, np.float32)
        gap = round(gaps[i - 1] * sample_rate) if i else 0
        if gap >= 0:
            out = np.concatenate([out, np.zeros(gap, np.float32)])
            start = len(out)
            out = np.concatenate([out, clip])
        else:
            overlap = min(-gap, len(clip) // 3, len(out))
            start = len(out) - overlap
            fade = np.linspace(0.0, 1.0, overlap, dtype=np.float32)
            mixed = out[start:] * (1 - fade) + clip[:overlap] * fade
            out = np.concatenate([out[:start], mixed, clip[overlap:]])
        times.append((start / sample_rate, (start + len(clip)) / sample_rate))
    out = np.concatenate([out, np.zeros(round(edges[1] * sample_rate), np.float32)])
    return out, times


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise at `snr_db` below the RMS of the string's non-silent samples."""
    voiced = wave[np.abs(wave) > 1e-6]
    rms = float(np.sqrt(np.mean(voiced.astype(np.float64) ** 2))) if len(voiced) else 0.0
    noise = rng.normal(0.0, rms / 10 ** (snr_db / 20), len(wave)).astype(np.float32)
    return wave + noise


def synthesize(
    pool: Sequence[tuple[int, np.ndarray]],
    n_digits: int,
    rng: np.random.Generator,
    sample_rate: int,
    gap_seconds: tuple[float, float],
    level_db: float = 0.0,
    edge_seconds: tuple[float, float] = (0.1, 0.4),
    snr_db: float | None = None,
) -> tuple[np.ndarray, list[int]]:
    """One string of `n_digits` from `pool` (digit, trimmed clip) pairs of one speaker."""
    picks = rng.integers(0, len(pool), n_digits)
    digits = [pool[i][0] for i in picks]
    clips = [pool[i][1] * np.float32(10 ** (rng.uniform(-level_db, level_db) / 20)) for i in picks]
    gaps = rng.uniform(*gap_seconds, max(0, n_digits - 1))
    edges = (float(rng.uniform(*edge_seconds)), float(rng.uniform(*edge_seconds)))
    wave, _ = join(clips, gaps, sample_rate, edges)
    if snr_db is not None:
        wave = add_noise(wave, snr_db, rng)
    return wave, digits


def training_strings(
    pool: Sequence[tuple[int, np.ndarray]],
    count: int,
    cfg: SynthesisConfig,
    sample_rate: int,
    seed: int,
) -> tuple[list[np.ndarray], list[list[int]]]:
    """`count` strings as `cfg` says, drawn from a seed: the same seed, the same strings."""
    rng = np.random.default_rng(seed)
    waves, labels = [], []
    for _ in range(count):
        n = int(rng.integers(cfg.min_digits, cfg.max_digits + 1))
        snr = float(rng.uniform(*cfg.snr_db)) if rng.random() < cfg.noise else None
        wave, digits = synthesize(
            pool, n, rng, sample_rate, cfg.gap_seconds, cfg.level_db, cfg.edge_seconds, snr
        )
        waves.append(wave)
        labels.append(digits)
    return waves, labels
