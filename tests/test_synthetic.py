"""Synthetic speakers from espeak-ng: the voices drawn, the corpus written, the training set."""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sdc.data.datamodule import FSDDDataModule
from sdc.data.fsdd import index_recordings
from sdc.data.synthetic import (
    ACCENTS,
    LEFT_OUT_VARIANTS,
    MANIFEST,
    corpus_folder,
    draw_voices,
    synthesize_corpus,
)
from sdc.errors import SdcError

pytest.importorskip("espeakng_loader", reason="the voices extra is not installed")

from sdc.data.espeak import espeak


def test_voices_are_seeded_and_leave_out_effects() -> None:
    variants = espeak().variants()
    assert {"f3", "m3", "klatt"} <= set(variants) and "Demonic" in variants
    voices = draw_voices(200, seed=3, variants=variants)
    assert voices == draw_voices(200, seed=3, variants=variants)
    assert voices != draw_voices(200, seed=4, variants=variants)
    assert len({v.speaker for v in voices}) == 200
    assert not {v.variant for v in voices} & LEFT_OUT_VARIANTS
    assert {v.accent for v in voices} == set(ACCENTS), "200 draws reach every accent"
    assert len({v.variant for v in voices}) > 50


def test_espeak_speaks_and_names_an_unknown_voice() -> None:
    engine = espeak()
    seven = engine.say("seven", "en-us+m3", rate=175, pitch=50, pitch_range=50)
    assert seven.dtype == np.float32 and 0.05 < np.abs(seven).max() <= 1.0
    assert 0.2 < len(seven) / engine.sample_rate < 1.5
    slow = engine.say("seven", "en-us+m3", rate=100, pitch=50, pitch_range=50)
    assert len(slow) > 1.3 * len(seven), "the rate is applied"
    with pytest.raises(SdcError, match="no voice 'xx-nowhere'"):
        engine.say("one", "xx-nowhere", rate=175, pitch=50, pitch_range=50)


def test_corpus_is_written_once_in_fsdd_naming(tmp_path: Path) -> None:
    folder = corpus_folder(tmp_path, voices=3, takes=2, seed=0)
    assert synthesize_corpus(folder, voices=3, takes=2, seed=0) == folder
    recordings = index_recordings(folder)
    assert len(recordings) == 3 * 10 * 2
    assert {r.digit for r in recordings} == set(range(10))
    info = sf.info(recordings[0].path)
    assert info.samplerate == 8000 and info.channels == 1
    wave, _ = sf.read(recordings[0].path)
    assert np.abs(wave).max() == pytest.approx(0.5, abs=1e-3)
    assert np.abs(wave[:10]).max() > 0 or np.abs(wave[-10:]).max() > 0, "silence is trimmed"
    rows = list(csv.DictReader((folder / MANIFEST).open()))
    assert [row["speaker"] for row in rows] == sorted({r.speaker for r in recordings})
    assert not list(tmp_path.glob(".*")), "no staging folder is left behind"
    stamp = (folder / MANIFEST).stat().st_mtime_ns
    synthesize_corpus(folder, voices=3, takes=2, seed=0)
    assert (folder / MANIFEST).stat().st_mtime_ns == stamp, "a finished corpus is reused"


def test_a_foreign_folder_is_never_overwritten(tmp_path: Path) -> None:
    folder = corpus_folder(tmp_path, voices=1, takes=1, seed=0)
    folder.mkdir(parents=True)
    (folder / "mine.txt").write_text("keep")
    with pytest.raises(SdcError, match=rf"data\.synthetic: .*{folder.name} .*no {MANIFEST}"):
        synthesize_corpus(folder, voices=1, takes=1, seed=0)
    assert (folder / "mine.txt").read_text() == "keep"


def test_synthetic_speakers_join_the_training_set_only(tmp_path: Path, tiny_fsdd: Path) -> None:
    synthetic = {"voices": 2, "takes": 1, "seed": 0, "root": str(tmp_path)}
    datamodule = FSDDDataModule(tiny_fsdd, download=False, synthetic=synthetic)
    with pytest.raises(SdcError, match="call prepare_data"):
        datamodule.setup()
    datamodule.prepare_data()
    datamodule.setup()
    speakers = {s: {r.speaker for r in recs} for s, recs in datamodule.split.items()}
    assert {"espeak0000", "espeak0001"} <= speakers["train"]
    assert speakers["val"] | speakers["test"] <= {"alice", "bob", "carol"}
    plain = FSDDDataModule(tiny_fsdd, download=False)
    plain.setup()
    assert len(datamodule.datasets["train"]) == len(plain.datasets["train"]) + 20


def test_more_voices_keep_the_first_ones_bit_for_bit(tmp_path: Path) -> None:
    small = synthesize_corpus(corpus_folder(tmp_path, 2, 1, 0), voices=2, takes=1, seed=0)
    large = synthesize_corpus(corpus_folder(tmp_path, 3, 1, 0), voices=3, takes=1, seed=0)
    for path in small.glob("*.wav"):
        assert path.read_bytes() == (large / path.name).read_bytes(), path.name
    assert len(list(large.glob("*.wav"))) == 30


def test_a_failed_synthesis_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.executable", "false")
    folder = corpus_folder(tmp_path, voices=1, takes=1, seed=0)
    with pytest.raises(SdcError, match=rf"synthesizing {folder.name} failed: exit status 1"):
        synthesize_corpus(folder, voices=1, takes=1, seed=0)
    assert list(tmp_path.iterdir()) == [], "neither the corpus nor its staging folder"


def test_a_breathy_voice_is_the_same_in_every_run(tmp_path: Path) -> None:
    # Seed 74's one speaker is variant f2, whose breath noise differs between runs unseeded.
    assert draw_voices(1, seed=74, variants=espeak().variants())[0].variant == "f2"
    first = synthesize_corpus(tmp_path / "first", voices=1, takes=1, seed=74)
    again = synthesize_corpus(tmp_path / "again", voices=1, takes=1, seed=74)
    for path in first.glob("*.wav"):
        assert path.read_bytes() == (again / path.name).read_bytes(), path.name


def test_the_child_process_warnings_reach_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    python = tmp_path / "python"
    python.write_text(
        f'#!/bin/sh\necho "a warning from the child" >&2\nexec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    monkeypatch.setattr("sys.executable", str(python))
    with caplog.at_level(logging.WARNING, logger="sdc.data.synthetic"):
        synthesize_corpus(tmp_path / "corpus", voices=1, takes=1, seed=0)
    assert "a warning from the child" in caplog.messages
