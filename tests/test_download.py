"""download_fsdd against a local HTTP server: success, and every way it must fail cleanly."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sdc.data import download
from sdc.data.download import RECORDINGS_DIGEST, download_fsdd, recordings_digest
from sdc.errors import SdcError

TOP = "free-spoken-digit-dataset-1.0.10"
NAMES = ("0_jackson_0.wav", "1_theo_3.wav", "7_george_12.wav")


@pytest.fixture
def parent(tmp_path: Path) -> Path:
    """An empty folder to download into, so leftovers are easy to spot."""
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def _write_wav(path: Path, seed: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes((seed * 31 + i) % 256 for i in range(400)))


def _fake_release(tmp_path: Path) -> Path:
    """A tiny FSDD-shaped release folder; returns its recordings/ folder."""
    recordings = tmp_path / "release" / TOP / "recordings"
    recordings.mkdir(parents=True)
    for seed, name in enumerate(NAMES):
        _write_wav(recordings / name, seed)
    (tmp_path / "release" / TOP / "README.md").write_text("fake FSDD\n")
    return recordings


def _pack(recordings: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(recordings.parent, arcname=TOP)


def _pack_with(archive: Path, add_bad: Callable[[tarfile.TarFile], None]) -> None:
    """A tar.gz with one honest WAV and whatever `add_bad` appends."""
    wav = io.BytesIO()
    with wave.open(wav, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x01" * 100)
    data = wav.getvalue()
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(f"{TOP}/recordings/0_jackson_0.wav")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        add_bad(tar)


def _add_file(name: str) -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))

    return add


def _add_special(name: str, kind: bytes, linkname: str = "") -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        tar.addfile(info)

    return add


def _assert_clean(parent: Path, target: Path) -> None:
    assert not target.exists()
    assert list(parent.iterdir()) == [], "temporary files were left behind"


def test_download_extracts_and_verifies(
    tmp_path: Path, server: tuple[Path, str], parent: Path, caplog: pytest.LogCaptureFixture
) -> None:
    srv, base = server
    recordings = _fake_release(tmp_path)
    _pack(recordings, srv / "fsdd.tar.gz")
    target = parent / "fsdd"

    with caplog.at_level("INFO", logger="sdc.data.download"):
        got = download_fsdd(
            target, url=f"{base}/fsdd.tar.gz", expected_digest=recordings_digest(recordings)
        )

    assert got == target
    assert sorted(p.name for p in (target / "recordings").iterdir()) == sorted(NAMES)
    for name in NAMES:
        assert (target / "recordings" / name).read_bytes() == (recordings / name).read_bytes()
    assert (target / "README.md").read_text() == "fake FSDD\n"
    assert list(parent.iterdir()) == [target], "temporary files were left behind"
    assert base in caplog.text


def test_download_fills_an_existing_empty_target(
    tmp_path: Path, server: tuple[Path, str], parent: Path
) -> None:
    srv, base = server
    recordings = _fake_release(tmp_path)
    _pack(recordings, srv / "fsdd.tar.gz")
    target = parent / "fsdd"
    target.mkdir()

    download_fsdd(target, url=f"{base}/fsdd.tar.gz", expected_digest=None, progress=False)

    assert recordings_digest(target / "recordings") == recordings_digest(recordings)
    assert list(parent.iterdir()) == [target]


@pytest.mark.parametrize("expected", ["0" * 64, None])
def test_checksum_mismatch_keeps_nothing(
    tmp_path: Path, server: tuple[Path, str], parent: Path, expected: str | None
) -> None:
    srv, base = server
    recordings = _fake_release(tmp_path)
    _pack(recordings, srv / "fsdd.tar.gz")
    target = parent / "fsdd"
    kwargs = {} if expected is None else {"expected_digest": expected}  # None: the pinned default

    with pytest.raises(SdcError) as err:
        download_fsdd(target, url=f"{base}/fsdd.tar.gz", progress=False, **kwargs)

    message = str(err.value)
    assert (expected or RECORDINGS_DIGEST) in message
    assert recordings_digest(recordings) in message
    assert "nothing was kept" in message
    assert "\n" not in message
    _assert_clean(parent, target)


def _bad_member(label: str, tmp: Path) -> Callable[[tarfile.TarFile], None]:
    """Adds one unsafe member; `tmp` is outside the download folder, where escapes would land."""
    recordings = f"{TOP}/recordings"
    return {
        "parent": lambda: _add_file("../evil.wav"),
        "deep-parent": lambda: _add_file(f"{recordings}/../../../../evil.wav"),
        "absolute": lambda: _add_file(str(tmp / "evil.wav")),
        "symlink": lambda: _add_special(
            f"{recordings}/1_a_0.wav", tarfile.SYMTYPE, str(tmp / "evil.wav")
        ),
        "hardlink": lambda: _add_special(
            f"{recordings}/1_a_0.wav", tarfile.LNKTYPE, f"{recordings}/0_jackson_0.wav"
        ),
        "fifo": lambda: _add_special(f"{recordings}/fifo", tarfile.FIFOTYPE),
        "device": lambda: _add_special(f"{recordings}/dev", tarfile.CHRTYPE),
    }[label]()


@pytest.mark.parametrize(
    "label", ["parent", "deep-parent", "absolute", "symlink", "hardlink", "fifo", "device"]
)
def test_unsafe_archive_is_refused_before_extracting(
    tmp_path: Path,
    server: tuple[Path, str],
    parent: Path,
    monkeypatch: pytest.MonkeyPatch,
    label: str,
) -> None:
    srv, base = server
    _pack_with(srv / "bad.tar.gz", _bad_member(label, tmp_path))
    target = parent / "fsdd"
    extracted: list[str] = []
    real_extractall = tarfile.TarFile.extractall

    def spy(self: tarfile.TarFile, *args: Any, **kwargs: Any) -> None:
        extracted.append(label)
        real_extractall(self, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extractall", spy)

    with pytest.raises(SdcError, match="refusing to extract anything") as err:
        download_fsdd(target, url=f"{base}/bad.tar.gz", expected_digest=None, progress=False)

    assert f"{base}/bad.tar.gz" in str(err.value)
    assert extracted == [], "extractall ran on an unsafe archive"
    assert not (tmp_path / "evil.wav").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "srv"]
    _assert_clean(parent, target)


def test_not_an_archive_is_refused(server: tuple[Path, str], parent: Path) -> None:
    srv, base = server
    (srv / "fsdd.tar.gz").write_bytes(b"<html>not a tarball</html>")
    target = parent / "fsdd"

    with pytest.raises(SdcError, match=r"not a valid \.tar\.gz"):
        download_fsdd(target, url=f"{base}/fsdd.tar.gz", expected_digest=None, progress=False)

    _assert_clean(parent, target)


def test_offline_names_sdc_data_dir(parent: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/fsdd.tar.gz"
    target = parent / "fsdd"

    with pytest.raises(SdcError) as err:
        download_fsdd(target, url=url, progress=False, timeout=2.0)

    message = str(err.value)
    assert url in message
    assert "SDC_DATA_DIR" in message
    assert "data.root" in message
    assert "\n" not in message
    _assert_clean(parent, target)


def test_http_404_is_an_sdc_error(server: tuple[Path, str], parent: Path) -> None:
    _, base = server
    url = f"{base}/missing.tar.gz"
    target = parent / "fsdd"

    with pytest.raises(SdcError, match="404") as err:
        download_fsdd(target, url=url, progress=False)

    assert url in str(err.value)
    assert "SDC_DATA_DIR" in str(err.value)
    _assert_clean(parent, target)


def test_existing_target_is_not_overwritten(
    tmp_path: Path, server: tuple[Path, str], parent: Path
) -> None:
    srv, base = server
    _pack(_fake_release(tmp_path), srv / "fsdd.tar.gz")
    target = parent / "fsdd"
    target.mkdir()
    (target / "mine.txt").write_text("precious")

    with pytest.raises(SdcError, match="not empty"):
        download_fsdd(target, url=f"{base}/fsdd.tar.gz", expected_digest=None, progress=False)

    assert [p.name for p in target.iterdir()] == ["mine.txt"]
    assert (target / "mine.txt").read_text() == "precious"
    assert list(parent.iterdir()) == [target]


def test_interrupt_leaves_nothing_behind(
    tmp_path: Path, server: tuple[Path, str], parent: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, base = server
    _pack(_fake_release(tmp_path), srv / "fsdd.tar.gz")
    target = parent / "fsdd"

    def interrupted(folder: Path) -> str:
        assert any(folder.iterdir()), "the archive should be extracted by now"
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "recordings_digest", interrupted)

    with pytest.raises(KeyboardInterrupt):
        download_fsdd(target, url=f"{base}/fsdd.tar.gz", progress=False)

    _assert_clean(parent, target)


def test_recordings_digest_definition_order_and_bytes(tmp_path: Path) -> None:
    contents = {name: f"audio {name}".encode() for name in NAMES}
    forward, backward = tmp_path / "forward", tmp_path / "backward"
    forward.mkdir()
    backward.mkdir()
    for name in NAMES:
        (forward / name).write_bytes(contents[name])
    for name in reversed(NAMES):
        (backward / name).write_bytes(contents[name])
    (backward / "notes.txt").write_text("not a recording")

    text = "".join(
        f"{name} {hashlib.sha256(contents[name]).hexdigest()}\n" for name in sorted(NAMES)
    )
    expected = hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert recordings_digest(forward) == expected
    assert recordings_digest(backward) == expected

    changed = bytearray(contents[NAMES[1]])
    changed[0] ^= 1
    (backward / NAMES[1]).write_bytes(bytes(changed))
    assert recordings_digest(backward) != expected
