"""The digits a reader finds, named by the reader and an isolated-digit model together.

The reader says where each digit is and how many there are; on a voice unlike its training
speakers it names them less well than `best`, which learns from clips heard in many more ways
(george held out: the reader gets 91% of his clips, `best` 96.6%). Each digit the reader finds
is cut out (its start to its end, and `SEGMENT_PADDING_SECONDS` either side), placed in the
isolated-digit model's window as `sdc transcribe` places a piece of a recording, and named by
the product of the two models' probabilities: either one can overrule the other only where it
is the surer.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sdc.errors import SdcError
from sdc.inference.recognizer import Recognizer
from sdc.strings.reader import DigitStringReader, ReadDigit


class DigitNamer:
    """An isolated-digit model (`Recognizer`) naming a reader's digits with it."""

    def __init__(self, recognizer: Recognizer, reader: DigitStringReader, name: str) -> None:
        if recognizer.sample_rate != reader.sample_rate:
            raise SdcError(
                f"{name}: an isolated-digit model at {recognizer.sample_rate} Hz; the reader "
                f"reads {reader.sample_rate} Hz"
            )
        if sorted(recognizer.labels) != sorted(reader.labels):
            raise SdcError(
                f"{name}: labels {list(recognizer.labels)}; the reader reads {list(reader.labels)}"
            )
        self.recognizer = recognizer
        self.blank = reader.blank
        # The model's class i is the reader's label order[i].
        self.order = [reader.labels.index(label) for label in recognizer.labels]

    @classmethod
    def load(cls, path: str | Path, reader: DigitStringReader) -> DigitNamer:
        """A checkpoint or an export of an isolated-digit model (`best`, say); `Recognizer.load`
        refuses a reader's checkpoint in one line."""
        return cls(Recognizer.load(path), reader, str(path))

    def name(
        self, digits: list[ReadDigit], log_probs: torch.Tensor, wave: np.ndarray
    ) -> list[ReadDigit]:
        """`digits` as read from `log_probs` (frames, labels + blank) of `wave` (at the
        reader's rate), each named anew by both models."""
        if not digits:
            return digits
        rate = self.recognizer.sample_rate
        windows = np.stack(
            [
                self.recognizer.segment_window(wave, round(d.start * rate), round(d.end * rate))
                for d in digits
            ]
        )
        named = np.zeros((len(digits), self.blank), dtype=np.float64)
        named[:, self.order] = self.recognizer.classify(windows)
        frames = torch.tensor([d.frame for d in digits])
        read = log_probs[frames, : self.blank].double().softmax(dim=-1).numpy()
        both = read * named
        both /= both.sum(axis=1, keepdims=True).clip(min=1e-300)
        labels = both.argmax(axis=1)
        return [
            replace(d, label=int(k), confidence=float(both[i, k]))
            for i, (d, k) in enumerate(zip(digits, labels, strict=True))
        ]
