"""`sdc.train` end to end through Hydra's compose API, and its config checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from sdc.config import config_dir
from sdc.config.validate import validate
from sdc.errors import SdcError
from sdc.training.module import DigitClassifier
from sdc.training.train import train

REPO = Path(__file__).resolve().parents[1]


def test_every_experiment_and_debug_config_composes() -> None:
    names = [f"experiment={p.stem}" for p in (config_dir() / "experiment").glob("*.yaml")]
    names += [f"debug={p.stem}" for p in (config_dir() / "debug").glob("*.yaml")]
    assert "experiment=baseline" in names
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for override in names:
            cfg = compose("train", overrides=[override])
            validate(cfg)
    GlobalHydra.instance().clear()


def test_baseline_is_the_write_up_recipe() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=baseline"])
    GlobalHydra.instance().clear()
    assert cfg.features.n_mfcc == 40
    assert cfg.features.frame_seconds == 0.023 and cfg.features.hop_seconds == 0.0115
    assert cfg.features.f_min == 0.0 and cfg.features.f_max is None
    assert cfg.data.clip_seconds == 2.3 and cfg.data.batch_size == 50
    assert cfg.data.split == "random"
    assert (cfg.data.val_fraction, cfg.data.test_fraction) == (0.1, 0.1)
    assert cfg.optim._target_ == "torch.optim.Adam" and cfg.optim.lr == 3e-4
    assert cfg.trainer.max_epochs == 25
    assert cfg.callbacks.model_checkpoint.monitor == "val_acc"
    assert cfg.data.augment.vocoder == "plain" and cfg.data.augment.noise.p == 0.5
    assert cfg.model.time_pooling == "max" and cfg.spec_augment.p == 0 and cfg.vtlp.p == 0
    assert cfg.seed is not None


def test_fast_dev_run_trains_and_reports(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg("debug=fdr")
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert 0.0 <= metrics["test_acc"] <= 1.0
    assert (run / "split.csv").is_file()
    assert (run / "test" / "report.txt").read_text().startswith("debug_fdr")
    assert (run / "test" / "confusion_matrix.png").stat().st_size > 0


def test_a_run_that_tests_only_some_batches_reports_the_clips_it_tested(
    make_cfg: Callable[..., DictConfig],
) -> None:
    """`debug=fdr` on a test set larger than one batch (the real FSDD's 300 clips in batches
    of 250) tests the first batch: the report and the misclassified list are of those clips."""
    cfg = make_cfg("debug=fdr", "data.eval_batch_size=4")
    train(cfg)
    report = json.loads((Path(cfg.paths.output_dir) / "test" / "report.json").read_text())
    assert len(report["files"]) == 4
    assert (Path(cfg.paths.output_dir) / "test" / "misclassified.csv").is_file()


def test_a_few_epochs_learn_the_toy_digits_and_leave_a_usable_checkpoint(
    make_cfg: Callable[..., DictConfig],
) -> None:
    cfg = make_cfg(
        "trainer.max_epochs=8",
        "data.batch_size=16",
        "optim.lr=3e-3",
        "model.dropout=0.0",
    )
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    best = sorted((run / "checkpoints").glob("epoch*.ckpt"))
    assert len(best) == 1
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 7, "last.ckpt holds the final epoch, whichever epoch was best"
    report = json.loads((run / "test" / "report.json").read_text())
    assert report["accuracy"] == pytest.approx(metrics["test_acc"], abs=1e-6)
    assert report["checkpoint"] == str(best[0])
    assert metrics["test_acc"] > 0.5, "10 distinct chirps should be easy to tell apart"
    wrong = (run / "test" / "misclassified.csv").read_text().splitlines()
    assert wrong[0] == "file,speaker,true,predicted,top1,top2,top3"
    assert len(wrong) - 1 == round((1 - report["accuracy"]) * report["n"])
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))

    # The checkpoint alone rebuilds the model: labels, front end, statistics and all.
    model = DigitClassifier.load_from_checkpoint(best[0], map_location="cpu").eval()
    assert model.labels == [str(d) for d in range(10)]
    assert bool(model.frontend.fitted)
    with torch.no_grad():
        assert model(torch.zeros(2, model.window)).shape == (2, 10)


def test_selecting_on_validation_loss_reports_the_selected_checkpoints_accuracy(
    make_cfg: Callable[..., DictConfig],
) -> None:
    cfg = make_cfg(
        "trainer.max_epochs=3",
        "data.batch_size=16",
        "optim.lr=3e-3",
        "callbacks.model_checkpoint.monitor=val_loss",
        "callbacks.model_checkpoint.mode=min",
        "callbacks.model_checkpoint.filename=best",
    )
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    model = DigitClassifier.load_from_checkpoint(
        run / "checkpoints" / "best.ckpt", map_location="cpu"
    ).eval()
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    windows = torch.cat(list(datamodule.clean_windows("val")))
    labels = datamodule.datasets["val"].labels
    with torch.no_grad():
        logits = model(windows)
    loss = float(F.cross_entropy(logits, labels))
    assert metrics["val_loss_best"] == pytest.approx(loss, abs=1e-5)
    # Not the loss that chose it: the accuracy every sweep table and the HPARAMS view read.
    accuracy = float((logits.argmax(dim=-1) == labels).float().mean())
    assert metrics["val_acc_best"] == pytest.approx(accuracy, abs=1e-6)
    report = json.loads((run / "test" / "report.json").read_text())
    assert report["checkpoint"].endswith("best.ckpt")


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.split=bogus", "data.split"),
        ("optim.lr=-1", "optim.lr"),
        ("data.batch_size=0", "data.batch_size"),
        ("data.augment.noise.p=2", "data.augment.noise.p"),
        ("data.augment.vocoder=librosa", "data.augment.vocoder"),
        ("threads=0", "threads"),
        ("data.augment.microphone.tilt_db=[3,-3]", "data.augment.microphone.tilt_db"),
        ("data.augment.microphone.peaks=-1", "data.augment.microphone.peaks"),
        ("data.augment.trim.threshold_db=[-10,5]", "data.augment.trim.threshold_db"),
        ("data.augment.onset_cut.seconds=[0.05,0.01]", "data.augment.onset_cut.seconds"),
        ("data.synthetic.voices=-5", "data.synthetic.voices"),
        ("data.synthetic.takes=0", "data.synthetic.takes"),
        ("features=speech_embedding features.normalize=speech", "features.normalize"),
        ("features=speech_embedding features.finetune_layers=21", "features.finetune_layers"),
        ("features=speech_embedding features.finetune_layers=-1", "features.finetune_layers"),
        ("features=speech_embedding features.finetune_lr_scale=0", "features.finetune_lr_scale"),
        ("model.dropout=1.5", "model.dropout"),
        ("model=embedding_head features=speech_embedding model.channels=0", "model.channels"),
        ("spec_augment.time_width=-1", "spec_augment.time_width"),
        ("vtlp.factor=[1.2,0.8]", "vtlp.factor"),
        ("features.normalize=loudest", "features.normalize"),
        ("test_time_speeds=[3.0]", "test_time_speeds"),
    ],
)
def test_invalid_values_fail_before_training_naming_the_key(
    make_cfg: Callable[..., DictConfig], override: str, key: str
) -> None:
    with pytest.raises(SdcError, match=key.replace(".", r"\.")):
        train(make_cfg(*override.split()))


def run_cli(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    if data_dir is not None:
        env["SDC_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "sdc.train", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_prints_the_composed_recipe() -> None:
    result = run_cli("experiment=baseline", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert "name: baseline" in result.stdout
    assert "lr: 0.0003" in result.stdout
    assert "n_mfcc: 40" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("data.split=bogus",), "data.split"),
        (("optim.lr=-1",), "optim.lr"),
        (("data.download=false", "data.root=/nonexistent/fsdd"), "/nonexistent/fsdd"),
        (("data.nosuchkey=1",), "data.nosuchkey"),
        (("data.batch_size=ten",), "data.batch_size"),
        (("data.batchsize=50",), "batchsize"),
        (("features.n_mfcc=1.5",), "features.n_mfcc"),
        (("logger=null",), "~group"),
        (("threads=0",), "threads"),
    ],
)
def test_cli_bad_input_is_one_line_naming_it(
    tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    result = run_cli(*args, f"hydra.run.dir={tmp_path}", "trainer.max_epochs=1")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert any(needle in line for line in lines), result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) <= 2, result.stderr


@pytest.mark.slow
def test_same_seed_gives_the_same_metrics_in_deterministic_mode(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    runs = []
    for attempt in range(2):
        cfg = make_cfg(
            "trainer.deterministic=true",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "data.batch_size=16",
            "seed=0",
        )
        cfg.paths.output_dir = str(tmp_path / f"run{attempt}")
        runs.append(train(cfg))
    for key in ("val_loss", "val_acc", "test_acc", "train_loss_epoch"):
        assert runs[0][key] == runs[1][key], key


def test_tensorboard_lets_you_hear_training_windows_and_test_mistakes(
    make_cfg: Callable[..., DictConfig],
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_cfg("trainer.max_epochs=1", "data.batch_size=16")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"audio": 0, "images": 0})
    events.Reload()
    heard = [t for t in events.Tags()["audio"] if t.startswith("train/heard_")]
    assert len(heard) == 4
    images = events.Tags()["images"]
    for tag in heard:
        assert tag.endswith("/audio") and tag.replace("/audio", "/features") in images
        (clip,) = events.Audio(tag)
        assert clip.sample_rate == 8000 and len(clip.encoded_audio_string) > 30_000  # 2.3 s
    wrong = len((run / "test" / "misclassified.csv").read_text().splitlines()) - 1
    assert wrong > 0, "one epoch leaves mistakes to hear"
    mistakes = [t for t in events.Tags()["audio"] if t.startswith("test/misclassified/")]
    assert len(mistakes) == min(wrong, 8)
    for tag in mistakes:
        true, predicted = tag.split("_true_")[1].split("_predicted_")
        assert true != predicted
