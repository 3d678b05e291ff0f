"""Atomic writes: the old file or the new one, never a torn one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sdc.files import atomic_path, write_text


def test_write_text_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.txt"
    write_text(target, "first")
    write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["report.txt"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_written_file_has_the_mode_the_umask_gives_any_file(
    tmp_path: Path, umask: int, mode: int
) -> None:
    previous = os.umask(umask)
    try:
        write_text(tmp_path / "metrics.json", "{}")
        (tmp_path / "plain.txt").write_text("as open() makes it")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == mode
