"""The GPU path: augmentation, front end and mixed-precision training on CUDA.

Skipped where torch sees no GPU (CI has none); on a GPU machine: `pytest tests/test_cuda.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from conftest import train_checkpoint
from sdc.audio.embedding import SpeechEmbeddingFrontend
from sdc.audio.features import MfccFrontend
from sdc.training.module import DigitClassifier
from test_speech_embedding import speech_like, stand_in

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no GPU here")

CUDA = torch.device("cuda")


def test_best_recipes_augmentation_runs_on_the_gpu(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg("experiment=from_scratch", "data.synthetic.voices=0")
    augment = instantiate(cfg.data).augment
    torch.manual_seed(0)
    waves = torch.randn(32, 6000, device=CUDA) * 0.1
    lengths = torch.randint(3000, 6001, (32,), device=CUDA)
    windows = augment(waves, lengths)
    assert windows.device.type == "cuda"
    assert windows.shape == (32, augment.window)
    assert bool(torch.isfinite(windows).all())
    assert float(windows.abs().amax(dim=1).min()) > 0, "every clip keeps some signal"


@pytest.mark.parametrize("normalize", ["none", "speech"])
def test_front_end_on_the_gpu_matches_the_cpu(normalize: str) -> None:
    torch.manual_seed(0)
    frontend = MfccFrontend(n_mfcc=20, f_min=100.0, normalize=normalize).eval()
    windows = torch.randn(8, frontend.window) * torch.logspace(-3, 0, 8).unsqueeze(1)
    on_cpu = frontend(windows)
    on_gpu = frontend.to(CUDA)(windows.to(CUDA))
    with torch.autocast("cuda", dtype=torch.float16):
        mixed = frontend(windows.to(CUDA))
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(mixed, on_gpu, atol=0, rtol=0)


def test_speech_embedding_on_the_gpu_matches_the_cpu() -> None:
    frontend = SpeechEmbeddingFrontend()
    stand_in(frontend.embedding)
    windows = torch.stack([speech_like(2.3, seed=s, rate=8000) for s in range(4)])
    with torch.no_grad():
        on_cpu = frontend(windows)
        on_gpu = frontend.to(CUDA)(windows.to(CUDA))
        with torch.autocast("cuda", dtype=torch.float16):
            mixed = frontend(windows.to(CUDA))
    assert mixed.dtype == torch.float32
    scale = on_cpu.abs().max()
    assert (on_gpu.cpu() - on_cpu).abs().max() < 1e-3 * scale
    torch.testing.assert_close(mixed, on_gpu, atol=0, rtol=0)


def test_mixed_precision_training_on_the_gpu_leaves_a_checkpoint_for_the_cpu(
    tiny_fsdd: Path, tmp_path: Path
) -> None:
    best, metrics = train_checkpoint(
        tiny_fsdd,
        tmp_path / "run",
        "experiment=from_scratch",
        "trainer=gpu",
        "data.synthetic.voices=0",
        "trainer.max_epochs=3",
        "data.batch_size=16",
    )
    assert math.isfinite(metrics["train_loss_epoch"])
    assert 0.0 <= metrics["test_acc"] <= 1.0
    model = DigitClassifier.load_from_checkpoint(best, map_location="cpu").eval()
    windows = torch.randn(4, model.window) * 0.1
    with torch.no_grad():
        on_cpu = model(windows)
        on_gpu = model.to(CUDA)(windows.to(CUDA)).cpu()
    torch.testing.assert_close(on_gpu, on_cpu, atol=1e-3, rtol=1e-3)
