"""The test report: accuracy, per-class precision/recall/F1 and a confusion matrix.

Written once per run, for the checkpoint chosen on validation accuracy, on the test set only.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    classification_report,
    confusion_matrix,
)

from sdc.data.fsdd import Recording
from sdc.files import atomic_path, write_text


def classification_summary(
    targets: Sequence[int], predictions: Sequence[int], labels: Sequence[str]
) -> tuple[str, dict[str, Any]]:
    """The scikit-learn report as text (for people) and as a dict (for programs)."""
    ids = list(range(len(labels)))
    kwargs = {"labels": ids, "target_names": list(labels), "digits": 4, "zero_division": 0}
    text = classification_report(targets, predictions, **kwargs)
    table = classification_report(targets, predictions, output_dict=True, **kwargs)
    return text, table


def confusion_figure(
    targets: Sequence[int], predictions: Sequence[int], labels: Sequence[str], title: str
) -> Figure:
    matrix = confusion_matrix(targets, predictions, labels=list(range(len(labels))))
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ConfusionMatrixDisplay(matrix, display_labels=list(labels)).plot(
        ax=ax, colorbar=False, cmap="Blues"
    )
    ax.set_title(title)
    fig.tight_layout()
    return fig


def write_report(
    targets: Sequence[int],
    predictions: Sequence[int],
    labels: Sequence[str],
    out_dir: Path,
    title: str,
    extra: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any], Figure]:
    """Save `report.txt`, `report.json` and `confusion_matrix.png` in `out_dir`.

    Returns the text, the JSON payload and the figure (so the caller can log it too).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    text, table = classification_summary(targets, predictions, labels)
    accuracy = float(np.mean(np.asarray(targets) == np.asarray(predictions)))
    header = f"{title}\naccuracy: {accuracy:.4f} on {len(targets)} clips\n\n"
    payload = {"title": title, "accuracy": accuracy, "n": len(targets), "per_class": table}
    payload.update(extra or {})
    write_text(out_dir / "report.txt", header + text)
    write_text(out_dir / "report.json", json.dumps(payload, indent=2) + "\n")
    fig = confusion_figure(targets, predictions, labels, title)
    with atomic_path(out_dir / "confusion_matrix.png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    return header + text, payload, fig


def write_misclassified(
    recordings: Sequence[Recording], probs: torch.Tensor, labels: Sequence[str], path: Path
) -> int:
    """Save each wrong clip with its speaker, the true and predicted digit and the three most
    probable digits to `path` (CSV); return how many there were.

    Accuracy alone cannot say whether two recipes fail on the same clips, or whether a miss was
    a near tie or a confident error: this file can, for every run, without testing it again.
    """
    top_p, top_i = probs.topk(min(3, probs.shape[1]), dim=-1)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "speaker", "true", "predicted", "top1", "top2", "top3"])
    rows = 0
    for rec, ps, ids in zip(recordings, top_p.tolist(), top_i.tolist(), strict=True):
        if ids[0] == rec.digit:
            continue
        top = [f"{labels[i]}:{p:.4f}" for p, i in zip(ps, ids, strict=True)]
        writer.writerow([rec.path.name, rec.speaker, labels[rec.digit], labels[ids[0]], *top])
        rows += 1
    write_text(path, out.getvalue())
    return rows


MISCLASSIFIED_AUDIO = 8
"""Misclassified clips put in TensorBoard as audio per report: enough to hear a pattern (a
speaker, a cut-off start), few enough to keep an event file small (8 x 1 s at 8 kHz: 256 KB)."""


def log_misclassified_audio(
    writer: Any,
    recordings: Sequence[Recording],
    waves: Sequence[torch.Tensor],
    probs: torch.Tensor,
    labels: Sequence[str],
    sample_rate: int,
    prefix: str = "test",
    step: int = 0,
) -> int:
    """The first `MISCLASSIFIED_AUDIO` wrong clips as audio in TensorBoard (`writer`, a
    SummaryWriter), each tagged with its file, true and predicted digit; returns how many."""
    predicted = probs.argmax(dim=-1).tolist()
    logged = 0
    for rec, wave, guess in zip(recordings, waves, predicted, strict=True):
        if guess == rec.digit:
            continue
        tag = (
            f"{prefix}/misclassified/{rec.path.stem}_true_{labels[rec.digit]}"
            f"_predicted_{labels[guess]}"
        )
        writer.add_audio(tag, wave.float().clamp(-1, 1).unsqueeze(0), step, sample_rate)
        logged += 1
        if logged == MISCLASSIFIED_AUDIO:
            break
    return logged
