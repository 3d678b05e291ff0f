"""The FSDD `LightningDataModule`: find or download the data, split it, decode it once, and
hand the model fixed-length waveform windows, augmented on the device for training only."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from sdc.audio.augment import AugmentConfig, WaveformAugment
from sdc.audio.io import read_audio
from sdc.audio.window import fit_to_window
from sdc.config.fields import MISSING, option
from sdc.data.download import download_fsdd
from sdc.data.fsdd import (
    SPLITS,
    SUBSETS,
    Recording,
    check_coverage,
    drop_duplicates,
    find_recordings_dir,
    index_recordings,
    split_recordings,
)
from sdc.data.synthetic import SyntheticConfig, synthesize_corpus
from sdc.errors import SdcError

log = logging.getLogger(__name__)
T = TypeVar("T")

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""(waves (B, L) zero-padded, lengths (B,), labels (B,))"""


class ClipDataset(Dataset):
    """Decoded clips held in memory: FSDD is about 40 MB as float32, so no disk I/O per epoch."""

    def __init__(self, waves: Sequence[torch.Tensor], labels: Sequence[int]) -> None:
        self.waves = list(waves)
        self.labels = torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.waves[i], int(self.labels[i])


def collate_clips(items: Sequence[tuple[torch.Tensor, int]]) -> Batch:
    """Pad a list of clips into one batch: the window is fitted later, on the device."""
    waves = [wave for wave, _ in items]
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    labels = torch.tensor([label for _, label in items], dtype=torch.long)
    return pad_sequence(waves, batch_first=True), lengths, labels


@dataclass
class DataConfig:
    """`data`: where FSDD is, how it is split and batched, and how training clips are augmented."""

    _target_: str = "sdc.data.datamodule.FSDDDataModule"
    root: str = MISSING
    """A release folder (with recordings/) or a folder of {digit}_{speaker}_{index}.wav files."""
    download: bool = True
    """Download the pinned v1.0.10 release into `root` when it is missing."""
    strict: bool = True
    """Unmatched file names and unreadable files are errors (true) or skipped with a warning."""
    sample_rate: int = option(8000, above=0)
    clip_seconds: float = option(2.3, above=0.0)
    """The fixed window every clip is placed in (s)."""
    split: str = option("random", choices=SPLITS)
    """random (stratified 80/10/10) | official (takes 0-4 are test) | speaker (held out)."""
    seed: int = 0
    val_fraction: float = option(0.1, above=0.0, high=1.0)
    test_fraction: float = option(0.1, above=0.0, high=1.0)
    test_speakers: list[str] = field(default_factory=list)
    val_speakers: list[str] = field(default_factory=list)
    batch_size: int = option(50, above=0)
    eval_batch_size: int = option(250, above=0)
    num_workers: int = option(0, low=0)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Training only, on whole batches on the device; evaluation clips are centred and clean."""
    extra_train: list[str] = field(default_factory=list)
    """Folders of more clips (any rate, speakers not FSDD's) for the training set only."""
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


def _structured(kind: type[T], values: Mapping[str, Any] | T | None) -> T:
    """A config dataclass from a Hydra mapping (types checked), or as given."""
    if isinstance(values, kind):
        return values
    schema = OmegaConf.structured(kind)
    merged = schema if values is None else OmegaConf.merge(schema, values)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


class FSDDDataModule(pl.LightningDataModule):
    """Owns the Free Spoken Digit Dataset from folder (or download) to device-side batches."""

    def __init__(
        self,
        root: str | Path,
        download: bool = DataConfig.download,
        strict: bool = DataConfig.strict,
        sample_rate: int = DataConfig.sample_rate,
        clip_seconds: float = DataConfig.clip_seconds,
        split: str = DataConfig.split,
        seed: int = DataConfig.seed,
        val_fraction: float = DataConfig.val_fraction,
        test_fraction: float = DataConfig.test_fraction,
        test_speakers: Sequence[str] = (),
        val_speakers: Sequence[str] = (),
        batch_size: int = DataConfig.batch_size,
        eval_batch_size: int = DataConfig.eval_batch_size,
        num_workers: int = DataConfig.num_workers,
        augment: Mapping[str, Any] | AugmentConfig | None = None,
        extra_train: Sequence[str | Path] = (),
        synthetic: Mapping[str, Any] | SyntheticConfig | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser().absolute()
        self.download = download
        self.strict = strict
        self.sample_rate = sample_rate
        self.window = round(clip_seconds * sample_rate)
        self.split_name = split
        self.seed = seed
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.test_speakers = list(test_speakers)
        self.val_speakers = list(val_speakers)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.extra_train = [Path(p).expanduser().absolute() for p in extra_train]
        self.synthetic = _structured(SyntheticConfig, synthetic)
        self.augment = WaveformAugment(
            _structured(AugmentConfig, augment), sample_rate, self.window
        )
        self.split: dict[str, list[Recording]] = {}
        self.datasets: dict[str, ClipDataset] = {}

    def prepare_data(self) -> None:
        """Download FSDD when `root` does not exist and synthesize the synthetic speakers when
        they are asked for and missing (runs on one process only)."""
        s = self.synthetic
        if s.voices:
            synthesize_corpus(s.folder, voices=s.voices, takes=s.takes, seed=s.seed)
        if self.root.exists() and not self.root.is_dir():
            raise SdcError(
                f"data.root: {self.root} is a file; expected a folder holding FSDD (set it with "
                "SDC_DATA_DIR or data.root)"
            )
        if self.root.exists() and any(self.root.iterdir()):
            return
        if not self.download:
            raise SdcError(
                f"data.root: {self.root} does not exist or is empty; point SDC_DATA_DIR or "
                "data.root at a copy of FSDD, or set data.download=true"
            )
        log.info("FSDD not found at %s: downloading it", self.root)
        download_fsdd(self.root)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        folder = find_recordings_dir(self.root)
        recordings = drop_duplicates(index_recordings(folder, strict=self.strict))
        check_coverage(recordings, strict=self.strict)
        self.split = split_recordings(
            recordings,
            self.split_name,
            self.seed,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            test_speakers=self.test_speakers,
            val_speakers=self.val_speakers,
        )
        for subset in SUBSETS:
            if not self.split[subset]:
                raise SdcError(
                    f"data.split={self.split_name}: the {subset} set is empty "
                    f"({len(recordings)} clips in {folder})"
                )
        self.split["train"] = self.split["train"] + self._extra_recordings(recordings)
        for subset in SUBSETS:
            self.datasets[subset], self.split[subset] = self._decode(self.split[subset])
        log.info(
            "FSDD from %s: %s",
            folder,
            ", ".join(f"{s} {len(self.datasets[s])}" for s in SUBSETS),
        )

    def _extra_folders(self) -> list[Path]:
        if not self.synthetic.voices:
            return self.extra_train
        folder = self.synthetic.folder
        if not folder.is_dir():
            raise SdcError(
                f"data.synthetic: {folder} is missing; call prepare_data() before setup()"
            )
        return [*self.extra_train, folder]

    def _extra_recordings(self, fsdd: Sequence[Recording]) -> list[Recording]:
        """Clips from `extra_train` folders: training only, so every score is on FSDD voices.

        A speaker name shared with FSDD would let a test voice into training under the
        speaker split, so it is an error naming the folder.
        """
        fsdd_speakers = {rec.speaker for rec in fsdd}
        extra: list[Recording] = []
        for folder in self._extra_folders():
            if not folder.is_dir():
                raise SdcError(f"data.extra_train: {folder} is not a folder")
            found = drop_duplicates(index_recordings(folder, strict=self.strict))
            clash = sorted({rec.speaker for rec in found} & fsdd_speakers)
            if clash:
                raise SdcError(
                    f"data.extra_train: {folder} has clips of FSDD's speaker(s) {clash}; "
                    "extra folders must hold other voices"
                )
            extra += found
        return extra

    def _decode(self, recordings: Sequence[Recording]) -> tuple[ClipDataset, list[Recording]]:
        """Decoded clips and the recordings they came from (unreadable ones skipped if lenient)."""
        waves: list[torch.Tensor] = []
        labels: list[int] = []
        kept: list[Recording] = []
        for rec in recordings:
            try:
                waves.append(read_audio(rec.path, self.sample_rate))
            except SdcError:
                if self.strict:
                    raise
                log.warning("skipping unreadable %s", rec.path)
                continue
            labels.append(rec.digit)
            kept.append(rec)
        return ClipDataset(waves, labels), kept

    def _loader(self, subset: str, shuffle: bool) -> DataLoader:
        if not self.datasets:
            raise RuntimeError("call setup() before asking for a loader")
        return DataLoader(
            self.datasets[subset],
            batch_size=self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate_clips,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def on_after_batch_transfer(
        self, batch: Batch, dataloader_idx: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn a padded batch into (windows, labels) on the device: augmented when training."""
        waves, lengths, labels = batch
        training = self.trainer is not None and self.trainer.training
        if training:
            return self.augment(waves, lengths), labels
        return fit_to_window(waves, lengths, self.window), labels

    def clean_windows(self, subset: str = "train") -> Iterator[torch.Tensor]:
        """Unaugmented, centred windows of a subset, e.g. to fit feature statistics."""
        for waves, lengths, _ in self._loader(subset, shuffle=False):
            yield fit_to_window(waves, lengths, self.window)
