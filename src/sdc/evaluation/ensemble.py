"""`sdc ensemble RUN RUN ... --out DIR [--weights W W ...] [--no-robustness]`: one model from
finished runs.

Models that hear the clips differently are wrong on different clips; averaging their class
probabilities fixes some of each one's errors (docs/results.md). Each member
keeps the recipe it was trained with (its own augmentation, epochs, schedule), which training
the members together in one run cannot give them. The result is an ordinary checkpoint (an
ensemble `DigitClassifier`): `evaluate`, `predict`, `transcribe`, `listen` and `export` take it.

The runs must test the same clips (the test rows of their `split.csv`): a member trained on
another split's test clips would make the ensemble's test accuracy a lie. Their training sets
may differ (one recipe adds synthetic voices). The ensemble is tested once,
on that split's test clips, and `metrics.json` says so.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from sdc.cli import ArgumentParser, positive_float, user_errors
from sdc.errors import SdcError
from sdc.evaluation.robustness import (
    SNRS_DB,
    best_checkpoint,
    robustness,
    run_test_clips,
    write_cached,
)
from sdc.files import atomic_path, write_text
from sdc.inference.checkpoint import load_classifier
from sdc.training.module import DigitClassifier

CHECKPOINT = Path("checkpoints") / "ensemble.ckpt"
"""Where in the output folder the ensemble is saved: the layout of a training run, so that what
reads run folders (`evaluate`'s split check, robustness, `best_checkpoint`) reads this one."""


def combine(models: Sequence[DigitClassifier], weights: Sequence[float]) -> DigitClassifier:
    """One ensemble of single-member models: the first model's settings, the others as
    `experts` (`member1`, `member2`, ...), each weighted against the first, their class
    probabilities averaged."""
    if len(models) < 2:
        raise SdcError(f"an ensemble needs at least two models, got {len(models)}")
    if len(weights) != len(models):
        raise SdcError(
            f"--weights: expected {len(models)} weights, one per run, got {len(weights)}"
        )
    if any(not w > 0 for w in weights):
        raise SdcError(f"--weights: expected numbers > 0, got {list(weights)}")
    for i, model in enumerate(models):
        if len(model.members) > 1:
            raise SdcError(f"run {i + 1} is an ensemble already: combine single models")
        if list(model.labels) != list(models[0].labels):
            raise SdcError(f"run {i + 1}: labels {model.labels} differ from {models[0].labels}")
    first = dict(models[0].hparams)
    experts = {
        f"member{i}": {
            "frontend": dict(model.hparams["frontend"]),
            "net": dict(model.hparams["net"]),
            "spec_augment": model.hparams.get("spec_augment"),
            "weight": weights[i] / weights[0],
        }
        for i, model in enumerate(models[1:], start=1)
    }
    ensemble = DigitClassifier(**{**first, "experts": experts})
    for member, model in zip(ensemble.members, models, strict=True):
        member.load_state_dict(model.members[0].state_dict())
    return ensemble.eval()


def _test_rows(split: str) -> list[str]:
    return [row for row in split.splitlines()[1:] if row.endswith(",test")]


def _same_test_clips(runs: Sequence[Path]) -> str:
    """The first run's split, once every run is known to test the same clips.

    Their training sets may differ (one recipe adds synthetic voices); their test sets may not,
    and a clip tested in one run is then in no run's training or validation set.
    """
    splits = []
    for run in runs:
        for path in (run / "split.csv", run / ".hydra" / "config.yaml"):
            if not path.is_file():
                raise SdcError(f"{path}: missing; is {run} a finished training run?")
        splits.append((run / "split.csv").read_text())
    for run, split in zip(runs[1:], splits[1:], strict=True):
        if _test_rows(split) != _test_rows(splits[0]):
            raise SdcError(
                f"{run}: its test clips (split.csv) differ from {runs[0]}'s: members must be "
                "trained on the same split (same data.split, seed and speakers)"
            )
    return splits[0]


def _ensemble_config(first_run_config: Path, model: DigitClassifier) -> str:
    """The first run's config (where the data is, which the test clips are read from) with the
    other members as its `experts`: a recipe of its own, never mistaken for the first run's."""
    config = OmegaConf.load(first_run_config)
    config.experts = {
        name: {
            "features": expert["frontend"],
            "model": expert["net"],
            "spec_augment": expert["spec_augment"],
            "weight": expert["weight"],
        }
        for name, expert in model.hparams["experts"].items()
    }
    return OmegaConf.to_yaml(config)


def build(
    runs: Sequence[Path],
    weights: Sequence[float],
    out: Path,
    measure_robustness: bool = True,
) -> dict[str, object]:
    """Combine the runs' selected checkpoints into `out` (their probabilities averaged), test
    the ensemble, return metrics.

    Testing under every robustness condition (`sdc.evaluation.robustness`, cached in `out` as `make
    results` caches it) costs ten times the clean test; `measure_robustness=False` tests the
    clean clips only, for splits whose robustness nobody reads (held-out speakers in `make
    results`). What is not measured can be measured later: `make results` does it where needed.
    """
    runs = [Path(r) for r in runs]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SdcError(f"{out}: a file; --out expects a new folder")
    if out.exists() and any(out.iterdir()):
        raise SdcError(f"{out}: not empty; give a new folder (nothing is overwritten)")
    split = _same_test_clips(runs)
    checkpoints = [best_checkpoint(run) for run in runs]
    model = combine([load_classifier(c) for c in checkpoints], weights)
    waves, labels = run_test_clips(runs[0])
    accuracy = robustness(
        model,
        waves,
        labels,
        model.window,
        sample_rate=model.sample_rate,
        names=None if measure_robustness else ["clean"],
    )
    config = runs[0] / ".hydra" / "config.yaml"
    with atomic_path(out / CHECKPOINT) as tmp:
        checkpoint = {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": pl.__version__,
        }
        torch.save(checkpoint, tmp)
    write_text(out / "split.csv", split)
    write_text(out / ".hydra" / "config.yaml", _ensemble_config(config, model))
    metrics = {
        "test_acc": accuracy["clean"],
        "best_checkpoint": str(out / CHECKPOINT),
        "members": [str(c) for c in checkpoints],
        "weights": list(weights),
        "test_clips": len(labels),
    }
    write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    if measure_robustness:
        # As `make results` caches it, so a table that lists this folder reuses it.
        write_cached(out, SNRS_DB, 0, model.hparams.get("test_time_speeds"), accuracy)
    return metrics


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="sdc ensemble",
        description="Combine finished runs (same split) into one model that averages them.",
    )
    parser.add_argument("runs", type=Path, nargs="+", help="run folders written by sdc train")
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the ensemble")
    parser.add_argument(
        "--weights", type=positive_float, nargs="+", help="one per run (default: equal weights)"
    )
    parser.add_argument(
        "--no-robustness",
        dest="robustness",
        action="store_false",
        help="test on the clean test clips only, not also under noise, shifts, trimming and "
        "higher voices (ten times faster)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with user_errors():
        weights = args.weights or [1.0] * len(args.runs)
        metrics = build(args.runs, weights, args.out, args.robustness)
        print(
            f"wrote {metrics['best_checkpoint']}: test accuracy {100 * metrics['test_acc']:.2f}% "
            f"on the runs' {metrics['test_clips']} test clips"
        )


if __name__ == "__main__":
    main()
