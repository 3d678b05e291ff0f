"""A run's folder is never trained over, and a refused run leaves nothing behind.

Hydra makes the run folder and saves the composed config into `<run>/.hydra/` before the task
starts, so a check inside the task comes too late to keep the record of how a run already there
was trained. `RunFolder`, a Hydra callback listed in `configs/hydra/default.yaml`, makes that
check before Hydra writes anything, and notes whether the folder is new; a command whose input
is then refused (`SdcError`) removes the folder it made, if nothing worth keeping is in it
(`refused_runs_leave_nothing`). `train` repeats the check for runs that no Hydra command started
(the tests' compose API, a sweep's jobs, whose folders Hydra makes fresh).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sdc.cli import user_errors
from sdc.errors import SdcError


def claim_run_folder(cfg: DictConfig, output_dir: Path) -> None:
    """Refuse to train into a folder that already holds a run, unless continuing that run
    (`ckpt_path` inside it) or told to (`overwrite=true`).

    DDP's other ranks re-run the command into the same folder: only the first one checks.
    """
    if int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0:
        return
    previous = [p for p in (output_dir / "checkpoints", output_dir / "metrics.json") if p.exists()]
    resume = cfg.get("ckpt_path")
    continuing = resume is not None and output_dir.absolute() in Path(resume).absolute().parents
    if previous and not continuing and not cfg.get("overwrite", False):
        raise SdcError(
            f"hydra.run.dir: {output_dir} already holds a run ({previous[0].name}); "
            "choose another folder, or set overwrite=true"
        )


KEPT = ("checkpoints", "metrics.json")
"""What makes a run folder worth keeping whatever happened after: a refused run has neither."""

_fresh: set[Path] = set()
"""Run folders that did not exist when this process's Hydra run started."""


class RunFolder(Callback):
    """Before Hydra writes into a single run's folder: `claim_run_folder` for training, and a
    note of whether the folder is new."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(config.hydra.run.dir).absolute()
        if config.get("task_name") == "train":
            # Hydra turns a callback's exceptions into warnings and goes on: only an exit stops it.
            with user_errors():
                claim_run_folder(config, folder)
        if not folder.exists():
            _fresh.add(folder)


@contextmanager
def refused_runs_leave_nothing(output_dir: str | Path) -> Iterator[None]:
    """On an `SdcError` (bad input), remove the run folder this run made, unless it holds a
    checkpoint or metrics by then."""
    try:
        yield
    except SdcError:
        folder = Path(output_dir).absolute()
        if folder in _fresh and not any((folder / name).exists() for name in KEPT):
            shutil.rmtree(folder, ignore_errors=True)
        raise
