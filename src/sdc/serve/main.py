"""`sdc serve MODEL [--host 127.0.0.1] [--port 8000]`: the model as an HTTP service and web page.

The model (a checkpoint, an exported .onnx or TorchScript .pt) is loaded once. The page at `/`
records from the microphone or takes a dropped file; the API is described in OpenAPI at
`/openapi.json`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sdc.cli import ArgumentParser, positive_float, positive_int, user_errors
from sdc.errors import SdcError
from sdc.inference.predict import add_model_arguments
from sdc.inference.recognizer import Recognizer, available_cores


def port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 1-65535, got {text!r}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from sdc.serve.app import ServiceLimits

    limits = ServiceLimits()
    parser = ArgumentParser(prog="sdc serve", description=__doc__.split("\n\n")[1])
    add_model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=port, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--max-mb",
        type=positive_float,
        default=limits.max_megabytes,
        help=f"largest upload in MB (default {limits.max_megabytes:g})",
    )
    parser.add_argument(
        "--max-seconds",
        type=positive_float,
        default=limits.max_seconds,
        help=f"longest audio in seconds (default {limits.max_seconds:g})",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        help="inference threads (default: one per core for an .onnx model, each inference on "
        "one thread; 1 for PyTorch, whose inference uses every core)",
    )
    parser.add_argument(
        "--max-pending",
        type=positive_int,
        default=limits.max_pending,
        help=f"requests running or queued before 503 (default {limits.max_pending})",
    )
    args = parser.parse_args(argv)
    if args.workers is None:
        onnx = Path(args.model).suffix.lower() == ".onnx"
        args.workers = min(available_cores(), args.max_pending) if onnx else 1
    if args.max_pending < args.workers:
        parser.error(f"--max-pending ({args.max_pending}) must be at least --workers")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    with user_errors():
        try:
            import uvicorn

            from sdc.serve.app import ServiceLimits, create_app
        except ImportError as err:
            raise SdcError(
                f"sdc serve needs the serve extra ({err}): pip install 'sdc[serve]'"
            ) from None
        args = parse_args(argv)
        # The recognizer runs as many inferences at once as the server: on 2 cores, best.onnx
        # answered 105-108 requests/s with 2 workers on one thread each, 70-77 with 1 or 2
        # workers over both cores (README).
        recognizer = Recognizer.load(args.model, threshold=args.threshold, workers=args.workers)
        limits = ServiceLimits(args.max_mb, args.max_seconds, args.workers, args.max_pending)
        app = create_app(recognizer, args.model, limits)
    print(f"sdc serve: {args.model} on http://{args.host}:{args.port}/", file=sys.stderr)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    except SystemExit as exit:
        # uvicorn exits with status 1 when it cannot bind (the port is taken): say so in a line.
        if exit.code:
            print(f"error: cannot listen on {args.host}:{args.port}", file=sys.stderr)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
