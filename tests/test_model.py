"""The write-up's CNN, and every network a `model=` config names."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from sdc.config import config_dir
from sdc.models.cnn import DigitCNN

MODEL_CONFIGS = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))


def test_cnn_maps_mfcc_images_to_logits() -> None:
    net = DigitCNN(input_shape=(1, 40, 201), n_classes=10)
    assert net(torch.randn(4, 1, 40, 201)).shape == (4, 10)


@pytest.mark.parametrize("name", MODEL_CONFIGS)
@pytest.mark.parametrize("rows", [20, 40])
def test_every_model_config_builds_a_compact_network(
    make_cfg: Callable[..., DictConfig], name: str, rows: int
) -> None:
    """A `model=` config composes, builds for 20 MFCCs (`best`) or 40 (`baseline`), gives
    ten logits per clip and stays within the ~100k parameters a small classifier should need
    (`cnn_wide` has 84k with 20 MFCCs and 109k with 40: 110k is the bound)."""
    model = make_cfg(f"model={name}").model
    net = instantiate(model, input_shape=(1, rows, 201), n_classes=10).eval()
    assert net(torch.randn(2, 1, rows, 201)).shape == (2, 10)
    assert sum(p.numel() for p in net.parameters()) <= 110_000


def test_the_wider_cnn_config_changes_only_its_widths(
    make_cfg: Callable[..., DictConfig],
) -> None:
    narrow = make_cfg("model=cnn").model
    wide = make_cfg("model=cnn_wide").model
    for key, value in {"reduced_channels": 64, "channels": [24, 48, 96]}.items():
        assert wide[key] == value and narrow[key] != value
        narrow[key] = value
    assert narrow == wide


def test_cnn_parameter_count_follows_its_config() -> None:
    net = DigitCNN(
        (1, 40, 201), channels=(8,), reduced_channels=4, hidden=(16,), time_pooling="none"
    )
    conv = 1 * 8 * 9 + 2 * 8  # 3x3 conv (no bias) + batch norm
    reduce = 8 * 4 + 2 * 4
    dense = (4 * 20 * 100) * 16 + 16 + 16 * 10 + 10
    assert sum(p.numel() for p in net.parameters()) == conv + reduce + dense


def test_cnn_trains_on_a_separable_toy_problem() -> None:
    torch.manual_seed(0)
    x = torch.randn(40, 1, 16, 32)
    y = torch.arange(40) % 2
    x[y == 1, :, :8] += 2.0
    net = DigitCNN((1, 16, 32), n_classes=2, channels=(8, 8), dropout=0.0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    assert (net(x).argmax(dim=1) == y).float().mean() == 1.0


def test_fused_inference_copy_gives_the_same_logits() -> None:
    from sdc.training.module import DigitClassifier

    torch.manual_seed(0)
    module = DigitClassifier(
        net={"_target_": "sdc.models.cnn.DigitCNN", "time_pooling": "max"},
        frontend={"_target_": "sdc.audio.features.MfccFrontend"},
        optim={"_target_": "torch.optim.Adam", "_partial_": True},
    )
    # Non-trivial batch-norm statistics, so that folding them in actually matters.
    module.train()
    with torch.no_grad():
        module(torch.randn(16, module.window) * 0.3)
    module.eval()
    fused = module.for_inference()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.net.modules())
    windows = torch.randn(4, module.window) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(fused(windows), module(windows), atol=1e-4, rtol=1e-4)


def test_pooling_before_relu_computes_the_write_ups_block_exactly() -> None:
    """The block pools before its ReLU for speed; values and gradients must be the write-up's
    conv, batch norm, ReLU, pool order."""
    from torch import nn

    torch.manual_seed(0)
    ours = DigitCNN((1, 40, 201), time_pooling="max")
    reference = DigitCNN((1, 40, 201), time_pooling="max")
    reference.load_state_dict(ours.state_dict())
    for block in list(reference.features)[:3]:
        pool, relu = block[2], block[3]
        assert isinstance(pool, nn.MaxPool2d) and isinstance(relu, nn.ReLU)
        block[2], block[3] = relu, pool
    x = torch.randn(6, 1, 40, 201)
    outputs = []
    for net in (ours, reference):
        net.train()
        torch.manual_seed(1)
        out = net(x)
        out.square().sum().backward()
        outputs.append((out, [p.grad for p in net.parameters()]))
    (out_a, grads_a), (out_b, grads_b) = outputs
    torch.testing.assert_close(out_a, out_b)
    for grad_a, grad_b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(grad_a, grad_b)
