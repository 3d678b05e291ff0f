"""A digit-string reader's checkpoint as `sdc transcribe` and `sdc listen` use it: the same
`Transcript` and `Prediction` answers as the isolated-digit `Recognizer`, read without pauses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from sdc.audio.decode import read_at
from sdc.audio.vad import find_speech
from sdc.errors import SdcError, first_line
from sdc.inference.checkpoint import read_checkpoint
from sdc.inference.recognizer import Prediction, Transcript
from sdc.strings.naming import DigitNamer
from sdc.strings.reader import FRAME_SECONDS, DigitStringReader, greedy_read

KIND = "digit_strings"
"""What a reader's checkpoint says it is (`hyper_parameters.kind`)."""
START_SLACK_SECONDS = 0.15
"""How far a read digit's start may lie before the speech it belongs to (its CTC spike comes
0.03-0.08 s before the onset: `greedy_read`)."""
READER_THRESHOLD = 0.0
"""A reader's default threshold: every digit it reads is in the string. Its blank class already
says where no digit is; a digit it is unsure of is still one that was said, so leaving it out
only shortens the string (a reader trained without nicolas, his 4-digit strings without pauses:
79% right with every digit, 64% with those under 0.6 left out; docs/results.md)."""


def ended_by_silence(start: float, end: float, speech: np.ndarray) -> float:
    """A read digit's end (s), brought forward to where the speech around its start falls
    silent (`speech`: the voice activity detector's (N, 2) spans, s). CTC tells where a digit
    starts, not where it stops, so a digit followed by a pause is read as lasting until the next
    one or `MAX_DIGIT_SECONDS`; digits said without pauses are one span, and keep the next one's
    start. The spike may come a little before the sound does (`START_SLACK_SECONDS`)."""
    for first, last in speech:
        if last > start and first <= start + START_SLACK_SECONDS:
            return float(min(end, max(last, start)))
    return end


class StringRecognizer:
    """Reads the digits in a recording, said with or without pauses, with their times."""

    def __init__(
        self,
        reader: DigitStringReader,
        threshold: float = READER_THRESHOLD,
        namer: str | Path | None = None,
    ) -> None:
        """`namer`: an isolated-digit model that names each digit found with the reader
        (`sdc.strings.naming`)."""
        if not 0.0 <= threshold <= 1.0:
            raise SdcError(f"threshold: expected a probability in [0, 1], got {threshold}")
        self.reader = reader.eval()
        self.threshold = threshold
        self.namer = None if namer is None else DigitNamer.load(namer, self.reader)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        threshold: float = READER_THRESHOLD,
        namer: str | Path | None = None,
    ) -> StringRecognizer:
        return cls.from_read(read_checkpoint(path), path, threshold, namer)

    @classmethod
    def from_read(
        cls,
        checkpoint: dict,
        path: str | Path,
        threshold: float = READER_THRESHOLD,
        namer: str | Path | None = None,
    ) -> StringRecognizer:
        """`from_checkpoint` of a checkpoint already read by `read_checkpoint` from `path`."""
        hparams = checkpoint["hyper_parameters"]
        if hparams.get("kind") != KIND:
            raise SdcError(f"{path}: not a digit-string reader")
        try:
            reader = DigitStringReader(
                tuple(hparams["labels"]),
                dict(hparams["net"]),
                int(hparams["frontend"]["sample_rate"]),
                float(hparams["frontend"]["pad_seconds"]),
                # Saved before the option existed: one hearing.
                test_time_speeds=tuple(hparams.get("test_time_speeds", (1.0,))),
            )
            reader.load_state_dict(checkpoint["state_dict"])
        except Exception as err:  # a config or weights that do not fit this version of sdc
            raise SdcError(f"{path}: cannot rebuild the reader ({first_line(err)})") from None
        return cls(reader, threshold, namer)

    @property
    def sample_rate(self) -> int:
        return self.reader.sample_rate

    @property
    def labels(self) -> tuple[str, ...]:
        return self.reader.labels

    def read(self, path: str | Path) -> np.ndarray:
        return read_at(path, self.sample_rate)

    @torch.no_grad()
    def transcribe(
        self,
        wave: npt.ArrayLike,
        start: int = 0,
        wanted: Callable[[float, float], bool] | None = None,
    ) -> Transcript:
        """The digits in a recording at the model's rate, in order, each with its times.
        `start`: its first sample in a longer stream (`DigitStringReader.read_log_probs`).
        `wanted(start, end)` (s): only the digits it accepts are named and kept (a listener's:
        those settled and not yet told, so that a namer runs once a digit)."""
        wave = np.asarray(wave, dtype=np.float32).reshape(-1)
        wave = wave - np.float32(wave.mean()) if len(wave) else wave
        log_probs = self.reader.read_log_probs(torch.from_numpy(wave), start)
        if log_probs.shape[0] == 0:
            return Transcript([])
        duration = len(wave) / self.sample_rate
        speech = find_speech(wave, self.sample_rate) / self.sample_rate
        found = [
            (digit, ended_by_silence(digit.start, digit.end, speech))
            for digit in greedy_read(log_probs, self.reader, duration)
        ]
        if wanted is not None:
            found = [(digit, end) for digit, end in found if wanted(digit.start, end)]
        digits = [digit for digit, _ in found]
        if self.namer is not None:
            digits = self.namer.name(digits, log_probs, wave)
        segments = []
        for digit, (_, end) in zip(digits, found, strict=True):
            label = self.labels[digit.label]
            segments.append(
                Prediction(
                    label=label if digit.confidence >= self.threshold else None,
                    confidence=digit.confidence,
                    top=[(label, digit.confidence)],
                    speech=True,
                    start=digit.start,
                    end=end,
                )
            )
        return Transcript(segments)

    def transcribe_file(self, path: str | Path) -> Transcript:
        transcript = self.transcribe(self.read(path))
        return Transcript(
            [Prediction(**{**s.__dict__, "file": str(path)}) for s in transcript.segments]
        )

    def listener(self) -> StringListener:
        return StringListener(self)


class StringListener:
    """Live reading: every hop, the last `buffer_seconds` of audio are read again, and each
    digit that ended at least `settle_seconds` before the newest audio, and after the last
    digit told, is told once. The hop is a whole number of frames, so the frames fall on the
    same audio from hop to hop and a digit's times do not jitter.

    A hop of one frame (80 ms) and 0.2 s to settle tell a digit 0.25-0.27 s after its end
    (median; 90th percentile 0.32-0.39 s), where three frames and 0.3 s took 0.42-0.47 s; as
    many strings came out right, on a held-out speaker's strings with and without pauses
    (docs/results.md). Each hop reads `buffer_seconds` again: about 40 ms on one thread of the
    2-core VM, half a core."""

    def __init__(
        self,
        recognizer: StringRecognizer,
        hop_frames: int = 1,
        buffer_seconds: float = 4.0,
        settle_seconds: float = 0.2,
    ) -> None:
        self.recognizer = recognizer
        rate = recognizer.sample_rate
        self.hop = round(hop_frames * FRAME_SECONDS * rate)
        self.buffer = np.zeros(round(buffer_seconds * rate), dtype=np.float32)
        self.pending = np.zeros(0, dtype=np.float32)
        self.seen = 0
        self.settle = settle_seconds
        self.told_until = -np.inf
        """Stream time (s) of the middle of the last digit told."""

    def feed(self, samples: npt.ArrayLike) -> list[Prediction]:
        self.pending = np.concatenate([self.pending, np.asarray(samples, np.float32).reshape(-1)])
        found: list[Prediction] = []
        while len(self.pending) >= self.hop:
            step, self.pending = self.pending[: self.hop], self.pending[self.hop :]
            self.buffer = np.concatenate([self.buffer[self.hop :], step])
            self.seen += self.hop
            found += self._read()
        return found

    def flush(self) -> list[Prediction]:
        """End of stream: silence enough for the last digit to settle and be told."""
        silence = len(self.pending) + round((self.settle + 0.5) * self.recognizer.sample_rate)
        return self.feed(np.zeros(silence + self.hop, dtype=np.float32))

    def _read(self) -> list[Prediction]:
        rate = self.recognizer.sample_rate
        start = self.seen - len(self.buffer)  # the buffer's first sample in the stream
        offset, newest = start / rate, self.seen / rate
        told = []

        def settled_and_new(first: float, last: float) -> bool:
            return offset + last <= newest - self.settle and (
                offset + (first + last) / 2 > self.told_until + 0.12
            )

        for digit in self.recognizer.transcribe(self.buffer, start, settled_and_new).segments:
            middle = offset + (digit.start + digit.end) / 2
            if offset + digit.end > newest - self.settle or middle <= self.told_until + 0.12:
                continue
            self.told_until = middle
            if digit.label is not None:
                start, end = offset + digit.start, offset + digit.end
                told.append(Prediction(**{**digit.__dict__, "start": start, "end": end}))
        return told
