"""Finding speech by its energy: where the digits are in a recording longer than one.

Frame energies in dB are compared with two thresholds set from the recording itself (hysteresis):
a stretch of frames above the low threshold is speech when it reaches the high one somewhere, so
a word's quiet onset and tail stay attached to its loud middle. Stretches closer than
`min_silence_seconds` are one utterance (the stop in "eight", the pause inside "seven"), and
utterances shorter than `min_speech_seconds` are clicks, not words.

The thresholds are relative to the noise floor (a low percentile of the frame energies), so a
noisy recording needs louder speech, and never below `threshold_db`, so digital silence or a
faint hiss is never speech. Stationary noise with no louder part in it is not speech either: that
is what `snr_db` asks for. The energies are taken above `highpass_hz`, where voices are and a DC
offset or mains hum is not. Everything is computed on whole arrays, with no loop over samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sdc.audio.filters import butterworth_highpass

SILENCE_DB = -100.0
"""The energy of a frame of zeros (the floor of the log)."""


@dataclass(frozen=True)
class VadConfig:
    frame_seconds: float = 0.02
    hop_seconds: float = 0.01
    threshold_db: float = -70.0
    """Full scale is 0 dB: a frame quieter than this is never speech. Far below any voice: the
    loudest 20 ms of FSDD's quietest speaker (theo) lie at -39 dB (median) down to -48 dB, and a
    quieter microphone or a speaker further away takes 10-20 dB more off; a microphone's own
    hiss lies lower still, and steady noise is turned away by `snr_db` anyway."""
    snr_db: float = 10.0
    """How far above the noise floor speech must rise somewhere (the high threshold)."""
    floor_percentile: float = 10.0
    min_speech_seconds: float = 0.08
    min_silence_seconds: float = 0.15
    highpass_hz: float = 150.0
    """Energy below this is not counted. A DC offset or mains hum (50/60 Hz) is steady, so it
    fills the quiet between words and raises the noise floor until the words no longer rise
    10 dB above it: with a 50 Hz hum or an offset at a third of the speech's peak, not one of
    100 of theo's FSDD clips was found. A voice's energy lies above (men's pitch starts near
    85 Hz, and its harmonics and formants carry far more). 0 turns the filter off."""


def highpass(x: np.ndarray, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    """`x` through a 2nd-order Butterworth high-pass (-16 dB at 60 Hz, -19 at 50 for 150 Hz).

    Steeper filters ring for tens of milliseconds after a word that stops abruptly, which in a
    silent recording joins the ringing to the word. The filter starts as if `x[0]` had always
    been there, so an offset does not ring at the start of the recording like a click."""
    if cutoff_hz <= 0 or len(x) == 0 or cutoff_hz >= sample_rate / 2:
        return x
    return butterworth_highpass(x, sample_rate, cutoff_hz)


def frame_energy_db(wave: npt.ArrayLike, sample_rate: int, cfg: VadConfig) -> np.ndarray:
    """Mean power per frame in dB, from a running sum of squares (one pass, any length)."""
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    frame = max(1, round(cfg.frame_seconds * sample_rate))
    hop = max(1, round(cfg.hop_seconds * sample_rate))
    if len(x) < frame:
        x = np.pad(x, (0, frame - len(x)))
    n_frames = 1 + (len(x) - frame) // hop
    cumulative = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(n_frames) * hop
    power = (cumulative[starts + frame] - cumulative[starts]) / frame
    return 10.0 * np.log10(np.maximum(power, 10 ** (SILENCE_DB / 10)))


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) frame indices of the runs of True in `mask`."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def find_speech(wave: npt.ArrayLike, sample_rate: int, cfg: VadConfig | None = None) -> np.ndarray:
    """The speech in `wave` as an (N, 2) array of [start, end) sample indices, in order."""
    cfg = cfg or VadConfig()
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    db = frame_energy_db(highpass(x, sample_rate, cfg.highpass_hz), sample_rate, cfg)
    hop = max(1, round(cfg.hop_seconds * sample_rate))
    frame = max(1, round(cfg.frame_seconds * sample_rate))

    floor = float(np.percentile(db, cfg.floor_percentile))
    high = max(cfg.threshold_db, floor + cfg.snr_db)
    low = max(floor + 0.3 * cfg.snr_db, high - 2 * cfg.snr_db)

    starts, ends = _runs(db > low)
    loud = np.concatenate([[0], np.cumsum(db > high)])
    keep = loud[ends] - loud[starts] > 0
    starts, ends = starts[keep], ends[keep]
    if len(starts) == 0:
        return np.zeros((0, 2), dtype=np.int64)

    # Merge across short pauses: a new utterance begins only after a long enough gap.
    min_gap = round(cfg.min_silence_seconds / cfg.hop_seconds)
    breaks = np.flatnonzero(starts[1:] - ends[:-1] >= min_gap)
    starts = starts[np.concatenate([[0], breaks + 1])]
    ends = ends[np.concatenate([breaks, [len(ends) - 1]])]

    min_frames = round(cfg.min_speech_seconds / cfg.hop_seconds)
    keep = ends - starts >= min_frames
    segments = np.stack([starts[keep] * hop, (ends[keep] - 1) * hop + frame], axis=1)
    return np.minimum(segments, len(x)).astype(np.int64)
