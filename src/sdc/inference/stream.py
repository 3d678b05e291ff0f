"""Live recognition: the write-up's demo, a 2.3 s window slid every 0.25 s over a stream.

At every hop the engine looks for speech in the last window of audio. An utterance that has
ended (followed by at least the VAD's minimum silence, so it is not a pause inside a word) and
that has not been answered yet is classified the way `Recognizer.transcribe` classifies a
segment, and reported once, if the model is confident. Each utterance is answered at most once
because the engine remembers, in stream time, where the last one it handled ended.

The engine only sees arrays of samples; where they come from is up to the sources below: a WAV
file, raw PCM on stdin (both as fast as they can be read, or paced in real time), or the
microphone through sounddevice (an optional extra).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from sdc.audio.decode import resample_array
from sdc.audio.vad import find_speech
from sdc.errors import SdcError
from sdc.inference.recognizer import Prediction, Recognizer

HOP_SECONDS = 0.25
PCM_FORMATS = {"s16le": np.dtype("<i2"), "s32le": np.dtype("<i4"), "f32le": np.dtype("<f4")}


class StreamListener:
    """Feed it chunks of any size at the model's rate; it returns the digits as they end."""

    def __init__(self, recognizer: Recognizer, hop_seconds: float = HOP_SECONDS) -> None:
        self.recognizer = recognizer
        self.hop = max(1, round(hop_seconds * recognizer.sample_rate))
        self.buffer = np.zeros(recognizer.window, dtype=np.float32)
        self.pending = np.zeros(0, dtype=np.float32)
        self.seen = 0
        """Samples of the stream that have entered the window so far."""
        self.answered_until = 0
        """Stream time (samples) up to which utterances have been handled."""
        self.quiet = round(recognizer.vad.min_silence_seconds * recognizer.sample_rate)

    def feed(self, samples: npt.ArrayLike) -> list[Prediction]:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.pending = np.concatenate([self.pending, samples])
        found: list[Prediction] = []
        while len(self.pending) >= self.hop:
            step, self.pending = self.pending[: self.hop], self.pending[self.hop :]
            self.buffer = np.concatenate([self.buffer[self.hop :], step])
            self.seen += self.hop
            found += self._listen()
        return found

    def flush(self) -> list[Prediction]:
        """End of stream: enough silence to let the last utterance end and be answered."""
        tail = self.hop - len(self.pending) + self.quiet + self.hop
        return self.feed(np.zeros(tail, dtype=np.float32))

    def _listen(self) -> list[Prediction]:
        rate = self.recognizer.sample_rate
        offset = self.seen - len(self.buffer)
        segments = find_speech(self.buffer, rate, self.recognizer.vad)
        if len(segments) == 0:
            return []
        ended = segments[:, 1] <= len(self.buffer) - self.quiet
        new = segments[:, 0] + offset >= self.answered_until
        ready = segments[ended & new]
        if len(ready) == 0:
            return []
        windows = np.stack(
            [self.recognizer.segment_window(self.buffer, int(s), int(e)) for s, e in ready]
        )
        probs = self.recognizer.classify(windows)
        self.answered_until = int(ready[-1, 1]) + offset
        found = []
        for p, (s, e) in zip(probs, ready, strict=True):
            answer = self.recognizer.answer(p, int(s) + offset, int(e) + offset)
            if answer.label is not None:
                found.append(answer)
        return found


def listen(recognizer: Recognizer, chunks: Iterable[np.ndarray]) -> Iterator[Prediction]:
    """Every confident digit in a stream of chunks, in order, as soon as it is heard (by the
    recognizer's own listener: a digit-string reader listens its own way)."""
    engine = recognizer.listener()
    for chunk in chunks:
        yield from engine.feed(chunk)
    yield from engine.flush()


def _paced(chunks: Iterable[np.ndarray], sample_rate: int) -> Iterator[np.ndarray]:
    """Hold each chunk back until its audio would have been heard in real time."""
    started, heard = time.monotonic(), 0
    for chunk in chunks:
        heard += len(chunk)
        delay = started + heard / sample_rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield chunk


def file_chunks(
    recognizer: Recognizer, path: str | Path, realtime: bool = False
) -> Iterator[np.ndarray]:
    """A recording cut into hops at the model's rate."""
    wave = recognizer.read(path)
    hop = round(HOP_SECONDS * recognizer.sample_rate)
    chunks = (wave[i : i + hop] for i in range(0, len(wave), hop))
    return _paced(chunks, recognizer.sample_rate) if realtime else chunks


def pcm_chunks(
    recognizer: Recognizer,
    stream: BinaryIO,
    sample_rate: int,
    pcm_format: str = "s16le",
    channels: int = 1,
    realtime: bool = False,
) -> Iterator[np.ndarray]:
    """Raw interleaved PCM (e.g. `arecord -t raw` or `sox ... -t raw -`) as mono model-rate hops.

    Each hop is resampled on its own, which is exact at the model's own rate and adds small
    edge effects at other rates.
    """
    if pcm_format not in PCM_FORMATS:
        raise SdcError(f"--format: expected one of {', '.join(PCM_FORMATS)}, got {pcm_format!r}")
    dtype = PCM_FORMATS[pcm_format]
    frame_bytes = dtype.itemsize * channels
    hop_bytes = round(HOP_SECONDS * sample_rate) * frame_bytes
    scale = 1.0 if dtype.kind == "f" else float(2 ** (8 * dtype.itemsize - 1))

    def read() -> Iterator[np.ndarray]:
        leftover = b""
        while True:
            data = stream.read(hop_bytes)
            if not data:
                return
            data = leftover + data
            usable = len(data) - len(data) % frame_bytes
            data, leftover = data[:usable], data[usable:]
            pcm = np.frombuffer(data, dtype=dtype).astype(np.float32) / scale
            mono = pcm.reshape(-1, channels).mean(axis=1)
            yield resample_array(mono, sample_rate, recognizer.sample_rate)

    return _paced(read(), recognizer.sample_rate) if realtime else read()


def microphone_chunks(
    recognizer: Recognizer, device: str | int | None = None
) -> Iterator[np.ndarray]:
    """The default (or named) input device, recorded at the model's rate in hops."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as err:
        raise SdcError(
            f"the microphone needs sounddevice and PortAudio ({err}): pip install 'sdc[live]', "
            "or listen to --wav FILE or --stdin instead"
        ) from None
    hop = round(HOP_SECONDS * recognizer.sample_rate)
    try:
        with sd.InputStream(
            samplerate=recognizer.sample_rate, channels=1, dtype="float32", device=device
        ) as stream:
            while True:
                chunk, overflowed = stream.read(hop)
                if overflowed:
                    print("warning: audio input overflowed", file=sys.stderr)
                yield chunk[:, 0]
    except sd.PortAudioError as err:
        raise SdcError(f"microphone: {err}") from None
