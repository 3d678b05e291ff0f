"""Digit strings spoken as phrases by espeak-ng's voices (the optional `voices` extra).

Joined recordings never coarticulate: a real "five nine" runs the words together, which espeak-ng
does when it says the digits as one phrase. Its voices (accents x variants, `sdc.data.synthetic`)
are split by variant: the strings to learn from are said by voices of one part, the test strings
by voices of variants never heard in training.
"""

from __future__ import annotations

import random

import numpy as np

from sdc.audio.decode import resample_array
from sdc.data.synthetic import WORDS, SyntheticVoice, draw_voices
from sdc.strings.synthesis import SynthesisConfig, add_noise, trim_to_speech

HELD_OUT_EVERY = 5
"""Every fifth voice variant (sorted by name) is kept out of training, for the test strings."""
PEAK = 0.5


def split_voices(
    variants: list[str], count: int, seed: int, held_out: bool
) -> list[SyntheticVoice]:
    """`count` voices drawn from the training variants, or from the held-out ones."""
    names = sorted(variants)
    kept = {v for i, v in enumerate(names) if (i % HELD_OUT_EVERY == 0) == held_out}
    return draw_voices(count, seed, sorted(kept))


def spoken_strings(
    count: int,
    cfg: SynthesisConfig,
    sample_rate: int,
    seed: int,
    held_out: bool = False,
    digits: int | None = None,
    snr_db: float | None = None,
) -> tuple[list[np.ndarray], list[list[int]]]:
    """`count` phrases of `digits` digits (or as many as `cfg` draws), each by its own voice at
    its own rate and pitch; noise as `cfg` says when `snr_db` is None and `digits` is None
    (training), else at `snr_db` if given."""
    from sdc.data.espeak import espeak

    engine = espeak()
    engine.seed(seed)
    voices = split_voices(engine.variants(), count, seed, held_out)
    rng = np.random.default_rng(seed)
    jitter = random.Random(seed)
    waves, labels = [], []
    for voice in voices:
        n = digits or int(rng.integers(cfg.min_digits, cfg.max_digits + 1))
        said = [int(d) for d in rng.integers(0, 10, n)]
        rate = round(voice.rate * jitter.uniform(0.8, 1.2))
        wave = engine.say(
            " ".join(WORDS[d] for d in said), voice.voice, rate, voice.pitch, voice.pitch_range
        )
        wave = trim_to_speech(
            resample_array(wave, engine.sample_rate, sample_rate), sample_rate, cfg.trim_db
        )
        wave = wave * np.float32(PEAK / max(float(np.abs(wave).max()), 1e-6))
        edges = [
            np.zeros(round(rng.uniform(*cfg.edge_seconds) * sample_rate), np.float32) for _ in "ab"
        ]
        wave = np.concatenate([edges[0], wave, edges[1]])
        if digits is None and snr_db is None and rng.random() < cfg.noise:
            wave = add_noise(wave, float(rng.uniform(*cfg.snr_db)), rng)
        elif snr_db is not None:
            wave = add_noise(wave, snr_db, rng)
        waves.append(wave)
        labels.append(said)
    return waves, labels
