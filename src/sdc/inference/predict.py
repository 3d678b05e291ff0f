"""`sdc predict MODEL FILE_OR_DIR... [--threshold P] [--json OUT] [--csv OUT]`.

MODEL is a checkpoint, or an exported `.onnx` (run by ONNX Runtime, without Lightning or Hydra)
or TorchScript `.pt`. Inputs are audio files soundfile reads (WAV at any bit depth, FLAC, OGG),
at any rate, mono or stereo, of any length, or folders of them. Each file gets one line: its
digit, or "-" for no digit (no speech, or no class above the threshold). A file that cannot be
read gets an `error:` line and the others are still answered; the exit status is then 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from sdc.cli import ArgumentParser, one_line, output_file, probability, user_errors
from sdc.errors import SdcError
from sdc.files import write_text
from sdc.inference.recognizer import DEFAULT_THRESHOLD, Prediction, load_batch_per_core

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au")
NO_DIGIT = "-"


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders as their audio files (recursively, sorted)."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise SdcError(f"{item}: the folder holds no audio files")
            paths += found
        else:
            paths.append(item)
    return paths


def _top(prediction: Prediction) -> str:
    return " ".join(f"{label}:{p:.2f}" for label, p in prediction.top)


def format_table(predictions: Sequence[Prediction]) -> str:
    names = [one_line(p.file) for p in predictions]
    width = max([len("file"), *(len(name) for name in names)])
    lines = [f"{'file':<{width}}  digit  confidence  top-3"]
    for p, name in zip(predictions, names, strict=True):
        if p.error is None:
            digit = p.label if p.label is not None else NO_DIGIT
            lines.append(f"{name:<{width}}  {digit:>5}  {p.confidence:>10.3f}  {_top(p)}")
    return "\n".join(lines)


def as_record(p: Prediction) -> dict[str, object]:
    return {
        "file": p.file,
        "digit": p.label,
        "confidence": round(p.confidence, 6),
        "top": [{"label": label, "probability": round(q, 6)} for label, q in p.top],
        "speech": p.speech,
        "start": round(p.start, 3),
        "end": round(p.end, 3),
        "error": p.error,
    }


def write_json(predictions: Sequence[Prediction], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps([as_record(p) for p in predictions], indent=2) + "\n")


def write_csv(predictions: Sequence[Prediction], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "digit", "confidence", "top3", "speech", "start", "end", "error"])
        for p in predictions:
            writer.writerow(
                [
                    p.file,
                    p.label if p.label is not None else "",
                    f"{p.confidence:.6f}",
                    _top(p),
                    int(p.speech),
                    f"{p.start:.3f}",
                    f"{p.end:.3f}",
                    p.error or "",
                ]
            )


def add_model_arguments(parser: argparse.ArgumentParser, readers: bool = False) -> None:
    """The model and `--threshold`; `readers`: the command also takes a digit-string reader,
    whose default threshold is its own (None here)."""
    parser.add_argument("model", type=Path, help="a .ckpt, an exported .onnx or TorchScript .pt")
    meaning = f"below this probability the answer is 'no digit' (default {DEFAULT_THRESHOLD}"
    parser.add_argument(
        "--threshold",
        type=probability,
        default=None if readers else DEFAULT_THRESHOLD,
        help=meaning + ("; a digit-string reader: 0, every digit read)" if readers else ")"),
    )
    if readers:
        parser.add_argument(
            "--namer",
            type=Path,
            help="with a digit-string reader: an isolated-digit model (a .ckpt or an export of "
            "best, say) that names each digit the reader finds with it",
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="sdc predict", description=__doc__.split("\n\n")[1])
    add_model_arguments(parser)
    parser.add_argument("inputs", nargs="+", help="audio files or folders")
    parser.add_argument("--json", type=output_file, help="also write the answers as JSON here")
    parser.add_argument("--csv", type=output_file, help="also write the answers as CSV here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with user_errors():
        recognizer = load_batch_per_core(args.model, threshold=args.threshold)
        predictions = recognizer.predict_files(expand_inputs(args.inputs))
        for p in predictions:
            if p.error is not None:
                print(f"error: {one_line(p.error)}", file=sys.stderr)
        print(format_table(predictions))
        if args.json:
            write_json(predictions, args.json)
        if args.csv:
            write_csv(predictions, args.csv)
    if any(p.error is not None for p in predictions):
        sys.exit(2)


if __name__ == "__main__":
    main()
