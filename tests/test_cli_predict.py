"""The commands as a user runs them: tables, JSON/CSV, one-line errors, the `sdc` dispatcher."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import SAMPLE_RATE, digit_tone
from sdc import cli
from sdc.inference.listen import main as listen_main
from sdc.inference.predict import main as predict_main
from sdc.inference.transcribe import main as transcribe_main


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    folder = tmp_path / "audio"
    (folder / "nested").mkdir(parents=True)
    sf.write(folder / "one.wav", digit_tone(1, 1, 0), SAMPLE_RATE)
    sf.write(folder / "nested" / "nine.flac", digit_tone(9, 1, 0), SAMPLE_RATE)
    sf.write(folder / "silence.wav", np.zeros(SAMPLE_RATE), SAMPLE_RATE)
    return folder


def test_predict_prints_a_table_and_writes_json_and_csv(
    tiny_checkpoint: Path, audio: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_csv = tmp_path / "p.json", tmp_path / "p.csv"
    predict_main(
        [
            str(tiny_checkpoint),
            str(audio),
            "--threshold",
            "0.3",
            "--json",
            str(out_json),
            "--csv",
            str(out_csv),
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["file", "digit", "confidence", "top-3"]
    rows = {Path(line.split()[0]).name: line.split() for line in lines[1:]}
    assert set(rows) == {"one.wav", "nine.flac", "silence.wav"}
    assert rows["silence.wav"][1] == "-"
    records = {Path(r["file"]).name: r for r in json.loads(out_json.read_text())}
    assert records["silence.wav"]["digit"] is None and not records["silence.wav"]["speech"]
    assert len(records["one.wav"]["top"]) == 3
    with out_csv.open() as f:
        table = {Path(r["file"]).name: r for r in csv.DictReader(f)}
    assert table["one.wav"]["digit"] == records["one.wav"]["digit"] == rows["one.wav"][1]


def test_predict_reports_a_bad_file_in_one_line_and_answers_the_rest(
    tiny_checkpoint: Path, audio: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    with pytest.raises(SystemExit) as exit_:
        predict_main([str(tiny_checkpoint), str(audio / "one.wav"), str(bad)])
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    [error] = captured.err.strip().splitlines()
    assert error.startswith("error: ") and str(bad) in error
    assert "one.wav" in captured.out and "bad.wav" not in captured.out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["{tmp}/missing.ckpt", "{tmp}/x.wav"], "missing.ckpt: no such checkpoint"),
        (["{ckpt}", "{tmp}/empty_dir"], "holds no audio files"),
        (["{ckpt}", "{tmp}/x.wav", "--threshold", "2"], "threshold"),
    ],
)
def test_predict_user_mistakes_are_one_line(
    tiny_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    needle: str,
) -> None:
    (tmp_path / "empty_dir").mkdir()
    argv = [a.format(tmp=tmp_path, ckpt=tiny_checkpoint) for a in args]
    with pytest.raises(SystemExit) as exit_:
        predict_main(argv)
    assert exit_.value.code == 2
    [error] = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("error: ") and needle in error


def test_transcribe_prints_the_string_with_times(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gap = np.zeros(SAMPLE_RATE // 2)
    wave = np.concatenate([gap, digit_tone(1, 0, 0), gap, digit_tone(4, 0, 0), gap])
    sf.write(tmp_path / "pin.wav", wave, SAMPLE_RATE)
    transcribe_main(
        [str(tiny_checkpoint), str(tmp_path / "pin.wav"), "--json", str(tmp_path / "t.json")]
    )
    out = capsys.readouterr().out
    [record] = json.loads((tmp_path / "t.json").read_text())
    assert out.splitlines()[0] == f"{tmp_path / 'pin.wav'}: {record['text']}"
    assert len(record["segments"]) == 2
    assert record["segments"][0]["start"] == pytest.approx(0.5, abs=0.1)


def test_listen_over_a_wav_prints_each_digit_once(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gap = np.zeros(SAMPLE_RATE)
    wave = np.concatenate([gap, digit_tone(0, 0, 0), gap, digit_tone(9, 0, 0), gap])
    sf.write(tmp_path / "stream.wav", wave, SAMPLE_RATE)
    listen_main(
        [str(tiny_checkpoint), "--wav", str(tmp_path / "stream.wav"), "--json", "--threshold", "0"]
    )
    heard = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [round(h["start"]) for h in heard] == [1, 2]


def test_listen_without_sounddevice_says_how_to_get_it(
    tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "sounddevice", None)
    with pytest.raises(SystemExit):
        listen_main([str(tiny_checkpoint)])
    err = capsys.readouterr().err
    assert "error: the microphone needs sounddevice" in err and "--wav" in err


def test_sdc_dispatches_to_the_commands(
    tiny_checkpoint: Path, audio: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.main(["predict", str(tiny_checkpoint), str(audio / "one.wav")])
    assert "one.wav" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bogus"])
    assert exit_.value.code == 2
    assert "error: unknown command 'bogus'" in capsys.readouterr().err


def test_a_file_name_with_a_newline_stays_on_its_row(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = tmp_path / "one\ntwo.wav"
    sf.write(clip, digit_tone(1, 1, 0), SAMPLE_RATE)
    predict_main([str(tiny_checkpoint), str(clip)])
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.startswith("file") and row.startswith(f"{tmp_path}/one\\ntwo.wav ")
