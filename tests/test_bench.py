"""`sdc.lab.bench` runs end to end on tiny data (`make bench` checks its figures, not here)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from sdc.errors import SdcError
from sdc.lab.bench import bench, bench_devices, isolated, markdown, measure_epoch


@pytest.mark.slow
def test_bench_writes_every_figure(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg(
        "bench.full_run=false",
        "bench.repeats=1",
        "bench.reference_clips=1",
        "bench.inference_clips=64",
        "bench.latency_iterations=10",
        config_name="bench",
    )
    results = bench(cfg)
    figures = results["devices"]["cpu"]
    for key in (
        "pipeline_clips_per_s",
        "reference_clips_per_s",
        "speedup_vs_reference",
        "augment_s",
        "features_s",
        "forward_backward_s",
        "epoch_s",
        "epoch_peak_rss_mb",
        "batched_clips_per_s",
        "single_clip_p50_ms",
        "single_clip_p90_ms",
        "inference_peak_rss_mb",
        "onnx_single_clip_p50_ms",
        "onnx_batched_clips_per_s",
        "onnx_int8_single_clip_p50_ms",
        "onnx_int8_batched_clips_per_s",
    ):
        assert figures[key] > 0, key
    out = Path(cfg.paths.output_dir)
    assert json.loads((out / "bench.json").read_text())["devices"]["cpu"] == figures
    assert "| pipeline_clips_per_s |" in (out / "bench.md").read_text()


def test_a_measurement_that_fails_in_its_process_is_one_line_not_a_hang(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = make_cfg(f"data.root={tmp_path}", "data.download=false", config_name="bench")
    with pytest.raises(SdcError, match=rf"{tmp_path}"):
        isolated(measure_epoch, cfg, "cpu")


def test_bench_times_an_epoch_of_a_recipe_with_a_scheduler_and_feature_augmentation(
    make_cfg: Callable[..., DictConfig],
) -> None:
    # One-cycle's length comes from the trainer, which the bench has none of; VTLP and
    # SpecAugment belong to the epoch's feature step.
    cfg = make_cfg(
        "scheduler=onecycle", "vtlp.p=1.0", "spec_augment.p=1.0", "bench.repeats=1",
        config_name="bench",
    )  # fmt: skip
    figures = measure_epoch(cfg, "cpu")
    assert figures["features_s"] > 0
    assert figures["epoch_s"] >= figures["forward_backward_s"] > 0


def test_bench_table_judges_only_the_baseline_against_the_targets() -> None:
    figures = {"epoch_s": 9.0}
    baseline = markdown({"recipe": "baseline", "machine": "m", "devices": {"cpu": figures}})
    assert "| epoch_s | 9.00 | <= 8 | MISSED |" in baseline
    best = markdown({"recipe": "best", "machine": "m", "devices": {"cpu": figures}})
    assert "Recipe: `best`" in best
    assert "| epoch_s | 9.00 | | |" in best


@pytest.mark.parametrize(
    ("devices", "message"),
    [("[tpu]", "expected a list of cpu and cuda"), ("[]", "expected a list of cpu and cuda")],
)
def test_bench_devices_are_checked(
    make_cfg: Callable[..., DictConfig], devices: str, message: str
) -> None:
    cfg = make_cfg(f"bench.devices={devices}", config_name="bench")
    with pytest.raises(SdcError, match=message):
        bench_devices(cfg)


def test_bench_devices_default_to_the_cpu_and_any_gpu(make_cfg: Callable[..., DictConfig]) -> None:
    assert bench_devices(make_cfg(config_name="bench"))[0] == "cpu"
    assert bench_devices(make_cfg("bench.devices=[cpu]", config_name="bench")) == ["cpu"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_bench_says_when_the_gpu_asked_for_is_missing(make_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(SdcError, match="cuda was asked for, but torch sees no GPU"):
        bench_devices(make_cfg("bench.devices=[cuda]", config_name="bench"))
