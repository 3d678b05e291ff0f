"""What every entry point shares: bad input is one line on stderr, never a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from sdc.errors import SdcError


@contextmanager
def user_errors() -> Iterator[None]:
    """Print an `SdcError` as `error: ...` and exit with status 2 (bad input, not a crash)."""
    try:
        yield
    except SdcError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def run_hydra_app(app: Callable[[], Any]) -> None:
    """Run a `@hydra.main` app so that a config mistake reads as one line naming the key.

    Hydra prints such mistakes over several lines plus a hint about HYDRA_FULL_ERROR. Asking it
    to raise instead (unless the user chose otherwise) lets them be condensed here; anything
    else, a bug, still ends in a full traceback.
    """
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        app()
    except (HydraException, OmegaConfBaseException) as err:
        message = _first_line(err)
        if err.__cause__ is not None:
            message = f"{message.rstrip('.')}: {_first_line(err.__cause__)}"
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
