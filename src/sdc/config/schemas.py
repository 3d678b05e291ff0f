"""The structured-config schemas: each group's dataclass, defined beside the code it configures.

The YAML files list these first in their defaults (`base_data`, `base_mfcc`,
`base_speech_embedding`, `base_cnn`, `base_embedding_head`, and the `default` of `spec_augment`
and `vtlp`), so Hydra rejects a
misspelt key (`data.batchsize=10`) or a wrong type (`data.batch_size=ten`) while composing, and
`sdc.config.validate` reads each field's range.
"""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from sdc.audio.embedding import SpeechEmbeddingConfig
from sdc.audio.features import MfccConfig
from sdc.audio.spec_augment import SpecAugmentConfig
from sdc.audio.vtlp import VtlpConfig
from sdc.config.fields import option
from sdc.data.datamodule import DataConfig
from sdc.models.cnn import CnnConfig
from sdc.models.embedding_head import EmbeddingHeadConfig
from sdc.strings.config import StringsConfig


@dataclass
class BenchConfig:
    """`bench` (`make bench`, `sdc.lab.bench`). Defined here, not beside the benchmark, which
    imports the training code that registers these schemas."""

    repeats: int = option(3, above=0)
    """Timings are the best of this many repeats."""
    reference_clips: int = option(20, low=0)
    """Clips for the per-clip torchaudio reference (about a second each on a 2-core CPU)."""
    inference_batch: int = option(256, above=0)
    inference_clips: int = option(5120, above=0)
    latency_iterations: int = option(300, above=0)
    devices: list[str] | None = None
    """Devices to measure, e.g. [cuda] (null: the CPU, and the GPU if there is one)."""
    full_run: bool = True
    """Also train the recipe in full, as `python -m sdc.train experiment=...`, and time it."""


GROUPS = {
    "data": DataConfig,
    "features": MfccConfig,
    "model": CnnConfig,
    "spec_augment": SpecAugmentConfig,
    "vtlp": VtlpConfig,
    "bench": BenchConfig,
}
"""The schema each group's config is checked against, unless its `_target_` names another."""

BY_TARGET = {
    schema._target_: schema
    for schema in (MfccConfig, SpeechEmbeddingConfig, CnnConfig, EmbeddingHeadConfig)
}
"""The schema of a `features` or `model` config, by the class it builds."""


def register() -> None:
    """Make the schemas available to the defaults lists (idempotent)."""
    store = ConfigStore.instance()
    store.store(group="data", name="base_data", node=DataConfig)
    store.store(group="features", name="base_mfcc", node=MfccConfig)
    store.store(group="features", name="base_speech_embedding", node=SpeechEmbeddingConfig)
    store.store(group="model", name="base_cnn", node=CnnConfig)
    store.store(group="model", name="base_embedding_head", node=EmbeddingHeadConfig)
    store.store(group="spec_augment", name="default", node=SpecAugmentConfig)
    store.store(group="vtlp", name="default", node=VtlpConfig)
    store.store(group="bench", name="default", node=BenchConfig)
    store.store(group="strings", name="default", node=StringsConfig)
