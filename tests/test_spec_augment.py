"""SpecAugment masks training features only."""

from __future__ import annotations

import pytest
import torch

import sdc.models.member
from sdc.audio.spec_augment import SpecAugmentConfig, spec_augment
from sdc.training.module import DigitClassifier


def test_masks_are_bands_of_zeros_within_their_widths() -> None:
    torch.manual_seed(0)
    features = torch.randn(16, 1, 40, 201) + 5.0
    config = SpecAugmentConfig(p=1.0, freq_masks=1, freq_width=6, time_masks=1, time_width=15)
    out = spec_augment(features, config)
    assert out.shape == features.shape
    zero = out == 0
    rows = zero.all(dim=-1).squeeze(1).sum(dim=1)  # fully masked frequency rows per clip
    cols = zero.all(dim=-2).squeeze(1).sum(dim=1)  # fully masked frames per clip
    assert rows.max() <= 6 and cols.max() <= 15
    assert rows.sum() > 0 and cols.sum() > 0
    assert torch.equal(out[~zero], features[~zero])


def test_probability_zero_is_the_identity() -> None:
    features = torch.randn(4, 1, 40, 201)
    assert torch.equal(spec_augment(features, SpecAugmentConfig(p=0.0)), features)


def module_with_spec_augment() -> DigitClassifier:
    return DigitClassifier(
        net={"_target_": "sdc.models.cnn.DigitCNN", "time_pooling": "max"},
        frontend={"_target_": "sdc.audio.features.MfccFrontend"},
        optim={"_target_": "torch.optim.Adam", "_partial_": True},
        spec_augment={"p": 1.0},
    )


def test_only_the_training_step_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    module = module_with_spec_augment()
    calls: list[int] = []

    def spy(features: torch.Tensor, config: SpecAugmentConfig) -> torch.Tensor:
        calls.append(len(features))
        return features

    monkeypatch.setattr(sdc.models.member, "spec_augment", spy)
    windows = torch.randn(3, module.window) * 0.1
    module.eval()
    with torch.no_grad():
        module(windows)
    assert calls == []
    module.train()
    module.training_logits(windows)
    assert calls == [3]


def test_checkpoints_hold_no_spec_augment_state() -> None:
    module = module_with_spec_augment()
    assert not any("spec_augment" in key for key in module.state_dict())
    # A module built without it (as older checkpoints were) gets the off default.
    plain = DigitClassifier(
        net={"_target_": "sdc.models.cnn.DigitCNN"},
        frontend={"_target_": "sdc.audio.features.MfccFrontend"},
        optim={"_target_": "torch.optim.Adam", "_partial_": True},
    )
    assert plain.members[0].spec_augment.p == 0.0
