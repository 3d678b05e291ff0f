"""The file index and the three splits, on file names alone."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from sdc.data.fsdd import (
    find_recordings_dir,
    index_recordings,
    split_recordings,
    write_split_csv,
)
from sdc.errors import SdcError


def fake_index(tmp_path: Path, speakers=("ann", "ben", "cid", "dan"), takes: int = 20) -> Path:
    for speaker in speakers:
        for digit in range(10):
            for take in range(takes):
                (tmp_path / f"{digit}_{speaker}_{take}.wav").touch()
    return tmp_path


def test_index_reads_digit_speaker_take(tmp_path: Path) -> None:
    fake_index(tmp_path, speakers=("ann",), takes=2)
    recordings = index_recordings(tmp_path)
    assert len(recordings) == 20
    first = recordings[0]
    assert (first.digit, first.speaker, first.index) == (0, "ann", 0)
    assert [r.path.name for r in recordings] == sorted(r.path.name for r in recordings)


def test_release_folder_and_wav_folder_are_both_accepted(tiny_fsdd: Path) -> None:
    assert find_recordings_dir(tiny_fsdd) == tiny_fsdd / "recordings"
    assert find_recordings_dir(tiny_fsdd / "recordings") == tiny_fsdd / "recordings"


def test_malformed_name_is_an_error_naming_the_file(tmp_path: Path) -> None:
    fake_index(tmp_path, speakers=("ann",), takes=1)
    (tmp_path / "hello.wav").touch()
    with pytest.raises(SdcError, match=r"hello\.wav"):
        index_recordings(tmp_path)


def test_malformed_name_is_skipped_with_a_counted_warning_when_not_strict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_index(tmp_path, speakers=("ann",), takes=1)
    (tmp_path / "hello.wav").touch()
    (tmp_path / "x_ann_1.wav").touch()
    with caplog.at_level(logging.WARNING):
        recordings = index_recordings(tmp_path, strict=False)
    assert len(recordings) == 10
    assert "skipped 2 file(s)" in caplog.text


def test_missing_or_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SdcError, match="not a folder"):
        find_recordings_dir(tmp_path / "nope")
    with pytest.raises(SdcError, match=r"no .* files"):
        index_recordings(tmp_path)


def test_random_split_is_80_10_10_stratified_and_disjoint(tmp_path: Path) -> None:
    recordings = index_recordings(fake_index(tmp_path))
    split = split_recordings(recordings, "random", seed=7)
    sizes = {name: len(subset) for name, subset in split.items()}
    assert sizes == {"train": 640, "val": 80, "test": 80}
    names = [set(r.path.name for r in split[s]) for s in ("train", "val", "test")]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert sum(len(n) for n in names) == len(recordings)
    for subset, expected in (("train", 16), ("val", 2), ("test", 2)):
        groups = Counter((r.digit, r.speaker) for r in split[subset])
        assert set(groups.values()) == {expected}, subset
        assert len(groups) == 40


def test_random_split_is_reproducible_and_seed_dependent(tmp_path: Path) -> None:
    recordings = index_recordings(fake_index(tmp_path))
    a = split_recordings(recordings, "random", seed=1)
    b = split_recordings(list(reversed(recordings)), "random", seed=1)
    c = split_recordings(recordings, "random", seed=2)
    assert a == b
    assert a["test"] != c["test"]


def test_official_split_tests_takes_0_to_4(tmp_path: Path) -> None:
    recordings = index_recordings(fake_index(tmp_path))
    split = split_recordings(recordings, "official", seed=0)
    assert {r.index for r in split["test"]} == set(range(5))
    assert len(split["test"]) == 4 * 10 * 5
    assert all(r.index >= 5 for r in split["train"] + split["val"])
    assert len(split["val"]) == round(0.1 * (len(recordings) - 200))


def test_speaker_split_holds_out_named_speakers(tmp_path: Path) -> None:
    recordings = index_recordings(fake_index(tmp_path))
    split = split_recordings(recordings, "speaker", seed=0, test_speakers=["dan"])
    assert {r.speaker for r in split["test"]} == {"dan"}
    assert "dan" not in {r.speaker for r in split["train"] + split["val"]}
    split = split_recordings(
        recordings, "speaker", seed=0, test_speakers=["dan"], val_speakers=["cid"]
    )
    assert {r.speaker for r in split["val"]} == {"cid"}
    assert {r.speaker for r in split["train"]} == {"ann", "ben"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "bogus"}, "data.split"),
        ({"split": "speaker"}, "data.test_speakers"),
        ({"split": "speaker", "test_speakers": ["zoe"]}, "unknown speaker"),
        ({"split": "speaker", "test_speakers": ["ann"], "val_speakers": ["ann"]}, "also in"),
    ],
)
def test_bad_split_settings_name_the_key(tmp_path: Path, kwargs: dict, message: str) -> None:
    recordings = index_recordings(fake_index(tmp_path, takes=2))
    split = kwargs.pop("split")
    with pytest.raises(SdcError, match=message):
        split_recordings(recordings, split, seed=0, **kwargs)


def test_split_csv_lists_every_file_once(tmp_path: Path) -> None:
    recordings = index_recordings(fake_index(tmp_path, takes=3))
    split = split_recordings(recordings, "random", seed=0)
    out = tmp_path / "run" / "split.csv"
    write_split_csv(split, out)
    lines = out.read_text().splitlines()
    assert lines[0] == "file,digit,speaker,index,subset"
    assert len(lines) == 1 + len(recordings)
    assert Counter(line.rsplit(",", 1)[1] for line in lines[1:]) == {
        s: len(split[s]) for s in ("train", "val", "test")
    }


def test_duplicates_are_dropped_with_a_counted_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sdc.data.fsdd import drop_duplicates

    for i, name in enumerate(["0_ann_0.wav", "0_ann_1.wav", "1_ann_0.wav", "1_bob_3.wav"]):
        (tmp_path / name).write_bytes(b"same" if i != 2 else b"other")
    with caplog.at_level(logging.WARNING):
        kept = drop_duplicates(index_recordings(tmp_path))
    assert [r.path.name for r in kept] == ["0_ann_0.wav", "1_ann_0.wav"]
    assert "dropped 2 duplicate file(s)" in caplog.text


def test_a_digit_with_no_clips_is_an_error_or_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sdc.data.fsdd import check_coverage

    fake_index(tmp_path, speakers=("ann",), takes=2)
    for path in tmp_path.glob("7_*.wav"):
        path.unlink()
    recordings = index_recordings(tmp_path)
    with pytest.raises(SdcError, match=r"digit\(s\) \[7\]"):
        check_coverage(recordings)
    with caplog.at_level(logging.WARNING):
        check_coverage(recordings, strict=False)
    assert "7: 0" in caplog.text
