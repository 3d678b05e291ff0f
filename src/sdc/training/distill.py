"""Knowledge distillation: a small model learns from a trained model's answers as well as from
the labels (Hinton, Vinyals and Dean, 2015).

The teacher hears each augmented training window the student hears and its class probabilities,
softened by a temperature, become soft labels: a "five" said like a "nine" teaches the student
what the teacher heard in it, which a one-hot label cannot. The teacher is frozen and kept
outside the student's modules, so a student's checkpoint holds only the student.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from sdc.config.fields import option, probability
from sdc.errors import SdcError

if TYPE_CHECKING:
    from sdc.data.fsdd import Recording
    from sdc.training.module import DigitClassifier

log = logging.getLogger(__name__)


@dataclass
class DistillConfig:
    """`distill`: learn from a trained model's class probabilities as well as the labels."""

    weight: float = probability(0.0)
    """Share of the loss taken by the teacher's soft labels; the rest is cross-entropy on the
    true labels (0: labels only, no teacher)."""
    teacher: str | None = None
    """Checkpoint of the trained model to learn from: needed when `weight` > 0."""
    temperature: float = option(4.0, above=0.0)
    """Both models' logits are divided by it before they are compared: above 1 the teacher's
    second and third choices weigh in, not only its answer."""


def soft_label_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, cfg: DistillConfig
) -> torch.Tensor:
    """`weight` x T^2 x KL(teacher || student) at temperature T, plus (1 - `weight`) x
    cross-entropy. The T^2 keeps the soft term's gradients the size of the hard term's, so the
    weight means the same at any temperature."""
    t = cfg.temperature
    soft = F.kl_div(
        (student / t).log_softmax(dim=-1),
        (teacher / t).log_softmax(dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    return cfg.weight * t * t * soft + (1 - cfg.weight) * F.cross_entropy(student, labels)


class Distillation:
    """The frozen teacher and how its answers weigh; `DigitClassifier.training_step` asks it
    for the loss. A plain object, not a module: the teacher never enters the student's
    state dict, optimizer or train/eval switches."""

    def __init__(self, teacher: DigitClassifier, cfg: DistillConfig) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.cfg = cfg

    def loss(
        self, student_logits: list[torch.Tensor], windows: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """The members' mean distillation loss on a batch of augmented windows."""
        if next(self.teacher.parameters()).device != windows.device:
            self.teacher.to(windows.device)
        with torch.no_grad():
            # One hearing, without the teacher's test-time speed views: five times the cost.
            teacher_logits = self.teacher.hear(windows).float()
        return torch.stack(
            [soft_label_loss(s.float(), teacher_logits, labels, self.cfg) for s in student_logits]
        ).mean()


def load_teacher(
    cfg: DistillConfig, sample_rate: int, window: int, test: list[Recording]
) -> Distillation:
    """The teacher of `cfg.teacher`, checked to hear the student's windows and never to have
    trained on the student's test clips (which would make a held-out accuracy a heard one)."""
    from sdc.inference.checkpoint import load_classifier

    path = Path(str(cfg.teacher))
    if not path.is_file():
        raise SdcError(f"distill.teacher: {path} is not a file (expected a trained checkpoint)")
    teacher = load_classifier(path, test_time_speeds=None).for_inference()
    if (teacher.sample_rate, teacher.window) != (sample_rate, window):
        raise SdcError(
            f"distill.teacher: {path} hears windows of {teacher.window} samples at "
            f"{teacher.sample_rate} Hz; this run's are {window} samples at {sample_rate} Hz"
        )
    heard = _trained_on(path) & {r.path.name for r in test}
    if heard:
        raise SdcError(
            f"distill.teacher: {path} was trained on {len(heard)} of this run's test clips "
            f"(e.g. {sorted(heard)[0]}); train the teacher on the same split, or its held-out "
            "accuracy would be passed to the student"
        )
    return Distillation(teacher, cfg)


def _trained_on(checkpoint: Path) -> set[str]:
    """The files in the training subset of the teacher's run (`split.csv`, beside its
    `checkpoints/` folder)."""
    split = checkpoint.parent.parent / "split.csv"
    if not split.is_file():
        log.warning(
            "distill.teacher: no split.csv beside %s, so whether the teacher heard this run's "
            "test clips cannot be checked",
            checkpoint.parent,
        )
        return set()
    with split.open(newline="") as f:
        return {row["file"] for row in csv.DictReader(f) if row.get("subset") == "train"}
