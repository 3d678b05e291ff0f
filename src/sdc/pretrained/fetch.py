"""Fetch the speech embedding's weights: two ONNX files inside openWakeWord's pinned wheel.

openWakeWord 0.5.1 is the last release whose wheel carries its models (later ones download them
from GitHub at run time); PyPI keeps every release's files for good, so the wheel's address and
digest can be pinned. Only the two files sdc needs are taken out of it, by exact name, and each
is checked against its own SHA-256 digest, also when a user put them in place by hand (offline).
As with FSDD, nothing half-written is ever left where a later run would take it for complete.

Licence: openWakeWord's README says the embedding model is Google's `speech_embedding` TF-Hub
module (Apache-2.0), re-implemented, and also that all the pre-trained models it includes are
CC BY-NC-SA 4.0 (non-commercial). sdc does not settle which applies to these two files (README,
Credits); it neither extracts nor uses the wheel's wake-word models.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch

from sdc.data.download import fetch, file_sha256
from sdc.errors import SdcError

log = logging.getLogger(__name__)

WHEEL_URL = (
    "https://files.pythonhosted.org/packages/00/b7/"
    "4bbef6bd840866579672eb7240c19f547dcb12dc685dbf725a67a6afbac3/"
    "openwakeword-0.5.1-py3-none-any.whl"
)
WHEEL_DIGEST = "015467e49f08b0ef8efa433690ce70566abb72f7c36501a6fa893762b4ddc559"
MEMBER_FOLDER = "openwakeword/resources/models"
FILES = {
    "melspectrogram.onnx": "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f",
    "embedding_model.onnx": "70d164290c1d095d1d4ee149bc5e00543250a7316b59f31d056cff7bd3075c1f",
}
FOLDER = "speech-embedding-openwakeword-0.5.1"
"""The weights' folder inside the cache folder (`features.weights_dir`)."""
_HINT = (
    "without internet, put melspectrogram.onnx and embedding_model.onnx from the "
    f"openwakeword 0.5.1 wheel ({MEMBER_FOLDER}/) into features.weights_dir/{FOLDER}/"
)


def weight_files(
    cache: str | Path,
    url: str = WHEEL_URL,
    wheel_digest: str = WHEEL_DIGEST,
    files: dict[str, str] = FILES,
    timeout: float = 30.0,
) -> Path:
    """The folder holding the checked ONNX files, downloaded into `cache` on first use."""
    folder = Path(cache).expanduser() / FOLDER
    if folder.is_dir():
        for name, digest in files.items():
            path = folder / name
            if not path.is_file():
                raise SdcError(f"{path}: missing; {_HINT}")
            if file_sha256(path) != digest:
                raise SdcError(
                    f"{path}: SHA-256 is not {digest}; not the openwakeword 0.5.1 file. "
                    "Remove the folder to download it again"
                )
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{FOLDER}.download-", dir=folder.parent))
    try:
        wheel = workdir / "openwakeword.whl"
        log.info("Downloading the speech embedding's weights from %s", url)
        fetch(url, wheel, progress=True, timeout=timeout, what="the speech embedding", hint=_HINT)
        if file_sha256(wheel) != wheel_digest:
            raise SdcError(
                f"the speech embedding from {url}: SHA-256 is not {wheel_digest}; "
                "the download is corrupt or changed upstream, nothing was kept"
            )
        staged = workdir / FOLDER
        staged.mkdir()
        _extract(wheel, staged, files, url)
        try:
            staged.rename(folder)
        except OSError:
            # Another process (a trial beside this one) finished first: take its checked copy.
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return weight_files(cache, url, wheel_digest, files, timeout)


def _extract(wheel: Path, dest: Path, files: dict[str, str], source: str) -> None:
    """Copy only the named members out of the wheel, each checked against its digest.

    Members are looked up by exact name and written to names sdc chooses, so no path inside the
    archive can place a file anywhere else.
    """
    try:
        with zipfile.ZipFile(wheel) as archive:
            for name, digest in files.items():
                member = f"{MEMBER_FOLDER}/{name}"
                try:
                    data = archive.read(member)
                except KeyError:
                    raise SdcError(f"{source}: the wheel has no {member}") from None
                if hashlib.sha256(data).hexdigest() != digest:
                    raise SdcError(f"{source}: {member} has not the pinned SHA-256 {digest}")
                (dest / name).write_bytes(data)
    except zipfile.BadZipFile as err:
        raise SdcError(f"{source}: not a wheel (zip) file ({err})") from None


def read_initializers(path: Path) -> dict[str, torch.Tensor]:
    """The weights (initializers) of an ONNX graph by name; needs the `onnx` package."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise SdcError(
            "features=speech_embedding needs the onnx package: pip install 'sdc[pretrained]'"
        ) from None
    graph = onnx.load(str(path)).graph
    return {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
