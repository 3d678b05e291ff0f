"""The data module on the tiny synthetic dataset: decoding, loaders, device-side batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import write_dataset
from sdc.data.datamodule import FSDDDataModule
from sdc.errors import SdcError


def test_setup_decodes_splits_and_batches(tiny_fsdd: Path) -> None:
    datamodule = FSDDDataModule(tiny_fsdd, download=False, batch_size=8)
    datamodule.setup()
    sizes = {name: len(ds) for name, ds in datamodule.datasets.items()}
    assert sum(sizes.values()) == 180 and sizes["test"] == 18
    waves, lengths, labels = next(iter(datamodule.train_dataloader()))
    assert waves.shape[0] == 8 and waves.shape[1] == int(lengths.max())
    windows, same_labels = datamodule.on_after_batch_transfer((waves, lengths, labels), 0)
    assert windows.shape == (8, datamodule.window)
    assert torch.equal(same_labels, labels)


def test_missing_folder_without_download_names_it(tmp_path: Path) -> None:
    datamodule = FSDDDataModule(tmp_path / "nowhere", download=False)
    with pytest.raises(SdcError, match="nowhere"):
        datamodule.prepare_data()


def test_a_file_where_the_dataset_folder_belongs_is_named(tmp_path: Path) -> None:
    root = tmp_path / "fsdd.zip"
    root.write_bytes(b"not a folder")
    with pytest.raises(SdcError, match=rf"^data.root: {root} is a file; expected a folder"):
        FSDDDataModule(root=root).prepare_data()


def test_unreadable_clip_is_an_error_or_skipped(tmp_path: Path, tiny_fsdd: Path) -> None:
    folder = tmp_path / "wavs"
    folder.mkdir()
    for path in (tiny_fsdd / "recordings").glob("*.wav"):
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "3_bob_99.wav").write_text("not audio")
    with pytest.raises(SdcError, match=r"3_bob_99\.wav"):
        FSDDDataModule(folder, download=False).setup()
    lenient = FSDDDataModule(folder, download=False, strict=False)
    lenient.setup()
    assert sum(len(ds) for ds in lenient.datasets.values()) == 180
    for subset, dataset in lenient.datasets.items():
        assert len(lenient.split[subset]) == len(dataset), "files and clips must stay aligned"
    assert "3_bob_99.wav" not in {r.path.name for s in lenient.split.values() for r in s}


def test_clips_at_other_rates_are_resampled(tmp_path: Path, tiny_fsdd: Path) -> None:
    folder = tmp_path / "wavs"
    folder.mkdir()
    for path in (tiny_fsdd / "recordings").glob("*.wav"):
        (folder / path.name).write_bytes(path.read_bytes())
    wave, _ = sf.read(folder / "0_alice_0.wav")
    sf.write(folder / "0_alice_0.wav", np.repeat(wave, 2), 16000)
    datamodule = FSDDDataModule(folder, download=False)
    datamodule.setup()
    decoded = {
        r.path.name: clip
        for subset in ("train", "val", "test")
        for r, clip in zip(datamodule.split[subset], datamodule.datasets[subset].waves, strict=True)
    }
    assert len(decoded["0_alice_0.wav"]) == pytest.approx(len(wave), abs=2)


def test_extra_train_clips_go_to_training_only(tmp_path: Path, tiny_fsdd: Path) -> None:
    extra = write_dataset(tmp_path / "extra", speakers=("dave", "erin"), takes=2)
    datamodule = FSDDDataModule(
        tiny_fsdd, download=False, split="speaker", test_speakers=["carol"], extra_train=[extra]
    )
    datamodule.setup()
    speakers = {s: {r.speaker for r in recs} for s, recs in datamodule.split.items()}
    assert {"dave", "erin"} <= speakers["train"]
    assert speakers["val"] <= {"alice", "bob"} and speakers["test"] == {"carol"}
    assert len(datamodule.datasets["train"]) == len(datamodule.split["train"])
    plain = FSDDDataModule(tiny_fsdd, download=False, split="speaker", test_speakers=["carol"])
    plain.setup()
    assert len(datamodule.datasets["train"]) == len(plain.datasets["train"]) + 40
    assert datamodule.split["test"] == plain.split["test"]


def test_extra_train_refuses_fsdd_speakers_and_missing_folders(
    tmp_path: Path, tiny_fsdd: Path
) -> None:
    clash = write_dataset(tmp_path / "clash", speakers=("carol",), takes=1)
    with pytest.raises(SdcError, match=r"data\.extra_train: .*clash.*'carol'"):
        FSDDDataModule(tiny_fsdd, download=False, extra_train=[clash]).setup()
    with pytest.raises(SdcError, match=r"data\.extra_train: .*nowhere is not a folder"):
        FSDDDataModule(tiny_fsdd, download=False, extra_train=[tmp_path / "nowhere"]).setup()
