"""Fetch the Free Spoken Digit Dataset for users who do not have a copy yet.

The download is all-or-nothing: the archive is streamed into a private temporary folder next to
the target (same filesystem, so the final step is an atomic rename), extracted only after every
member has been checked, verified against a digest of the WAV bytes, and moved into place last.
Any failure, Ctrl-C included, removes the temporary folder, so a later run never finds a
half-extracted dataset that looks complete.

The pin is a digest of the recordings rather than of the archive because GitHub generates
`archive/refs/tags/*.tar.gz` on the fly and its compressed bytes have changed before; the WAV
bytes of a tagged release cannot.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from http.client import HTTPException
from pathlib import Path, PurePosixPath, PureWindowsPath

from tqdm import tqdm

from sdc.errors import SdcError

log = logging.getLogger(__name__)

FSDD_URL = (
    "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
)
RECORDINGS_DIGEST = "dbd573d7cafe79c4b49f65718115e1304e24e067fa39eff18a660dc6cb9c360f"
"""`recordings_digest` of the `recordings/` folder of FSDD release v1.0.10."""
RECORDINGS_COUNT = 3000
"""Number of WAV files in FSDD release v1.0.10 (6 speakers x 10 digits x 50 takes)."""

_CHUNK = 1 << 16
_FILTER_ERRORS: tuple[type[Exception], ...] = (
    (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()
)
_OFFLINE_HINT = (
    "without internet, point SDC_DATA_DIR or data.root at a local copy of FSDD "
    "(a folder with recordings/ or a folder of WAVs)"
)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def recordings_digest(folder: Path) -> str:
    """Digest of every `.wav` file in `folder`, independent of archive format and file order.

    It is the SHA-256 of the UTF-8 text with one line `f"{name} {sha256_of_file_bytes}\\n"` per
    WAV, sorted by file name, so it pins both the set of names and their exact bytes while
    ignoring timestamps, permissions and how the files were packed.
    """
    folder = Path(folder)
    names = sorted(
        path.name for path in folder.iterdir() if path.suffix.lower() == ".wav" and path.is_file()
    )
    lines = [f"{name} {file_sha256(folder / name)}\n" for name in names]
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def download_fsdd(
    target: Path,
    url: str = FSDD_URL,
    expected_digest: str | None = RECORDINGS_DIGEST,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download and unpack FSDD so that `target/recordings/*.wav` exists; return `target`.

    `target` must not exist or be an empty folder: an existing dataset is never overwritten.
    With `expected_digest=None` the recordings are not verified (only for tests or mirrors of
    other releases). On any failure `target` is left as it was and no temporary file remains.
    """
    target = Path(target).expanduser()
    _check_target_free(target)
    target.parent.mkdir(parents=True, exist_ok=True)

    workdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.download-", dir=target.parent))
    try:
        archive = workdir / "fsdd.tar.gz"
        log.info("Downloading FSDD from %s", url)
        fetch(url, archive, progress=progress, timeout=timeout)

        extracted = workdir / "extracted"
        extracted.mkdir()
        _safe_extract(archive, extracted, source=url)
        archive.unlink()  # free the disk space before the dataset is moved into place

        release = _find_release(extracted, source=url)
        recordings = release / "recordings"
        if expected_digest is not None:
            got = recordings_digest(recordings)
            if got != expected_digest.lower():
                count = sum(1 for p in recordings.iterdir() if p.suffix.lower() == ".wav")
                raise SdcError(
                    f"FSDD from {url}: recordings digest is {got}, expected {expected_digest} "
                    f"({count} .wav files found); the download is corrupt or changed upstream, "
                    "nothing was kept"
                )

        _check_target_free(target)  # another process may have filled it while we downloaded
        _move_into_place(release, target)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    log.info("FSDD is ready in %s", target)
    return target


def _check_target_free(target: Path) -> None:
    """Refuse to touch a target that already holds something: it may be the user's data."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise SdcError(f"download target {target} is a file or a symlink, not a folder")
    if target.is_dir() and any(target.iterdir()):
        raise SdcError(
            f"download target {target} is not empty; point data.root at it if it holds FSDD, "
            "or choose an empty folder"
        )


def fetch(
    url: str,
    dest: Path,
    progress: bool,
    timeout: float,
    what: str = "FSDD",
    hint: str = _OFFLINE_HINT,
) -> None:
    """Stream `url` into `dest`; any network problem becomes one SdcError naming `what`, with
    `hint` (what to do without internet)."""
    total: int | None = None
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with (
                dest.open("wb") as out,
                tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=what,
                    disable=not (progress and total),
                ) as bar,
            ):
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise SdcError(
            f"downloading {what} from {url} failed: HTTP {exc.code} {_one_line(exc.reason)}; {hint}"
        ) from exc
    except urllib.error.URLError as exc:
        raise SdcError(
            f"downloading {what} from {url} failed: {_one_line(exc.reason)}; {hint}"
        ) from exc
    except (TimeoutError, HTTPException, ConnectionError) as exc:
        raise SdcError(
            f"downloading {what} from {url} failed: {_one_line(exc) or type(exc).__name__}; {hint}"
        ) from exc
    if total is not None and received != total:
        raise SdcError(
            f"downloading {what} from {url} failed: got {received} bytes, expected {total}; {hint}"
        )


def _one_line(reason: object) -> str:
    """Error texts are shown on one line, so collapse any newline an exception carries."""
    return " ".join(str(reason).split())


def _member_problem(member: tarfile.TarInfo, root: str) -> str | None:
    """Why `member` must not be extracted into `root`, or None when it is a plain file or folder.

    Links, devices and FIFOs are refused outright rather than judged by where they point: a
    dataset of WAVs has no use for them, and a link is how a later member escapes the folder.
    """
    name = member.name
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute():
        return "has an absolute path"
    if PureWindowsPath(name).drive:
        return "names a drive"
    resolved = os.path.realpath(os.path.join(root, name))
    try:
        inside = os.path.commonpath([root, resolved]) == root
    except ValueError:  # Windows: a different drive
        inside = False
    if not inside:
        return "escapes the extraction folder"
    if member.issym():
        return f"is a symlink (to {member.linkname!r})"
    if member.islnk():
        return f"is a hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "is a device file"
    if member.isfifo():
        return "is a FIFO"
    if not (member.isfile() or member.isdir()):
        return f"has unsupported tar type {member.type!r}"
    return None


def _safe_extract(archive: Path, dest: Path, source: str) -> None:
    """Extract `archive` into `dest` only if every member is a plain file or folder inside it.

    All members are checked before anything is written, so a hostile archive extracts nothing.
    Where Python has it (3.10.12+, 3.11.4+, 3.12), tarfile's own "data" filter runs as well.
    """
    root = os.path.realpath(dest)
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                problem = _member_problem(member, root)
                if problem is not None:
                    raise SdcError(
                        f"archive from {source}: member {member.name!r} {problem}; refusing to "
                        "extract anything"
                    )
                # What the data filter does, for Pythons without it: no setuid/sticky bits or
                # group/other write, owner can always read; ownership follows the current user
                # (tarfile only chowns when running as root, and then uid/gid 0 is that user).
                member.mode = (member.mode & 0o755) | (0o700 if member.isdir() else 0o600)
                member.uid = member.gid = 0
                member.uname = member.gname = ""
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - only Pythons without tarfile filters
                tar.extractall(dest, members=members)
    except _FILTER_ERRORS as exc:
        raise SdcError(
            f"archive from {source} holds an unsafe member ({_one_line(exc)}); nothing was kept"
        ) from exc
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise SdcError(
            f"archive from {source} is not a valid .tar.gz ({_one_line(exc)}); nothing was kept"
        ) from exc
    except OSError as exc:
        raise SdcError(
            f"could not extract the archive from {source} into {dest.parent}: {_one_line(exc)}"
        ) from exc


def _find_release(extracted: Path, source: str) -> Path:
    """The folder holding `recordings/`: the archive root or its single top-level folder."""
    if (extracted / "recordings").is_dir():
        return extracted
    candidates = [p for p in sorted(extracted.iterdir()) if (p / "recordings").is_dir()]
    if len(candidates) != 1:
        raise SdcError(
            f"archive from {source}: expected one release folder with recordings/ inside, "
            f"found {len(candidates)}"
        )
    return candidates[0]


def _move_into_place(release: Path, target: Path) -> None:
    """Rename the verified release to `target` in one step, never replacing a non-empty folder.

    On POSIX, rename() replaces an empty folder atomically and fails on a non-empty one; Windows
    refuses any existing folder, so there an empty target is removed first (and restored if the
    rename still fails).
    """
    try:
        release.rename(target)
        return
    except OSError as exc:
        if not (target.is_dir() and not target.is_symlink() and not any(target.iterdir())):
            raise SdcError(f"could not move the downloaded FSDD into {target}: {exc}") from exc
    target.rmdir()
    try:
        release.rename(target)
    except OSError as exc:
        target.mkdir(exist_ok=True)
        raise SdcError(f"could not move the downloaded FSDD into {target}: {exc}") from exc
