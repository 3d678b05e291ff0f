"""Test accuracy under conditions the test set lacks: white noise at fixed signal-to-noise
ratios, the clip at the very start or end of the window instead of its centre, the clip cut
tight at both ends as a voice activity detector may leave it, and the voice made higher.

The noise is Gaussian over the whole window, padding included, at an SNR relative to each clip's
RMS over its own samples, drawn from a fixed seed so that every model hears the same noise.

FSDD's six speakers are adult men; the voices a user brings are also women's and children's,
4-12 semitones higher. The `pitch` conditions stand in for them, crudely: each clip resampled
so that its pitch and formants rise together by a number of semitones (a shorter vocal tract),
its duration then restored by the phase-locked vocoder. That is the transform the recipes' own
`pitch_shift` augmentation applies, so a recipe trained on such shifts has heard this artefact
before; the figures rank recipes on higher voices, they do not replace real ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.nn.utils.rnn import pad_sequence

import sdc.config  # noqa: F401  (registers the resolver that saved run configs use)
from sdc.audio.augment.cuts import trim_quiet_ends
from sdc.audio.augment.noise import noise_std_for_snr
from sdc.audio.augment.resample import Resamplers, speed_change
from sdc.audio.augment.vocoder import phase_vocoder_stretch
from sdc.audio.io import read_audio
from sdc.audio.window import fit_to_window
from sdc.data.fsdd import FILENAME, find_recordings_dir, read_split_csv
from sdc.errors import SdcError
from sdc.files import write_text
from sdc.inference.checkpoint import load_classifier
from sdc.training.module import DigitClassifier

SNRS_DB = (20.0, 10.0, 5.0, 0.0)
SEMITONES = (4.0, 8.0)
"""The `pitch` conditions' shifts. +4 raises the formants 26%, between women's (15-20% above
men's) and children's (30-40%); +8 raises them 59%, beyond. Pitch rises as much: a man's 120 Hz
becomes 151 Hz and 190 Hz, where women's voices begin."""
TRIM_DB = 15.0
"""The `trimmed` condition cuts each clip's start and end where they are quieter than this many
dB below its loudest 10 ms: a tight endpointer, which drops weak onsets and codas such as the
"s" of "six" (FSDD's own trimming left some speakers' clips about this tight)."""

Condition = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]

CACHE = "robustness.json"
"""A run folder's robustness figures, with the SNRs, noise seed and test-time speeds they were
measured with."""
RETEST = "retest.json"
"""A run folder's test accuracy at other test-time speeds than it was trained with."""


def conditions(
    window: int,
    snr_db: Sequence[float] = SNRS_DB,
    sample_rate: int = 8000,
    semitones: Sequence[float] = SEMITONES,
) -> dict[str, Condition]:
    """Name -> how a padded batch (waves, lengths) becomes the windows the model hears."""
    resamplers = Resamplers()

    def placed(position: float) -> Condition:
        def make(waves: torch.Tensor, lengths: torch.Tensor, _: torch.Generator) -> torch.Tensor:
            return fit_to_window(waves, lengths, window, torch.full((len(waves),), position))

        return make

    def noisy(snr: float) -> Condition:
        def make(waves: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            windows = fit_to_window(waves, lengths, window)
            std = noise_std_for_snr(windows, lengths, torch.full((len(waves),), float(snr)))
            noise = torch.randn(windows.shape, generator=gen, dtype=windows.dtype)
            return windows + noise * std.unsqueeze(1)

        return make

    def trimmed(waves: torch.Tensor, lengths: torch.Tensor, _: torch.Generator) -> torch.Tensor:
        threshold = torch.full((len(waves),), -TRIM_DB)
        cut, cut_lengths = trim_quiet_ends(waves, lengths, threshold, sample_rate)
        return fit_to_window(cut, cut_lengths, window)

    def pitched(shift: float) -> Condition:
        def make(waves: torch.Tensor, lengths: torch.Tensor, _: torch.Generator) -> torch.Tensor:
            factors = torch.full((len(waves),), 2.0 ** (shift / 12))
            higher, shorter, applied = speed_change(
                waves, lengths, factors, sample_rate, resamplers
            )
            # Back to the clip's own duration: only the voice changes, not the speaking rate.
            restored, restored_lengths = phase_vocoder_stretch(higher, shorter, 1 / applied)
            return fit_to_window(restored, restored_lengths, window)

        return make

    named = {"clean": placed(0.5)}
    named.update({f"snr_{snr:g}db": noisy(snr) for snr in snr_db})
    named.update({"start": placed(0.0), "end": placed(1.0), f"trimmed_{TRIM_DB:g}db": trimmed})
    named.update({f"pitch_{shift:+g}st": pitched(shift) for shift in semitones})
    return named


def column_label(name: str) -> str:
    """A condition's name as a table's column says it: `snr_10db` -> `noise 10 dB`."""
    if name.startswith("pitch_"):
        return f"pitch {name.removeprefix('pitch_').removesuffix('st')} st"
    return name.replace("snr_", "noise ").replace("trimmed_", "trimmed ").replace("db", " dB")


@torch.no_grad()
def robustness(
    model: torch.nn.Module,
    waves: Sequence[torch.Tensor],
    labels: Sequence[int],
    window: int,
    snr_db: Sequence[float] = SNRS_DB,
    seed: int = 0,
    batch_size: int = 250,
    sample_rate: int = 8000,
    names: Sequence[str] | None = None,
    semitones: Sequence[float] = SEMITONES,
) -> dict[str, float]:
    """Accuracy of `model` (waveform windows in, logits out) under each condition (those in
    `names`, if given)."""
    model.eval()
    device = next(model.parameters()).device
    targets = torch.as_tensor(list(labels))
    accuracy: dict[str, float] = {}
    for name, condition in conditions(window, snr_db, sample_rate, semitones).items():
        if names is not None and name not in names:
            continue
        generator = torch.Generator().manual_seed(seed)
        correct = 0
        for start in range(0, len(waves), batch_size):
            chunk = list(waves[start : start + batch_size])
            lengths = torch.tensor([len(w) for w in chunk])
            windows = condition(pad_sequence(chunk, batch_first=True), lengths, generator)
            predicted = model(windows.to(device)).argmax(dim=-1).cpu()
            correct += int((predicted == targets[start : start + len(chunk)]).sum())
        accuracy[name] = correct / max(len(waves), 1)
    return accuracy


def run_test_clips(run_dir: Path) -> tuple[list[torch.Tensor], list[int]]:
    """The test clips of a finished run, from its `split.csv` and its config's data root."""
    run_dir = Path(run_dir)
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    folder = find_recordings_dir(Path(str(config.data.root)))
    split = run_dir / "split.csv"
    if not split.is_file():
        raise SdcError(f"{split}: missing; is {run_dir} a finished training run?")
    waves: list[torch.Tensor] = []
    labels: list[int] = []
    for row in read_split_csv(split, "test"):
        if FILENAME.match(row["file"]):
            waves.append(read_audio(folder / row["file"], int(config.data.sample_rate)))
            labels.append(int(row["digit"]))
    return waves, labels


def best_checkpoint(run_dir: Path) -> Path:
    """The checkpoint a finished run selected (its `metrics.json` says which).

    The path recorded is where the run wrote it; a run folder copied from another machine (a
    GPU server, a cluster) holds the same file under its own `checkpoints/`, which is used then.
    """
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    recorded = metrics.get("best_checkpoint") or ""
    if recorded:
        for candidate in (Path(recorded), run_dir / "checkpoints" / Path(recorded).name):
            if candidate.is_file():
                return candidate
    raise SdcError(f"{run_dir}: no best checkpoint to evaluate ({recorded!r})")


def speeds_or_none(test_time_speeds: Sequence[float] | None) -> list[float] | None:
    """Test-time speeds as plain floats, as caches store them; none (null or []) is one
    hearing, None."""
    return [float(s) for s in test_time_speeds] if test_time_speeds else None


def load_run_model(run_dir: Path, test_time_speeds: Sequence[float] | None) -> DigitClassifier:
    """A finished run's selected checkpoint, hearing each window at `test_time_speeds` (None:
    once), whatever the run was trained with: the speeds change no weight."""
    return load_classifier(
        best_checkpoint(run_dir), test_time_speeds=speeds_or_none(test_time_speeds)
    )


def evaluate_run(
    run_dir: Path,
    snr_db: Sequence[float] = SNRS_DB,
    seed: int = 0,
    test_time_speeds: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    semitones: Sequence[float] = SEMITONES,
) -> dict[str, float]:
    """Robustness of a finished run's selected checkpoint on that run's own test clips, heard
    at `test_time_speeds` (None: once)."""
    model = load_run_model(Path(run_dir), test_time_speeds)
    waves, labels = run_test_clips(Path(run_dir))
    return robustness(
        model,
        waves,
        labels,
        model.window,
        snr_db,
        seed,
        sample_rate=model.sample_rate,
        names=names,
        semitones=semitones,
    )


def read_cached(
    folder: Path,
    snr_db: Sequence[float],
    seed: int,
    test_time_speeds: Sequence[float] | None,
    semitones: Sequence[float] = SEMITONES,
) -> dict[str, float] | None:
    """The run's cached figures if they were measured under these conditions, else None (a
    cache written before test-time speeds or pitch conditions existed was measured without
    them)."""
    cache = Path(folder) / CACHE
    if not cache.is_file():
        return None
    saved = json.loads(cache.read_text())
    snrs, shifts = [float(s) for s in snr_db], [float(s) for s in semitones]
    same = (
        saved.get("snr_db") == snrs
        and saved.get("semitones", []) == shifts
        and saved.get("seed") == seed
        and saved.get("test_time_speeds") == speeds_or_none(test_time_speeds)
    )
    if same and list(saved.get("accuracy", {})) == list(conditions(1, snrs, semitones=shifts)):
        return saved["accuracy"]
    return None


def write_cached(
    folder: Path,
    snr_db: Sequence[float],
    seed: int,
    test_time_speeds: Sequence[float] | None,
    accuracy: dict[str, float],
    semitones: Sequence[float] = SEMITONES,
) -> None:
    payload = {
        "snr_db": [float(s) for s in snr_db],
        "semitones": [float(s) for s in semitones],
        "seed": seed,
        "test_time_speeds": speeds_or_none(test_time_speeds),
        "accuracy": accuracy,
    }
    write_text(Path(folder) / CACHE, json.dumps(payload, indent=2) + "\n")


def retest_run(run_dir: Path, test_time_speeds: Sequence[float] | None) -> float:
    """A finished run's test accuracy at other test-time speeds than it was trained with.

    Cached in the run folder (`retest.json`, one entry per set of speeds, appended): the run's
    own `metrics.json` keeps what its training measured.
    """
    cache = Path(run_dir) / RETEST
    entries = json.loads(cache.read_text())["entries"] if cache.is_file() else []
    speeds = speeds_or_none(test_time_speeds)
    for entry in entries:
        if entry["test_time_speeds"] == speeds:
            return float(entry["test_acc"])
    accuracy = evaluate_run(Path(run_dir), (), test_time_speeds=speeds, names=["clean"])["clean"]
    entries.append({"test_time_speeds": speeds, "test_acc": accuracy})
    write_text(cache, json.dumps({"entries": entries}, indent=2) + "\n")
    return accuracy
