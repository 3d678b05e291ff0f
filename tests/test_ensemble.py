"""Ensembles: members' probabilities averaged, each member trained by its own loss, checkpoints
from before ensembles still loading, and an ensemble trained, saved and exported end to end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from sdc.inference.checkpoint import load_classifier
from sdc.config.validate import validate
from sdc.errors import SdcError
from sdc.inference.export import PARITY_TOLERANCE, export_onnx, parity
from sdc.inference.recognizer import Recognizer
from sdc.training.module import (
    ENSEMBLE_RULES,
    DigitClassifier,
    average_probabilities,
    multiply_probabilities,
)

CNN = {"_target_": "sdc.models.cnn.DigitCNN", "time_pooling": "max"}
MFCC = {"_target_": "sdc.audio.features.MfccFrontend", "normalize": "speech"}
LOGMEL = {"_target_": "sdc.audio.features.MfccFrontend", "kind": "logmel", "n_mels": 32}
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True}


def ensemble(weight: object = 1.0, **expert_frontend: object) -> DigitClassifier:
    frontend = {**LOGMEL, "normalize": "utterance", **expert_frontend}
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


def test_the_product_rule_is_the_renormalized_weighted_geometric_mean() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(5, 10), torch.randn(5, 10) * 3
    assert torch.equal(multiply_probabilities([a]), a)
    combined = multiply_probabilities([a, b])
    torch.testing.assert_close(combined.exp().sum(dim=-1), torch.ones(5))
    geometric = (a.softmax(dim=-1) * b.softmax(dim=-1)).sqrt()
    torch.testing.assert_close(combined.exp(), geometric / geometric.sum(dim=-1, keepdim=True))
    weighted = multiply_probabilities([a, b], [1.0, 0.5]).exp()
    geometric = a.softmax(dim=-1) ** (2 / 3) * b.softmax(dim=-1) ** (1 / 3)
    torch.testing.assert_close(weighted, geometric / geometric.sum(dim=-1, keepdim=True))


def test_two_unsure_members_outvote_a_sure_one_only_by_the_product() -> None:
    """The random split's errors of round 17 (docs/accuracy.md): one member sure of a wrong
    digit, two smoothed ones that give it little probability and the right one most."""
    sure_wrong = torch.tensor([[0.10, 0.85, 0.05]])
    unsure_right = torch.tensor([[0.45, 0.10, 0.45]])
    logits = [sure_wrong.log(), unsure_right.log(), unsure_right.log()]
    assert average_probabilities(logits).argmax(dim=-1).item() == 1
    assert multiply_probabilities(logits).argmax(dim=-1).item() == 0


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


def test_an_ensemble_may_multiply_its_members_probabilities() -> None:
    torch.manual_seed(0)
    model = ensemble().eval()
    model.combine_members = multiply_probabilities  # as ensemble_rule="product" sets it
    windows = torch.randn(3, model.window) * 0.1
    with torch.no_grad():
        members = [m(windows) for m in model.members]
        torch.testing.assert_close(model(windows), multiply_probabilities(members))
        assert not torch.allclose(model(windows), average_probabilities(members), atol=1e-4)
    frontend = {**LOGMEL, "normalize": "utterance"}
    experts = {"mel": {"frontend": frontend, "net": CNN}}
    built = DigitClassifier(
        net=CNN, frontend=MFCC, optim=ADAM, experts=experts, ensemble_rule="product"
    )
    assert built.combine_members is multiply_probabilities
    with pytest.raises(
        SdcError, match=r"^ensemble_rule: expected one of mean, product, got 'median'$"
    ):
        DigitClassifier(net=CNN, frontend=MFCC, optim=ADAM, ensemble_rule="median")


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


def test_label_smoothing_shapes_the_training_loss_only(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = DigitClassifier(net=CNN, frontend=MFCC, optim=ADAM, label_smoothing=0.5).train()
    windows, labels = torch.randn(4, model.window) * 0.1, torch.tensor([0, 1, 2, 3])
    logits = model.training_logits(windows)
    loss = model.training_loss(logits, labels)
    torch.testing.assert_close(loss, F.cross_entropy(logits[0], labels, label_smoothing=0.5))
    assert not torch.allclose(loss, F.cross_entropy(logits[0], labels))
    # Validation keeps the plain cross-entropy: it measures the model, not its training.
    logged: dict[str, torch.Tensor] = {}
    monkeypatch.setattr(model, "log", lambda name, value, **_: logged.__setitem__(name, value))
    model.eval()
    with torch.no_grad():
        model.validation_step((windows, labels), 0)
        torch.testing.assert_close(logged["val_loss"], F.cross_entropy(model(windows), labels))


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


MEL = ("+features@experts.mel.features=logmel", "+model@experts.mel.model=cnn")


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        (MEL[:1], r"^experts\.mel\.model: expected a config with a _target_"),
        ((*MEL, "experts.mel.features.normalize=loudest"), r"^experts\.mel\.features\.normalize: "),
        ((*MEL, "+experts.mel.weight=-1"), r"^experts\.mel\.weight: expected a positive number"),
        ((*MEL, "+experts.mel.spec_augment=0.5"), r"^experts\.mel\.spec_augment: expected a map"),
        (("ensemble_rule=median",), r"^ensemble_rule: expected one of mean, product, got 'median'"),
    ],
)
def test_a_bad_member_is_a_one_line_error_naming_it(
    make_cfg: Callable[..., DictConfig], overrides: tuple[str, ...], error: str
) -> None:
    with pytest.raises(SdcError, match=error):
        validate(make_cfg(*overrides))


@pytest.mark.parametrize("rule", ["mean", "product"])
def test_an_ensemble_trains_saves_and_exports(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, rule: str
) -> None:
    from sdc.training.train import train

    cfg = make_cfg(
        "trainer.max_epochs=1",
        "data.batch_size=16",
        *MEL,
        "+experts.mel.spec_augment.p=0.5",
        "+experts.mel.weight=0.5",
        f"ensemble_rule={rule}",
    )
    metrics = train(cfg)
    assert 0.0 <= metrics["test_acc"] <= 1.0
    (best,) = (Path(cfg.paths.output_dir) / "checkpoints").glob("epoch*.ckpt")
    model = load_classifier(best)
    assert len(model.members) == 2
    assert all(bool(m.frontend.fitted) for m in model.members), "each front end's statistics"
    assert model.members[1].spec_augment.p == 0.5 and model.weights == [1.0, 0.5]
    assert model.combine_members is ENSEMBLE_RULES[rule], "the rule is saved with the model"
    recognizer = Recognizer.from_onnx(export_onnx(model, tmp_path / "ensemble.onnx"))
    assert parity(model, recognizer) < PARITY_TOLERANCE
