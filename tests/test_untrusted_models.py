"""Checkpoints a user did not make: every load is weights-only whatever the environment says,
and a model whose weights are not finite is refused before it answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import SAMPLE_RATE, digit_tone
from sdc.errors import SdcError
from sdc.inference.checkpoint import load_classifier, read_checkpoint
from sdc.inference.predict import main as predict_main

REPO = Path(__file__).resolve().parents[1]


class RunsCode:
    """Unpickled, it creates a file: the classic malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def crafted(tmp_path: Path) -> tuple[Path, Path]:
    marker, path = tmp_path / "pwned", tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": RunsCode(marker)}, path)
    return path, marker


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.slow
def test_resuming_from_a_crafted_checkpoint_never_runs_it(tiny_fsdd: Path, tmp_path: Path) -> None:
    """`TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD` flips torch's default, not an explicit choice."""
    path, marker = crafted(tmp_path)
    result = run(
        [
            "-m",
            "sdc.train",
            f"data.root={tiny_fsdd}",
            "data.download=false",
            "debug=fdr",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"ckpt_path={path}",
        ],
        TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1",
    )
    assert result.returncode == 2, result.stderr
    assert error_lines(result.stderr) == [
        f"error: {path}: not a loadable checkpoint (it holds pickled objects other than weights "
        "and plain data, which could run code: refused)"
    ]
    assert not marker.exists(), "the pickle's payload ran"


def test_a_crafted_checkpoint_is_refused_whatever_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    path, marker = crafted(tmp_path)
    with pytest.raises(SdcError, match="could run code"):
        read_checkpoint(path)
    assert not marker.exists()


def test_random_bytes_are_one_line_without_a_warning_before_it(tmp_path: Path) -> None:
    path = tmp_path / "random.ckpt"
    path.write_bytes(os.urandom(4096))
    clip = tmp_path / "one.wav"
    sf.write(clip, digit_tone(1, 1, 0), SAMPLE_RATE)
    result = run(["-m", "sdc", "predict", str(path), str(clip)])
    assert result.returncode == 2
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"error: {path}: not a loadable checkpoint (")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_checkpoint_with_weights_that_are_not_finite_is_refused(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: float
) -> None:
    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    name = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][name] = torch.full_like(checkpoint["state_dict"][name], bad)
    path = tmp_path / "broken.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(SdcError, match=rf"^{path}: weight {name} holds NaN or infinite values$"):
        load_classifier(path)
    clip = tmp_path / "one.wav"
    sf.write(clip, digit_tone(1, 1, 0), SAMPLE_RATE)
    with pytest.raises(SystemExit) as exit_:
        predict_main([str(path), str(clip)])
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert "nan" not in out.lower() and error_lines(err) == [
        f"error: {path}: weight {name} holds NaN or infinite values"
    ]


def test_a_model_that_answers_nan_never_gives_an_answer() -> None:
    from sdc.inference.model_info import ModelInfo
    from sdc.inference.recognizer import Recognizer

    info = ModelInfo(tuple("0123456789"), 8000, 800, {}, {})
    broken = Recognizer(lambda windows: np.full((len(windows), 10), np.nan, np.float32), info)
    with pytest.raises(SdcError, match="answered NaN or infinite scores"):
        broken.classify(np.zeros((2, 800), np.float32))
