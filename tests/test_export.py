"""Export to ONNX and TorchScript with the MFCC front end inside: checked graphs, parity with
PyTorch, and prediction through ONNX Runtime without Lightning or Hydra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch
from omegaconf import DictConfig

from conftest import SAMPLE_RATE, digit_tone
from sdc.audio.window import fit_to_window
from sdc.errors import SdcError
from sdc.inference.checkpoint import load_classifier, read_checkpoint, read_model_info
from sdc.inference.export import PARITY_TOLERANCE, export_onnx, export_torchscript, parity
from sdc.inference.export import main as export_main
from sdc.inference.recognizer import Recognizer, available_cores

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("exported")
    model = load_classifier(tiny_checkpoint)
    return {
        "onnx": export_onnx(model, out / "model.onnx"),
        "torchscript": export_torchscript(model, out / "model.pt"),
    }


def dataset_windows(tiny_fsdd: Path, window: int) -> tuple[torch.Tensor, list[int]]:
    """Every clip of the tiny dataset, centred in the window as evaluation does."""
    paths = sorted((tiny_fsdd / "recordings").glob("*.wav"))
    waves = [torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in paths]
    padded = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    lengths = torch.tensor([len(w) for w in waves])
    return fit_to_window(padded, lengths, window), [int(p.name[0]) for p in paths]


def test_onnx_graph_is_valid_with_named_io_and_metadata(
    exported: dict[str, Path], tiny_checkpoint: Path
) -> None:
    proto = onnx.load(str(exported["onnx"]))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["waveform"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_value == 18400, "dynamic batch, fixed window"
    assert {op.domain for op in proto.opset_import if op.domain in ("", "ai.onnx")}
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
    assert any(node.op_type == "STFT" for node in proto.graph.node), "the front end is inside"
    assert Recognizer.from_onnx(exported["onnx"]).info == read_model_info(tiny_checkpoint)


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_exported_logits_match_pytorch(
    kind: str, exported: dict[str, Path], tiny_checkpoint: Path, tiny_fsdd: Path
) -> None:
    model = load_classifier(tiny_checkpoint)
    recognizer = Recognizer.load(exported[kind])
    assert parity(model, recognizer) < PARITY_TOLERANCE

    windows, _ = dataset_windows(tiny_fsdd, model.window)
    with torch.no_grad():
        expected = model(windows).numpy()
    # Two batch sizes, neither the one the export was traced with.
    got = np.concatenate(
        [recognizer.backend(windows[:1].numpy()), recognizer.backend(windows[1:].numpy())]
    )
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()
    # The synthetic clips are pure tones: most mel bands sit 60-80 dB below the peak, where
    # float32 STFTs (pocketfft in PyTorch, ONNX Runtime's own) round differently. Real speech
    # is broadband; the real-FSDD test holds the export to 1e-4 on the test split.
    assert np.abs(got - expected).max() < (PARITY_TOLERANCE if kind == "torchscript" else 2e-3)


def test_an_onnx_recognizer_runs_a_batch_per_worker_with_the_same_answers(
    exported: dict[str, Path], tiny_checkpoint: Path, tiny_fsdd: Path
) -> None:
    """`sdc predict`'s ONNX recognizer runs one batch per core at once; a server's, with one
    worker, runs them in turn: the same probabilities, in the windows' order."""
    windows, _ = dataset_windows(tiny_fsdd, load_classifier(tiny_checkpoint).window)
    windows = np.concatenate([windows.numpy()] * 3)  # several batches of 8
    alone = Recognizer.from_onnx(exported["onnx"], workers=1)
    side_by_side = Recognizer.from_onnx(exported["onnx"], workers=2)
    threads: set[str] = set()
    backend = side_by_side.backend

    def recording(batch: np.ndarray) -> np.ndarray:
        threads.add(threading.current_thread().name)
        return backend(batch)

    side_by_side.backend = recording
    expected = alone.classify(windows)
    assert np.abs(side_by_side.classify(windows) - expected).max() < 1e-6
    assert len(threads) == 2 and all(t.startswith("sdc-classify") for t in threads)
    assert Recognizer.from_onnx(exported["onnx"]).workers == available_cores()


def test_export_command_checks_parity_and_reports_bad_checkpoints(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export_main([str(tiny_checkpoint), "--torchscript", str(tmp_path / "m.pt")])
    assert "logits within" in capsys.readouterr().out
    assert (tmp_path / "m.pt").is_file() and not tmp_path.joinpath("m.onnx").exists()
    with pytest.raises(SystemExit) as exit_:
        export_main([str(tmp_path / "nope.ckpt")])
    assert exit_.value.code == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: {tmp_path / 'nope.ckpt'}: no such checkpoint file"
    )


def test_int8_export_is_calibrated_on_recordings_and_runs_like_the_float_model(
    tiny_checkpoint: Path, tiny_fsdd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.onnx"
    export_main([str(tiny_checkpoint), "--onnx", str(out), "--int8", str(tiny_fsdd)])
    printed = capsys.readouterr().out
    int8 = tmp_path / "m.int8.onnx"
    assert f"wrote {int8} (the same digit as the float model on" in printed
    proto = onnx.load(str(int8))
    ops = [n.op_type for n in proto.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops, "the convolutions are 8-bit"
    assert any(n.op_type == "STFT" for n in proto.graph.node), "the spectrum stays float"
    quantized, float_model = Recognizer.from_onnx(int8), Recognizer.from_onnx(out)
    assert quantized.info == float_model.info, "the model's metadata travels along"
    windows, _ = dataset_windows(tiny_fsdd, quantized.window)
    probs = quantized.classify(windows.numpy())
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    same = probs.argmax(1) == float_model.classify(windows.numpy()).argmax(1)
    assert same.mean() >= 0.8, "8 bits move few answers"


def test_single_view_export_leaves_the_speed_views_out(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from sdc.training.module import DigitClassifier

    with_views = tmp_path / "views.ckpt"
    checkpoint = read_checkpoint(tiny_checkpoint)
    checkpoint["hyper_parameters"]["test_time_speeds"] = [0.95, 1.0, 1.05]
    torch.save(checkpoint, with_views)
    model = load_classifier(with_views)
    one, five = tmp_path / "one.onnx", tmp_path / "five.onnx"
    export_main([str(with_views), "--onnx", str(one), "--single-view"])
    export_main([str(with_views), "--onnx", str(five)])
    assert Recognizer.from_onnx(one).info.test_time_speeds is None
    assert Recognizer.from_onnx(five).info.test_time_speeds == (0.95, 1.0, 1.05)
    windows = torch.randn(2, model.window) * 0.1
    with torch.no_grad():
        plain = DigitClassifier.hear(model, windows).numpy()
    assert np.abs(Recognizer.from_onnx(one).backend(windows.numpy()) - plain).max() < 2e-3
    assert np.abs(Recognizer.from_onnx(five).backend(windows.numpy()) - plain).max() > 1e-3


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_int8_export_needs_a_folder_of_recordings(
    case: str, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "calibration"
    if case == "empty":
        folder.mkdir()
        (folder / "notes.txt").write_text("no audio here")
    with pytest.raises(SystemExit) as exit_:
        export_main(
            [str(tiny_checkpoint), "--onnx", str(tmp_path / "m.onnx"), "--int8", str(folder)]
        )
    assert exit_.value.code == 2
    expected = "is not a folder of recordings" if case == "missing" else "no .wav, .flac or .ogg"
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --int8: ") and expected in line


def test_an_onnx_file_that_is_not_an_sdc_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(SdcError, match=r"junk\.onnx"):
        Recognizer.from_onnx(tmp_path / "junk.onnx")


def test_predict_on_onnx_imports_neither_lightning_nor_hydra(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    clip = tmp_path / "four.wav"
    sf.write(clip, digit_tone(4, 1, 1), SAMPLE_RATE)
    argv = [str(exported["onnx"]), str(clip), "--json", str(tmp_path / "p.json")]
    heavy = ("pytorch_lightning", "lightning", "lightning_fabric", "hydra", "omegaconf")
    script = (
        "import sys, json\n"
        "from sdc.inference.predict import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "finally:\n"
        f"    print(json.dumps([m for m in sys.modules if m.split('.')[0] in {heavy!r}]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    [answer] = json.loads((tmp_path / "p.json").read_text())
    assert answer["file"] == str(clip) and answer["error"] is None and answer["top"]


@pytest.mark.slow
def test_speech_normalization_exports_to_onnx_with_the_same_logits(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, tiny_fsdd: Path
) -> None:
    """The per-clip statistics (masked means, a max over frames) are part of the graph."""
    from sdc.training.train import build_module

    torch.manual_seed(0)
    model = build_module(make_cfg("features.normalize=speech")).eval()
    recognizer = Recognizer.load(export_onnx(model, tmp_path / "model.onnx"))
    windows, _ = dataset_windows(tiny_fsdd, model.window)
    with torch.no_grad():
        expected = model(windows).numpy()
    got = recognizer.backend(windows.numpy())
    assert np.abs(got - expected).max() < 2e-3


def test_predicting_with_an_onnx_export_never_imports_torch(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """An exported model runs on numpy, soundfile and onnxruntime alone: predict, transcribe
    and listen (scipy.signal, whose import alone takes 0.6 s, included)."""
    onnx = export_onnx(load_classifier(tiny_checkpoint), tmp_path / "model.onnx")
    clip = tmp_path / "one.wav"
    sf.write(clip, digit_tone(1, 1, 0), 16000)  # another rate: the resampling path too
    code = (
        "import sys\n"
        "from sdc.cli import main\n"
        f"main(['predict', {str(onnx)!r}, {str(clip)!r}])\n"
        f"main(['transcribe', {str(onnx)!r}, {str(clip)!r}])\n"
        f"main(['listen', {str(onnx)!r}, '--wav', {str(clip)!r}])\n"
        "heavy = sorted(({m.split('.')[0] for m in sys.modules} | set(sys.modules)) & "
        "{'torch', 'torchaudio', 'pytorch_lightning', 'lightning', 'hydra', 'scipy.signal'})\n"
        "print('imported:', heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "one.wav" in result.stdout
    assert result.stdout.strip().endswith("imported: []"), result.stdout
