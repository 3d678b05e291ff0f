"""Stopping a real training process, then resuming it to the same final epoch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 3


def train_command(tiny_fsdd: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sdc.train",
        f"data.root={tiny_fsdd}",
        "data.download=false",
        "data.batch_size=8",
        "trainer.limit_train_batches=6",
        f"trainer.max_epochs={EPOCHS}",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def _default_signals() -> None:
    """In the child, before it execs Python: SIGINT back to its default, so Python turns Ctrl-C
    into KeyboardInterrupt. A test runner started in the background by a non-interactive shell
    inherits SIGINT ignored, Python then leaves it ignored, and the run would finish normally."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_interrupted_training_leaves_last_ckpt_and_resumes(
    tiny_fsdd: Path, tmp_path: Path, signum: int
) -> None:
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(
        train_command(tiny_fsdd, run_dir),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signals,
    )
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "training ended before it could be interrupted"
    os.kill(process.pid, signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "Traceback" not in stderr, stderr
    if signum == signal.SIGTERM:
        assert "resume with ckpt_path=" in stderr
    assert not (run_dir / "metrics.json").exists(), "an interrupted run must not look finished"

    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["epoch"] < EPOCHS - 1

    resumed = subprocess.run(
        train_command(tiny_fsdd, run_dir, f"ckpt_path={last}"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == EPOCHS
    assert 0.0 <= metrics["test_acc"] <= 1.0


def test_a_finished_run_folder_is_never_trained_over(tiny_fsdd: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "epoch001.ckpt").write_bytes(b"precious")
    # The record of how the run there was trained: a refused run must not rewrite it.
    (run_dir / ".hydra").mkdir()
    record = {name: f"the first run's {name}\n" for name in ("config", "hydra", "overrides")}
    for name, text in record.items():
        (run_dir / ".hydra" / f"{name}.yaml").write_text(text)
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    result = subprocess.run(
        train_command(tiny_fsdd, run_dir, "debug=fdr"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "already holds a run" in result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        f"error: hydra.run.dir: {run_dir} already holds a run (checkpoints); choose another "
        "folder, or set overwrite=true"
    ]
    assert (run_dir / "checkpoints" / "epoch001.ckpt").read_bytes() == b"precious"
    for name, text in record.items():
        assert (run_dir / ".hydra" / f"{name}.yaml").read_text() == text
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before, "nothing added"
