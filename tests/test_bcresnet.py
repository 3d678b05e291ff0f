"""The broadcast-residual network and the log-mel front end it is designed for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from sdc.audio.features import MfccFrontend
from sdc.models.bcresnet import BCResNet, SubSpectralNorm
from sdc.train import train


@pytest.mark.parametrize("shape", [(1, 40, 201), (1, 64, 201), (1, 40, 101)])
def test_bcresnet_maps_feature_images_to_logits(shape: tuple[int, int, int]) -> None:
    net = BCResNet(shape, n_classes=10).eval()
    assert net(torch.randn(3, *shape)).shape == (3, 10)


@pytest.mark.parametrize(("width", "limit"), [(1, 12_000), (2, 30_000), (3, 60_000)])
def test_bcresnet_stays_compact(width: int, limit: int) -> None:
    net = BCResNet((1, 40, 201), width=width)
    assert sum(p.numel() for p in net.parameters()) <= min(limit, 100_000)


def test_bcresnet_answers_the_same_wherever_the_digit_sits() -> None:
    """A mean over time at the end: shifting the content in time barely moves the logits."""
    torch.manual_seed(0)
    net = BCResNet((1, 40, 201)).eval()
    x = torch.zeros(1, 1, 40, 201)
    x[..., 60:100] = torch.randn(1, 1, 40, 40)
    shifted = torch.roll(x, 40, dims=-1)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(shifted), atol=1e-4, rtol=1e-4)


def test_sub_spectral_norm_normalizes_each_band_on_its_own() -> None:
    norm = SubSpectralNorm(channels=2, sub_bands=4).train()
    x = torch.randn(8, 2, 20, 30) * torch.arange(1.0, 21.0).view(1, 1, 20, 1)
    out = norm(x)
    bands = out.reshape(8, 2, 4, 5, 30).transpose(1, 2).reshape(8, 8, -1)
    assert bands.std(dim=(0, 2)).tolist() == pytest.approx([1.0] * 8, abs=0.02)


def test_logmel_front_end_has_n_mels_rows() -> None:
    frontend = MfccFrontend(kind="logmel", n_mels=40, normalize="utterance")
    out = frontend(torch.randn(2, frontend.window) * 0.1)
    assert out.shape == (2, *frontend.output_shape) == (2, 1, 40, 201)
    with pytest.raises(ValueError, match="kind"):
        MfccFrontend(kind="cqt")


def test_best_bcresnet_recipe_runs_end_to_end(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    # Pitch and speed off: building their many resampling kernels is the slow part of one batch.
    # Two synthetic voices, not the recipe's 150: synthesizing 1,500 clips in a fresh clone
    # would be most of the test, and the corpus goes to a temporary folder, not the checkout.
    cfg = make_cfg(
        "experiment=best_bcresnet",
        "debug=fdr",
        "data.augment.pitch_shift.p=0",
        "data.augment.speed.p=0",
        "data.synthetic.voices=2",
        f"data.synthetic.root={tmp_path / 'synthetic'}",
    )
    metrics = train(cfg)
    assert 0.0 <= metrics["test_acc"] <= 1.0
