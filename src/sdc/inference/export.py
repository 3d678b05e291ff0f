"""`sdc export MODEL.ckpt [--onnx OUT] [--torchscript OUT] [--single-view] [--int8 FOLDER]`: the
model, front end inside (and, with `--int8`, an 8-bit ONNX copy: `sdc.inference.quantize`).

The exported graph takes what the checkpoint takes: raw waveform windows (B, window samples) at
the model's rate, named `waveform`, and returns `logits` (B, n_classes); the batch axis is
dynamic. The model's `ModelInfo` (labels, sample rate, window, configs) travels inside: as
ONNX metadata_props or a TorchScript extra file, so `Recognizer.load` needs nothing else.

Each export is checked against PyTorch on a few windows before this command reports success.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from sdc.cli import ArgumentParser, output_file, user_errors
from sdc.errors import SdcError
from sdc.inference.checkpoint import load_classifier
from sdc.inference.model_info import METADATA_KEY, ModelInfo
from sdc.inference.onnx_graph import localize_initializers, strip_node_metadata
from sdc.inference.recognizer import Recognizer
from sdc.pretrained.speech_embedding import whole_network

ONNX_OPSET = 18
"""17 introduced the STFT operator the front end needs; 18 is the exporter's own default."""
PARITY_TOLERANCE = 1e-4


def _info(model: torch.nn.Module) -> ModelInfo:
    return ModelInfo.from_hparams(dict(model.hparams))


def export_onnx(model: torch.nn.Module, path: str | Path, skip_silence: bool = True) -> Path:
    """Write `model` (a `DigitClassifier`) as ONNX and check it with `onnx.checker`, tidied
    for ONNX Runtime (`sdc.inference.onnx_graph`).

    `skip_silence=False`: a speech embedding runs its whole network, without the conditional
    branches that skip silence, as an 8-bit copy needs (`quantize_onnx`)."""
    try:
        import onnx
    except ImportError:
        raise SdcError("ONNX export needs onnx and onnxscript: pip install 'sdc[export]'") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.zeros(2, model.window)
    # The exporter logs each of its steps and warns about things irrelevant here.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), nullcontext() if skip_silence else whole_network(model):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            input_names=["waveform"],
            output_names=["logits"],
            opset_version=ONNX_OPSET,
            dynamo=True,
            dynamic_shapes={"windows": {0: torch.export.Dim("batch")}},
            verbose=False,
        )
    proto = program.model_proto
    strip_node_metadata(proto.graph)
    localize_initializers(proto.graph)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, _info(model).to_json()
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return path


def export_int8(
    model: torch.nn.Module, float_path: Path, target: Path, windows: np.ndarray
) -> Path:
    """`float_path` (`model`'s ONNX export) with its convolutions in 8 bits, calibrated on
    `windows`: the quantizer calibrates an export of the whole network (without the branches
    that skip silence, which it cannot enter), and its scales are carried into every branch of
    `float_path` (`sdc.inference.quantize`)."""
    from sdc.inference.quantize import carry_quantization, quantize_onnx

    with tempfile.TemporaryDirectory(dir=target.parent) as folder:
        whole = export_onnx(model, Path(folder) / "whole.onnx", skip_silence=False)
        quantized = quantize_onnx(whole, Path(folder) / "whole.int8.onnx", windows)
        return carry_quantization(quantized, float_path, target)


def export_torchscript(model: torch.nn.Module, path: str | Path) -> Path:
    """Write `model` as a traced TorchScript archive with its `ModelInfo` as an extra file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    # PyTorch 2.11 warns that TorchScript is deprecated in favour of torch.export; it stays for
    # the C++ and mobile runtimes that still load it, and its warnings are not the user's business.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # Lightning's own wrapper around torch.jit.trace, which knows its module's properties.
        traced = model.to_torchscript(method="trace", example_inputs=torch.zeros(2, model.window))
        torch.jit.save(traced, str(path), _extra_files={METADATA_KEY: _info(model).to_json()})
    return path


def parity(model: torch.nn.Module, exported: Recognizer, n: int = 8, seed: int = 0) -> float:
    """Largest logit difference between PyTorch and an exported model on random speech-like
    windows (noise with a loud burst, the loudness of FSDD)."""
    generator = torch.Generator().manual_seed(seed)
    windows = 0.01 * torch.randn(n, model.window, generator=generator)
    burst = slice(model.window // 3, model.window // 2)
    windows[:, burst] *= 20
    with torch.no_grad():
        expected = model(windows).numpy()
    got = exported.backend(windows.numpy())
    return float(np.abs(got - expected).max())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="sdc export", description="Export a checkpoint to ONNX and/or TorchScript."
    )
    parser.add_argument("checkpoint", type=Path, help="a .ckpt written by sdc train")
    parser.add_argument(
        "--onnx", type=output_file, help="ONNX output (default: next to the checkpoint)"
    )
    parser.add_argument("--torchscript", type=output_file, help="TorchScript output (.pt)")
    parser.add_argument(
        "--single-view",
        action="store_true",
        help="leave out the test-time speed views (experiment=best has two): one hearing per "
        "window, twice as fast, about a point less on new voices",
    )
    parser.add_argument(
        "--int8",
        type=Path,
        metavar="FOLDER",
        help="also write the ONNX model with 8-bit convolutions (NAME.int8.onnx), calibrated on "
        "recordings in FOLDER (e.g. FSDD's recordings/): about twice as fast, a little less "
        "accurate",
    )
    args = parser.parse_args(argv)
    if args.onnx is None and (args.torchscript is None or args.int8 is not None):
        args.onnx = args.checkpoint.with_suffix(".onnx")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with user_errors():
        overrides = {"test_time_speeds": None} if args.single_view else {}
        model = load_classifier(args.checkpoint, **overrides)
        targets = []
        if args.onnx is not None:
            targets.append((export_onnx(model, args.onnx), Recognizer.from_onnx))
        if args.torchscript is not None:
            targets.append(
                (export_torchscript(model, args.torchscript), Recognizer.from_torchscript)
            )
        for path, load in targets:
            error = parity(model, load(path))
            if error > PARITY_TOLERANCE:
                raise SdcError(f"{path}: logits differ from PyTorch by {error:.2e}")
            print(f"wrote {path} (logits within {error:.1e} of PyTorch)")
        if args.int8 is not None:
            _export_int8(model, args.onnx, args.int8)


def _export_int8(model: torch.nn.Module, float_path: Path, calibration: Path) -> None:
    """`float_path`'s 8-bit copy beside it."""
    from sdc.inference.quantize import agreement, calibration_windows

    float_model = Recognizer.from_onnx(float_path)
    windows = calibration_windows(calibration, float_model)
    path = export_int8(model, float_path, float_path.with_suffix(".int8.onnx"), windows)
    same = agreement(float_model, Recognizer.from_onnx(path), windows)
    print(f"wrote {path} (the same digit as the float model on {same:.1%} of {len(windows)} clips)")


if __name__ == "__main__":
    main()
