"""Callbacks sdc adds to Lightning's own."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
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


class CleanFinalEpochs(Callback):
    """Train the last `epochs` epochs on clean clips: no waveform or feature augmentation.

    The augmentation that carries a recipe to new voices and rooms leaves weights that were
    never fitted to a clip as it was recorded; a few clean epochs at the end, at the one-cycle
    schedule's low learning rate, fit them to those too (YOLOX ends its training so). Whether
    that helps is the validation set's to say: on `best` it did not (docs/accuracy.md, round
    24). Decided from the epoch number at each epoch's start, so a resumed run switches where
    an uninterrupted one does.
    """

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # `validate` requires an integer max_epochs above `clean_final_epochs`.
        first_clean = int(trainer.max_epochs or 0) - self.epochs
        augmenting = trainer.current_epoch < first_clean
        pl_module.augmenting = augmenting
        if trainer.datamodule is not None:
            trainer.datamodule.augmenting = augmenting
        if trainer.current_epoch == first_clean:
            log.info("epoch %d: training on clean clips from here on", first_clean)
