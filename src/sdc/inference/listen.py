"""`sdc listen MODEL [--wav FILE | --stdin --rate HZ] [--realtime]`: digits as they are said.

Without `--wav` or `--stdin` it listens to the microphone (needs the `live` extra,
sounddevice). Each digit is printed once, with the stream time it was said at, as soon as the
speaker pauses after it. See `sdc.inference.stream` for how.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from sdc.cli import ArgumentParser, positive_int, sample_rate, user_errors
from sdc.inference.predict import add_model_arguments, as_record
from sdc.inference.recognizer import load_transcriber
from sdc.inference.stream import PCM_FORMATS, file_chunks, listen, microphone_chunks, pcm_chunks


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="sdc listen", description=__doc__.split("\n\n")[1])
    add_model_arguments(parser, readers=True)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--wav", type=Path, help="listen to an audio file instead")
    source.add_argument("--stdin", action="store_true", help="listen to raw PCM on stdin")
    parser.add_argument(
        "--rate", type=sample_rate, help="stdin's sample rate in Hz (default: the model's)"
    )
    parser.add_argument("--format", default="s16le", choices=sorted(PCM_FORMATS))
    parser.add_argument(
        "--channels", type=positive_int, default=1, help="stdin's channels (default 1)"
    )
    parser.add_argument("--realtime", action="store_true", help="pace a file or stdin at 1x")
    parser.add_argument("--device", help="the microphone (sounddevice name or index)")
    parser.add_argument("--json", action="store_true", help="one JSON object per digit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with user_errors():
        recognizer = load_transcriber(args.model, args.threshold, args.namer)
        if args.wav is not None:
            chunks = file_chunks(recognizer, args.wav, realtime=args.realtime)
        elif args.stdin:
            rate = args.rate or recognizer.sample_rate
            chunks = pcm_chunks(
                recognizer, sys.stdin.buffer, rate, args.format, args.channels, args.realtime
            )
        else:
            device = int(args.device) if args.device and args.device.isdigit() else args.device
            chunks = microphone_chunks(recognizer, device)
            print("listening (Ctrl-C to stop)", file=sys.stderr)
        try:
            for digit in listen(recognizer, chunks):
                if args.json:
                    print(json.dumps(as_record(digit)), flush=True)
                else:
                    print(
                        f"{digit.start:8.2f} s  {digit.label}  {digit.confidence:.3f}", flush=True
                    )
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
