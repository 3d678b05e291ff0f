"""Training-time waveform augmentation: one transform a file, and the chain that applies them."""

from sdc.audio.augment.chain import AugmentConfig, WaveformAugment

__all__ = ["AugmentConfig", "WaveformAugment"]
