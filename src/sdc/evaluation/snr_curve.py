"""Accuracy against signal-to-noise ratio: one line per model or recipe, clean at the right.

The noise is `sdc.evaluation.robustness`'s (white, over the whole window, relative to each clip's
RMS, from a fixed seed), so `sdc evaluate`'s curve and `make results`' columns agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from sdc.evaluation.robustness import SNRS_DB, robustness

CLEAN = "clean"


def snr_points(accuracy: Mapping[str, float]) -> list[tuple[float | None, float]]:
    """`robustness`-named accuracies as (SNR in dB, accuracy) points, noisiest first; the
    clean condition is SNR None."""
    points = [
        (float(name.removeprefix("snr_").removesuffix("db")), value)
        for name, value in accuracy.items()
        if name.startswith("snr_")
    ]
    points.sort()
    if CLEAN in accuracy:
        points.append((None, accuracy[CLEAN]))
    return points


def snr_curve(
    model: torch.nn.Module,
    waves: Sequence[torch.Tensor],
    labels: Sequence[int],
    window: int,
    sample_rate: int,
    snr_db: Sequence[float] = SNRS_DB,
    seed: int = 0,
) -> dict[str, float]:
    """Accuracy on the clean clips and at each SNR, keyed as `robustness` names them."""
    names = [CLEAN, *(f"snr_{snr:g}db" for snr in snr_db)]
    return robustness(
        model, waves, labels, window, snr_db, seed, sample_rate=sample_rate, names=names
    )


def plot_snr_curves(curves: Mapping[str, Mapping[str, float]], title: str) -> Figure:
    """One line per name; x is the SNR (dB), with clean audio as the rightmost point."""
    figure, axes = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    ticks: dict[float, str] = {}
    for name, accuracy in curves.items():
        points = snr_points(accuracy)
        noisy = [snr for snr, _ in points if snr is not None]
        clean_x = (max(noisy) + 10.0) if noisy else 0.0
        xs = [clean_x if snr is None else snr for snr, _ in points]
        ys = [100 * value for _, value in points]
        axes.plot(xs, ys, marker="o", label=name)
        ticks.update(
            {
                x: CLEAN if snr is None else f"{snr:g}"
                for x, (snr, _) in zip(xs, points, strict=True)
            }
        )
    axes.set_xticks(list(ticks), list(ticks.values()))
    axes.set_xlabel("signal-to-noise ratio (dB), white noise")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return figure


def save_snr_plot(curves: Mapping[str, Mapping[str, float]], title: str, path: Path) -> Figure:
    """`plot_snr_curves` written as a PNG at `path`; the figure is returned for TensorBoard."""
    figure = plot_snr_curves(curves, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return figure
