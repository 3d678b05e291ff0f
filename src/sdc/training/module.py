"""The `LightningModule`: front end + network (or several, averaged) + loss, metrics and
optimizer wiring.

Everything needed to rebuild the model (labels, front-end settings, network config) is stored
in the checkpoint's hyperparameters as plain data, so a checkpoint alone is a usable model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from copy import deepcopy
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from sdc import LABELS
from sdc.audio.speed_views import SpeedViews
from sdc.audio.vtlp import VtlpConfig, draw_factors
from sdc.errors import SdcError
from sdc.models.member import Member

VIEWS_IN_ONE_BATCH = 16
"""Up to this many windows, a batch's speed views are heard in one pass: a clip's five views
in 16.6 ms instead of 26 (one thread), the per-call overhead paid once; an exported graph
always hears them in one pass (8 bits: 10.0 ms instead of 12.1), and exports in a quarter of
the time. Larger batches hear them one by one: `sdc predict` of 1,000 clips in batches of 8
took 16.2 s and 1.0 GB that way, 17.3 s and 1.14 GB in one pass."""
LEGACY_PREFIXES = ("frontend.", "net.")
"""State-dict keys of checkpoints saved before ensembles: their one member's, unprefixed."""


def average_probabilities(
    logits: Sequence[torch.Tensor], weights: Sequence[float] | None = None
) -> torch.Tensor:
    """Log of the members' mean class probabilities (B, n_classes), weighted by `weights`
    (equal if None): logits for the ensemble, which softmax, argmax and cross-entropy read as
    they read one model's. One member's logits come back unchanged."""
    if len(logits) == 1:
        return logits[0]
    weights = [1.0] * len(logits) if weights is None else list(weights)
    log_share = [math.log(w / sum(weights)) for w in weights]
    log_probs = torch.stack(
        [
            member.log_softmax(dim=-1) + share
            for member, share in zip(logits, log_share, strict=True)
        ]
    )
    return torch.logsumexp(log_probs, dim=0)


def _window_spec(frontend: nn.Module) -> tuple[int, int]:
    """What a front end's windows are made of: every member of one model must hear the same."""
    return (frontend.sample_rate, frontend.window)


class DigitClassifier(pl.LightningModule):
    """Classifies fixed-length 8 kHz waveform windows (B, samples) into digits.

    The model is one front end with a network on it (`frontend`, `net`), or an ensemble of
    several that `sdc ensemble` built from finished runs (`experts`, more members by name),
    whose class probabilities are averaged, each weighted by its `weight` against the first
    member's 1: members that hear the audio differently make different mistakes.

    With `test_time_speeds`, the model hears each window at those speeds and averages its
    class probabilities over them (`sdc.audio.speed_views`) in testing and inference; training
    and validation hear each window once, so the epoch is chosen as without them.
    """

    def __init__(
        self,
        net: Mapping[str, Any],
        frontend: Mapping[str, Any],
        optim: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        labels: Sequence[str] = LABELS,
        spec_augment: Mapping[str, Any] | None = None,
        vtlp: Mapping[str, Any] | None = None,
        experts: Mapping[str, Mapping[str, Any]] | None = None,
        test_time_speeds: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.labels = list(labels)
        self.vtlp = VtlpConfig(**(vtlp or {}))
        n = len(self.labels)
        self.members = nn.ModuleList([Member(frontend, net, n, spec_augment)])
        self.weights = [1.0]
        for name, expert in (experts or {}).items():
            member = Member(expert["frontend"], expert["net"], n, expert.get("spec_augment"))
            weight = expert.get("weight", 1.0)
            if not (isinstance(weight, (int, float)) and weight > 0):
                raise SdcError(f"experts.{name}.weight: expected a number > 0, got {weight!r}")
            self.weights.append(float(weight))
            first = self.frontend
            if _window_spec(member.frontend) != _window_spec(first):
                raise SdcError(
                    f"experts.{name}: expected windows of {first.window} samples at "
                    f"{first.sample_rate} Hz, like the first front end, got "
                    f"{member.frontend.window} at {member.frontend.sample_rate} Hz"
                )
            self.members.append(member)
        self.speed_views = (
            SpeedViews(test_time_speeds, self.sample_rate, self.window)
            if test_time_speeds
            else None
        )
        self._register_load_state_dict_pre_hook(_legacy_keys)
        self.train_acc = MulticlassAccuracy(num_classes=n, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=n, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=n, average="micro")
        self.test_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    @property
    def frontend(self) -> nn.Module:
        """The first member's front end (the only one, unless the model is an ensemble)."""
        return self.members[0].frontend

    @property
    def net(self) -> nn.Module:
        """The first member's network."""
        return self.members[0].net

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    @property
    def window(self) -> int:
        return self.frontend.window

    def for_inference(self) -> DigitClassifier:
        """An eval-mode copy with batch norm folded into the convolutions: same logits, faster."""
        copy = deepcopy(self).eval()
        for member in copy.members:
            member.fuse()
        return copy

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_classes) for waveform windows (B, samples), over the speed views if
        the model has them."""
        if self.speed_views is None:
            return self.hear(windows)
        views = self.speed_views(windows)
        exporting = torch.onnx.is_in_onnx_export()  # a graph's batch is any size: one pass
        if not exporting and len(windows) * len(views) > VIEWS_IN_ONE_BATCH:
            return average_probabilities([self.hear(view) for view in views])
        heard = self.hear(torch.cat(views)).unflatten(0, (len(views), -1))
        return average_probabilities(list(heard.unbind(0)))

    def hear(self, windows: torch.Tensor) -> torch.Tensor:
        """Logits for the windows as they are: the members' weighted mean probabilities."""
        return average_probabilities([member(windows) for member in self.members], self.weights)

    def training_features(self, windows: torch.Tensor) -> list[torch.Tensor]:
        """Each member's features with the training-only feature augmentations (one VTLP warp
        per clip, the same for every member; each member's own SpecAugment)."""
        warp = draw_factors(len(windows), self.vtlp, self.device)
        return [member.training_features(windows, warp) for member in self.members]

    def member_logits(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Each member's network on its own features (as `training_features` returns them)."""
        return [member.net(f) for member, f in zip(self.members, features, strict=True)]

    def training_logits(self, windows: torch.Tensor) -> list[torch.Tensor]:
        """Each member's logits, as `forward` computes them, with the training-only feature
        augmentations."""
        return self.member_logits(self.training_features(windows))

    def training_loss(self, logits: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """The members' mean cross-entropy: each learns as if alone, none leans on another."""
        return torch.stack([F.cross_entropy(m, labels) for m in logits]).mean()

    def fit_frontends(self, datamodule: Any) -> None:
        """Fit the feature statistics of every front end not yet fitted, on the datamodule's
        clean training windows."""
        for member in self.members:
            if not bool(member.frontend.fitted):
                member.frontend.fit(w.to(self.device) for w in datamodule.clean_windows("train"))

    def on_fit_start(self) -> None:
        """Fit the front ends' feature statistics on clean training windows, once per model."""
        self.fit_frontends(self.trainer.datamodule)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        windows, labels = batch
        logits = self.training_logits(windows)
        loss = self.training_loss(logits, labels)
        self.train_acc(average_probabilities(logits, self.weights), labels)
        # Losses are plain tensors: `sync_dist` averages them over DDP ranks (metrics sync
        # themselves); it does nothing in a single process.
        self.log("train_loss", loss, on_step=True, on_epoch=True, sync_dist=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        windows, labels = batch
        # One hearing: the views would cost a hearing each and are not what picks the
        # epoch (a run with them selects the weights a run without them selects).
        logits = self.hear(windows)
        self.val_acc(logits, labels)
        self.log("val_loss", F.cross_entropy(logits, labels), sync_dist=True)
        self.log("val_acc", self.val_acc, prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self.test_outputs = []

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        windows, labels = batch
        logits = self(windows)
        self.test_acc(logits, labels)
        self.log("test_loss", F.cross_entropy(logits, labels))
        self.log("test_acc", self.test_acc)
        self.test_outputs.append((logits.softmax(dim=-1).cpu(), labels.cpu()))

    def test_probabilities(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities and true labels of the last test run, in loader order."""
        probs = torch.cat([p for p, _ in self.test_outputs])
        labels = torch.cat([t for _, t in self.test_outputs])
        return probs, labels

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The trainable parameters: the networks', then each front end's that learn (a
        fine-tuned pretrained embedding) in a group of its own, at its front end's `lr_scale`
        times the configured learning rate."""
        lr = float(self.hparams.optim["lr"])
        in_frontends: set[int] = set()
        groups: list[dict[str, Any]] = []
        for member in self.members:
            learning = [p for p in member.frontend.parameters() if p.requires_grad]
            in_frontends.update(id(p) for p in learning)
            if learning:
                groups.append({"params": learning, "lr": lr * member.frontend.lr_scale})
        # Frozen parameters stay in the first group, as before groups existed (they get no
        # gradient, so no step), which keeps optimizer states saved then loadable.
        rest = [p for p in self.parameters() if id(p) not in in_frontends]
        return [{"params": rest, "lr": lr}, *groups]

    def build_optimizer(self) -> torch.optim.Optimizer:
        """The configured optimizer over this model's parameter groups, without a scheduler
        (which may need the trainer: one-cycle's length is the run's number of steps)."""
        return instantiate(self.hparams.optim)(params=self.parameter_groups())

    def configure_optimizers(self) -> Any:
        optimizer = self.build_optimizer()
        if not self.hparams.scheduler:
            return optimizer
        scheduler_cfg = dict(self.hparams.scheduler)
        interval = scheduler_cfg.pop("interval", "epoch")
        if scheduler_cfg.get("total_steps") is None and "total_steps" in scheduler_cfg:
            scheduler_cfg["total_steps"] = self.trainer.estimated_stepping_batches
        per_group: dict[str, Any] = {}
        if "max_lr" in scheduler_cfg and len(optimizer.param_groups) > 1:
            # One-cycle would take every group to the same peak; keep each group's ratio to the
            # configured learning rate (passed at the call: a list in the config would reach
            # the scheduler as a ListConfig).
            lr = float(self.hparams.optim["lr"])
            peak = float(scheduler_cfg["max_lr"])
            per_group["max_lr"] = [peak * g["lr"] / lr for g in optimizer.param_groups]
        scheduler = instantiate(scheduler_cfg)(optimizer=optimizer, **per_group)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval},
        }


def _legacy_keys(state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
    """Load a checkpoint saved before ensembles: its `frontend.*` and `net.*` weights are the
    first member's."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix) :]
        if rest.startswith(LEGACY_PREFIXES):
            state_dict[f"{prefix}members.0.{rest}"] = state_dict.pop(key)
