"""Today's way of reading a string, for comparison: `sdc transcribe` with an isolated-digit
model cuts the recording at pauses and classifies each piece. `sdc strings` measures it on the
same held-out strings as the reader, with each fold's own isolated-digit model: one trained
without that fold's speaker (a `make results` leave-one-speaker-out trial, say)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sdc.data.fsdd import read_split_csv
from sdc.errors import SdcError
from sdc.strings.scoring import string_scores

SUFFIX = ", cut at pauses"
"""Appended to a test condition's name for the segmenter's row."""


def models_by_held_out_speaker(checkpoints: Sequence[str]) -> dict[str, Path]:
    """Each checkpoint under the one speaker its run tested on (its run's `split.csv`)."""
    models: dict[str, Path] = {}
    for checkpoint in map(Path, checkpoints):
        split = checkpoint.parent.parent / "split.csv"
        if not checkpoint.is_file() or not split.is_file():
            raise SdcError(
                f"strings.segmenters: expected a run's checkpoint with split.csv beside its "
                f"checkpoints/ folder, got {checkpoint}"
            )
        tested = {row["speaker"] for row in read_split_csv(split, "test")}
        if len(tested) != 1:
            raise SdcError(
                f"strings.segmenters: {checkpoint} was tested on {sorted(tested)}; expected a "
                "run that held one speaker out (data.split=speaker)"
            )
        (speaker,) = tested
        if speaker in models:
            raise SdcError(f"strings.segmenters: two models hold out {speaker}")
        models[speaker] = checkpoint
    return models


def score_cut_at_pauses(
    checkpoint: Path, sets: dict[str, tuple[list[np.ndarray], list[list[int]]]]
) -> dict[str, dict[str, float]]:
    """Each test set read as `sdc transcribe MODEL` reads it, scored as the reader is."""
    from sdc.inference.recognizer import Recognizer

    recognizer = Recognizer.from_checkpoint(checkpoint)
    scores = {}
    for name, (waves, digits) in sets.items():
        heard = (
            [
                recognizer.labels.index(s.label)
                for s in recognizer.transcribe(w).segments
                if s.label is not None  # below the threshold: "no digit", as transcribe says
            ]
            for w in waves
        )
        scores[name + SUFFIX] = string_scores(zip(heard, digits, strict=True))
    return scores
