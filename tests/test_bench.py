"""`sdc.bench` runs end to end on tiny data (its figures are checked by `make bench`, not here)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from sdc.bench import bench

pytestmark = pytest.mark.slow


def test_bench_writes_every_figure(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg(
        "bench.full_baseline=false",
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
    ):
        assert figures[key] > 0, key
    out = Path(cfg.paths.output_dir)
    assert json.loads((out / "bench.json").read_text())["devices"]["cpu"] == figures
    assert "| pipeline_clips_per_s |" in (out / "bench.md").read_text()
