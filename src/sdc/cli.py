"""What every entry point shares: user errors as one line on stderr, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from sdc.errors import SdcError


@contextmanager
def user_errors() -> Iterator[None]:
    """Print an `SdcError` as `error: ...` and exit with status 2 (bad input, not a crash)."""
    try:
        yield
    except SdcError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
