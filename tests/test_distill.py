"""Distillation: a student learns from a trained teacher's soft labels, never stores the
teacher, and refuses a teacher that heard its test clips."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from sdc.errors import SdcError
from sdc.inference.checkpoint import load_classifier, read_checkpoint
from sdc.training.distill import Distillation, DistillConfig, soft_label_loss
from sdc.training.train import train

STUDENT = (
    "distill.weight=0.9",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "data.batch_size=16",
    "data.augment.pitch_shift.p=0",
    "data.augment.time_stretch.p=0",
    "~logger",
)


def test_the_loss_is_cross_entropy_without_the_teacher_and_zero_when_they_agree() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 10), torch.randn(8, 10)
    labels = torch.randint(0, 10, (8,))
    labels_only = soft_label_loss(student, teacher, labels, DistillConfig(weight=0.0))
    assert torch.allclose(labels_only, F.cross_entropy(student, labels))
    agree = soft_label_loss(teacher, teacher, labels, DistillConfig(weight=1.0))
    assert float(agree) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_label_loss(student, teacher, labels, DistillConfig(weight=1.0))) > 0.01


def test_the_soft_labels_pull_the_student_towards_the_teachers_second_choice() -> None:
    """Labels say 3; the teacher says 3, with 8 as its clear second: the student's 8 rises
    above its other wrong classes, which cross-entropy alone would push down together."""
    labels = torch.tensor([3])
    teacher = torch.zeros(1, 10)
    teacher[0, 3], teacher[0, 8] = 6.0, 4.0
    student = torch.zeros(1, 10, requires_grad=True)
    soft_label_loss(student, teacher, labels, DistillConfig(weight=0.9)).backward()
    grad = student.grad[0]
    assert grad[3] < 0 and grad[8] < 0, "both the answer and the second choice rise"
    others = [grad[c] for c in range(10) if c not in (3, 8)]
    assert all(g > 0 for g in others)


def test_the_batch_loss_asks_the_teacher_about_the_same_windows(tiny_checkpoint: Path) -> None:
    teacher = load_classifier(tiny_checkpoint)
    distillation = Distillation(teacher, DistillConfig(weight=0.5, temperature=2.0))
    windows = torch.randn(4, teacher.window) * 0.1
    labels = torch.tensor([0, 1, 2, 3])
    student = [torch.randn(4, 10, requires_grad=True)]
    loss = distillation.loss(student, windows, labels)
    with torch.no_grad():
        expected = soft_label_loss(student[0], teacher.hear(windows), labels, distillation.cfg)
    assert torch.allclose(loss, expected)
    loss.backward()
    assert student[0].grad is not None
    assert all(p.grad is None for p in teacher.parameters()), "the teacher stays frozen"


def test_a_student_trains_from_the_teacher_and_saves_only_itself(
    make_cfg: Callable[..., DictConfig], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    metrics = train(make_cfg(f"distill.teacher={tiny_checkpoint}", *STUDENT))
    assert torch.isfinite(torch.tensor(metrics["train_loss_epoch"]))
    (student,) = (tmp_path / "run" / "checkpoints").glob("epoch*.ckpt")
    saved = read_checkpoint(student)
    teacher_keys = set(read_checkpoint(tiny_checkpoint)["state_dict"])
    assert set(saved["state_dict"]) == teacher_keys, "the student's weights, not two models'"
    assert "distill" not in saved["hyper_parameters"], "a student loads without its teacher"
    moved = tmp_path / "elsewhere" / "student.ckpt"
    moved.parent.mkdir()
    shutil.copy(student, moved)
    assert load_classifier(moved)(torch.zeros(1, 18400)).shape == (1, 10)


def test_a_teacher_that_heard_the_test_clips_is_refused(
    make_cfg: Callable[..., DictConfig], tiny_checkpoint: Path
) -> None:
    """Another seed draws another split: some of the student's test clips trained the teacher."""
    with pytest.raises(SdcError, match=r"distill\.teacher: .* trained on \d+ of this run's test"):
        train(make_cfg(f"distill.teacher={tiny_checkpoint}", "seed=99", *STUDENT))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("distill.weight=0.9",), r"distill\.teacher: expected the checkpoint"),
        (("distill.teacher=model.ckpt",), r"distill\.teacher: .*null when it is 0"),
        (("distill.weight=0.9", "distill.teacher=missing.ckpt"), r"missing\.ckpt is not a file"),
        (("distill.weight=0.9", "distill.temperature=0"), r"distill\.temperature"),
        (("distill.weight=1.5",), r"distill\.weight"),
    ],
)
def test_bad_distillation_options_are_one_line_naming_the_key(
    make_cfg: Callable[..., DictConfig], overrides: tuple[str, ...], message: str
) -> None:
    with pytest.raises(SdcError, match=message):
        train(make_cfg(*overrides))


def test_a_teacher_that_hears_other_windows_is_refused(
    make_cfg: Callable[..., DictConfig], tiny_checkpoint: Path
) -> None:
    with pytest.raises(SdcError, match=r"distill\.teacher: .* hears windows of 18400 samples"):
        train(make_cfg(f"distill.teacher={tiny_checkpoint}", "data.clip_seconds=1.5", *STUDENT))
