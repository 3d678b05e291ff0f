"""Smoke tests on the real FSDD copy named by SDC_DATA_DIR (skipped, saying why, without it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from conftest import QUICK_FSDD
from sdc.audio.centre import centre_recording
from sdc.audio.io import read_audio
from sdc.audio.vad import find_speech
from sdc.data.datamodule import FSDDDataModule
from sdc.data.download import RECORDINGS_DIGEST, recordings_digest
from sdc.data.fsdd import find_recordings_dir
from sdc.training.train import train

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


def test_every_clip_is_speech_even_20_db_quieter(fsdd_root: Path) -> None:
    # theo, FSDD's quietest speaker, is 19 dB below jackson; a user's microphone may be as far
    # below theo. A clip the speech finder misses is answered "no digit" whatever the model.
    # Speech is looked for in the clip's window, as `sdc predict` centres it: FSDD's clips are
    # trimmed, and the padding is the quiet that the speech is measured against.
    missed = []
    for path in sorted(find_recordings_dir(fsdd_root).glob("*.wav")):
        window = centre_recording(0.1 * read_audio(path, 8000).numpy(), 18400)
        if len(find_speech(window, 8000)) == 0:
            missed.append(path.name)
    assert missed == []
