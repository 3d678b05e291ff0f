"""Writing outputs so that a crash or Ctrl-C never leaves a half-written file behind.

Each file is written next to its destination under a temporary name and renamed into place:
a reader sees the old file or the new one, never a mix. (Lightning's own checkpoint saving
already does the same through fsspec transactions.)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; on success it replaces `path` atomically.

    The file ends with the mode any file the user writes gets (0666 less the umask), not the
    owner-only mode of the temporary file: a team's shared outputs stay readable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    """Atomically write `text` to `path` (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
