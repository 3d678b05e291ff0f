"""Checkpoint (or exported model) in, a `Recognizer` out: the one object that predict,
transcribe, listen and export go through.

A recognizer is a backend that turns waveform windows into logits (PyTorch, ONNX Runtime or
TorchScript) plus the model's `ModelInfo` (labels, sample rate, window). Around it sit the
steps every use shares: read and resample audio, find the speech, place it in the window the way
evaluation does (centred, zero padding), classify, and say "no digit" below the threshold.

The ONNX path imports no torch, Lightning or Hydra (numpy, scipy, soundfile and onnxruntime are
all it needs): torch is imported only when a checkpoint or a TorchScript export is opened.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from sdc.audio.centre import centre_recording
from sdc.audio.decode import decode_bytes, read_at, resample_array
from sdc.audio.vad import VadConfig, find_speech
from sdc.errors import SdcError, first_line
from sdc.inference.model_info import METADATA_KEY, ModelInfo

if TYPE_CHECKING:
    import torch

    from sdc.inference.stream import StreamListener
    from sdc.strings.recognizer import StringRecognizer
    from sdc.training.module import DigitClassifier

DEFAULT_THRESHOLD = 0.6
INFERENCE_BATCH = 8
"""Windows classified per call. The embedding recipe's activations grow with the batch, and
ONNX Runtime keeps its peak: `sdc predict best.onnx` of 1,000 clips peaked at 2.3 GB with 64
and 0.41 GB with 8, at the same clips per second (0.21 GB with 8 once exports skipped the
silence around each digit, 0.31 GB with a batch per core at once); the small CNN is about 7%
slower with 8."""
EXPORT_SUFFIXES = (".onnx", ".pt", ".ts")
"""Exported models (ONNX, TorchScript); anything else is read as a checkpoint."""
SEGMENT_PADDING_SECONDS = 0.05
"""Audio kept either side of a found segment when it is classified: the VAD cuts close."""

Backend = Callable[[np.ndarray], np.ndarray]
"""Windows (B, window) float32 -> logits (B, n_classes)."""


@dataclass(frozen=True)
class Prediction:
    """One file's (or one segment's) answer. `label` is None for "no digit"."""

    label: str | None
    confidence: float
    top: list[tuple[str, float]]
    speech: bool
    start: float = 0.0
    end: float = 0.0
    """Seconds: where the classified speech lies in the recording."""
    file: str = ""
    error: str | None = None


@dataclass(frozen=True)
class Transcript:
    segments: list[Prediction] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The digits said, in order; segments below the threshold are left out."""
        return "".join(s.label for s in self.segments if s.label is not None)


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def sound_extent(windows: np.ndarray) -> np.ndarray:
    """Samples (B,) from each window's first non-zero sample to its last: a centred clip's
    length, a whole window once it holds noise, 0 for a silent one."""
    sound = windows != 0
    first = sound.argmax(axis=1)
    last = windows.shape[1] - sound[:, ::-1].argmax(axis=1)
    return np.where(sound.any(axis=1), last - first, 0)


def _torch_backend(model: torch.nn.Module) -> Backend:
    import torch

    model.eval()

    def run(windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(windows)).float().numpy()

    return run


class Recognizer:
    """Classifies digits in waveforms and files with any backend; see the module docstring."""

    def __init__(
        self,
        backend: Backend,
        info: ModelInfo,
        threshold: float = DEFAULT_THRESHOLD,
        vad: VadConfig | None = None,
        batch_size: int = INFERENCE_BATCH,
        workers: int = 1,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise SdcError(f"threshold: expected a probability in [0, 1], got {threshold}")
        if workers < 1:
            raise SdcError(f"workers: expected at least 1, got {workers}")
        self.backend = backend
        self.info = info
        self.threshold = threshold
        self.vad = vad or VadConfig()
        self.batch_size = batch_size
        self.workers = workers
        """Batches classified at once, each on a thread of its own (ONNX: one per core)."""
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: object) -> Recognizer:
        from sdc.inference.checkpoint import load_classifier

        return cls.from_module(load_classifier(path), **kwargs)

    @classmethod
    def from_module(cls, model: DigitClassifier, **kwargs: object) -> Recognizer:
        """A trained `DigitClassifier` in memory, as after training or in a notebook."""
        # Batch norm folded into the convolutions: the same logits, a fifth faster on a CPU.
        model = model.for_inference()
        info = ModelInfo.from_hparams(dict(model.hparams))
        return cls(_torch_backend(model), info, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_onnx(
        cls, path: str | Path, workers: int | None = None, **kwargs: object
    ) -> Recognizer:
        """An ONNX export under ONNX Runtime. With `workers` > 1 (default: one per core), that
        many batches run at once, each on one thread: on 2 cores, 1.1-1.3 times the clips per
        second of one batch over both, without its slow runs (docs/using-a-model.md). With 1,
        a batch uses every core, as a server's single worker wants."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise SdcError("onnxruntime is not installed: pip install 'sdc[export]'") from None
        path = Path(path)
        if not path.is_file():
            raise SdcError(f"{path}: no such ONNX model")
        workers = workers or available_cores()
        options = ort.SessionOptions()
        if workers > 1:
            options.intra_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own types for a bad file
            raise SdcError(f"{path}: not a loadable ONNX model ({first_line(err)})") from None
        meta = session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise SdcError(f"{path}: not an sdc model (no {METADATA_KEY} in its metadata)")
        info = ModelInfo.from_json(meta[METADATA_KEY], path)
        input_name = session.get_inputs()[0].name

        def run(windows: np.ndarray) -> np.ndarray:
            return session.run(None, {input_name: windows})[0]

        return cls(run, info, workers=workers, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_torchscript(cls, path: str | Path, **kwargs: object) -> Recognizer:
        path = Path(path)
        if not path.is_file():
            raise SdcError(f"{path}: no such TorchScript model")
        import torch

        files = {METADATA_KEY: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # see sdc.inference.export
                model = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        except Exception as err:  # torch raises several types for a bad archive
            raise SdcError(
                f"{path}: not a loadable TorchScript model ({first_line(err)})"
            ) from None
        if not files[METADATA_KEY]:
            raise SdcError(f"{path}: not an sdc model (no {METADATA_KEY} inside)")
        info = ModelInfo.from_json(files[METADATA_KEY], path)
        return cls(_torch_backend(model), info, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path, **kwargs: object) -> Recognizer:
        """By suffix: `.onnx` (ONNX Runtime), `.pt`/`.ts` (TorchScript), else a checkpoint."""
        suffix = Path(path).suffix.lower()
        if suffix == ".onnx":
            return cls.from_onnx(path, **kwargs)
        if suffix in (".pt", ".ts"):
            return cls.from_torchscript(path, **kwargs)
        return cls.from_checkpoint(path, **kwargs)

    @property
    def sample_rate(self) -> int:
        return self.info.sample_rate

    @property
    def window(self) -> int:
        return self.info.window

    @property
    def labels(self) -> tuple[str, ...]:
        return self.info.labels

    def classify(self, windows: npt.ArrayLike) -> np.ndarray:
        """Class probabilities (B, n_classes) of waveform windows (B, window)."""
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[1] != self.window:
            raise ValueError(f"expected windows of shape (B, {self.window}), got {windows.shape}")
        if len(windows) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        # Windows of like sound extent share a call: the embedding hears only the frames that
        # hold sound, over the widest of its batch, so one long clip would slow the rest.
        order = np.argsort(sound_extent(windows), kind="stable")
        batches = [
            np.ascontiguousarray(windows[order[i : i + self.batch_size]])
            for i in range(0, len(windows), self.batch_size)
        ]
        if self.workers > 1 and len(batches) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sdc-classify")
            logits = list(self._pool.map(self.backend, batches))
        else:
            logits = [self.backend(batch) for batch in batches]
        stacked = np.empty((len(windows), logits[0].shape[1]), dtype=np.float64)
        stacked[order] = np.concatenate(logits)
        if not np.isfinite(stacked).all():
            # Finite audio in, so the model is broken (an export of weights gone to NaN):
            # never an answer with a NaN confidence.
            raise SdcError("the model answered NaN or infinite scores; its weights are unusable")
        stacked -= stacked.max(axis=1, keepdims=True)
        probs = np.exp(stacked)
        return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)

    def centred(self, clip: npt.ArrayLike) -> np.ndarray:
        """A clip placed in the middle of the window (cropped if longer), as evaluation does,
        less its DC offset (`centre_recording`)."""
        return centre_recording(clip, self.window)

    def segment_window(self, wave: np.ndarray, start: int, end: int) -> np.ndarray:
        """The window for the speech in wave[start:end], with a little padding, centred."""
        pad = round(SEGMENT_PADDING_SECONDS * self.sample_rate)
        return self.centred(wave[max(0, start - pad) : min(len(wave), end + pad)])

    def answer(self, probs: np.ndarray, start: int, end: int) -> Prediction:
        """The answer for one window's probabilities; `start`/`end` in samples of its source."""
        order = np.argsort(-probs)[:3]
        top = [(self.labels[i], float(probs[i])) for i in order]
        label, confidence = top[0]
        return Prediction(
            label=label if confidence >= self.threshold else None,
            confidence=confidence,
            top=top,
            speech=True,
            start=start / self.sample_rate,
            end=end / self.sample_rate,
        )

    def _no_speech(self, length: int) -> Prediction:
        return Prediction(None, 0.0, [], speech=False, end=length / self.sample_rate)

    def clip_window(self, wave: np.ndarray) -> tuple[np.ndarray, int, int] | None:
        """The window to classify a one-digit recording by, or None when it holds no speech.

        A clip that fits the window is centred whole, as in training and evaluation; speech is
        looked for in that window, so a clip trimmed tight around its word still counts as
        speech. In a longer recording the window goes around the speech instead of the middle:
        all of it when it fits, else its loudest utterance.
        """
        if len(wave) <= self.window:
            window = self.centred(wave)
            found = find_speech(window, self.sample_rate, self.vad)
            if len(found) == 0:
                return None
            # Where the speech lies in the clip: the window holds it from `shift` on.
            shift = int(np.round((self.window - len(wave)) * 0.5))
            start = min(max(0, int(found[0, 0]) - shift), len(wave))
            end = min(max(start, int(found[-1, 1]) - shift), len(wave))
            return window, start, end
        segments = find_speech(wave, self.sample_rate, self.vad)
        if len(segments) == 0:
            return None
        start, end = int(segments[0, 0]), int(segments[-1, 1])
        if end - start > self.window:
            power = np.square(wave.astype(np.float64))
            cumulative = np.concatenate([[0.0], np.cumsum(power)])
            energy = cumulative[segments[:, 1]] - cumulative[segments[:, 0]]
            start, end = (int(v) for v in segments[int(np.argmax(energy))])
        return self.segment_window(wave, start, end), start, end

    def predict_waves(self, waves: Sequence[np.ndarray]) -> list[Prediction]:
        """One answer per one-digit recording at the model's sample rate, classified in batches."""
        placed = [self.clip_window(np.asarray(w, dtype=np.float32)) for w in waves]
        found = [p for p in placed if p is not None]
        probs = iter(self.classify(np.stack([w for w, _, _ in found])) if found else [])
        return [
            self._no_speech(len(wave)) if p is None else self.answer(next(probs), p[1], p[2])
            for wave, p in zip(waves, placed, strict=True)
        ]

    def read(self, path: str | Path) -> np.ndarray:
        """A file as a mono float32 array at the model's rate (SdcError naming it if unreadable)."""
        return read_at(path, self.sample_rate)

    def read_bytes(self, data: bytes, name: str, max_seconds: float | None = None) -> np.ndarray:
        """`read` for a file's contents in memory (an upload); past `max_seconds`, AudioTooLong."""
        wave, rate = decode_bytes(data, name, max_seconds)
        return resample_array(wave, rate, self.sample_rate)

    def predict_files(self, paths: Iterable[str | Path]) -> list[Prediction]:
        """One answer per file; a file that cannot be read gets an `error` and the rest go on.

        Files are read and classified a few batches at a time, so memory does not grow with
        the number of files."""
        paths = [Path(p) for p in paths]
        group = 8 * self.batch_size
        return [
            answer
            for start in range(0, len(paths), group)
            for answer in self._predict_group(paths[start : start + group])
        ]

    def _predict_group(self, paths: list[Path]) -> list[Prediction]:
        waves: dict[int, np.ndarray] = {}
        errors: dict[int, str] = {}
        for i, path in enumerate(paths):
            try:
                waves[i] = self.read(path)
            except SdcError as err:
                errors[i] = str(err)
        answers = dict(zip(waves, self.predict_waves(list(waves.values())), strict=True))
        return [
            Prediction(None, 0.0, [], False, file=str(p), error=errors[i])
            if i in errors
            else _with_file(answers[i], str(p))
            for i, p in enumerate(paths)
        ]

    def transcribe(self, wave: npt.ArrayLike) -> Transcript:
        """The digits in a recording at the model's rate: one segment per utterance found."""
        wave = np.asarray(wave, dtype=np.float32).reshape(-1)
        segments = find_speech(wave, self.sample_rate, self.vad)
        if len(segments) == 0:
            return Transcript([])
        windows = np.stack([self.segment_window(wave, int(s), int(e)) for s, e in segments])
        probs = self.classify(windows)
        return Transcript(
            [self.answer(p, int(s), int(e)) for p, (s, e) in zip(probs, segments, strict=True)]
        )

    def transcribe_file(self, path: str | Path) -> Transcript:
        transcript = self.transcribe(self.read(path))
        return Transcript([_with_file(s, str(path)) for s in transcript.segments])

    def listener(self) -> StreamListener:
        """The live engine for this model (`sdc.inference.stream`)."""
        from sdc.inference.stream import StreamListener

        return StreamListener(self)


def load_batch_per_core(path: str | Path, **kwargs: object) -> Recognizer:
    """`Recognizer.load` for a program that classifies many clips (`sdc predict`): a batch on
    each core at once, each on one thread. For a checkpoint or TorchScript model that sets
    PyTorch's threads to one for the whole process, so the library never calls it for you.
    `best`'s checkpoint on the 2-core VM: 417-470 clips/s, against 304-363 with one batch over
    both cores and 388-420 with a batch per core over both."""
    workers = available_cores()
    if workers > 1 and Path(path).suffix.lower() != ".onnx":
        import torch

        torch.set_num_threads(1)
    return Recognizer.load(path, workers=workers, **kwargs)


def load_transcriber(
    path: str | Path, threshold: float | None = None, namer: str | Path | None = None
) -> Recognizer | StringRecognizer:
    """What `sdc transcribe` and `sdc listen` read with: a digit-string reader's checkpoint as
    one (no pauses needed), any other model as a `Recognizer` (cuts at pauses). `threshold`:
    None for each kind's own default (`DEFAULT_THRESHOLD`; a reader's `READER_THRESHOLD`).
    `namer`: an isolated-digit model naming a reader's digits with it (`sdc.strings.naming`)."""
    isolated = DEFAULT_THRESHOLD if threshold is None else threshold
    not_a_reader = (
        f"--namer: {path} is an isolated-digit model; a namer goes with a digit-string reader"
    )
    if Path(path).suffix.lower() in EXPORT_SUFFIXES:
        if namer is not None:
            raise SdcError(not_a_reader)
        return Recognizer.load(path, threshold=isolated)  # no torch for an ONNX export
    from sdc.inference.checkpoint import classifier_from, read_checkpoint
    from sdc.strings.recognizer import KIND, READER_THRESHOLD, StringRecognizer

    checkpoint = read_checkpoint(path)  # once, whichever kind it is
    if checkpoint["hyper_parameters"].get("kind") == KIND:
        reader = READER_THRESHOLD if threshold is None else threshold
        return StringRecognizer.from_read(checkpoint, path, reader, namer)
    if namer is not None:
        raise SdcError(not_a_reader)
    return Recognizer.from_module(classifier_from(checkpoint, path), threshold=isolated)


def _with_file(prediction: Prediction, file: str) -> Prediction:
    return Prediction(**{**prediction.__dict__, "file": file})
