"""A run's folder is never trained over, and a refused run writes nothing into it.

Hydra saves the composed config into `<run>/.hydra/` before the task starts, so a check inside
the task comes too late to keep the record of how the run already there was trained.
`ClaimRunFolder`, a Hydra callback listed in `configs/train.yaml`, makes the same check before
Hydra writes anything; `train` repeats it for runs that no Hydra command started (the tests'
compose API, a sweep's jobs, whose folders Hydra makes fresh).
"""

from __future__ import annotations

import os
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


class ClaimRunFolder(Callback):
    """`claim_run_folder` for a single run, before Hydra writes its config into the folder."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra turns a callback's exceptions into warnings and goes on: only an exit stops it.
        with user_errors():
            claim_run_folder(config, Path(config.hydra.run.dir))
