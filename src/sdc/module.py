"""The `LightningModule`: MFCC front end + network + loss, metrics and optimizer wiring.

Everything needed to rebuild the model (labels, front-end settings, network config) is stored
in the checkpoint's hyperparameters as plain data, so a checkpoint alone is a usable model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from copy import deepcopy
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torchmetrics.classification import MulticlassAccuracy

from sdc import LABELS
from sdc.audio.spec_augment import SpecAugmentConfig, spec_augment
from sdc.audio.vtlp import VtlpConfig, draw_factors
from sdc.models.fusion import fuse_conv_bn


class DigitClassifier(pl.LightningModule):
    """Classifies fixed-length 8 kHz waveform windows (B, samples) into digits."""

    def __init__(
        self,
        net: Mapping[str, Any],
        frontend: Mapping[str, Any],
        optim: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        labels: Sequence[str] = LABELS,
        spec_augment: Mapping[str, Any] | None = None,
        vtlp: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.labels = list(labels)
        # Plain data with a default, so checkpoints saved before SpecAugment existed still load.
        self.spec_augment = SpecAugmentConfig(**(spec_augment or {}))
        self.vtlp = VtlpConfig(**(vtlp or {}))
        self.frontend = instantiate(frontend)
        self.net = instantiate(
            net, input_shape=self.frontend.output_shape, n_classes=len(self.labels)
        )
        # channels_last made the CNN 25% faster to train and 3.5x faster to run on a CPU; the
        # depthwise convolutions of BC-ResNet are faster in the default layout (it says so).
        self.memory_format = (
            torch.channels_last
            if getattr(self.net, "channels_last", True)
            else torch.contiguous_format
        )
        self.net.to(memory_format=self.memory_format)
        n = len(self.labels)
        self.train_acc = MulticlassAccuracy(num_classes=n, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=n, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=n, average="micro")
        self.test_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    @property
    def window(self) -> int:
        return self.frontend.window

    def for_inference(self) -> DigitClassifier:
        """An eval-mode copy with batch norm folded into the convolutions: same logits, faster."""
        copy = deepcopy(self).eval()
        fuse_conv_bn(copy.net)
        copy.net.to(memory_format=copy.memory_format)
        return copy

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_classes) for waveform windows (B, samples)."""
        features = self.frontend(windows).contiguous(memory_format=self.memory_format)
        return self.net(features)

    def training_features(self, windows: torch.Tensor) -> torch.Tensor:
        """The front end's output with the training-only feature augmentations: VTLP's warp of
        each clip's spectrum inside the front end, then SpecAugment's masks on its output."""
        features = self.frontend(windows, warp=draw_factors(len(windows), self.vtlp, self.device))
        if self.spec_augment.p > 0:
            features = spec_augment(features, self.spec_augment)
        return features.contiguous(memory_format=self.memory_format)

    def training_logits(self, windows: torch.Tensor) -> torch.Tensor:
        """Like `forward`, with the training-only feature augmentations."""
        return self.net(self.training_features(windows))

    def on_fit_start(self) -> None:
        """Fit the front end's feature statistics on clean training windows, once per model."""
        if bool(self.frontend.fitted):
            return
        datamodule = self.trainer.datamodule
        self.frontend.fit(w.to(self.device) for w in datamodule.clean_windows("train"))

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        windows, labels = batch
        logits = self.training_logits(windows)
        loss = F.cross_entropy(logits, labels)
        self.train_acc(logits, labels)
        # Losses are plain tensors: `sync_dist` averages them over DDP ranks (metrics sync
        # themselves); it does nothing in a single process.
        self.log("train_loss", loss, on_step=True, on_epoch=True, sync_dist=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        windows, labels = batch
        logits = self(windows)
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

    def build_optimizer(self) -> torch.optim.Optimizer:
        """The configured optimizer over this model's parameters, without a scheduler (which
        may need the trainer: one-cycle's length is the run's number of steps)."""
        return instantiate(self.hparams.optim)(params=self.parameters())

    def configure_optimizers(self) -> Any:
        optimizer = self.build_optimizer()
        if not self.hparams.scheduler:
            return optimizer
        scheduler_cfg = dict(self.hparams.scheduler)
        interval = scheduler_cfg.pop("interval", "epoch")
        if scheduler_cfg.get("total_steps") is None and "total_steps" in scheduler_cfg:
            scheduler_cfg["total_steps"] = self.trainer.estimated_stepping_batches
        scheduler = instantiate(scheduler_cfg)(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval},
        }
