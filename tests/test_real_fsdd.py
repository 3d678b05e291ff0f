"""Smoke tests on the real FSDD copy named by SDC_DATA_DIR (skipped, saying why, without it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from conftest import QUICK_FSDD
from sdc.data.datamodule import FSDDDataModule
from sdc.data.download import RECORDINGS_DIGEST, recordings_digest
from sdc.data.fsdd import find_recordings_dir
from sdc.train import train

pytestmark = pytest.mark.fsdd


def test_copy_is_the_pinned_release(fsdd_root: Path) -> None:
    assert recordings_digest(find_recordings_dir(fsdd_root)) == RECORDINGS_DIGEST


def test_datamodule_holds_3000_clips_split_80_10_10(fsdd_root: Path) -> None:
    datamodule = FSDDDataModule(fsdd_root, download=False, seed=0)
    datamodule.setup()
    sizes = {name: len(ds) for name, ds in datamodule.datasets.items()}
    assert sizes == {"train": 2400, "val": 300, "test": 300}
    assert {r.speaker for r in datamodule.split["test"]} == {
        "george",
        "jackson",
        "lucas",
        "nicolas",
        "theo",
        "yweweler",
    }


@pytest.mark.slow
def test_brief_training_is_far_above_chance(
    fsdd_root: Path, make_cfg: Callable[..., DictConfig]
) -> None:
    cfg = make_cfg(
        f"data.root={fsdd_root}",
        *QUICK_FSDD,
        "data.augment.noise.p=0",
    )
    metrics = train(cfg)
    assert metrics["test_acc"] > 0.7, metrics
