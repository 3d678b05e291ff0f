"""Structured-config schemas: Hydra checks names and types against them while composing.

`configs/data/*.yaml` and `configs/features/*.yaml` list these schemas first in their defaults,
so a misspelt key (`data.batchsize=10`) or a wrong type (`data.batch_size=ten`) fails before
anything is loaded, as one line naming the key. Ranges and choices, which types cannot express,
are checked by `sdc.config.validate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from sdc.audio.augment import AugmentConfig
from sdc.data.synthetic import SyntheticConfig


@dataclass
class DataSchema:
    _target_: str = "sdc.data.datamodule.FSDDDataModule"
    root: str = MISSING
    download: bool = True
    strict: bool = True
    sample_rate: int = 8000
    clip_seconds: float = 2.3
    edge_fade_seconds: float = 0.0
    split: str = "random"
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    test_speakers: list[str] = field(default_factory=list)
    val_speakers: list[str] = field(default_factory=list)
    batch_size: int = 50
    eval_batch_size: int = 250
    num_workers: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    extra_train: list[str] = field(default_factory=list)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class FeaturesSchema:
    _target_: str = "sdc.audio.features.MfccFrontend"
    sample_rate: int = 8000
    clip_seconds: float = 2.3
    edge_fade_seconds: float = 0.0
    n_mfcc: int = 40
    n_mels: int = 64
    frame_seconds: float = 0.023
    hop_seconds: float = 0.0115
    n_fft: int = 256
    f_min: float = 0.0
    f_max: float | None = None
    top_db: float = 80.0
    kind: str = "mfcc"
    normalize: str = "global"


@dataclass
class SpeechEmbeddingSchema:
    _target_: str = "sdc.audio.embedding.SpeechEmbeddingFrontend"
    sample_rate: int = 8000
    clip_seconds: float = 2.3
    edge_fade_seconds: float = 0.0
    weights_dir: str = MISSING
    normalize: str = "global"
    pad_seconds: float = 0.0
    finetune_layers: int = 0
    finetune_lr_scale: float = 0.1


def register() -> None:
    """Make the schemas available to the defaults lists as `base_data`, `base_features` (MFCC
    and log-mel) and `base_speech_embedding`."""
    store = ConfigStore.instance()
    store.store(group="data", name="base_data", node=DataSchema)
    store.store(group="features", name="base_features", node=FeaturesSchema)
    store.store(group="features", name="base_speech_embedding", node=SpeechEmbeddingSchema)
