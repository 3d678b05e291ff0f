"""Test-time speed views: what a view plays, that the model averages over them in testing and
inference only, that they save no weights, export, and refuse bad speeds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from sdc.audio.speed_views import SpeedViews, speeds_on_grid
from sdc.config.validate import validate
from sdc.errors import SdcError
from sdc.inference.export import PARITY_TOLERANCE, export_onnx, parity
from sdc.inference.recognizer import Recognizer
from sdc.training.module import DigitClassifier

CNN = {"_target_": "sdc.models.cnn.DigitCNN", "time_pooling": "max"}
MFCC = {"_target_": "sdc.audio.features.MfccFrontend", "normalize": "speech"}
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True}
SPEEDS = [0.9, 1.0, 1.1]


def tone_window(window: int, hz: float = 400.0, seconds: float = 0.4, rate: int = 8000):
    """A tone in the middle of an otherwise silent window."""
    n = int(seconds * rate)
    out = torch.zeros(1, window)
    start = (window - n) // 2
    out[0, start : start + n] = torch.sin(2 * torch.pi * hz * torch.arange(n) / rate)
    return out


def peak_hz(wave: torch.Tensor, rate: int = 8000) -> float:
    spectrum = torch.fft.rfft(wave).abs()
    return float(spectrum.argmax()) * rate / wave.shape[-1]


def sounding(wave: torch.Tensor) -> torch.Tensor:
    """Indices of the samples inside the tone (its envelope above half its peak)."""
    envelope = F.max_pool1d(wave.abs()[None, None], 41, stride=1, padding=20)[0, 0]
    return torch.nonzero(envelope > 0.5).squeeze(1)


def test_a_view_plays_the_window_faster_or_slower_around_its_centre() -> None:
    window = 8000
    views = SpeedViews(SPEEDS, 8000, window)
    wave = tone_window(window)
    slow, same, fast = views(wave)
    assert torch.equal(same, wave)
    for view, speed in ((slow, 0.9), (fast, 1.1)):
        assert view.shape == wave.shape
        assert peak_hz(view[0]) == pytest.approx(400 * speed, abs=3)
        inside = sounding(view[0])
        assert len(inside) == pytest.approx(3200 / speed, rel=0.02), "shorter when faster"
        centre = (inside[0] + inside[-1]) / 2
        assert float(centre) == pytest.approx(window / 2, abs=5), "still centred"


def test_speeds_are_rounded_to_the_augmentations_rate_grid() -> None:
    assert speeds_on_grid([0.925, 1.0, 1.0375], 8000) == [0.925, 1.0, 1.0375]
    assert speeds_on_grid([0.93], 8000) == [0.93125]  # 7450 Hz, the nearest 50 Hz step
    assert SpeedViews([0.93], 8000, 100).speeds == [0.93125]


def model(speeds: list[float] | None) -> DigitClassifier:
    torch.manual_seed(0)
    return DigitClassifier(net=CNN, frontend=MFCC, optim=ADAM, test_time_speeds=speeds)


@pytest.mark.parametrize("in_one_batch", [True, False])
def test_the_model_averages_over_the_views_in_testing_only(
    monkeypatch: pytest.MonkeyPatch, in_one_batch: bool
) -> None:
    """Small batches hear all their views in one pass, large ones view by view: the same."""
    monkeypatch.setattr("sdc.training.module.VIEWS_IN_ONE_BATCH", 64 if in_one_batch else 8)
    viewed = model(SPEEDS).eval()
    windows, labels = torch.randn(3, viewed.window) * 0.1, torch.tensor([0, 1, 2])
    with torch.no_grad():
        heard = [viewed.hear(v).softmax(dim=-1) for v in viewed.speed_views(windows)]
        assert not torch.allclose(heard[0], heard[2], atol=1e-4), "the views differ"
        torch.testing.assert_close(viewed(windows).softmax(dim=-1), sum(heard) / 3)
        # Validation hears each window once, as a model without views does.
        logged: dict[str, torch.Tensor] = {}
        monkeypatch.setattr(viewed, "log", lambda name, value, **_: logged.__setitem__(name, value))
        viewed.validation_step((windows, labels), 0)
        plain = model(None).eval()
        torch.testing.assert_close(logged["val_loss"], F.cross_entropy(plain(windows), labels))


def test_views_save_no_weights_and_checkpoints_load_either_way() -> None:
    viewed, plain = model(SPEEDS).eval(), model(None).eval()
    assert viewed.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(viewed.state_dict())  # strict
    viewed.load_state_dict(plain.state_dict())
    windows = torch.randn(2, viewed.window) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(viewed.for_inference()(windows), viewed(windows))


def test_a_model_with_views_exports_with_them(tmp_path: Path) -> None:
    viewed = model(SPEEDS).eval()
    recognizer = Recognizer.from_onnx(export_onnx(viewed, tmp_path / "viewed.onnx"))
    assert parity(viewed, recognizer) < PARITY_TOLERANCE


@pytest.mark.parametrize("speeds", ["[0.3,1.0]", "[1.0,2.5]", "fast", "[true]"])
def test_bad_speeds_are_a_one_line_error_naming_the_key(
    make_cfg: Callable[..., DictConfig], speeds: str
) -> None:
    with pytest.raises(SdcError, match=r"^test_time_speeds: expected null or a list of speeds"):
        validate(make_cfg(f"test_time_speeds={speeds}"))
