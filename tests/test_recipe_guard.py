"""The redesign guard: the kept recipes compute exactly what they computed before.

A short seeded training of `baseline` and of the recommended recipe (`best`) on the tiny
synthetic FSDD, two epochs of two batches, with the speech embedding's stand-in weights: the
first training batch's augmented features and the run's metrics must equal the reference that
`tests/data/recipe_guard.json` recorded before the code was reorganized. Any change to a draw,
a default or the order of the augmentation chain moves them.

Float32 training's last digits follow the CPU kernels PyTorch picks, so there is a reference
per kind (`best`'s losses differ by 1e-3 between AVX-512 and AVX2 ones). The AVX2 one was
recorded later, by code that still matched the AVX-512 one, on an AVX-512 CPU told to
compute as an AVX2 one: `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
MKL_ENABLE_INSTRUCTIONS=AVX2` (it gave an AMD AVX2 CPU's test loss to the last digit).

Re-record (only for a deliberate change of computation, said so in the commit; both kinds):
`SDC_RECORD_GUARD=1 python -m pytest tests/test_recipe_guard.py`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from speech_embedding_stand_in import stand_in

REFERENCE = Path(__file__).parent / "data" / "recipe_guard.json"
RECIPES = ("baseline", "best")
SHORT = (
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.deterministic=true",
    "data.batch_size=16",
    "data.synthetic.voices=0",
    "threads=1",
    "~logger",
)
METRICS = ("train_loss_epoch", "val_loss", "val_acc", "test_loss", "test_acc")


def _summary(features: torch.Tensor) -> dict[str, object]:
    flat = features.detach().double().flatten()
    return {
        "shape": list(features.shape),
        "sum": float(flat.sum()),
        "sum_of_squares": float(flat.square().sum()),
        "first": [float(v) for v in flat[:8]],
    }


def _first_batch_features(cfg: DictConfig) -> dict[str, object]:
    """The first training batch as the model's network receives it: waveform augmentation,
    front end with VTLP, SpecAugment."""
    from sdc.training.train import build_module

    pl.seed_everything(int(cfg.seed), workers=True)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg)
    module.fit_frontends(datamodule)
    module.train()
    waves, lengths, _ = next(iter(datamodule.train_dataloader()))
    windows = datamodule.augment(waves, lengths)
    (features,) = module.training_features(windows)
    return {"windows": _summary(windows), "features": _summary(features)}


def measure(make_cfg: Callable[..., DictConfig], recipe: str, tmp_path: Path) -> dict:
    from sdc.training.train import train

    torch.set_num_threads(1)
    never_used = [f"features.weights_dir={tmp_path / 'none'}"] if recipe == "best" else []
    cfg = make_cfg(f"experiment={recipe}", *SHORT, *never_used)
    batch = _first_batch_features(cfg)
    metrics = train(cfg)
    return {**batch, "metrics": {k: metrics[k] for k in METRICS}}


@pytest.fixture
def stand_in_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    from sdc.audio.embedding import SpeechEmbeddingFrontend

    monkeypatch.setattr(
        SpeechEmbeddingFrontend, "load_pretrained", lambda self: stand_in(self.embedding)
    )


def _close(actual: object, expected: object, path: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), path
        for key in expected:
            _close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _close(a, e, f"{path}[{i}]")
    else:
        assert actual == pytest.approx(expected, rel=1e-4, abs=1e-6), path


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_the_recipe_computes_what_it_did_before_the_redesign(
    make_cfg: Callable[..., DictConfig], stand_in_weights: None, tmp_path: Path, recipe: str
) -> None:
    kernels = torch.backends.cpu.get_cpu_capability()  # "AVX512", "AVX2", "DEFAULT", ...
    measured = measure(make_cfg, recipe, tmp_path)
    if os.environ.get("SDC_RECORD_GUARD"):
        recorded = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {}
        recorded.setdefault(recipe, {})[kernels] = measured
        REFERENCE.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    references = json.loads(REFERENCE.read_text())[recipe]
    if kernels not in references:
        pytest.skip(f"no reference for {kernels} CPU kernels: only for {sorted(references)}")
    _close(measured, references[kernels], f"{recipe}[{kernels}]")
