"""`sdc ensemble`: finished runs on one split become one model that averages them; runs on
different splits are refused, and nothing is overwritten."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from torch.nn.utils.rnn import pad_sequence

from conftest import compose_cfg
from sdc.audio.window import fit_to_window
from sdc.errors import SdcError
from sdc.evaluation.ensemble import CHECKPOINT, combine
from sdc.evaluation.ensemble import main as ensemble_main
from sdc.evaluation.robustness import best_checkpoint, run_test_clips
from sdc.inference.checkpoint import load_classifier
from sdc.inference.recognizer import Recognizer
from sdc.lab.recipe import recipe
from sdc.training.module import DigitClassifier
from sdc.training.train import train

QUICK = ("trainer.max_epochs=1", "data.batch_size=16", "optim.lr=3e-3")
QUICK += ("data.augment.pitch_shift.p=0", "data.augment.time_stretch.p=0")


@pytest.fixture(scope="module")
def runs(tiny_fsdd: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two runs on the same split that hear differently, and one on another split."""
    made = {}
    for name, overrides in {
        "mfcc": ("seed=1",),
        "mfcc20": ("seed=1", "features=mfcc_speech_cmvn"),
        "other_split": ("seed=2",),
    }.items():
        run = tmp_path_factory.mktemp(name)
        cfg = compose_cfg(tiny_fsdd, run, *QUICK, *overrides)
        train(cfg)
        GlobalHydra.instance().clear()
        (run / ".hydra").mkdir()
        OmegaConf.save(cfg, run / ".hydra" / "config.yaml")  # as the CLI's Hydra does
        made[name] = run
    return made


def test_runs_become_one_model_that_averages_them(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ensemble"
    ensemble_main(
        [str(runs["mfcc"]), str(runs["mfcc20"]), "--out", str(out), "--weights", "2", "1"]
    )
    assert "test accuracy" in capsys.readouterr().out

    model = load_classifier(out / CHECKPOINT)
    assert len(model.members) == 2 and model.weights == [1.0, 0.5]
    lightning = DigitClassifier.load_from_checkpoint(out / CHECKPOINT, map_location="cpu")
    assert lightning.weights == [1.0, 0.5]
    members = [load_classifier(best_checkpoint(runs[name])) for name in ("mfcc", "mfcc20")]
    windows = torch.randn(4, model.window) * 0.05
    with torch.no_grad():
        expected = (2 * members[0](windows).softmax(-1) + members[1](windows).softmax(-1)) / 3
        torch.testing.assert_close(model(windows).softmax(-1), expected)

    # Tested once, on the runs' own test clips, centred as evaluation places them.
    metrics = json.loads((out / "metrics.json").read_text())
    waves, labels = run_test_clips(runs["mfcc"])
    assert metrics["test_clips"] == len(labels) > 0
    lengths = torch.tensor([len(w) for w in waves])
    centred = fit_to_window(pad_sequence(waves, batch_first=True), lengths, model.window)
    with torch.no_grad():
        accuracy = float((model(centred).argmax(-1) == torch.tensor(labels)).float().mean())
    assert metrics["test_acc"] == pytest.approx(accuracy)
    assert (out / "split.csv").read_text() == (runs["mfcc"] / "split.csv").read_text()
    assert best_checkpoint(out) == out / CHECKPOINT, "a run folder like any other"
    saved = OmegaConf.load(out / ".hydra" / "config.yaml")
    first = OmegaConf.load(runs["mfcc"] / ".hydra" / "config.yaml")
    assert recipe(saved) != recipe(first), "never taken for the first run's recipe"
    assert saved.experts.member1.weight == 0.5 and saved.experts.member1.features.n_mfcc == 20
    assert Recognizer.load(out / CHECKPOINT).labels == tuple(model.labels)


def test_robustness_may_be_left_unmeasured(runs: dict[str, Path], tmp_path: Path) -> None:
    pair = [str(runs["mfcc"]), str(runs["mfcc20"])]
    full, clean = tmp_path / "full", tmp_path / "clean"
    ensemble_main([*pair, "--out", str(full)])
    ensemble_main([*pair, "--out", str(clean), "--no-robustness"])
    cached = json.loads((full / "robustness.json").read_text())["accuracy"]
    assert len(cached) == 10, "clean, four SNRs, start, end, trimmed, two higher voices"
    assert not (clean / "robustness.json").exists(), "no cache that claims what was not measured"
    test_acc = json.loads((clean / "metrics.json").read_text())["test_acc"]
    assert test_acc == json.loads((full / "metrics.json").read_text())["test_acc"]
    assert test_acc == cached["clean"]


def test_runs_on_different_splits_are_refused(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ensemble"
    with pytest.raises(SystemExit) as exit_:
        ensemble_main([str(runs["mfcc"]), str(runs["other_split"]), "--out", str(out)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith(f"error: {runs['other_split']}: its test clips (split.csv) differ")
        and "\n" not in err
    )
    assert not out.exists()


def test_nothing_is_overwritten(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ensemble"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        ensemble_main([str(runs["mfcc"]), str(runs["mfcc20"]), "--out", str(out)])
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_weights_and_members_are_checked(runs: dict[str, Path]) -> None:
    (a,) = (runs["mfcc"] / "checkpoints").glob("epoch*.ckpt")
    model = load_classifier(a)
    with pytest.raises(SdcError, match=r"^--weights: expected 2 weights"):
        combine([model, model], [1.0])
    with pytest.raises(SdcError, match=r"^--weights: expected numbers > 0"):
        combine([model, model], [1.0, 0.0])
    pair = combine([model, model], [1.0, 1.0])
    with pytest.raises(SdcError, match=r"^run 1 is an ensemble already"):
        combine([pair, model], [1.0, 1.0])


def test_the_command_reads_run_configs_as_hydra_saved_them(
    runs: dict[str, Path], tiny_fsdd: Path, tmp_path: Path
) -> None:
    """In a fresh process, with the data root an interpolation, as in a CLI run's config."""
    copies = []
    for name in ("mfcc", "mfcc20"):
        copy = tmp_path / name
        shutil.copytree(runs[name], copy)
        config = OmegaConf.load(copy / ".hydra" / "config.yaml")
        config.data.root = "${oc.env:SDC_TEST_FSDD,${sdc.project_root:}/data/fsdd}"
        OmegaConf.save(config, copy / ".hydra" / "config.yaml")
        copies.append(str(copy))
    done = subprocess.run(
        [sys.executable, "-m", "sdc", "ensemble", *copies, "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={**os.environ, "SDC_TEST_FSDD": str(tiny_fsdd)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "test accuracy" in done.stdout
