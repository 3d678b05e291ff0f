"""The options of `sdc strings` (group `strings`), apart from the code so that the schemas can
be registered without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from sdc.config.fields import MISSING, option
from sdc.strings.synthesis import SynthesisConfig


@dataclass
class ReaderNetConfig:
    """The network over the frames (`strings.net`)."""

    channels: int = option(160, above=0)
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 1])
    """One residual block (kernel 3) per entry, at that dilation: 1 + 2 x sum frames of context."""
    dropout: float = option(0.2, low=0.0, high=0.9)


@dataclass
class MaskConfig:
    """`strings.masks`: SpecAugment on what the embedding's frozen bottom made of each training
    string, drawn afresh every epoch, where the strings themselves are made once."""

    time: int = option(2, low=0)
    """Spans of time masked (set to 0) in each string."""
    time_seconds: float = option(0.1, low=0.0)
    """Each time span's longest (s)."""
    bands: int = option(1, low=0)
    """Spans of bands masked in each string (none with the embedding frozen: its frames have
    no bands)."""
    band_fraction: float = option(0.25, low=0.0, high=1.0)
    """Each band span's widest, as a fraction of the bottom's bands (under ten fine-tuned
    convolutions 8, each about 4 of the 32 mel bands)."""


@dataclass
class StringsConfig:
    """`strings` (`sdc strings`): data, folds, training and the network."""

    root: str = MISSING
    """FSDD (the release or a folder of WAVs named digit_speaker_index.wav)."""
    weights_dir: str = MISSING
    folds: list[str] | None = None
    """Speakers to hold out, one fold each (null: every speaker; []: no folds)."""
    segmenters: list[str] | None = None
    """Isolated-digit checkpoints, each from a run that held one fold's speaker out: that fold
    also reads its test strings as `sdc transcribe` does with it (cut at pauses), to compare."""
    final: bool = True
    """Also train on every speaker and save `model.ckpt`."""
    strings_per_speaker: int = option(3000, above=0)
    """Training strings joined from each training speaker's clips."""
    spoken_strings: int = option(6000, low=0)
    """Training strings said as phrases by espeak-ng voices (the `voices` extra; 0: none).
    They run the digits together as people do, where joined recordings cannot."""
    test_strings: int = option(100, above=0)
    """Strings per test condition and fold."""
    epochs: int = option(5, above=0)
    """Passes over the training strings: more strings seen fewer times beat fewer seen more
    often at the same number of steps (docs/results.md, Digit strings)."""
    batch_size: int = option(32, above=0)
    lr: float = option(2e-3, above=0.0)
    weight_decay: float = option(1e-2, low=0.0)
    finetune_layers: int = option(10, low=0, high=20)
    """The embedding's last convolutions (of 20) that learn with the network, at a tenth of
    its learning rate (0: the embedding frozen, a fold in about 3 minutes instead of 13-14 on
    2 cores); see docs/results.md, Digit strings."""
    frame_noise: float = option(0.05, low=0.0)
    """Gaussian noise on the frames while training (their scale is about 1), against
    over-fitting to the synthesized strings."""
    masks: MaskConfig = field(default_factory=MaskConfig)
    test_time_speeds: list[float] = field(default_factory=lambda: [0.925, 1.0, 1.075])
    """Each recording is read at these playback speeds (1.0: as recorded) and the per-frame
    probabilities averaged, as `best` hears each window twice; [1.0]: once."""
    seed: int = 0
    sample_rate: int = option(8000, above=0)
    pad_seconds: float = option(0.4, low=0.0)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    net: ReaderNetConfig = field(default_factory=ReaderNetConfig)
