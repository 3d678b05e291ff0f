"""`sdc sweep-report <sweep folder>`: a sweep's trials, best validation accuracy first.

Reads each trial folder's `metrics.json` (written by `sdc.train`) and `.hydra/overrides.yaml`,
prints a markdown table and saves it as `sweep_report.md` and `sweep_report.csv` in the sweep
folder. Overrides shared by every trial are listed once above the table, so the table shows only
what the trials vary. A trial without `metrics.json` (failed or still running) is listed last.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from sdc.cli import ArgumentParser, user_errors
from sdc.errors import SdcError
from sdc.files import write_text

REPORT_NAME = "sweep_report"


@dataclass(frozen=True)
class Trial:
    folder: Path
    overrides: tuple[str, ...]
    finished: bool
    val_acc_best: float | None
    test_acc: float | None
    epochs: int | None
    fit_seconds: float | None

    @property
    def status(self) -> str:
        return "done" if self.finished else "no metrics.json"


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def read_trial(folder: Path) -> Trial:
    overrides_file = folder / ".hydra" / "overrides.yaml"
    overrides = OmegaConf.load(overrides_file) if overrides_file.is_file() else []
    metrics_file = folder / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    epochs = metrics.get("epochs")
    return Trial(
        folder=folder,
        overrides=tuple(str(o) for o in overrides),
        finished=metrics_file.is_file(),
        val_acc_best=_number(metrics.get("val_acc_best")),
        test_acc=_number(metrics.get("test_acc")),
        epochs=epochs if isinstance(epochs, int) else None,
        fit_seconds=_number(metrics.get("fit_seconds")),
    )


def find_trials(sweep_dir: Path) -> list[Trial]:
    """The sweep's trials, best validation accuracy first; ties keep the trial order."""
    if not sweep_dir.is_dir():
        raise SdcError(f"{sweep_dir}: no such sweep folder")
    folders = [
        p
        for p in sweep_dir.iterdir()
        if p.is_dir() and ((p / "metrics.json").is_file() or (p / ".hydra").is_dir())
    ]
    if not folders:
        raise SdcError(
            f"{sweep_dir}: no trials in it (no sub-folder with metrics.json or .hydra/); "
            "pass the folder of a -m sweep, e.g. outputs/multiruns/<date>/<time>_<name>"
        )
    trials = [read_trial(p) for p in sorted(folders, key=_trial_order)]
    return sorted(trials, key=lambda t: -t.val_acc_best if t.val_acc_best is not None else 1.0)


def _trial_order(folder: Path) -> tuple[int, str]:
    """Hydra's job number (`3_optim.lr=...`, `trial_3`) when the name has one, else the name."""
    number = re.match(r"(?:trial_)?(\d+)", folder.name)
    return (int(number.group(1)) if number else 1 << 30, folder.name)


def _shared(trials: list[Trial]) -> list[str]:
    """Overrides every trial has, in the first trial's order."""
    common = set.intersection(*(set(t.overrides) for t in trials))
    return [o for o in trials[0].overrides if o in common]


def _fmt(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def report_rows(trials: list[Trial]) -> list[dict[str, str]]:
    shared = set(_shared(trials))
    return [
        {
            "rank": str(rank),
            "trial": trial.folder.name,
            "val_acc_best": _fmt(trial.val_acc_best),
            "test_acc": _fmt(trial.test_acc),
            "epochs": _fmt(trial.epochs),
            "fit_seconds": _fmt(trial.fit_seconds, 1),
            "overrides": " ".join(o for o in trial.overrides if o not in shared),
            "status": trial.status,
        }
        for rank, trial in enumerate(trials, start=1)
    ]


def markdown(sweep_dir: Path, trials: list[Trial]) -> str:
    rows = report_rows(trials)
    done = sum(t.finished for t in trials)
    columns = ["rank", "val_acc_best", "test_acc", "epochs", "fit_seconds", "overrides", "trial"]
    if done < len(trials):
        columns.append("status")
    shared = _shared(trials)
    lines = [
        f"# Sweep {sweep_dir}",
        "",
        f"{len(trials)} trials ({done} finished), best validation accuracy first.",
        f"Shared overrides: {' '.join(f'`{o}`' for o in shared) if shared else 'none'}",
        "",
        "| " + " | ".join(columns) + " |",
        "|"
        + "|".join("---" if c in ("overrides", "trial", "status") else "---:" for c in columns)
        + "|",
    ]
    for row in rows:
        row["overrides"] = f"`{row['overrides']}`" if row["overrides"] else ""
        lines.append("| " + " | ".join(row[c] for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_sweep_report(sweep_dir: Path) -> tuple[str, Path, Path]:
    """Save `sweep_report.md` and `sweep_report.csv` in the sweep folder; return the markdown
    and both paths."""
    trials = find_trials(sweep_dir)
    text = markdown(sweep_dir, trials)
    md_path = sweep_dir / f"{REPORT_NAME}.md"
    csv_path = sweep_dir / f"{REPORT_NAME}.csv"
    write_text(md_path, text)
    rows = report_rows(trials)
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return text, md_path, csv_path


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(
        prog="sdc sweep-report",
        description="Rank a sweep's trials by validation accuracy (from each trial's "
        "metrics.json and .hydra/overrides.yaml); save sweep_report.md and .csv beside them.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a -m sweep's folder")
    args = parser.parse_args(argv)
    with user_errors():
        text, md_path, csv_path = write_sweep_report(args.sweep_dir)
    print(text)
    print(f"saved {md_path} and {csv_path}")


if __name__ == "__main__":
    main()
