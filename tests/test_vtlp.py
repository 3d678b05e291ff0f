"""VTLP: the per-clip warp of the spectrum's frequency axis, training only."""

from __future__ import annotations

import pytest
import torch

from sdc.audio.features import MfccFrontend
from sdc.audio.vtlp import VtlpConfig, draw_factors, warp_filters

BINS = 129


def warp_spectrum(power: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """The warped spectrum itself (B, 1, BINS, frames): what identity filters read."""
    filters = warp_filters(torch.eye(power.shape[-2]), factors).unsqueeze(1)
    return torch.matmul(power.transpose(-1, -2), filters).transpose(-1, -2)


def peaked(at: int) -> torch.Tensor:
    """A (1, 1, BINS, 3) power spectrum with one peak, the same in every frame."""
    power = torch.full((1, 1, BINS, 3), 1e-3)
    power[0, 0, at] = 1.0
    return power


@pytest.mark.parametrize(("factor", "expected"), [(1.0, 40), (1.1, 44), (0.9, 36)])
def test_a_peak_moves_by_the_factor(factor: float, expected: int) -> None:
    warped = warp_spectrum(peaked(40), torch.tensor([factor]))
    assert warped.shape == (1, 1, BINS, 3)
    assert int(warped[0, 0, :, 0].argmax()) == expected


def test_factor_one_is_the_identity_and_the_nyquist_bin_stays() -> None:
    power = torch.rand(3, 1, BINS, 5)
    assert torch.allclose(warp_spectrum(power, torch.ones(3)), power, atol=1e-6)
    warped = warp_spectrum(power, torch.tensor([0.9, 1.0, 1.15]))
    assert torch.allclose(warped[:, :, -1], power[:, :, -1], atol=1e-6)
    assert torch.allclose(warped[:, :, 0], power[:, :, 0], atol=1e-6)
    # Each clip is warped by its own factor.
    assert not torch.allclose(warped[0], warped[2])


def test_warped_filters_read_the_warped_spectrum() -> None:
    """Filters warped per clip, applied to the spectrum, equal the filters applied to the
    warped spectrum."""
    torch.manual_seed(1)
    power = torch.rand(3, 1, BINS, 5)
    filters = torch.rand(BINS, 12)
    factors = torch.tensor([0.9, 1.0, 1.12])
    warped = torch.matmul(power.transpose(-1, -2), warp_filters(filters, factors).unsqueeze(1))
    expected = torch.matmul(warp_spectrum(power, factors).transpose(-1, -2), filters)
    assert warped.shape == (3, 1, 5, 12)
    assert torch.allclose(warped, expected, atol=1e-5)


def test_factors_are_drawn_only_when_on() -> None:
    device = torch.device("cpu")
    assert draw_factors(8, VtlpConfig(p=0.0), device) is None
    factors = draw_factors(500, VtlpConfig(p=1.0, factor=(0.9, 1.1)), device)
    assert factors is not None and factors.shape == (500,)
    assert float(factors.min()) >= 0.9 and float(factors.max()) <= 1.1
    half = draw_factors(2000, VtlpConfig(p=0.5), device)
    assert half is not None and 0.4 < float((half == 1.0).float().mean()) < 0.6


def test_the_front_end_warps_only_when_asked() -> None:
    frontend = MfccFrontend(normalize="none", n_mels=40)
    torch.manual_seed(0)
    windows = torch.randn(2, frontend.window) * 0.1
    plain = frontend(windows)
    assert torch.equal(frontend(windows, warp=None), plain)
    assert torch.allclose(frontend(windows, warp=torch.ones(2)), plain, atol=1e-4)
    assert not torch.allclose(frontend(windows, warp=torch.tensor([1.1, 0.9])), plain, atol=0.1)


def test_only_the_training_step_warps() -> None:
    from sdc.training.module import DigitClassifier

    def module(p: float) -> DigitClassifier:
        return DigitClassifier(
            net={"_target_": "sdc.models.cnn.DigitCNN"},
            frontend={"_target_": "sdc.audio.features.MfccFrontend", "normalize": "speech"},
            optim={"_target_": "torch.optim.Adam", "_partial_": True},
            vtlp={"p": p, "factor": [1.15, 1.15]},
        ).eval()  # no dropout: any difference is the warp's

    torch.manual_seed(0)
    windows = torch.randn(4, 18400) * 0.1
    with torch.no_grad():
        warped = module(1.0)
        assert not torch.allclose(warped.training_logits(windows)[0], warped(windows), atol=1e-3)
        plain = module(0.0)
        assert torch.allclose(plain.training_logits(windows)[0], plain(windows), atol=1e-5)
    assert not any("vtlp" in key for key in warped.state_dict())
