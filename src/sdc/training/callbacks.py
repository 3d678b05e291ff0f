"""Callbacks sdc adds to Lightning's own."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class CheckpointOnInterrupt(Callback):
    """Save `last.ckpt` when training is stopped by Ctrl-C or SIGTERM, so no work is lost.

    Lightning stops cleanly after the batch in hand on either signal and calls `on_exception`;
    `ModelCheckpoint` alone would only have the last finished epoch. The file is written
    atomically, and resuming from it (`ckpt_path=...`) continues to the same final epoch.
    """

    def __init__(self, dirpath: str | Path, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        if trainer.state.fn != "fit":
            return
        trainer.save_checkpoint(self.path)
        if trainer.is_global_zero:
            log.warning("interrupted: saved %s (resume with ckpt_path=%s)", self.path, self.path)


class TrainingSamples(Callback):
    """A few training windows as the model hears them, in TensorBoard at the first epoch: each
    augmented window's audio and its feature image, tagged with its digit.

    Audio people listen before they trust a model: a pitch shift gone wrong or noise louder
    than the speech is heard at once, where the loss only drifts. Bounded: `clips` windows, once
    (4 x 2.3 s at 8 kHz is about 300 KB). It draws no random number and computes the features
    in eval mode, so training goes exactly as without it.
    """

    def __init__(self, clips: int = 4) -> None:
        self.clips = clips

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.current_epoch != 0 or batch_idx != 0 or not trainer.is_global_zero:
            return
        if not isinstance(trainer.logger, TensorBoardLogger) or self.clips < 1:
            return
        windows, labels = batch[0][: self.clips], batch[1][: self.clips]
        frontend = pl_module.frontend
        was_training = frontend.training
        frontend.eval()
        try:
            with torch.no_grad():
                features = frontend(windows.float()).float().cpu()
        finally:
            frontend.train(was_training)
        writer = trainer.logger.experiment
        rate = int(pl_module.sample_rate)
        for i, (wave, label) in enumerate(zip(windows.float().cpu(), labels.tolist(), strict=True)):
            tag = f"train/heard_{i}_digit_{pl_module.labels[label]}"
            writer.add_audio(f"{tag}/audio", wave.clamp(-1, 1).unsqueeze(0), 0, rate)
            writer.add_figure(f"{tag}/features", feature_image(features[i, 0]), 0)


def feature_image(features: torch.Tensor) -> Figure:
    """A (coefficients, frames) feature map as a small figure, low coefficients at the bottom."""
    figure, axes = plt.subplots(figsize=(5, 2.2), layout="constrained")
    axes.imshow(features.numpy(), origin="lower", aspect="auto", cmap="magma")
    axes.set_xlabel("frame")
    axes.set_ylabel("coefficient")
    return figure
