"""Synthetic speakers: the ten digits spoken by espeak-ng voices, as extra training clips.

FSDD has six adult men. A held-out speaker's accent is the hardest thing to augment from five
others, and no augmentation of men's voices makes a child's. espeak-ng speaks English with
eight accents and about a hundred voice variants (men, women, children, old voices, breathy,
creaky), at any pitch and speaking rate: each synthetic speaker draws one of each, seeded, and
says every digit. The clips are robotic, but training only ever mixes them with real speech,
and validation and test stay FSDD.

A corpus is written once into a folder named by its settings, next to FSDD, in FSDD's naming
(`{digit}_espeak{k}_{take}.wav`, 8 kHz) with `voices.csv` describing every speaker. It is
built in a temporary folder and renamed into place, so a folder with `voices.csv` is complete.
The same settings and espeak-ng version give the same bytes on the same platform: espeak-ng
carries state from one utterance to the next (the same call twice in one process differs, even
with libc's `rand()` reset), so every corpus is spoken by a fresh process from its first word
to its last, with espeak-ng's own noise (the breath of breathy variants) seeded by `seed`.
"""

from __future__ import annotations

import csv
import io
import logging
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from sdc.audio.io import resample
from sdc.config.fields import option
from sdc.data.espeak import Espeak, espeak
from sdc.errors import SdcError
from sdc.files import write_text

log = logging.getLogger(__name__)

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCENTS = (
    "en-us",
    "en-us-nyc",
    "en",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
)
"""espeak-ng's English: American, New York, British, Received Pronunciation, Scottish,
Lancastrian, West Midlands, Caribbean."""
LEFT_OUT_VARIANTS = frozenset({"Demonic", "UniRobot", "anikaRobot", "croak", "whisper", "whisperf"})
"""Effects rather than voices: a user's digits are not spoken by a demon or in a whisper."""
PITCH = (15, 85)
PITCH_RANGE = (10, 90)
RATE = (120, 280)
"""Per speaker, on espeak's scales: base pitch and intonation range 0-100 (default 50), words
per minute (default 175). FSDD's fastest speaker says a digit in 0.27-0.45 s, about 200 wpm."""
TAKE_JITTER = 0.1
"""Each take of a speaker: rate and pitch within +-10% of the speaker's own."""
MANIFEST = "voices.csv"
PEAK = 0.5


@dataclass
class SyntheticConfig:
    """`data.synthetic`: how many espeak-ng speakers to add to the training set (0: none)."""

    voices: int = option(0, low=0)
    takes: int = option(1, above=0)
    """How many times each voice says each digit."""
    seed: int = 0
    root: str = "data/synthetic"
    """The corpus is written once into a folder under this one named by these settings."""

    @property
    def folder(self) -> Path:
        return corpus_folder(self.root, self.voices, self.takes, self.seed)


@dataclass(frozen=True)
class SyntheticVoice:
    """One synthetic speaker: an accent, a voice variant, a pitch and a speaking rate."""

    speaker: str
    accent: str
    variant: str
    pitch: int
    pitch_range: int
    rate: int

    @property
    def voice(self) -> str:
        return f"{self.accent}+{self.variant}"


def corpus_folder(root: str | Path, voices: int, takes: int, seed: int) -> Path:
    """Where the corpus with these settings lives: settings that differ never share a folder."""
    return Path(root).expanduser().absolute() / f"espeak-{voices}voices-{takes}takes-seed{seed}"


def draw_voices(n: int, seed: int, variants: list[str]) -> list[SyntheticVoice]:
    """`n` speakers, the same ones for the same seed and variant list on every machine."""
    usable = sorted(v for v in variants if v not in LEFT_OUT_VARIANTS)
    rng = random.Random(seed)
    return [
        SyntheticVoice(
            speaker=f"espeak{k:04d}",
            accent=rng.choice(ACCENTS),
            variant=rng.choice(usable),
            pitch=rng.randint(*PITCH),
            pitch_range=rng.randint(*PITCH_RANGE),
            rate=rng.randint(*RATE),
        )
        for k in range(n)
    ]


def speak_digit(
    engine: Espeak, voice: SyntheticVoice, digit: int, rng: random.Random, sample_rate: int
) -> np.ndarray:
    """One take: the word at `sample_rate`, silence trimmed (as FSDD's are), peak at 0.5."""
    jitter = 1.0 + rng.uniform(-TAKE_JITTER, TAKE_JITTER)
    pitch = min(100, max(0, round(voice.pitch * (1.0 + rng.uniform(-TAKE_JITTER, TAKE_JITTER)))))
    wave = engine.say(
        WORDS[digit], voice.voice, round(voice.rate * jitter), pitch, voice.pitch_range
    )
    loud = np.flatnonzero(np.abs(wave) > 1e-3)
    if len(loud) == 0:
        raise SdcError(f"espeak-ng voice {voice.voice!r} said nothing for {WORDS[digit]!r}")
    wave = wave[loud[0] : loud[-1] + 1]
    wave = resample(torch.from_numpy(wave), engine.sample_rate, sample_rate).numpy()
    return PEAK * wave / max(float(np.abs(wave).max()), 1e-6)


def _manifest(voices: list[SyntheticVoice], version: str) -> str:
    out = io.StringIO()
    fields = [*asdict(voices[0]), "espeak_ng"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for voice in voices:
        writer.writerow({**asdict(voice), "espeak_ng": version})
    return out.getvalue()


def _speak_corpus(folder: Path, voices: int, takes: int, seed: int, sample_rate: int) -> None:
    """Every speaker's every take into `folder`, then the manifest (in a process of its own)."""
    engine = espeak()
    if not engine.seed(seed):
        log.warning(
            "espeak-ng %s cannot be seeded: breathy voices differ between runs", engine.version
        )
    speakers = draw_voices(voices, seed, engine.variants())
    for voice in speakers:
        rng = random.Random(f"{seed}:{voice.speaker}")
        for digit in range(10):
            for take in range(takes):
                wave = speak_digit(engine, voice, digit, rng, sample_rate)
                name = f"{digit}_{voice.speaker}_{take}.wav"
                sf.write(folder / name, wave, sample_rate, subtype="PCM_16")
    write_text(folder / MANIFEST, _manifest(speakers, engine.version))


def synthesize_corpus(
    folder: Path, voices: int, takes: int, seed: int, sample_rate: int = 8000
) -> Path:
    """Write the corpus into `folder` unless it is there already; return `folder`.

    An existing folder without the manifest is not ours (or not finished by a process that is
    still writing it): it is an error, never overwritten.
    """
    folder = Path(folder)
    if (folder / MANIFEST).is_file():
        return folder
    if folder.exists():
        raise SdcError(
            f"data.synthetic: {folder} exists but holds no {MANIFEST}; it is not a finished "
            "synthetic corpus (remove it, or set data.synthetic.root elsewhere)"
        )
    log.info(
        "synthesizing %d espeak-ng voices x 10 digits x %d takes into %s", voices, takes, folder
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        # A fresh interpreter: espeak-ng carries state from one utterance to the next, so the
        # same clips need the same words said before them, i.e. none. (A plain subprocess,
        # not multiprocessing, whose spawn fails inside joblib's loky workers.)
        args = [str(staging), str(voices), str(takes), str(seed), str(sample_rate)]
        done = subprocess.run(
            [sys.executable, "-m", "sdc.data.synthetic", *args],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
            raise SdcError(f"data.synthetic: synthesizing {folder.name} failed: {lines[-1]}")
        for line in done.stderr.strip().splitlines():  # the child's warnings, else lost here
            log.warning("%s", line)
        try:
            staging.rename(folder)
        except OSError:
            # Another process (a trial beside this one) finished the same corpus first.
            if not (folder / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


if __name__ == "__main__":
    # The child of `synthesize_corpus`: FOLDER VOICES TAKES SEED SAMPLE_RATE.
    from sdc.cli import user_errors

    with user_errors():
        folder_arg, *numbers = sys.argv[1:]
        _speak_corpus(Path(folder_arg), *(int(n) for n in numbers))
