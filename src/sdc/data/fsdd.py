"""The FSDD file index and its splits.

A clip's identity is its file name, `{digit}_{speaker}_{index}.wav`; everything a split needs
(label, speaker, take) is read from that name, so splitting never touches audio.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sdc.errors import SdcError
from sdc.files import write_text

log = logging.getLogger(__name__)

FILENAME = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>[A-Za-z0-9-]+)_(?P<index>[0-9]+)\.wav$")
SUBSETS = ("train", "val", "test")
SPLITS = ("random", "official", "speaker")
OFFICIAL_TEST_TAKES = range(5)
"""FSDD's own split: takes 0-4 of every speaker and digit are the test set."""


@dataclass(frozen=True, order=True)
class Recording:
    """One file of the dataset, described by its name alone."""

    path: Path
    digit: int
    speaker: str
    index: int


def find_recordings_dir(root: Path) -> Path:
    """Accept either the release folder (with `recordings/`) or a folder of WAVs."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise SdcError(f"data.root: {root} is not a folder")
    nested = root / "recordings"
    return nested if nested.is_dir() else root


def index_recordings(folder: Path, strict: bool = True) -> list[Recording]:
    """List the recordings in `folder`, sorted by file name so every OS sees the same order.

    Names that do not follow `{digit}_{speaker}_{index}.wav` are an error naming the file, or
    with `strict=False` are skipped with one warning that counts them.
    """
    folder = Path(folder)
    recordings: list[Recording] = []
    malformed: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() != ".wav" or not path.is_file():
            continue
        match = FILENAME.match(path.name)
        if match is None:
            if strict:
                raise SdcError(
                    f"{path}: file name does not match {{digit}}_{{speaker}}_{{index}}.wav "
                    "(set data.strict=false to skip such files)"
                )
            malformed.append(path.name)
            continue
        recordings.append(
            Recording(path, int(match["digit"]), match["speaker"], int(match["index"]))
        )
    if malformed:
        log.warning(
            "skipped %d file(s) in %s whose names do not match {digit}_{speaker}_{index}.wav, "
            "e.g. %s",
            len(malformed),
            folder,
            malformed[0],
        )
    if not recordings:
        raise SdcError(f"data.root: no {{digit}}_{{speaker}}_{{index}}.wav files in {folder}")
    return recordings


def drop_duplicates(recordings: Sequence[Recording]) -> list[Recording]:
    """Keep one of each set of byte-identical files, with a warning that counts them.

    A copy under another name could land in training and test at once and inflate the test
    accuracy; the first name in sorted order is kept.
    """
    seen: dict[str, Recording] = {}
    kept: list[Recording] = []
    dropped: list[tuple[Recording, Recording]] = []
    for rec in sorted(recordings):
        try:
            digest = hashlib.sha256(rec.path.read_bytes()).hexdigest()
        except OSError as err:
            raise SdcError(f"{rec.path}: cannot read the file ({err.strerror})") from None
        if digest in seen:
            dropped.append((rec, seen[digest]))
            continue
        seen[digest] = rec
        kept.append(rec)
    if dropped:
        copy, original = dropped[0]
        log.warning(
            "dropped %d duplicate file(s) (identical bytes under another name), e.g. %s = %s",
            len(dropped),
            copy.path.name,
            original.path.name,
        )
    return kept


def check_coverage(recordings: Sequence[Recording], strict: bool = True) -> None:
    """Every digit needs clips, or the model silently never learns to say it."""
    counts = {digit: 0 for digit in range(10)}
    for rec in recordings:
        counts[rec.digit] += 1
    missing = [digit for digit, n in counts.items() if n == 0]
    if missing:
        message = f"data.root: no clips of digit(s) {missing}; clips per digit: {counts}"
        if strict:
            raise SdcError(message + " (set data.strict=false to train anyway)")
        log.warning(message)


def _stable_key(seed: int, name: str) -> str:
    """A seeded, platform-independent shuffle key: a clip's place depends on its name only."""
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def _stratified(
    recordings: Sequence[Recording], fractions: dict[str, float], seed: int
) -> dict[str, list[Recording]]:
    """Split by `fractions` so that every subset keeps the mix of digits and speakers.

    Each (digit, speaker) group is shuffled and cut by its share; when a share is fractional
    (15 takes at 10% is 1.5 clips) the spare clip goes to the subset furthest below its share
    of the dataset so far. Every group is thus within one clip of its share and every subset
    within one clip of its share of the whole. (scikit-learn's stratified split refuses groups
    smaller than the number of subsets, which small or partial datasets have.)
    """
    groups: dict[tuple[int, str], list[Recording]] = {}
    for rec in recordings:
        groups.setdefault((rec.digit, rec.speaker), []).append(rec)
    names = list(fractions)
    out: dict[str, list[Recording]] = {name: [] for name in names}
    ideal = dict.fromkeys(names, 0.0)
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda r: _stable_key(seed, r.path.name))
        n = len(members)
        counts = {name: math.floor(n * fractions[name]) for name in names}
        for name in names:
            ideal[name] += n * fractions[name]
        behind = sorted(names, key=lambda nm: -(ideal[nm] - len(out[nm]) - counts[nm]))
        for name in behind[: n - sum(counts.values())]:
            counts[name] += 1
        start = 0
        for name in names:
            out[name].extend(members[start : start + counts[name]])
            start += counts[name]
    return {name: sorted(subset) for name, subset in out.items()}


def split_recordings(
    recordings: Sequence[Recording],
    split: str,
    seed: int,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    test_speakers: Sequence[str] = (),
    val_speakers: Sequence[str] = (),
) -> dict[str, list[Recording]]:
    """Assign every recording to train, val or test.

    - `random`: stratified by digit and speaker, `val_fraction`/`test_fraction` of each group.
    - `official`: takes 0-4 are test; validation is carved from the rest, stratified.
    - `speaker`: `test_speakers` are test, `val_speakers` (if any) are val, otherwise validation
      is carved from the training speakers, stratified.
    """
    if split not in SPLITS:
        raise SdcError(f"data.split: expected one of {', '.join(SPLITS)}, got {split!r}")
    if split == "random":
        train_fraction = 1.0 - val_fraction - test_fraction
        return _stratified(
            recordings, {"train": train_fraction, "val": val_fraction, "test": test_fraction}, seed
        )
    if split == "official":
        test = [r for r in recordings if r.index in OFFICIAL_TEST_TAKES]
        rest = [r for r in recordings if r.index not in OFFICIAL_TEST_TAKES]
        carved = _stratified(rest, {"train": 1.0 - val_fraction, "val": val_fraction}, seed)
        return {"train": carved["train"], "val": carved["val"], "test": sorted(test)}

    speakers = {r.speaker for r in recordings}
    if not test_speakers:
        raise SdcError("data.test_speakers: the speaker split needs at least one test speaker")
    for key, named in (("data.test_speakers", test_speakers), ("data.val_speakers", val_speakers)):
        unknown = sorted(set(named) - speakers)
        if unknown:
            raise SdcError(f"{key}: unknown speaker(s) {unknown}; known: {sorted(speakers)}")
    overlap = sorted(set(test_speakers) & set(val_speakers))
    if overlap:
        raise SdcError(f"data.val_speakers: {overlap} are also in data.test_speakers")
    test = [r for r in recordings if r.speaker in test_speakers]
    if val_speakers:
        val = [r for r in recordings if r.speaker in val_speakers]
        train = [r for r in recordings if r.speaker not in {*test_speakers, *val_speakers}]
    else:
        rest = [r for r in recordings if r.speaker not in test_speakers]
        carved = _stratified(rest, {"train": 1.0 - val_fraction, "val": val_fraction}, seed)
        train, val = carved["train"], carved["val"]
    if not train:
        raise SdcError("data.test_speakers/data.val_speakers: no speaker is left for training")
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def write_split_csv(split: dict[str, list[Recording]], path: Path) -> None:
    """Record which file went where, so a run's test set can be audited or reused later."""
    lines = ["file,digit,speaker,index,subset"]
    for subset in SUBSETS:
        lines += [f"{r.path.name},{r.digit},{r.speaker},{r.index},{subset}" for r in split[subset]]
    write_text(path, "\n".join(lines) + "\n")


def read_split_csv(path: Path, subset: str) -> list[dict[str, str]]:
    """The rows (file, digit, speaker, index) of one subset of a `write_split_csv` file."""
    with Path(path).open(newline="") as f:
        return [row for row in csv.DictReader(f) if row.get("subset") == subset]
