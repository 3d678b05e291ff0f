"""The recognizer on the real FSDD copy (SDC_DATA_DIR) with one briefly trained model:
transcribing joined test clips, the live engine over them, ONNX parity on the test split, and
evaluation reproducing the training run's test accuracy."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import QUICK_FSDD, evaluate_cfg, train_checkpoint
from sdc.audio.window import fit_to_window
from sdc.evaluation.evaluate import evaluate
from sdc.inference.checkpoint import load_classifier
from sdc.inference.export import PARITY_TOLERANCE, export_onnx
from sdc.inference.recognizer import Recognizer
from sdc.inference.stream import listen

pytestmark = [pytest.mark.fsdd, pytest.mark.slow]

RATE = 8000
TRIMMED_SPEAKERS = ("george", "jackson", "nicolas")
"""Their clips start and end with the word, so a clip's bounds are its word's bounds. (lucas's
clips hold long silences and some of theo's are 40 dB down, below a 0.001 noise floor.)"""


@pytest.fixture(scope="module")
def trained(fsdd_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The one real-FSDD model of this file: 3 epochs, augmentation off but for noise."""
    best, metrics = train_checkpoint(
        fsdd_root,
        tmp_path_factory.mktemp("fsdd_run"),
        *QUICK_FSDD,
    )
    return best, metrics["test_acc"]


@pytest.fixture(scope="module")
def recognizer(trained: tuple[Path, float]) -> Recognizer:
    return Recognizer.from_checkpoint(trained[0], threshold=0.5)


@pytest.fixture(scope="module")
def test_clips(trained: tuple[Path, float], fsdd_root: Path) -> list[Path]:
    with (trained[0].parent.parent / "split.csv").open() as f:
        names = [r["file"] for r in csv.DictReader(f) if r["subset"] == "test"]
    folder = fsdd_root / "recordings"
    return [folder / n for n in names if n.split("_")[1] in TRIMMED_SPEAKERS]


def confident_clips(
    recognizer: Recognizer, paths: list[Path], n: int, seed: int
) -> tuple[list[np.ndarray], str]:
    """`n` random test clips the model gets right alone, confidently: what is tested here is
    that finding them in a longer noisy recording keeps those answers, not the model."""
    rng = np.random.default_rng(seed)
    waves = [recognizer.read(p) for p in paths]
    answers = recognizer.predict_waves(waves)
    good = [
        i
        for i, (p, a) in enumerate(zip(paths, answers, strict=True))
        if a.label == p.name[0] and a.confidence > 0.9
    ]
    assert len(good) >= 2 * n, "the model should know most test clips"
    chosen = rng.choice(good, size=n, replace=False)
    return [waves[i] for i in chosen], "".join(paths[i].name[0] for i in chosen)


def join(
    parts: list[np.ndarray], rng: np.random.Generator, noise: float
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    pieces, times, t = [np.zeros(RATE // 2, dtype=np.float32)], [], 0.5
    for part in parts:
        gap = float(rng.uniform(0.3, 1.0))
        times.append((t, t + len(part) / RATE))
        pieces += [part, np.zeros(round(gap * RATE), dtype=np.float32)]
        t += len(part) / RATE + gap
    wave = np.concatenate(pieces)
    return wave + rng.normal(0, noise, len(wave)).astype(np.float32), times


@pytest.mark.parametrize("seed", [0, 1])
def test_a_spoken_number_is_transcribed_with_its_times(
    recognizer: Recognizer, test_clips: list[Path], seed: int
) -> None:
    parts, digits = confident_clips(recognizer, test_clips, 10, seed)
    wave, times = join(parts, np.random.default_rng(seed), noise=0.001)
    transcript = recognizer.transcribe(wave)
    assert transcript.text == digits
    found = [(s.start, s.end) for s in transcript.segments]
    assert np.allclose(found, times, atol=0.1), (found, times)


def test_the_live_engine_says_each_spoken_digit_once_in_order(
    recognizer: Recognizer, test_clips: list[Path]
) -> None:
    parts, digits = confident_clips(recognizer, test_clips, 12, seed=2)
    wave, times = join(parts, np.random.default_rng(2), noise=0.001)
    chunks = np.array_split(wave, len(wave) // 400)
    heard = list(listen(recognizer, chunks))
    assert "".join(p.label for p in heard) == digits
    assert np.allclose([(p.start, p.end) for p in heard], times, atol=0.1)


def test_onnx_matches_pytorch_on_the_test_split(
    trained: tuple[Path, float], fsdd_root: Path, tmp_path: Path
) -> None:
    model = load_classifier(trained[0])
    with (trained[0].parent.parent / "split.csv").open() as f:
        names = [r["file"] for r in csv.DictReader(f) if r["subset"] == "test"]
    waves = [
        torch.from_numpy(sf.read(fsdd_root / "recordings" / n, dtype="float32")[0]) for n in names
    ]
    padded = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    windows = fit_to_window(padded, torch.tensor([len(w) for w in waves]), model.window)
    with torch.no_grad():
        expected = model(windows).numpy()
    onnx_model = Recognizer.from_onnx(export_onnx(model, tmp_path / "fsdd.onnx"))
    got = onnx_model.backend(windows.numpy())
    assert np.abs(got - expected).max() < PARITY_TOLERANCE
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_evaluate_reproduces_the_training_test_accuracy(
    trained: tuple[Path, float], fsdd_root: Path, tmp_path: Path
) -> None:
    cfg = evaluate_cfg(fsdd_root, tmp_path / "eval", f"ckpt_path={trained[0]}")
    metrics = evaluate(cfg)
    assert metrics["accuracy"] == pytest.approx(trained[1], abs=1e-6)
    assert metrics["n"] == 300 and len(metrics["per_speaker"]) == 6
