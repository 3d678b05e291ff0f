"""Ensembles: members' probabilities averaged, each member's own loss, and checkpoints saved by
earlier versions (before ensembles, or with options since retired) loading or refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sdc.errors import SdcError
from sdc.inference.checkpoint import load_classifier
from sdc.training.module import DigitClassifier, average_probabilities

CNN = {"_target_": "sdc.models.cnn.DigitCNN", "time_pooling": "max"}
MFCC = {"_target_": "sdc.audio.features.MfccFrontend", "normalize": "speech"}
OTHER_MFCC = {"_target_": "sdc.audio.features.MfccFrontend", "n_mfcc": 20, "n_mels": 32}
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True}


def ensemble(weight: object = 1.0, **expert_frontend: object) -> DigitClassifier:
    frontend = {**OTHER_MFCC, "normalize": "utterance", **expert_frontend}
    expert = {"frontend": frontend, "net": CNN, "weight": weight}
    return DigitClassifier(net=CNN, frontend=MFCC, optim=ADAM, experts={"mel": expert})


def test_one_member_is_the_model_and_more_average_their_probabilities() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(5, 10), torch.randn(5, 10) * 3
    assert torch.equal(average_probabilities([a]), a)
    mean = (a.softmax(dim=-1) + b.softmax(dim=-1)) / 2
    combined = average_probabilities([a, b])
    torch.testing.assert_close(combined.softmax(dim=-1), mean)
    torch.testing.assert_close(combined.exp().sum(dim=-1), torch.ones(5))
    weighted = average_probabilities([a, b], [1.0, 0.5])
    torch.testing.assert_close(
        weighted.softmax(dim=-1), (2 * a.softmax(dim=-1) + b.softmax(dim=-1)) / 3
    )


def test_an_ensemble_answers_with_its_members_mean_probabilities() -> None:
    torch.manual_seed(0)
    model = ensemble().eval()
    assert len(model.members) == 2
    windows = torch.randn(3, model.window) * 0.1
    with torch.no_grad():
        members = [m(windows).softmax(dim=-1) for m in model.members]
        assert not torch.allclose(members[0], members[1], atol=1e-3)
        torch.testing.assert_close(model(windows).softmax(dim=-1), (members[0] + members[1]) / 2)
        model.weights[1] = 0.25
        torch.testing.assert_close(
            model(windows).softmax(dim=-1), 0.8 * members[0] + 0.2 * members[1]
        )
        model.weights[1] = 1.0
        fused = model.for_inference()(windows)
    torch.testing.assert_close(fused, model(windows), atol=1e-4, rtol=1e-4)


def test_each_member_learns_by_its_own_loss() -> None:
    torch.manual_seed(0)
    model = ensemble().train()
    windows, labels = torch.randn(4, model.window) * 0.1, torch.tensor([0, 1, 2, 3])
    logits = model.training_logits(windows)
    assert len(logits) == 2
    loss = model.training_loss(logits, labels)
    expected = (F.cross_entropy(logits[0], labels) + F.cross_entropy(logits[1], labels)) / 2
    torch.testing.assert_close(loss, expected)
    # Member 0's loss alone moves member 0 only: no member leans on another.
    F.cross_entropy(logits[0], labels).backward()
    assert model.members[0].net.head[-1].weight.grad is not None
    assert model.members[1].net.head[-1].weight.grad is None


def test_checkpoints_saved_before_ensembles_still_load() -> None:
    torch.manual_seed(0)
    old = DigitClassifier(net=CNN, frontend=MFCC, optim=ADAM).eval()
    legacy = {k.removeprefix("members.0."): v for k, v in old.state_dict().items()}
    assert "frontend.mean" in legacy and any(k.startswith("net.") for k in legacy)
    torch.manual_seed(1)
    new = DigitClassifier(net=CNN, frontend=MFCC, optim=ADAM).eval()
    new.load_state_dict(legacy)  # strict: every key found its place
    windows = torch.randn(2, new.window) * 0.1
    with torch.no_grad():
        assert torch.equal(new(windows), old(windows))


def test_members_must_hear_the_same_window_and_weigh_more_than_nothing() -> None:
    with pytest.raises(SdcError, match=r"^experts\.mel: expected windows of 18400 samples"):
        ensemble(clip_seconds=1.0)
    with pytest.raises(SdcError, match=r"^experts\.mel\.weight: expected a number > 0, got 0"):
        ensemble(weight=0)


def save(model: DigitClassifier, path: Path, **hparams: object) -> Path:
    """A checkpoint of `model` as an earlier version of sdc may have written it."""
    torch.save(
        {"state_dict": model.state_dict(), "hyper_parameters": {**model.hparams, **hparams}}, path
    )
    return path


def test_checkpoints_with_retired_options_off_load_as_before(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = DigitClassifier(net=CNN, frontend=MFCC, optim=ADAM).eval()
    frontend = {**MFCC, "edge_fade_seconds": 0.0, "kind": "mfcc"}
    path = save(
        model, tmp_path / "old.ckpt", frontend=frontend, label_smoothing=0.0, ensemble_rule="mean"
    )
    loaded = load_classifier(path)
    windows = torch.randn(2, model.window) * 0.1
    with torch.no_grad():
        assert torch.equal(loaded(windows), model(windows))


@pytest.mark.parametrize(
    ("hparams", "message"),
    [
        (
            {"frontend": {**MFCC, "edge_fade_seconds": 0.01}},
            r"frontend\.edge_fade_seconds is 0\.01",
        ),
        ({"frontend": {**MFCC, "kind": "logmel"}}, r"frontend\.kind: log-mel front ends"),
        ({"label_smoothing": 0.5}, r"label_smoothing is 0\.5"),
    ],
)
def test_checkpoints_trained_with_a_retired_option_are_refused_in_one_line(
    tmp_path: Path, hparams: dict, message: str
) -> None:
    model = DigitClassifier(net=CNN, frontend=MFCC, optim=ADAM)
    path = save(model, tmp_path / "old.ckpt", **hparams)
    with pytest.raises(SdcError, match=rf"^{tmp_path / 'old.ckpt'}: {message}"):
        load_classifier(path)
