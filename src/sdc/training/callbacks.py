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
