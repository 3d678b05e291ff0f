"""Decoding audio files into mono float32 arrays, and resampling them, with numpy and
soundfile: what an exported model needs to run without torch (`sdc.inference`).

soundfile reads WAV at any bit depth as well as FLAC and OGG; `torchaudio.load` would need
TorchCodec and FFmpeg.
"""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from sdc.audio.filters import resample_poly
from sdc.errors import SdcError, first_line

MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768_000
"""Below 1 kHz no speech survives; above 768 kHz is no audio format people record in."""


_BLOCK = 1 << 16


class AudioTooLong(SdcError):
    """The audio runs past the caller's limit on seconds (a service's request limit)."""


def _read_frames(
    f: BinaryIO, name: str, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """Decode block by block until the data really ends, or past `max_seconds`.

    `soundfile.read` allocates what the header declares up front, so a 2 KB file whose header
    claims 4 GB of samples would take 16 GB of memory; here memory follows the actual data, and
    never exceeds the limit, however well a compressed file packs.
    """
    with sf.SoundFile(f) as sound:
        limit = None if max_seconds is None else math.ceil(max_seconds * sound.samplerate)
        chunks, frames = [], 0
        while True:
            chunk = sound.read(_BLOCK, dtype="float32", always_2d=True)
            if len(chunk):
                chunks.append(chunk)
                frames += len(chunk)
            if limit is not None and frames > limit:
                raise AudioTooLong(f"{name}: longer than the limit of {max_seconds:g} s")
            if len(chunk) < _BLOCK:
                break
        data = np.concatenate(chunks) if chunks else np.zeros((0, sound.channels), np.float32)
        return data, sound.samplerate


UNKNOWN_DATA_SIZES = (0, 0xFFFFFFFF)
"""What a WAV writer that could not seek back (a pipe, a stream) leaves as the data chunk's size."""


def _check_whole_wav(f: BinaryIO, name: str) -> None:
    """Refuse a WAV whose data chunk is shorter than its header declares.

    libsndfile decodes such a file without a word, so a recording cut off mid-transfer would be
    answered as if whole: half a "seven" can be a confident "six". A streamed WAV, whose writer
    left the size unknown, is read as far as it goes.
    """
    size = f.seek(0, io.SEEK_END)
    f.seek(0)
    head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    position = 12
    while position + 8 <= size:
        f.seek(position)
        chunk, length = struct.unpack("<4sI", f.read(8))
        if chunk == b"data":
            present = size - position - 8
            if length not in UNKNOWN_DATA_SIZES and length > present:
                raise SdcError(
                    f"{name}: truncated: its header declares {length} bytes of audio, "
                    f"the file holds {present}"
                )
            return
        position += 8 + length + (length & 1)


def decode_audio(path: str | Path, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """A file as a 1-D float32 array (channels averaged) and its sample rate.

    Integer formats come out in [-1, 1]; float files keep their values. Raises SdcError naming
    the file when it cannot be read or decoded, is a truncated WAV, is empty, has an implausible
    sample rate or holds NaN/Inf: a silently wrong clip would poison training or give a
    confident wrong answer. Past `max_seconds` (if given) it raises `AudioTooLong`.
    """
    path = Path(path)
    try:
        f = path.open("rb")
    except PermissionError:
        raise SdcError(f"{path}: permission denied (not readable by this user)") from None
    except IsADirectoryError:
        raise SdcError(f"{path}: a folder, expected an audio file") from None
    except FileNotFoundError:
        raise SdcError(f"{path}: no such file") from None
    except OSError as err:
        raise SdcError(f"{path}: cannot read audio ({first_line(err)})") from None
    with f:
        return decode_stream(f, str(path), max_seconds)


def decode_bytes(
    data: bytes, name: str, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """`decode_audio` for a file's contents held in memory (an upload); errors name `name`."""
    return decode_stream(io.BytesIO(data), name, max_seconds)


def decode_stream(
    f: BinaryIO, name: str, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """`decode_audio` for an open, seekable binary file; errors name `name`."""
    _check_whole_wav(f, name)
    f.seek(0)
    try:
        data, file_rate = _read_frames(f, name, max_seconds)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, EOFError) as err:
        reason = first_line(err)
        if reason.startswith("Error opening "):
            # libsndfile's own words follow the file object's repr, which names nothing useful.
            reason = reason.rsplit(": ", 1)[-1]
        raise SdcError(f"{name}: cannot read audio ({reason})") from None
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise SdcError(f"{name}: the file holds no samples")
    if not MIN_SAMPLE_RATE <= file_rate <= MAX_SAMPLE_RATE:
        raise SdcError(
            f"{name}: sample rate {file_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    if not np.isfinite(data).all():
        raise SdcError(f"{name}: the audio holds NaN or infinite samples")
    return np.ascontiguousarray(data.mean(axis=1)), int(file_rate)


def resample_array(wave: np.ndarray, orig_freq: int, new_freq: int) -> np.ndarray:
    """`wave` at `new_freq`: polyphase resampling with a Kaiser-windowed low-pass (scipy's), the
    inference side's resampler; training resamples with torchaudio (`sdc.audio.io`)."""
    if orig_freq == new_freq:
        return wave
    common = math.gcd(int(orig_freq), int(new_freq))
    out = resample_poly(wave, int(new_freq) // common, int(orig_freq) // common)
    return out.astype(np.float32)


def read_at(path: str | Path, sample_rate: int) -> np.ndarray:
    """A file as a mono float32 array at `sample_rate` (`decode_audio`, then `resample_array`)."""
    wave, rate = decode_audio(path)
    return resample_array(wave, rate, sample_rate)
