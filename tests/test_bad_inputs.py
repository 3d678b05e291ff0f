"""Every command-line entry point against one list of bad inputs.

Each case must end with exit status 2 and exactly one `error:` line on stderr that names the
input at fault; no traceback; nothing partial left behind; nothing the user had overwritten.
The argparse commands run in this process; the Hydra commands (train, evaluate, results, bench)
run as a user runs them, in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from conftest import SAMPLE_RATE, digit_tone
from sdc import cli

REPO = Path(__file__).resolve().parents[1]
PRECIOUS = b"a file the user keeps"


@pytest.fixture
def inputs(tmp_path: Path, tiny_checkpoint: Path) -> dict[str, str]:
    """The shared bad inputs (and a few good ones to put beside them), by name."""
    good = tmp_path / "good.wav"
    sf.write(good, digit_tone(1, 1, 0), SAMPLE_RATE, "PCM_16")
    whole = good.read_bytes()
    (tmp_path / "truncated.wav").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "garbage.wav").write_text("this is a text file, not audio\n" * 20)
    (tmp_path / "garbage.ckpt").write_bytes(os.urandom(2048))
    (tmp_path / "folder.wav").mkdir()
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "precious.txt").write_bytes(PRECIOUS)
    return {
        "ckpt": str(tiny_checkpoint),
        "good": str(good),
        "missing": str(tmp_path / "missing.wav"),
        "missing_ckpt": str(tmp_path / "missing.ckpt"),
        "empty": str(tmp_path / "empty.wav"),
        "garbage": str(tmp_path / "garbage.wav"),
        "garbage_ckpt": str(tmp_path / "garbage.ckpt"),
        "truncated": str(tmp_path / "truncated.wav"),
        "folder": str(tmp_path / "folder.wav"),
        "a_folder": str(tmp_path / "a_folder"),
        "file": str(tmp_path / "precious.txt"),
        "under_a_file": str(tmp_path / "precious.txt" / "out.json"),
    }


# (command, arguments, the input the error must name); {name} is filled from `inputs`.
ARGPARSE_CASES = [
    ("predict", ["{ckpt}", "{missing}"], "{missing}"),
    ("predict", ["{ckpt}", "{empty}"], "{empty}"),
    ("predict", ["{ckpt}", "{garbage}"], "{garbage}"),
    ("predict", ["{ckpt}", "{truncated}"], "{truncated}"),
    ("predict", ["{missing_ckpt}", "{good}"], "{missing_ckpt}"),
    ("predict", ["{garbage_ckpt}", "{good}"], "{garbage_ckpt}"),
    ("predict", ["{a_folder}", "{good}"], "{a_folder}"),
    ("predict", ["{ckpt}", "{good}", "--threshold", "1.5"], "--threshold"),
    ("predict", ["{ckpt}", "{good}", "--json", "{a_folder}"], "{a_folder}"),
    ("predict", ["{ckpt}", "{good}", "--csv", "{under_a_file}"], "{under_a_file}"),
    ("transcribe", ["{ckpt}", "{truncated}"], "{truncated}"),
    ("transcribe", ["{ckpt}", "{folder}"], "{folder}"),
    ("transcribe", ["{ckpt}", "{good}", "--json", "{a_folder}"], "{a_folder}"),
    ("transcribe", ["{garbage_ckpt}", "{good}"], "{garbage_ckpt}"),
    ("listen", ["{ckpt}", "--wav", "{garbage}"], "{garbage}"),
    ("listen", ["{ckpt}", "--wav", "{folder}"], "{folder}"),
    ("listen", ["{ckpt}", "--stdin", "--channels", "0"], "--channels"),
    ("listen", ["{ckpt}", "--stdin", "--channels", "-1"], "--channels"),
    ("listen", ["{ckpt}", "--stdin", "--rate", "-8000"], "--rate"),
    ("listen", ["{ckpt}", "--stdin", "--rate", "0"], "--rate"),
    ("listen", ["{ckpt}", "--threshold", "-0.1"], "--threshold"),
    ("export", ["{missing_ckpt}", "--onnx", "{tmp}/m.onnx"], "{missing_ckpt}"),
    ("export", ["{garbage_ckpt}", "--onnx", "{tmp}/m.onnx"], "{garbage_ckpt}"),
    ("export", ["{ckpt}", "--onnx", "{a_folder}"], "{a_folder}"),
    ("export", ["{ckpt}", "--torchscript", "{under_a_file}"], "{under_a_file}"),
    ("ensemble", ["{a_folder}", "{a_folder}", "--out", "{tmp}/e"], "{a_folder}"),
    ("ensemble", ["{file}", "{a_folder}", "--out", "{tmp}/e"], "{file}"),
    ("ensemble", ["{a_folder}", "{a_folder}", "--out", "{file}"], "{file}"),
    ("ensemble", ["{a_folder}", "{a_folder}", "--out", "{tmp}/e", "--weights", "1", "-1"], "-1"),
    ("sweep-report", ["{missing}"], "{missing}"),
    ("sweep-report", ["{file}"], "{file}"),
    ("sweep-report", ["{a_folder}"], "{a_folder}"),
    ("live-reading", ["{ckpt}", "nicolas"], "{ckpt}"),  # not a digit-string reader
    ("live-reading", ["{garbage_ckpt}", "nicolas"], "{garbage_ckpt}"),
    ("live-reading", ["{missing_ckpt}", "nicolas"], "{missing_ckpt}"),
]

HYDRA_CASES = [
    ("train", ["data.root={file}", "data.download=false"], "{file}"),
    ("train", ["data.root={missing}", "data.download=false"], "{missing}"),
    ("train", ["data.batch_size=0"], "data.batch_size"),
    ("train", ["data.augment.noise.p=2"], "data.augment.noise.p"),
    ("train", ["ckpt_path={garbage_ckpt}"], "{garbage_ckpt}"),
    ("train", ["ckpt_path={a_folder}"], "{a_folder}"),
    ("evaluate", ["ckpt_path={missing_ckpt}"], "{missing_ckpt}"),
    ("evaluate", ["ckpt_path={garbage_ckpt}"], "{garbage_ckpt}"),
    ("evaluate", ["ckpt_path={ckpt}", "subset=all"], "subset"),
    ("results", ["results.rows=[nope]"], "nope"),
    ("results", ["results.snr_db=[500]"], "results.snr_db"),
    ("bench", ["bench.repeats=0"], "bench.repeats"),
    ("bench", ["bench.devices=[tpu]"], "bench.devices"),
]


def fill(text: str, inputs: dict[str, str], tmp_path: Path) -> str:
    return text.format(tmp=tmp_path, **inputs)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def check(code: object, stderr: str, needle: str, before: dict, after: dict) -> None:
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("error: "), stderr
    assert needle in errors[0], errors[0]
    assert after == before, "nothing left behind, nothing overwritten"


@pytest.mark.parametrize(("command", "args", "names"), ARGPARSE_CASES)
def test_argparse_commands_refuse_bad_input_in_one_line(
    inputs: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    args: list[str],
    names: str,
) -> None:
    argv = [command, *(fill(a, inputs, tmp_path) for a in args)]
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    check(
        exit_.value.code,
        capsys.readouterr().err,
        fill(names, inputs, tmp_path),
        before,
        snapshot(tmp_path),
    )
    assert Path(inputs["file"]).read_bytes() == PRECIOUS


@pytest.mark.slow
@pytest.mark.parametrize(("command", "args", "names"), HYDRA_CASES)
def test_hydra_commands_refuse_bad_input_in_one_line(
    inputs: dict[str, str], tmp_path: Path, command: str, args: list[str], names: str
) -> None:
    argv = [fill(a, inputs, tmp_path) for a in args]
    environment = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    before = snapshot(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "sdc", command, *argv, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        env={**environment, "SDC_DATA_DIR": inputs["a_folder"]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    after = snapshot(tmp_path)
    check(result.returncode, result.stderr, fill(names, inputs, tmp_path), before, after)
