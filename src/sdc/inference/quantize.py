"""8-bit ONNX models: the convolutions of an exported model in int8, calibrated on recordings.

ONNX Runtime's static quantization (QDQ, int8 weights per output channel, uint8 activations)
runs the speech embedding and the head's convolutions in 8 bits, which on a 2-core AVX-512 CPU
takes a single hearing of `best` from 6.5 to 3.2 ms. The resampler and the STFT stay in float:
8 bits cannot hold the 80 dB the log-mel spectrum spans. Activation ranges are calibrated on
real recordings placed in the window as inference places them; per-tensor weights cost 2.6
points on a held-out speaker against 0.4 per channel (docs/results.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sdc.errors import SdcError
from sdc.inference.predict import AUDIO_SUFFIXES
from sdc.inference.recognizer import Recognizer

if TYPE_CHECKING:
    import onnx

CALIBRATION_CLIPS = 200
"""Recordings the activation ranges are taken from (evenly spaced over the folder's files)."""
FLOAT_INPUTS = ("resample", "stft")
"""Convolutions left in float, by the name of the initializer their weight comes from:
resampling and the STFT."""


def calibration_windows(folder: Path, recognizer: Recognizer) -> np.ndarray:
    """Up to CALIBRATION_CLIPS recordings from `folder` (searched recursively), each placed in
    the model's window by `recognizer` as `sdc predict` places it: (N, window) float32.
    Recordings with no speech in them are left out."""
    if not folder.is_dir():
        raise SdcError(f"--int8: {folder} is not a folder of recordings")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise SdcError(f"--int8: no .wav, .flac or .ogg recordings in {folder}")
    step = max(1, len(files) // CALIBRATION_CLIPS)
    placed = [recognizer.clip_window(recognizer.read(f)) for f in files[::step][:CALIBRATION_CLIPS]]
    windows = [p[0] for p in placed if p is not None]
    if not windows:
        raise SdcError(f"--int8: no speech found in the recordings in {folder}")
    return np.stack(windows)


def weight_sources(graph: onnx.GraphProto) -> dict[str, str]:
    """Each convolution's name -> the initializer its weight comes from, through the slices
    that take part of it (the exported STFT uses only the bins the mel filters read)."""
    producers = {output: node for node in graph.node for output in node.output}
    sources = {}
    for conv in graph.node:
        if conv.op_type == "Conv":
            weight = conv.input[1]
            while weight in producers and producers[weight].op_type == "Slice":
                weight = producers[weight].input[0]
            sources[conv.name] = weight
    return sources


def quantize_onnx(source: Path, target: Path, windows: np.ndarray) -> Path:
    """Write `source` (an sdc ONNX export) to `target` with int8 convolutions, calibrated on
    `windows`; the model's metadata travels along."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    graph = onnx.load(str(source)).graph
    name = graph.input[0].name
    kept_float = [
        conv
        for conv, source in weight_sources(graph).items()
        if any(k in source for k in FLOAT_INPUTS)
    ]

    class Windows(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[np.ndarray] = iter(
                windows[i : i + 1] for i in range(len(windows))
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {name: batch}

    # ONNX Runtime's quantizer warns on the root logger that shape-inference pre-processing
    # might help; its symbolic shape inference fails on this graph, and the model runs as is.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_static(
            str(source),
            str(target),
            Windows(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=kept_float,
            per_channel=True,
        )
    finally:
        root.setLevel(level)
    return target


def agreement(float_model: Recognizer, int8_model: Recognizer, windows: np.ndarray) -> float:
    """The share of `windows` on which both models name the same digit."""
    same = float_model.classify(windows).argmax(1) == int8_model.classify(windows).argmax(1)
    return float(same.mean())
