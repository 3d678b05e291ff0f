"""`python -m sdc.train [experiment=...] [overrides]`: train, then test the best checkpoint once.

`train(cfg)` does the work and returns the metrics; `main` is the thin Hydra shell around it and
returns the metric a sweeper optimizes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.strategies.launchers import _SubprocessScriptLauncher
from pytorch_lightning.utilities.exceptions import SIGTERMException

from sdc import LABELS
from sdc.cli import run_hydra_app, user_errors
from sdc.config import config_dir
from sdc.config.validate import validate
from sdc.data.fsdd import write_split_csv
from sdc.errors import SdcError
from sdc.files import write_text
from sdc.inference.checkpoint import read_checkpoint
from sdc.training.allocator import keep_freed_memory
from sdc.training.module import DigitClassifier
from sdc.training.report import log_misclassified_audio, write_misclassified, write_report
from sdc.training.run_folder import claim_run_folder, refused_runs_leave_nothing

log = logging.getLogger(__name__)


def _plain(node: Any) -> Any:
    """Resolved plain data (dicts, lists, scalars) from a config node."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def build_module(cfg: DictConfig) -> DigitClassifier:
    """The LightningModule from the run config; its hparams are plain, resolved data."""
    return DigitClassifier(
        net=_plain(cfg.model),
        frontend=_plain(cfg.features),
        optim=_plain(cfg.optim),
        scheduler=_plain(cfg.get("scheduler")),
        labels=LABELS,
        spec_augment=_plain(cfg.get("spec_augment")),
        vtlp=_plain(cfg.get("vtlp")),
        test_time_speeds=_plain(cfg.get("test_time_speeds")) or None,
    )


def _flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run config flattened to `group.key` scalars for TensorBoard's HPARAMS view."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}")
        elif isinstance(node, list):
            flat[prefix] = str(node)
        else:
            flat[prefix] = "null" if node is None else node

    for key in cfg:
        if key not in ("paths", "hydra", "callbacks", "logger"):
            walk(_plain(cfg[key]), str(key))
    return flat


def _resume_path(cfg: DictConfig) -> str | None:
    """The checkpoint to resume from, once `read_checkpoint` has found it safe and whole."""
    path = cfg.get("ckpt_path")
    if path is None:
        return None
    if not Path(path).is_file():
        raise SdcError(f"ckpt_path: {path} is not a file")
    read_checkpoint(path)
    return str(Path(path).absolute())


# The final metrics every run reports to TensorBoard's HPARAMS view, next to its hyperparameters.
HPARAMS_METRICS = ("val_acc_best", "test_acc")


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit on train, select a checkpoint on validation (accuracy unless the experiment's
    `callbacks.model_checkpoint` says otherwise), test it once; return metrics."""
    validate(cfg)
    output_dir = Path(cfg.paths.output_dir)
    claim_run_folder(cfg, output_dir)
    resume = _resume_path(cfg)
    # Again here for a launcher's worker processes (joblib), which start with glibc's defaults.
    keep_freed_memory()
    if cfg.get("threads") is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.seed is not None:
        pl.seed_everything(cfg.seed, workers=True)
    started = time.perf_counter()

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")

    module = build_module(cfg)
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c is not None]
    if not logger:
        # Lightning refuses a learning-rate monitor without a logger; with `~logger` there is
        # nothing to monitor into, so it is left out instead of failing the run.
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    _check_not_relaunched_in_sweep(trainer)
    if cfg.seed is not None and trainer.world_size > 1:
        # Each rank its own augmentation and dropout draws (the same seed everywhere would give
        # clip i of every rank's batch the same pitch, tempo, placement and noise). The weights
        # still start equal: DDP copies rank 0's to the others.
        pl.seed_everything(cfg.seed + trainer.global_rank, workers=True)
    if trainer.is_global_zero:
        write_split_csv(datamodule.split, output_dir / "split.csv")
    if isinstance(logger, TensorBoardLogger):
        # Logged at the start too, or the HPARAMS view shows -1 for a run still training.
        logger.log_hyperparams(_flat_hparams(cfg), {f"hp/{k}": 0.0 for k in HPARAMS_METRICS})

    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    except SIGTERMException:
        raise SdcError(
            f"training stopped by SIGTERM; resume with "
            f"ckpt_path={output_dir / 'checkpoints' / 'last.ckpt'} and the same overrides"
        ) from None
    fit_seconds = time.perf_counter() - started
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    checkpoint = next(
        (c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None
    )
    best_path = checkpoint.best_model_path if checkpoint else ""
    if checkpoint and checkpoint.best_model_score is not None:
        score = float(checkpoint.best_model_score)
        metrics[f"{checkpoint.monitor}_best"] = score
        if checkpoint.monitor != "val_acc":
            # `val_acc_best` is the tested checkpoint's validation accuracy wherever it is read
            # (sweep tables, the HPARAMS view, Optuna), whatever chose that checkpoint.
            metrics["val_acc_best"] = _validation_accuracy(trainer, module, datamodule, best_path)
    elif "val_acc" in metrics:
        # No checkpoint was kept (fast_dev_run): the weights in hand are the ones tested.
        metrics["val_acc_best"] = metrics["val_acc"]

    tester = _tester(cfg, trainer) if cfg.test else None
    if tester is not None:
        # The checkpoint validation selected, or the weights in hand when none was saved
        # (fast_dev_run saves none).
        ckpt_path = best_path or None
        tester.test(
            module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False, weights_only=True
        )
        metrics["test_acc"] = float(tester.callback_metrics["test_acc"])
        metrics["test_loss"] = float(tester.callback_metrics["test_loss"])
        _report(cfg, trainer, module, datamodule, best_path, output_dir)

    metrics["fit_seconds"] = fit_seconds
    if trainer.is_global_zero:
        if isinstance(logger, TensorBoardLogger):
            final = {f"hp/{k}": metrics[k] for k in HPARAMS_METRICS if k in metrics}
            logger.log_metrics(final, step=trainer.global_step)
            logger.finalize("success")
        summary = {"best_checkpoint": best_path, "epochs": trainer.current_epoch, **metrics}
        write_text(output_dir / "metrics.json", json.dumps(summary, indent=2) + "\n")
        log.info("metrics: %s", json.dumps(summary))
    return metrics


def _validation_accuracy(
    trainer: pl.Trainer, module: DigitClassifier, datamodule: Any, path: str
) -> float:
    """Validation accuracy of the checkpoint at `path` (one more pass over the validation set)."""
    (results,) = trainer.validate(
        module, datamodule=datamodule, ckpt_path=path, verbose=False, weights_only=True
    )
    return float(results["val_acc"])


def _check_not_relaunched_in_sweep(trainer: pl.Trainer) -> None:
    """Lightning's `ddp` starts the other ranks by re-running this command line; inside a `-m`
    sweep that would start the whole sweep again in every rank."""
    launcher = trainer.strategy.launcher
    relaunches = isinstance(launcher, _SubprocessScriptLauncher) and trainer.num_devices > 1
    if relaunches and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise SdcError(
            "trainer=ddp cannot run inside a -m sweep on one machine (Lightning re-runs the "
            "command for each process): run it as single runs, or sweep with "
            "hydra/launcher=slurm, where SLURM starts the processes"
        )


def _tester(cfg: DictConfig, trainer: pl.Trainer) -> pl.Trainer | None:
    """The trainer that tests: the fitting one, or after a multi-process fit a one-device trainer
    on rank 0 (None on the other ranks).

    A multi-process test would shard the test set with a DistributedSampler, which pads it to a
    multiple of the process count (some clips counted twice) and leaves each rank a part of the
    predictions the report needs. One device sees every clip once, in loader order, which is
    also what Lightning's documentation recommends for testing.
    """
    if trainer.world_size == 1:
        return trainer
    if torch.distributed.is_initialized():
        # Otherwise the test metrics would wait to sync with ranks that no longer take part.
        torch.distributed.destroy_process_group()
    if not trainer.is_global_zero:
        return None
    return instantiate(
        cfg.trainer,
        strategy="auto",
        devices=1,
        num_nodes=1,
        logger=False,
        # Only so that Lightning finds the callback that wrote the checkpoint it restores.
        callbacks=[c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)],
        enable_model_summary=False,
    )


def _report(
    cfg: DictConfig,
    trainer: pl.Trainer,
    module: DigitClassifier,
    datamodule: Any,
    checkpoint: str,
    output_dir: Path,
) -> None:
    probs, targets = module.test_probabilities()
    predictions = probs.argmax(dim=-1)
    # The loader is not shuffled: a run that tests only some batches (debug=fdr,
    # trainer.limit_test_batches) tested the first clips.
    recordings = datamodule.split["test"][: len(targets)]
    files = [r.path.name for r in recordings]
    title = f"{cfg.name}: test split '{cfg.data.split}' ({Path(checkpoint).name or 'last weights'})"
    text, _, figure = write_report(
        targets.tolist(),
        predictions.tolist(),
        module.labels,
        output_dir / "test",
        title,
        extra={"checkpoint": checkpoint, "files": files},
    )
    write_misclassified(recordings, probs, module.labels, output_dir / "test" / "misclassified.csv")
    print(text)
    if isinstance(trainer.logger, TensorBoardLogger):
        writer, step = trainer.logger.experiment, trainer.global_step
        writer.add_figure("test/confusion_matrix", figure, step)
        writer.add_text("test/report", f"```\n{text}\n```", step)
        waves = datamodule.datasets["test"].waves[: len(targets)]
        log_misclassified_audio(
            writer, recordings, waves, probs, module.labels, module.sample_rate, step=step
        )


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def hydra_app(cfg: DictConfig) -> float | None:
    torch.set_float32_matmul_precision("high")
    with user_errors(), refused_runs_leave_nothing(cfg.paths.output_dir):
        metrics = train(cfg)
    value = metrics.get(cfg.get("optimized_metric") or "")
    # Sweepers must never see NaN: a diverged trial is the worst trial, not a crash.
    return None if value is None else (value if math.isfinite(value) else 0.0)


def main() -> None:
    run_hydra_app(hydra_app)


if __name__ == "__main__":
    main()
