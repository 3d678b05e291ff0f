"""`sdc.evaluation.evaluate` on the tiny synthetic FSDD: the report files, per-speaker accuracy, the
misclassified CSV, TensorBoard, and the same accuracy as the training run's own test."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from conftest import evaluate_cfg
from sdc.config import config_dir
from sdc.errors import SdcError
from sdc.evaluation.evaluate import evaluate


def test_evaluation_runs_go_under_outputs_evaluations() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("evaluate", overrides=["ckpt_path=x.ckpt"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert "/evaluations/" in cfg.hydra.run.dir and "/evaluations/" in cfg.hydra.sweep.dir
    assert cfg.subset == "test" and cfg.seed == 1234


def test_evaluate_writes_its_reports_and_matches_the_training_test(
    tiny_checkpoint: Path, tiny_fsdd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = evaluate_cfg(tiny_fsdd, tmp_path / "eval", f"ckpt_path={tiny_checkpoint}")
    metrics = evaluate(cfg)
    out = Path(cfg.paths.output_dir)
    for name in ("report.txt", "report.json", "confusion_matrix.png", "per_speaker.csv"):
        assert (out / name).stat().st_size > 0, name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))

    training = json.loads((tiny_checkpoint.parent.parent / "test" / "report.json").read_text())
    assert metrics["accuracy"] == pytest.approx(training["accuracy"], abs=1e-9)
    report = json.loads((out / "report.json").read_text())
    assert set(report["per_speaker"]) == {"alice", "bob", "carol"}
    assert sum(s["n"] for s in report["per_speaker"].values()) == report["n"] == 18

    with (out / "misclassified.csv").open() as f:
        wrong = list(csv.DictReader(f))
    assert len(wrong) == round((1 - metrics["accuracy"]) * report["n"])
    for row in wrong:
        assert row["true"] != row["predicted"] and row["top1"].startswith(row["predicted"] + ":")
    # The training run's own test wrote the same list, answers and all.
    with (tiny_checkpoint.parent.parent / "test" / "misclassified.csv").open() as f:
        assert list(csv.DictReader(f)) == wrong
    printed = capsys.readouterr()
    assert "accuracy per speaker" in printed.out and "warning" not in printed.err
    assert "accuracy per speaker" in (out / "report.txt").read_text()

    # Accuracy against SNR: the clean point is the evaluation's own accuracy, noise only hurts
    # on the whole, and the curve is drawn and saved.
    snr = metrics["snr"]
    assert set(snr) == {"clean", "snr_20db", "snr_10db", "snr_5db", "snr_0db"}
    assert snr["clean"] == pytest.approx(metrics["accuracy"], abs=1e-9)
    assert snr["snr_0db"] <= snr["clean"]
    assert json.loads((out / "metrics.json").read_text())["snr"] == snr
    assert (out / "accuracy_vs_snr.png").read_bytes()[:4] == b"\x89PNG"
    assert "in white noise: 0 dB" in printed.out


def test_another_split_or_subset_is_evaluated_and_bad_values_name_the_key(
    tiny_checkpoint: Path, tiny_fsdd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = evaluate_cfg(
        tiny_fsdd, tmp_path / "val", f"ckpt_path={tiny_checkpoint}", "data.split=official"
    )
    cfg.subset = "val"
    assert evaluate(cfg)["n"] > 0
    # Not the clips the training run validated on: its run folder's split.csv says so.
    assert "warning: this val set differs" in capsys.readouterr().err
    cfg.subset = "everything"
    with pytest.raises(SdcError, match="subset"):
        evaluate(cfg)
