"""`sdc evaluate ckpt_path=... [data.split=...] [subset=test]`: test any checkpoint.

`evaluate(cfg)` does the work and returns the metrics; `main` is the thin Hydra shell. The clips
are fitted to the window exactly as in training's test step (centred, zero padding, no speech
detection, no threshold), so a checkpoint evaluated on its own run's split reproduces that run's
test accuracy. The run folder gets:

- `report.txt`, `report.json`: accuracy, per-class precision/recall/F1, per-speaker accuracy;
- `confusion_matrix.png`, also in TensorBoard (`tensorboard/`) with the report;
- `per_speaker.csv` and `misclassified.csv` (each wrong file with its top-3 probabilities);
- `accuracy_vs_snr.png`: accuracy in white noise at 20, 10, 5 and 0 dB SNR and clean, also in
  TensorBoard and in `metrics.json` (`snr`).
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter

from sdc.cli import run_hydra_app, user_errors
from sdc.config import config_dir
from sdc.data.fsdd import SPLITS, SUBSETS, Recording, read_split_csv
from sdc.errors import SdcError
from sdc.evaluation.snr_curve import save_snr_plot, snr_curve, snr_points
from sdc.files import write_text
from sdc.inference.checkpoint import load_classifier
from sdc.inference.model_info import ModelInfo
from sdc.training.report import log_misclassified_audio, write_misclassified, write_report
from sdc.training.run_folder import refused_runs_leave_nothing

log = logging.getLogger(__name__)
SNR_PNG = "accuracy_vs_snr.png"


def _check(cfg: DictConfig) -> None:
    if cfg.data.split not in SPLITS:
        raise SdcError(f"data.split: expected one of {', '.join(SPLITS)}, got {cfg.data.split!r}")
    if cfg.subset not in SUBSETS:
        raise SdcError(f"subset: expected one of {', '.join(SUBSETS)}, got {cfg.subset!r}")


def _warn_if_not_the_training_split(ckpt: Path, subset: str, files: list[str]) -> None:
    """A run folder keeps its split.csv: say so when this evaluation tests other clips."""
    split_csv = ckpt.resolve().parent.parent / "split.csv"
    if not split_csv.is_file():
        return
    trained = sorted(row["file"] for row in read_split_csv(split_csv, subset))
    if trained != sorted(files):
        print(
            f"warning: this {subset} set differs from the one in {split_csv}: "
            "pass the training run's seed and data.split to test on its clips",
            file=sys.stderr,
        )


def per_speaker_accuracy(
    recordings: list[Recording], predictions: list[int]
) -> dict[str, dict[str, float]]:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for rec, predicted in zip(recordings, predictions, strict=True):
        totals[rec.speaker][0] += int(predicted == rec.digit)
        totals[rec.speaker][1] += 1
    return {
        speaker: {"n": n, "correct": correct, "accuracy": correct / n}
        for speaker, (correct, n) in sorted(totals.items())
    }


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Classify every clip of `cfg.subset`, write the reports, return the metrics."""
    _check(cfg)
    ckpt = Path(cfg.ckpt_path)
    model = load_classifier(ckpt)
    info = ModelInfo.from_hparams(dict(model.hparams))
    output_dir = Path(cfg.paths.output_dir)

    # The clips are read at the model's rate and fitted to its window, whatever `data` says.
    datamodule = instantiate(
        cfg.data, sample_rate=info.sample_rate, clip_seconds=info.window_seconds
    )
    datamodule.prepare_data()
    datamodule.setup("test")
    recordings = datamodule.split[cfg.subset]
    if len(recordings) != len(datamodule.datasets[cfg.subset]):
        raise SdcError("data.strict: some clips could not be read; fix them or remove them")
    files = [r.path.name for r in recordings]
    _warn_if_not_the_training_split(ckpt, cfg.subset, files)

    with torch.inference_mode():
        probs = torch.cat([model(w).softmax(dim=-1) for w in datamodule.clean_windows(cfg.subset)])
    predictions = probs.argmax(dim=-1).tolist()
    targets = [r.digit for r in recordings]
    speakers = per_speaker_accuracy(recordings, predictions)

    title = f"{cfg.name}: {ckpt.name} on the {cfg.subset} set of split '{cfg.data.split}'"
    text, payload, figure = write_report(
        targets,
        predictions,
        list(info.labels),
        output_dir,
        title,
        extra={
            "checkpoint": str(ckpt.resolve()),
            "split": cfg.data.split,
            "subset": cfg.subset,
            "seed": cfg.seed,
            "per_speaker": speakers,
            "files": files,
        },
    )
    speaker_text = "\n".join(
        f"{name:>12}  {s['accuracy']:.4f}  ({s['correct']}/{s['n']})"
        for name, s in speakers.items()
    )
    write_text(output_dir / "report.txt", f"{text}\naccuracy per speaker\n{speaker_text}\n")
    _write_per_speaker(speakers, output_dir / "per_speaker.csv")
    wrong = write_misclassified(recordings, probs, info.labels, output_dir / "misclassified.csv")
    clips = datamodule.datasets[cfg.subset]
    curve = snr_curve(model, clips.waves, clips.labels.tolist(), info.window, info.sample_rate)
    snr_figure = save_snr_plot(
        {ckpt.name: curve}, f"{cfg.subset} set of split '{cfg.data.split}'", output_dir / SNR_PNG
    )

    writer = SummaryWriter(str(output_dir / "tensorboard"))
    writer.add_figure(f"{cfg.subset}/confusion_matrix", figure)
    writer.add_text(f"{cfg.subset}/report", f"```\n{text}\n{speaker_text}\n```")
    writer.add_figure(f"{cfg.subset}/accuracy_vs_snr", snr_figure)
    log_misclassified_audio(
        writer, recordings, clips.waves, probs, info.labels, info.sample_rate, cfg.subset
    )
    writer.add_scalar(f"{cfg.subset}/accuracy", payload["accuracy"])
    for name, s in speakers.items():
        writer.add_scalar(f"{cfg.subset}/accuracy_{name}", s["accuracy"])
    writer.close()

    noise = ", ".join(
        f"{'clean' if snr is None else f'{snr:g} dB'} {100 * value:.1f}%"
        for snr, value in snr_points(curve)
    )
    print(f"{text}\naccuracy per speaker\n{speaker_text}\n\nin white noise: {noise}")
    print(f"{wrong} misclassified: {output_dir}")
    metrics = {
        "accuracy": payload["accuracy"],
        "n": len(targets),
        "per_speaker": speakers,
        "snr": curve,
    }
    write_text(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def _write_per_speaker(speakers: dict[str, dict[str, float]], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["speaker", "n", "correct", "accuracy"])
        for name, s in speakers.items():
            writer.writerow([name, s["n"], s["correct"], f"{s['accuracy']:.4f}"])


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="evaluate")
def hydra_app(cfg: DictConfig) -> float:
    with user_errors(), refused_runs_leave_nothing(cfg.paths.output_dir):
        return evaluate(cfg)["accuracy"]


def main() -> None:
    run_hydra_app(hydra_app)


if __name__ == "__main__":
    main()
