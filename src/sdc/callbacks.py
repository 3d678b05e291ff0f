"""Callbacks sdc adds to Lightning's own."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, EMAWeightAveraging
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


class EMAWeights(EMAWeightAveraging):
    """Lightning's exponential moving average of the weights, started from the fitted module.

    Validation, checkpoints (and so test, export and inference) see the average, which moves
    less from one epoch to the next than the weights under heavy augmentation: the epoch chosen
    on validation accuracy is less a lucky draw. Lightning copies the module when `fit` is set
    up, before `DigitClassifier.on_fit_start` fits the front end's global statistics; until the
    first update, the copy is refreshed so that the sanity check validates a fitted front end.
    """

    def __init__(self, decay: float) -> None:
        super().__init__(decay=decay)

    def _start_from(self, pl_module: pl.LightningModule) -> None:
        average = self._average_model
        if average is not None and int(average.n_averaged) == 0:
            average.module.load_state_dict(pl_module.state_dict())

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_from(pl_module)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_from(pl_module)
