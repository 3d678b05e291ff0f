"""`sdc results` (`make results`): the results table, from a command.

For each row (an experiment) and each protocol (`configs/protocol/`), run the protocol's Hydra
multirun in a subprocess, then read every trial's run folder (`metrics.json`, `.hydra/`, its
best checkpoint) and write `results.md` and `results.json`: test accuracy as mean ± standard
deviation over the trials, every leave-one-speaker-out fold and the worst one, and the
robustness columns (`sdc.evaluation.robustness`) on the random split.

Each multirun goes to a new attempt folder, `<dir>/sweeps/<row>/<protocol>/<attempt>/`. With
`reuse`, finished trials found in earlier attempts are kept and only the missing ones are
trained, so an interrupted run continues where it stopped and nothing is overwritten.

A row may also be an ensemble of other rows (`results.ensembles`): their trials, trained as
above, are combined trial by trial (the same seed, the same held-out speaker) by `sdc ensemble`
into `<dir>/sweeps/<ensemble>/<protocol>/<attempt>/<n>/`, and tested like any other trial, at
its first member's test-time speeds (an ensemble takes that member's settings).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import hydra
import matplotlib.pyplot as plt
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from sdc.cli import run_hydra_app, user_errors
from sdc.config import config_dir
from sdc.errors import SdcError
from sdc.evaluation.ensemble import build as build_ensemble
from sdc.evaluation.robustness import (
    best_checkpoint,
    column_label,
    evaluate_run,
    read_cached,
    retest_run,
    speeds_or_none,
    write_cached,
)
from sdc.evaluation.snr_curve import save_snr_plot
from sdc.files import write_text
from sdc.lab.machine import summary
from sdc.lab.recipe import recipe
from sdc.training.run_folder import refused_runs_leave_nothing

SNR_PNG = "accuracy_vs_snr.png"
"""Beside results.md: each row's accuracy against the SNR of white noise."""

log = logging.getLogger(__name__)


@dataclass
class Trial:
    """One finished run of a sweep: which value it swept, and what it measured."""

    value: Any
    folder: Path
    metrics: dict[str, Any]
    robustness: dict[str, float] = field(default_factory=dict)
    speeds: list[float] | None = None
    """The test-time speeds its test accuracy was measured with (None: one hearing)."""


class Sweep(NamedTuple):
    """A row's trials of one protocol: the key the protocol sweeps, the trials in the order of
    its values, and the wall time this run spent training or combining them."""

    key: str
    trials: list[Trial]
    wall: float


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def compose_trial(row: str, protocol: str, overrides: Sequence[str]) -> DictConfig:
    """The config a trial of this row and protocol runs with, Hydra's part included."""
    arguments = [f"experiment={row}", f"protocol={protocol}", *overrides]
    if GlobalHydra.instance().is_initialized():
        cfg = compose("train", overrides=arguments, return_hydra_config=True)
    else:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("train", overrides=arguments, return_hydra_config=True)
    return cfg


def sweep_plan(
    row: str, protocol: str, overrides: Sequence[str], values: str | None = None
) -> tuple[str, list[str]]:
    """The key a protocol sweeps and the override strings of its values, e.g. ('seed', ['1']).

    `values` (e.g. "1,2") replaces the protocol's own list of values.
    """
    cfg = compose_trial(row, protocol, overrides)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params) or {}
    if len(params) != 1:
        raise SdcError(f"protocol={protocol}: expected one swept key, got {sorted(params)}")
    ((key, swept),) = params.items()
    swept = str(swept if values is None else values)
    (parsed,) = OverridesParser.create().parse_overrides([f"{key}={swept}"])
    strings = list(parsed.sweep_string_iterator()) if parsed.is_sweep_override() else [swept]
    return key, [str(s) for s in strings]


def _value_of(key: str, text: str) -> Any:
    (parsed,) = OverridesParser.create().parse_overrides([f"{key}={text}"])
    return parsed.value()


def test_time_speeds(config: DictConfig) -> list[float] | None:
    """A run config's test-time speeds (None: one hearing)."""
    return speeds_or_none(OmegaConf.select(config, "test_time_speeds"))


def finished_trials(sweeps: Path, key: str, recipes: dict[str, dict]) -> dict[str, Trial]:
    """Finished trials under every attempt of a sweep, by swept value (earliest attempt wins).

    `recipes` maps each swept value (`_key`) to the recipe it must have been trained with: a
    trial of an older recipe (an edited experiment file, a quick table's fewer epochs) never
    stands in for the current one, it is trained again in a new attempt.
    """
    found: dict[str, Trial] = {}
    for metrics_file in sorted(sweeps.glob("**/metrics.json")):
        folder = metrics_file.parent
        config_file = folder / ".hydra" / "config.yaml"
        if not config_file.is_file():
            continue
        metrics = json.loads(metrics_file.read_text())
        config = OmegaConf.load(config_file)
        if "test_acc" not in metrics:
            continue
        value = OmegaConf.select(config, key)
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        if recipes.get(_key(value)) != recipe(config):
            continue
        trial = Trial(value, folder, metrics, speeds=test_time_speeds(config))
        found.setdefault(_key(value), trial)
    return found


def run_sweep(
    row: str,
    protocol: str,
    key: str,
    values: Sequence[str],
    attempt_dir: Path,
    overrides: Sequence[str],
) -> float:
    """Train `values` of a protocol's sweep as one Hydra multirun; returns its wall time."""
    command = [
        sys.executable,
        "-m",
        "sdc.train",
        "-m",
        f"experiment={row}",
        f"protocol={protocol}",
        f"hydra.sweep.dir={attempt_dir}",
        # Trials are told apart by their saved config, and every override in a folder name
        # soon exceeds the file system's limit on name length.
        "hydra.sweep.subdir=${hydra.job.num}",
        *overrides,
        f"{key}={','.join(values)}",
    ]
    log.info("running: %s", " ".join(command))
    started = time.perf_counter()
    result = subprocess.run(command, env=dict(os.environ))
    if result.returncode != 0:
        raise SdcError(f"results: {row}/{protocol} failed (exit {result.returncode}): {command}")
    return time.perf_counter() - started


def new_attempt(sweeps: Path) -> Path:
    """A new, empty attempt folder under `sweeps`, named by the time it was made.

    Made here, not left to Hydra: two `make results` started in the same second (two lanes of
    one machine) would otherwise share a folder and write their trials over each other's.
    """
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    sweeps.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        attempt = sweeps / (stamp if n == 1 else f"{stamp}_{n}")
        try:
            attempt.mkdir()
        except FileExistsError:
            continue
        return attempt
    raise SdcError(f"{sweeps}: no free attempt folder for {stamp}")


def experiment_trials(row: str, protocol: str, opts: DictConfig, overrides: Sequence[str]) -> Sweep:
    """One row's trials of one protocol, training the missing ones: the swept key, the trials
    in the protocol's order, and the wall time spent training."""
    root = Path(opts.dir)
    key, values = sweep_plan(row, protocol, overrides, opts.sweep_values.get(protocol))
    composed = {
        _key(_value_of(key, v)): compose_trial(row, protocol, [*overrides, f"{key}={v}"])
        for v in values
    }
    recipes = {k: recipe(config) for k, config in composed.items()}
    sweeps = root / "sweeps" / row / protocol
    done = finished_trials(sweeps, key, recipes) if opts.reuse else {}
    missing = [v for v in values if _key(_value_of(key, v)) not in done]
    wall = 0.0
    if missing:
        attempt = new_attempt(sweeps)
        wall = run_sweep(row, protocol, key, missing, attempt, overrides)
        fresh = finished_trials(attempt, key, recipes)
        done.update({k: t for k, t in fresh.items() if k not in done})
    trials = [done[k] for k in (_key(_value_of(key, v)) for v in values) if k in done]
    if len(trials) < len(values):
        raise SdcError(f"results: {row}/{protocol} has {len(trials)}/{len(values)} trials")
    for trial, config in zip(trials, composed.values(), strict=True):
        hear_at(trial, test_time_speeds(config))
    return Sweep(key, trials, wall)


def hear_at(trial: Trial, speeds: list[float] | None) -> None:
    """Test a reused trial again where it was tested at other speeds than `speeds`.

    The speeds change no weight, so nothing is trained or built again: the trial's own test
    clips are heard at `speeds` (`retest_run`, cached in its folder), and its robustness is then
    measured with them too.
    """
    if trial.speeds != speeds:
        trial.metrics = {
            **trial.metrics,
            "test_acc": retest_run(trial.folder, speeds),
            "test_acc_as_trained": trial.metrics["test_acc"],
        }
        trial.speeds = speeds


@dataclass
class EnsembleRow:
    """A row that combines other rows' trials (`results.ensembles.<name>`)."""

    members: list[str]
    weights: list[float]


def _ensemble_key(metrics: dict[str, Any]) -> str | None:
    """What identifies a built ensemble: its member checkpoints and weights (None for one that
    combined its members by another rule than their mean, which sdc no longer builds)."""
    if metrics.get("rule", "mean") != "mean":
        return None
    return _key([list(metrics["members"]), list(metrics["weights"])])


def ensemble_rows(opts: DictConfig) -> dict[str, EnsembleRow]:
    """The configured ensemble rows, checked: each names two or more experiments, weights
    that are null (equal) or one positive number per member."""
    experiments = config_dir() / "experiment"
    rows: dict[str, EnsembleRow] = {}
    for name, spec in (opts.get("ensembles") or {}).items():
        where = f"results.ensembles.{name}"
        if (experiments / f"{name}.yaml").is_file():
            raise SdcError(f"{where}: the name of an experiment; give the ensemble its own name")
        members = list(spec.get("members") or [])
        unknown = [m for m in members if not (experiments / f"{m}.yaml").is_file()]
        if len(members) < 2 or unknown:
            raise SdcError(
                f"{where}.members: expected two or more experiments (configs/experiment/), "
                f"got {members}"
            )
        weights = spec.get("weights")
        weights = [1.0] * len(members) if weights is None else list(weights)
        if len(weights) != len(members) or not all(
            isinstance(w, (int, float)) and w > 0 for w in weights
        ):
            raise SdcError(
                f"{where}.weights: expected null or {len(members)} numbers > 0, got {weights}"
            )
        rows[str(name)] = EnsembleRow(members, [float(w) for w in weights])
    return rows


def _built_ensembles(sweeps: Path) -> dict[str, Path]:
    """Ensembles already built under `sweeps`, by `_ensemble_key`."""
    built: dict[str, Path] = {}
    for metrics_file in sorted(sweeps.glob("**/metrics.json")):
        metrics = json.loads(metrics_file.read_text())
        if "test_acc" in metrics and "members" in metrics:
            key = _ensemble_key(metrics)
            if key is not None:
                built.setdefault(key, metrics_file.parent)
    return built


def ensemble_trials(
    members: Sequence[Sweep], row: EnsembleRow, sweeps: Path, robust: bool = True
) -> Sweep:
    """The members' trials combined trial by trial (same seed, same held-out speaker) with
    `sdc ensemble`, each into `<sweeps>/<attempt>/<n>`; one already built from the same
    checkpoints and weights is reused. Its training time is the members' together.

    Unless `robust`, a new ensemble is tested on the clean clips only: the table reads nothing
    else of a protocol without robustness columns, and the other conditions are nine tenths
    of the build's time."""
    wall = sum(member.wall for member in members)
    attempt: Path | None = None
    built = _built_ensembles(sweeps)
    trials = []
    for n, group in enumerate(zip(*(member.trials for member in members), strict=True)):
        if any(t.value != group[0].value for t in group):
            raise SdcError(f"results: {sweeps} pairs trials of {[t.value for t in group]}")
        checkpoints = [str(best_checkpoint(t.folder)) for t in group]
        folder = built.get(_ensemble_key({"members": checkpoints, "weights": row.weights}))
        if folder is None:
            started = time.perf_counter()
            attempt = attempt or new_attempt(sweeps)
            folder = attempt / str(n)
            build_ensemble([t.folder for t in group], row.weights, folder, robust)
            wall += time.perf_counter() - started
        metrics = json.loads((folder / "metrics.json").read_text())
        metrics["fit_seconds"] = sum(float(t.metrics.get("fit_seconds", 0.0)) for t in group)
        built_speeds = test_time_speeds(OmegaConf.load(folder / ".hydra" / "config.yaml"))
        trial = Trial(group[0].value, folder, metrics, speeds=built_speeds)
        # The ensemble takes its first member's settings, so it hears as that member's row
        # does now, even when it was built from checkpoints saved with other speeds.
        hear_at(trial, group[0].speeds)
        trials.append(trial)
    return Sweep(members[0].key, trials, wall)


def check_conditions(opts: DictConfig) -> None:
    """The robustness conditions' numbers, checked before hours of training rather than after."""
    for key, low, high in (("snr_db", -20, 100), ("pitch_semitones", -12, 12)):
        values = list(opts.get(key) or [])
        if not all(isinstance(v, (int, float)) and low <= v <= high for v in values):
            raise SdcError(f"results.{key}: expected numbers from {low} to {high}, got {values}")


def collect(cfg: DictConfig) -> dict[str, Any]:
    """Train what is missing, evaluate every trial, and gather the table's numbers."""
    opts = cfg.results
    check_conditions(opts)
    ensembles = ensemble_rows(opts)
    overrides = list(opts.overrides)
    if opts.epochs is not None:
        overrides.append(f"trainer.max_epochs={int(opts.epochs)}")
    known: dict[tuple[str, str], Sweep] = {}

    def trials_of(row: str, protocol: str) -> Sweep:
        # An ensemble's members may be rows of the table too: their trials are gathered once.
        if (row, protocol) not in known:
            known[row, protocol] = experiment_trials(row, protocol, opts, overrides)
        return known[row, protocol]

    table: dict[str, Any] = {}
    for row in opts.rows:
        table[row] = {}
        for protocol in opts.protocols:
            if row in ensembles:
                members = [trials_of(m, protocol) for m in ensembles[row].members]
                sweeps = Path(opts.dir) / "sweeps" / row / protocol
                robust = protocol in opts.robustness_protocols
                key, trials, wall = ensemble_trials(members, ensembles[row], sweeps, robust)
            else:
                key, trials, wall = trials_of(row, protocol)
            if protocol in opts.robustness_protocols:
                for trial in trials:
                    trial.robustness = _robustness(trial.folder, opts, trial.speeds)
            table[row][protocol] = summarize(key, trials, wall)
    return table


def _robustness(folder: Path, opts: DictConfig, speeds: list[float] | None) -> dict[str, float]:
    """Cached in the trial's folder: evaluating a model twice gives the same numbers anyway."""
    snrs = [float(s) for s in opts.snr_db]
    shifts = [float(s) for s in opts.pitch_semitones]
    cached = read_cached(folder, snrs, opts.noise_seed, speeds, shifts)
    if cached is not None:
        return cached
    accuracy = evaluate_run(folder, snrs, int(opts.noise_seed), speeds, semitones=shifts)
    write_cached(folder, snrs, opts.noise_seed, speeds, accuracy, shifts)
    return accuracy


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def summarize(key: str, trials: Sequence[Trial], wall_seconds: float) -> dict[str, Any]:
    accuracies = [float(t.metrics["test_acc"]) for t in trials]
    summary: dict[str, Any] = {
        "swept": key,
        "test_acc": _spread(accuracies),
        "trials": [
            {
                "value": t.value,
                "folder": str(t.folder),
                "test_acc": t.metrics["test_acc"],
                "test_time_speeds": t.speeds,
            }
            for t in trials
        ],
        "train_seconds": sum(float(t.metrics.get("fit_seconds", 0.0)) for t in trials),
        "wall_seconds_this_run": wall_seconds,
    }
    if key == "data.test_speakers":
        per_speaker = {"+".join(t.value): float(t.metrics["test_acc"]) for t in trials}
        worst = min(per_speaker, key=per_speaker.__getitem__)
        summary["per_speaker"] = per_speaker
        summary["worst"] = {"speaker": worst, "test_acc": per_speaker[worst]}
    if trials and trials[0].robustness:
        names = list(trials[0].robustness)
        summary["robustness"] = {n: _spread([t.robustness[n] for t in trials]) for n in names}
    return summary


def snr_curves(table: dict[str, Any], opts: DictConfig) -> dict[str, dict[str, float]]:
    """Each row's mean accuracy clean and at each SNR, from its robustness columns."""
    curves = {}
    for row, cells in table.items():
        rob = next((c["robustness"] for c in cells.values() if "robustness" in c), {})
        points = {n: v["mean"] for n, v in rob.items() if n == "clean" or n.startswith("snr_")}
        if len(points) > 1:
            curves[row] = points
    return curves


def _pct(spread: dict[str, float]) -> str:
    text = f"{100 * spread['mean']:.2f}"
    return text + (f" ± {100 * spread['std']:.2f}" if spread["n"] > 1 else "")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def markdown(table: dict[str, Any], opts: DictConfig, host: str, wall: float) -> str:
    """The tables: accuracy per protocol with robustness, LOSO per speaker, time per sweep."""
    protocols = list(opts.protocols)
    robust = next(
        (
            cell["robustness"]
            for row in table.values()
            for cell in row.values()
            if "robustness" in cell
        ),
        {},
    )
    head = ["recipe"]
    for p in protocols:
        head += ["LOSO mean", "LOSO worst"] if p == "loso" else [p]
    head += [column_label(n) for n in robust]
    lines = [
        "Test accuracy (%), mean ± standard deviation over the trials of each protocol; "
        f"robustness columns on the {', '.join(opts.robustness_protocols)} split"
        + (f" (the noise columns drawn in {SNR_PNG})." if robust else "."),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row, cells in table.items():
        out = [f"`{row}`"]
        for p in protocols:
            cell = cells[p]
            out.append(_pct(cell["test_acc"]))
            if p == "loso":
                worst = cell["worst"]
                out.append(f"{100 * worst['test_acc']:.2f} ({worst['speaker']})")
        rob = next((c["robustness"] for c in cells.values() if "robustness" in c), {})
        out += [_pct(rob[n]) if n in rob else "" for n in robust]
        lines.append("| " + " | ".join(out) + " |")

    loso = {row: cells["loso"] for row, cells in table.items() if "loso" in cells}
    if loso:
        speakers = list(next(iter(loso.values()))["per_speaker"])
        lines += ["", "Leave one speaker out, test accuracy (%) per held-out speaker:", ""]
        lines += ["| recipe | " + " | ".join(speakers) + " |", "|" + "---|" * (len(speakers) + 1)]
        for row, cell in loso.items():
            accs = [f"{100 * cell['per_speaker'].get(s, float('nan')):.2f}" for s in speakers]
            lines.append(f"| `{row}` | " + " | ".join(accs) + " |")

    lines += ["", "Training time (sum of the trials' fit times):", ""]
    lines += ["| recipe | " + " | ".join(protocols) + " |", "|" + "---|" * (len(protocols) + 1)]
    for row, cells in table.items():
        times = [
            f"{_minutes(cells[p]['train_seconds'])} ({cells[p]['test_acc']['n']} runs)"
            for p in protocols
        ]
        lines.append(f"| `{row}` | " + " | ".join(times) + " |")
    ensembles = ensemble_rows(opts)
    for row in (r for r in table if r in ensembles):
        members = [f"`{m}`" for m in ensembles[row].members]
        weights = ", ".join(f"{w:g}" for w in ensembles[row].weights)
        lines += [
            "",
            f"`{row}` averages the class probabilities of {', '.join(members[:-1])} and "
            f"{members[-1]} (weights {weights}), trial by trial (`sdc ensemble`); its training "
            "time is theirs together.",
        ]
    # One line per set of speeds, naming every row heard at them.
    heard_by: dict[str, list[str]] = {}
    for row, cells in table.items():
        speeds = {
            tuple(t["test_time_speeds"] or ()) for cell in cells.values() for t in cell["trials"]
        }
        if speeds != {()}:
            heard = " / ".join(
                ", ".join(f"{s:g}" for s in group) or "1" for group in sorted(speeds)
            )
            heard_by.setdefault(heard, []).append(f"`{row}`")
    for heard, rows in heard_by.items():
        named = rows[0] if len(rows) == 1 else f"{', '.join(rows[:-1])} and {rows[-1]}"
        verb, their = ("is", "its") if len(rows) == 1 else ("are", "their")
        lines += [
            "",
            f"{named} {verb} tested hearing each window at speeds {heard} "
            f"(`test_time_speeds`), {their} class probabilities averaged over them.",
        ]
    epochs = "each recipe's own" if opts.epochs is None else str(opts.epochs)
    lines += [
        "",
        f"Machine: {host}. Epochs: {epochs}. This `make results` run took {_minutes(wall)}.",
    ]
    return "\n".join(lines) + "\n"


def results(cfg: DictConfig) -> dict[str, Any]:
    """Train, evaluate and write `results.md` and `results.json`; returns the JSON payload."""
    opts = cfg.results
    unknown = [p for p in opts.protocols if not (config_dir() / "protocol" / f"{p}.yaml").is_file()]
    if unknown:
        raise SdcError(f"results.protocols: unknown protocol(s) {unknown}")
    experiments, ensembles = config_dir() / "experiment", ensemble_rows(opts)
    unknown = [
        r for r in opts.rows if r not in ensembles and not (experiments / f"{r}.yaml").is_file()
    ]
    if unknown:
        raise SdcError(
            f"results.rows: unknown row(s) {unknown}; expected experiments "
            "(configs/experiment/) or results.ensembles"
        )
    started = time.perf_counter()
    table = collect(cfg)
    wall = time.perf_counter() - started
    host = summary()
    out = Path(opts.dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": host,
        "wall_seconds": wall,
        "options": OmegaConf.to_container(opts, resolve=True),
        "table": table,
    }
    write_text(out / "results.json", json.dumps(payload, indent=2) + "\n")
    write_text(out / "results.md", markdown(table, opts, host, wall))
    curves = snr_curves(table, opts)
    if curves:
        title = f"{', '.join(opts.robustness_protocols)} split, mean over trials"
        plt.close(save_snr_plot(curves, title, out / SNR_PNG))
    log.info("wrote %s", out / "results.md")
    return payload


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="results")
def hydra_app(cfg: DictConfig) -> None:
    with user_errors(), refused_runs_leave_nothing(cfg.paths.output_dir):
        results(cfg)


def main() -> None:
    run_hydra_app(hydra_app)


if __name__ == "__main__":
    main()
