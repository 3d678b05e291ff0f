"""What every entry point shares: bad input is one line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from sdc.errors import SdcError, first_line
from sdc.training.allocator import keep_freed_memory


def one_line(text: str) -> str:
    """`text` with its control characters escaped (a newline as `\\n`): a file name may hold
    them, and a table row or an error must stay one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


@contextmanager
def user_errors() -> Iterator[None]:
    """Print an `SdcError` as `error: ...` and exit with status 2 (bad input, not a crash)."""
    try:
        yield
    except SdcError as err:
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        sys.exit(2)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors as sdc's: one `error:` line and exit status 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {one_line(message)} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


# Argument types for the commands' numeric and output options: a bad value is argparse's own
# error, before any model or file is loaded.


def positive_int(text: str) -> int:
    value = _parsed(int, text, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _parsed(float, text, "a number")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def probability(text: str) -> float:
    value = _parsed(float, text, "a number")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return value


def sample_rate(text: str) -> int:
    from sdc.audio.decode import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

    value = _parsed(int, text, "an integer")
    if not MIN_SAMPLE_RATE <= value <= MAX_SAMPLE_RATE:
        raise argparse.ArgumentTypeError(
            f"expected a rate in {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz, got {text!r}"
        )
    return value


def output_file(text: str) -> Path:
    """A file to write: not a folder, in a folder that exists (or can be made)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: a folder; expected a file to write")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {parent} is a file, not a folder")
    if parent is not None and not os.access(parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text}: {parent} is not writable")
    return path


def _parsed(kind: Callable[[str], Any], text: str, expected: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def run_hydra_app(app: Callable[[], Any]) -> None:
    """Run a `@hydra.main` app so that a config mistake reads as one line naming the key.

    Hydra prints such mistakes over several lines plus a hint about HYDRA_FULL_ERROR. Asking it
    to raise instead (unless the user chose otherwise) lets them be condensed here; anything
    else, a bug, still ends in a full traceback.
    """
    # Imported here so the commands that do not use Hydra (predict on ONNX) never load it.
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    keep_freed_memory()
    try:
        app()
    except (HydraException, OmegaConfBaseException) as err:
        message = first_line(err)
        if err.__cause__ is not None:
            message = f"{message.rstrip('.')}: {first_line(err.__cause__)}"
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except ValueError as err:
        # Hydra checks some overrides with plain ValueErrors (`logger=null`); those are the
        # user's input too. A ValueError from anywhere else is a bug and keeps its traceback.
        if not _raised_in_hydra(err):
            raise
        message = first_line(err)
        if "NoneType" in message:
            message += " (to leave out a config group, write ~group, not group=null)"
        print(f"error: overrides {' '.join(sys.argv[1:])}: {message}", file=sys.stderr)
        sys.exit(2)


def _raised_in_hydra(err: BaseException) -> bool:
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and f"{os.sep}hydra{os.sep}" in frames[-1].filename


COMMANDS = {
    "train": ("sdc.train", "train a model (Hydra overrides)"),
    "evaluate": ("sdc.evaluation.evaluate", "test a checkpoint on a split (Hydra overrides)"),
    "predict": ("sdc.inference.predict", "the digit in each audio file"),
    "transcribe": ("sdc.inference.transcribe", "the digit string in longer recordings"),
    "listen": ("sdc.inference.listen", "digits live from the microphone, a WAV file or stdin"),
    "serve": ("sdc.serve.main", "the model as an HTTP service with a web page"),
    "strings": ("sdc.strings.train", "train and test the digit-string reader (Hydra overrides)"),
    "export": ("sdc.inference.export", "a checkpoint to ONNX and TorchScript"),
    "ensemble": ("sdc.evaluation.ensemble", "one model averaging finished runs (same split)"),
    "results": ("sdc.lab.results", "the results table: recipes x protocols (Hydra overrides)"),
    "bench": ("sdc.lab.bench", "speed and memory on this machine (Hydra overrides)"),
    "loadtest": ("sdc.lab.loadtest", "sdc serve under concurrent clients: requests/s, latency"),
    "sweep-report": ("sdc.lab.sweep_report", "rank a sweep's trials"),
    "live-reading": ("sdc.lab.live_reading", "a digit-string reader live against whole reads"),
}
HYDRA_COMMANDS = ("train", "evaluate", "results", "bench", "strings")


def main(argv: list[str] | None = None) -> None:
    """`sdc COMMAND ...`: one entry point that hands the rest of the line to a command."""
    import importlib

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        usage = "\n".join(f"  {name:<12} {help}" for name, (_, help) in COMMANDS.items())
        print(f"usage: sdc COMMAND [ARGS...]\n\ncommands:\n{usage}", file=sys.stderr)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown command {argv[0]!r}", file=sys.stderr)
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    name, rest = argv[0], argv[1:]
    # Training commands keep freed memory for speed (`run_hydra_app`); predict, serve and the
    # rest hand it back, so that a long-running service does not hold its peak.
    module = importlib.import_module(COMMANDS[name][0])
    if name in HYDRA_COMMANDS:
        # Hydra reads its overrides from sys.argv.
        sys.argv = [f"sdc {name}", *rest]
        module.main()
    else:
        module.main(rest)
