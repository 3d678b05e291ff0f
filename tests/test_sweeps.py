"""Sweeps and scale-out through the real CLI: a multirun, an Optuna search, DDP on 2 CPU processes,
and the sweep report on their output. Hydra runs sweeps only from the command line (compose
cannot), so each of these is a subprocess on the tiny synthetic dataset."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import sdc.training.train
from sdc.config import config_dir
from sdc.errors import SdcError
from sdc.lab.sweep_report import main as sweep_report_main

REPO = Path(__file__).resolve().parents[1]
HAS_OPTUNA_SWEEPER = importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is not None

pytestmark = pytest.mark.slow


def sdc_train(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    """`python -m sdc.train` on the tiny dataset, quietly, failing the test with its output."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sdc.train",
            *args,
            f"data.root={data}",
            "data.download=false",
            "trainer.enable_progress_bar=false",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def hparams_view(run: Path) -> tuple[dict[str, object], dict[str, float]]:
    """What TensorBoard's HPARAMS view shows for a run: its hyperparameters, and for each of its
    metrics the last value logged under that tag."""
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = {
        k: v.number_value if v.HasField("number_value") else v.string_value
        for k, v in start.session_start_info.hparams.items()
    }
    tags = [m.name.tag for m in experiment.experiment.metric_infos]
    return hparams, {tag: events.Scalars(tag)[-1].value for tag in tags}


@pytest.fixture(scope="module")
def grid_sweep(tiny_fsdd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep = tmp_path_factory.mktemp("multirun")
    sdc_train("-m", "debug=fdr", "optim.lr=0.001,0.003", f"hydra.sweep.dir={sweep}", data=tiny_fsdd)
    return sweep


@pytest.fixture(scope="module")
def optuna_sweep(tiny_fsdd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAS_OPTUNA_SWEEPER:
        pytest.skip("hydra-optuna-sweeper is not installed: pip install -e '.[sweep]'")
    sweep = tmp_path_factory.mktemp("optuna")
    sdc_train(
        "hparams_search=optuna",
        "debug=fdr",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={sweep}",
        data=tiny_fsdd,
    )
    return sweep


def test_multirun_makes_one_readable_folder_per_job_with_hparams_and_final_metrics(
    grid_sweep: Path,
) -> None:
    trials = sorted(p for p in grid_sweep.iterdir() if p.is_dir())
    assert [p.name for p in trials] == ["0_debug=fdr,optim.lr=0.001", "1_debug=fdr,optim.lr=0.003"]
    for trial, lr in zip(trials, (0.001, 0.003), strict=True):
        metrics = json.loads((trial / "metrics.json").read_text())
        assert (trial / "test" / "report.json").is_file()
        hparams, final = hparams_view(trial)
        assert hparams["optim.lr"] == pytest.approx(lr)
        assert final == pytest.approx(
            {"hp/val_acc_best": metrics["val_acc_best"], "hp/test_acc": metrics["test_acc"]}
        )


def test_optuna_sweep_runs_its_trials_and_maximizes_validation_accuracy(
    optuna_sweep: Path,
) -> None:
    trials = sorted(p for p in optuna_sweep.iterdir() if p.is_dir())
    assert [p.name for p in trials] == ["trial_0", "trial_1"]
    searched = {"optim.lr", "optim.weight_decay", "model.dropout", "augment_p", "model.channels"}
    values = []
    for trial in trials:
        overrides = yaml.safe_load((trial / ".hydra" / "overrides.yaml").read_text())
        assert searched <= {o.split("=")[0] for o in overrides}
        values.append(json.loads((trial / "metrics.json").read_text())["val_acc_best"])
    result = yaml.safe_load((optuna_sweep / "optimization_results.yaml").read_text())
    assert result["best_value"] == pytest.approx(max(values))
    assert set(result["best_params"]) == searched


@pytest.mark.parametrize("sweep_name", ["grid_sweep", "optuna_sweep"])
def test_sweep_report_ranks_trials_by_validation_accuracy(
    request: pytest.FixtureRequest, sweep_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep: Path = request.getfixturevalue(sweep_name)
    sweep_report_main([str(sweep)])
    printed = capsys.readouterr().out
    markdown = (sweep / "sweep_report.md").read_text()
    assert markdown in printed
    with (sweep / "sweep_report.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {row["trial"] for row in rows} == {p.parent.name for p in sweep.glob("*/metrics.json")}
    assert [row["status"] for row in rows] == ["done", "done"]
    accuracies = [float(row["val_acc_best"]) for row in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    # Overrides every trial shares are listed once; the table shows what the trials vary.
    shared = next(line for line in markdown.splitlines() if line.startswith("Shared overrides"))
    assert "`debug=fdr`" in shared and "optim.lr" not in shared
    assert "`optim.lr=" in markdown


@pytest.mark.parametrize("make_folder", [False, True])
def test_sweep_report_on_a_missing_or_empty_folder_is_one_line_naming_it(
    tmp_path: Path, make_folder: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "sweep"
    if make_folder:
        folder.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        sweep_report_main([str(folder)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {folder}") and len(err.strip().splitlines()) == 1


def test_ddp_on_two_cpu_processes_leaves_one_run_folder_tested_once(
    tiny_fsdd: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    sdc_train(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=1",
        "data.batch_size=8",
        f"hydra.run.dir={run}",
        data=tiny_fsdd,
    )
    assert [p.name for p in tmp_path.iterdir()] == ["run"], "a second run folder appeared"
    # Rank 1 ran (its Hydra log is here) but wrote no configs, reports or events of its own.
    assert (run / "train_ddp_process_1.log").is_file()
    assert sorted(p.name for p in run.glob("**/.hydra")) == [".hydra"]
    pids = {
        re.match(r"events\.out\.tfevents\.\d+\.[^.]+\.(\d+)", p.name)[1]
        for p in run.glob("tensorboard/events.*")
    }
    assert len(pids) == 1, "only rank 0 logs to TensorBoard"
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert len(checkpoints) == 2 and "last.ckpt" in checkpoints

    metrics = json.loads((run / "metrics.json").read_text())
    report = json.loads((run / "test" / "report.json").read_text())
    split = (run / "split.csv").read_text().splitlines()
    n_test = sum(line.endswith(",test") for line in split)
    # The whole test split, each clip once, on one device after the 2-process fit.
    assert report["n"] == len(report["files"]) == n_test
    assert report["accuracy"] == pytest.approx(metrics["test_acc"], abs=1e-6)
    _, final = hparams_view(run)
    assert final["hp/test_acc"] == pytest.approx(metrics["test_acc"])


@pytest.mark.parametrize(
    ("overrides", "plugin"),
    [
        (["hparams_search=optuna"], "hydra_plugins.hydra_optuna_sweeper"),
        (["hydra/launcher=joblib_local"], "hydra_plugins.hydra_joblib_launcher"),
        (["hydra/launcher=slurm", "trainer=ddp"], "hydra_plugins.hydra_submitit_launcher"),
    ],
)
def test_sweep_and_launcher_configs_compose(overrides: list[str], plugin: str) -> None:
    if importlib.util.find_spec(plugin) is None:
        pytest.skip(f"{plugin} is not installed (the sweep or slurm extra)")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert cfg.hydra.sweep.dir.startswith(f"{cfg.paths.log_dir}/multiruns/")
    if "hparams_search=optuna" in overrides:
        assert cfg.hydra.sweeper.direction == "maximize" and cfg.optimized_metric == "val_acc_best"
        assert cfg.hydra.sweeper.max_failure_rate == 1.0 and cfg.hydra.sweeper.storage is None
        assert cfg.data.augment.noise.p == cfg.augment_p
    else:
        assert cfg.hydra.launcher._target_.startswith("hydra_plugins.")


def test_ddp_refuses_to_relaunch_inside_a_multirun(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg(
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "hydra.mode=MULTIRUN"
    )
    with pytest.raises(SdcError, match="trainer=ddp cannot run inside a -m sweep"):
        sdc.training.train.train(cfg)


@pytest.mark.parametrize(("value", "expected"), [(0.75, 0.75), (float("nan"), 0.0)])
def test_the_sweeper_gets_the_optimized_metric_and_never_nan(
    make_cfg: Callable[..., DictConfig],
    monkeypatch: pytest.MonkeyPatch,
    value: float,
    expected: float,
) -> None:
    monkeypatch.setattr(
        sdc.training.train, "train", lambda cfg: {"val_acc": 0.1, "val_acc_best": value}
    )
    cfg = make_cfg("optimized_metric=val_acc_best")
    assert sdc.training.train.hydra_app.__wrapped__(cfg) == expected
