"""`sdc transcribe MODEL FILE... [--threshold P] [--json OUT]`: the digit string in a recording.

For a phone number or PIN said with pauses: the speech is cut into utterances by energy (see
`sdc.audio.vad`), each is classified, and the digits come out in order with their times.
Utterances below the threshold are listed as "-" and left out of the string. A digit-string
reader (`sdc strings`) needs no pauses, and by default keeps every digit it reads.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from sdc.cli import ArgumentParser, output_file, user_errors
from sdc.errors import SdcError
from sdc.files import write_text
from sdc.inference.predict import add_model_arguments, as_record
from sdc.inference.recognizer import Transcript, load_transcriber


def format_transcript(file: str, transcript: Transcript) -> str:
    lines = [f"{file}: {transcript.text or '(no digits)'}"]
    for s in transcript.segments:
        digit = s.label if s.label is not None else "-"
        lines.append(f"  {s.start:7.2f}-{s.end:7.2f} s  {digit}  {s.confidence:.3f}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="sdc transcribe", description=__doc__.split("\n\n")[1])
    add_model_arguments(parser, readers=True)
    parser.add_argument("inputs", nargs="+", type=Path, help="audio files")
    parser.add_argument("--json", type=output_file, help="also write the transcripts as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    failed = False
    records = []
    with user_errors():
        recognizer = load_transcriber(args.model, args.threshold, args.namer)
        for path in args.inputs:
            try:
                transcript = recognizer.transcribe_file(path)
            except SdcError as err:
                print(f"error: {err}", file=sys.stderr)
                failed = True
                continue
            print(format_transcript(str(path), transcript))
            records.append(
                {
                    "file": str(path),
                    "text": transcript.text,
                    "segments": [as_record(s) for s in transcript.segments],
                }
            )
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            write_text(args.json, json.dumps(records, indent=2) + "\n")
    if failed:
        sys.exit(2)


if __name__ == "__main__":
    main()
