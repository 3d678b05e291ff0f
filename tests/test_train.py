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
from omegaconf import DictConfig, OmegaConf

from sdc.audio.augment import WaveformAugment
from sdc.config import config_dir
from sdc.config.validate import validate
from sdc.errors import SdcError
from sdc.models.member import Member
from sdc.training.module import DigitClassifier
from sdc.evaluation.robustness import robustness
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
    assert cfg.label_smoothing == 0.0
    assert cfg.seed is not None


@pytest.mark.parametrize(
    ("recipe", "smoothed"), [("baseline", "baseline_smooth"), ("best_mfcc", "best_mfcc_smooth")]
)
def test_a_smoothed_recipe_is_its_recipe_with_label_smoothing_only(
    recipe: str, smoothed: str
) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        plain, smooth = (
            OmegaConf.to_container(compose("train", overrides=[f"experiment={name}"]))
            for name in (recipe, smoothed)
        )
    GlobalHydra.instance().clear()
    assert isinstance(plain, dict) and isinstance(smooth, dict)
    assert (plain.pop("label_smoothing"), smooth.pop("label_smoothing")) == (0.0, 0.5)
    assert (plain.pop("name"), smooth.pop("name")) == (recipe, smoothed)
    assert smooth == plain


def test_fast_dev_run_trains_and_reports(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg("debug=fdr")
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert 0.0 <= metrics["test_acc"] <= 1.0
    assert (run / "split.csv").is_file()
    assert (run / "test" / "report.txt").read_text().startswith("debug_fdr")
    assert (run / "test" / "confusion_matrix.png").stat().st_size > 0


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


def test_ema_checkpoints_hold_and_test_the_averaged_weights(
    make_cfg: Callable[..., DictConfig],
) -> None:
    cfg = make_cfg("trainer.max_epochs=3", "data.batch_size=16", "optim.lr=3e-3", "ema_decay=0.95")
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    (best,) = (run / "checkpoints").glob("epoch*.ckpt")
    saved = torch.load(best, map_location="cpu", weights_only=False)
    raw = saved["current_model_state"]

    # The average started from the module after its global statistics were fitted.
    averaged = DigitClassifier.load_from_checkpoint(best, map_location="cpu").eval()
    assert bool(averaged.frontend.fitted)
    assert torch.allclose(averaged.frontend.mean, raw["members.0.frontend.mean"])
    assert not torch.equal(averaged.frontend.mean, torch.zeros_like(averaged.frontend.mean))

    # The reported test accuracy is the averaged weights' (what export and inference load),
    # not the raw weights' that Lightning's callback would restore for the test.
    unaveraged = DigitClassifier.load_from_checkpoint(best, map_location="cpu").eval()
    unaveraged.load_state_dict(raw)
    datamodule = instantiate(cfg.data)
    datamodule.setup("test")
    test = datamodule.datasets["test"]
    windows = torch.cat(list(datamodule.clean_windows("test")))
    with torch.no_grad():
        loss = {
            name: float(F.cross_entropy(model(windows), test.labels))
            for name, model in (("averaged", averaged), ("raw", unaveraged))
        }
        accuracy = robustness(averaged, test.waves, test.labels.tolist(), averaged.window, ())
    # The loss, not the accuracy: on the toy set's 9 test clips both weights often get the same
    # number right, and the accuracy could not tell which of them was tested.
    assert abs(loss["averaged"] - loss["raw"]) > 1e-3, "the test cannot tell them apart"
    assert metrics["test_loss"] == pytest.approx(loss["averaged"], abs=1e-5)
    assert metrics["test_acc"] == pytest.approx(accuracy["clean"], abs=1e-6)


def test_the_clean_final_epochs_train_without_any_augmentation(
    make_cfg: Callable[..., DictConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three epochs of two batches, the last clean: the waveform augmentation and the feature
    augmentations see the first four batches only, and the clean ones are the centred windows
    that evaluation hears."""
    seen: dict[str, list[torch.Tensor]] = {"augmented": [], "features": [], "trained": []}
    augment, features = WaveformAugment.__call__, Member.training_features
    training_logits = DigitClassifier.training_logits

    def spy(name: str, method: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def wrapped(self: object, windows: torch.Tensor, *args: object) -> torch.Tensor:
            seen[name].append(windows.clone())
            return method(self, windows, *args)

        return wrapped

    monkeypatch.setattr(WaveformAugment, "__call__", spy("augmented", augment))
    monkeypatch.setattr(Member, "training_features", spy("features", features))
    monkeypatch.setattr(DigitClassifier, "training_logits", spy("trained", training_logits))
    cfg = make_cfg(
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=2",
        "data.batch_size=4",
        "data.num_workers=0",
        "vtlp.p=1.0",
        "clean_final_epochs=1",
    )
    train(cfg)
    assert len(seen["trained"]) == 6
    assert len(seen["augmented"]) == 4 and len(seen["features"]) == 4
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    centred = {tuple(w.tolist()) for w in torch.cat(list(datamodule.clean_windows("train")))}
    for windows in seen["trained"][4:]:
        assert {tuple(w.tolist()) for w in windows} <= centred


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
        ("data.augment.offset_cut.seconds=[0.0,2.0]", "data.augment.offset_cut.seconds"),
        ("data.synthetic.voices=-5", "data.synthetic.voices"),
        ("data.synthetic.takes=0", "data.synthetic.takes"),
        ("ema_decay=1.0", "ema_decay"),
        ("label_smoothing=-0.1", "label_smoothing"),
        ("label_smoothing=1", "label_smoothing"),
        ("clean_final_epochs=-1", "clean_final_epochs"),
        ("train_seed_offset=0.5", "train_seed_offset"),
        ("data.edge_fade_seconds=-0.01", "data.edge_fade_seconds"),
        ("data.edge_fade_seconds=0.5", "data.edge_fade_seconds"),
        ("features.edge_fade_seconds=0.01", "features.edge_fade_seconds"),
        ("trainer.max_epochs=3 clean_final_epochs=3", "clean_final_epochs"),
        ("features=speech_embedding features.normalize=speech", "features.normalize"),
        ("features=speech_embedding features.finetune_layers=21", "features.finetune_layers"),
        ("features=speech_embedding features.finetune_layers=-1", "features.finetune_layers"),
        ("features=speech_embedding features.finetune_lr_scale=0", "features.finetune_lr_scale"),
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


def test_twins_learn_the_same_split_from_other_draws(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    """A `train_seed_offset` moves the initial weights, not the split: an ensemble of twins
    needs both members tested on the same clips."""
    runs = {}
    for offset in (0, 1000):
        cfg = make_cfg(
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=1",
            "data.batch_size=16",
            "seed=0",
            f"train_seed_offset={offset}",
        )
        run = tmp_path / f"offset{offset}"
        cfg.paths.output_dir = str(run)
        train(cfg)
        checkpoint = json.loads((run / "metrics.json").read_text())["best_checkpoint"]
        weights = torch.load(checkpoint, map_location="cpu", weights_only=False)
        runs[offset] = ((run / "split.csv").read_text(), weights)
    assert runs[0][0] == runs[1000][0], "the same split"
    first, twin = (runs[k][1]["state_dict"] for k in (0, 1000))
    assert first.keys() == twin.keys()
    assert any(not torch.equal(first[k], twin[k]) for k in first if first[k].is_floating_point())


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
