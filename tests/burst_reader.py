"""A stand-in digit-string reader for the listener's tests, which must not train one."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from conftest import SAMPLE_RATE
from sdc.inference.recognizer import Prediction, Transcript


class BurstReader:
    """Each burst of sound (above 0.05) is a "7", from where it starts to where it ends."""

    sample_rate = SAMPLE_RATE

    def transcribe(
        self,
        wave: np.ndarray,
        start: int = 0,
        wanted: Callable[[float, float], bool] | None = None,
    ) -> Transcript:
        loud = np.abs(wave) > 0.05
        edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(int), [0]])))
        spans = edges.reshape(-1, 2) / SAMPLE_RATE
        spans = [(s, e) for s, e in spans if wanted is None or wanted(s, e)]
        return Transcript([Prediction("7", 0.9, [("7", 0.9)], True, s, e) for s, e in spans])
