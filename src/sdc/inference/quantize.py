"""8-bit ONNX models: the convolutions of an exported model in int8, calibrated on recordings.

ONNX Runtime's static quantization (QDQ, int8 weights per output channel, uint8 activations)
runs the speech embedding and the head's convolutions in 8 bits, which on a 2-core AVX-512 CPU
takes a single hearing of `best` from 2.5 to 1.7 ms. The resampler and the STFT stay in float:
8 bits cannot hold the 80 dB the log-mel spectrum spans. Activation ranges are calibrated on
real recordings placed in the window as inference places them; per-tensor weights cost 2.6
points on a held-out speaker against 0.4 per channel (docs/using-a-model.md).

The quantizer neither calibrates nor rewrites the inside of a graph's conditional branches,
where an export skips silence, so `quantize_onnx` quantizes an export of the whole network and
`carry_quantization` puts its scales into every branch of the export that skips silence
(`sdc.inference.export.export_int8` does both).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sdc.errors import SdcError
from sdc.inference.onnx_graph import all_graphs, localize_initializers
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


def carry_quantization(quantized: Path, skipping: Path, target: Path) -> Path:
    """Write `skipping` to `target` with its convolutions in 8 bits, in every branch of its
    graph, at the scales `quantized` has for them.

    `quantized` is `quantize_onnx`'s copy of the same model exported with its whole network:
    the quantizer can neither calibrate nor rewrite the branches in which an export skips
    silence (`SpeechEmbedding.embed_heard`). Each convolution keeps its per-channel weights;
    its input and output take the widest range the calibration found over its uses (one per
    speed view); its bias is requantized to match. ONNX Runtime fuses each such group into
    one 8-bit convolution, branches included.
    """
    import onnx
    from onnx import helper, numpy_helper

    source = onnx.load(str(quantized)).graph
    ranges = _calibrated_ranges(source)
    eight_bit = {i.name: numpy_helper.to_array(i) for i in source.initializer}
    model = onnx.load(str(skipping))
    floats = {
        i.name: numpy_helper.to_array(i) for g in all_graphs(model.graph) for i in g.initializer
    }
    added: dict[str, onnx.TensorProto] = {}

    def constant(name: str, value: np.ndarray) -> str:
        if name not in added:
            added[name] = numpy_helper.from_array(np.asarray(value), name)
        return name

    def group(conv: onnx.NodeProto, t: str) -> list[onnx.NodeProto]:
        """DequantizeLinear(QuantizeLinear) around `conv`, its weight and bias in 8 and 32 bits,
        the new tensors named from `t`."""
        weight = conv.input[1]
        w = [
            constant(f"{weight}_int8{k}", eight_bit[f"{weight}{k}"])
            for k in ("_quantized", "_scale", "_zero_point")
        ]
        scales = {}
        for side in ("i", "o"):
            scale, zero = _uint8_scale(*ranges[weight][side])
            scales[side] = [
                constant(f"{weight}_int8_{side}s", scale),
                constant(f"{weight}_int8_{side}z", zero),
            ]
        nodes = [
            helper.make_node("QuantizeLinear", [conv.input[0], *scales["i"]], [t + "xq"]),
            helper.make_node("DequantizeLinear", [t + "xq", *scales["i"]], [t + "x"]),
            helper.make_node("DequantizeLinear", w, [t + "w"], axis=0),
        ]
        inputs = [t + "x", t + "w"]
        if len(conv.input) > 2:  # int32 at the scale of input times weight, as ONNX Runtime's
            bias = conv.input[2]
            input_scale = float(_uint8_scale(*ranges[weight]["i"])[0])
            scale = eight_bit[f"{weight}_scale"].astype(np.float64) * input_scale
            b = [
                constant(f"{bias}_int8", np.round(floats[bias] / scale).astype(np.int32)),
                constant(f"{bias}_int8_scale", scale.astype(np.float32)),
                constant(f"{bias}_int8_zero_point", np.zeros(len(scale), dtype=np.int32)),
            ]
            nodes.append(helper.make_node("DequantizeLinear", b, [t + "b"], axis=0))
            inputs.append(t + "b")
        quantized_conv = helper.make_node("Conv", inputs, [t + "y"], name=conv.name)
        quantized_conv.attribute.extend(conv.attribute)
        return [
            *nodes,
            quantized_conv,
            helper.make_node("QuantizeLinear", [t + "y", *scales["o"]], [t + "yq"]),
            helper.make_node("DequantizeLinear", [t + "yq", *scales["o"]], list(conv.output)),
        ]

    count = 0

    def rewrite(graph: onnx.GraphProto) -> None:
        nonlocal count
        nodes = []
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    rewrite(attribute.g)
            if node.op_type == "Conv" and node.input[1] in ranges:
                count += 1
                nodes += group(node, f"int8_{count}_")  # unique over the model's graphs
            else:
                nodes.append(node)
        del graph.node[:]
        graph.node.extend(nodes)

    rewrite(model.graph)
    if count == 0:
        raise SdcError(f"{skipping}: no convolution that {quantized} has in 8 bits")
    model.graph.initializer.extend(added.values())
    localize_initializers(model.graph)  # into the branches that read them; float weights out
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return target


def _calibrated_ranges(graph: onnx.GraphProto) -> dict[str, dict[str, tuple[float, float]]]:
    """Each 8-bit convolution's float weight name -> the widest input ("i") and output ("o")
    ranges its uses in a `quantize_onnx` graph were calibrated to."""
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def span(node: onnx.NodeProto) -> tuple[float, float]:
        scale, zero = float(values[node.input[1]]), float(values[node.input[2]])
        return (0 - zero) * scale, (255 - zero) * scale

    ranges: dict[str, dict[str, tuple[float, float]]] = {}
    for conv in graph.node:
        weight = producers.get(conv.input[1]) if conv.op_type == "Conv" else None
        if weight is None or weight.op_type != "DequantizeLinear":
            continue
        name = weight.input[0].removesuffix("_quantized")
        used = {
            "i": span(producers[conv.input[0]]),
            "o": span(next(c for c in consumers[conv.output[0]] if c.op_type == "QuantizeLinear")),
        }
        known = ranges.setdefault(name, used)
        for side, (low, high) in used.items():
            known[side] = (min(known[side][0], low), max(known[side][1], high))
    return ranges


def _uint8_scale(low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point of uint8 values spanning [low, high] (0 always inside)."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255 or 1.0
    return np.float32(scale), np.uint8(round(-low / scale))


def agreement(float_model: Recognizer, int8_model: Recognizer, windows: np.ndarray) -> float:
    """The share of `windows` on which both models name the same digit."""
    same = float_model.classify(windows).argmax(1) == int8_model.classify(windows).argmax(1)
    return float(same.mean())
