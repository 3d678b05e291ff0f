"""Decoding audio files into mono float32 arrays, and resampling them, with numpy, scipy and
soundfile: what an exported model needs to run without torch (`sdc.inference`).

soundfile reads WAV at any bit depth as well as FLAC and OGG; `torchaudio.load` would need
TorchCodec and FFmpeg.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from sdc.errors import SdcError, first_line

MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768_000
"""Below 1 kHz no speech survives; above 768 kHz is no audio format people record in."""


_BLOCK = 1 << 16


def _read_frames(path: Path) -> tuple[np.ndarray, int]:
    """Decode block by block until the data really ends.

    `soundfile.read` allocates what the header declares up front, so a 2 KB file whose header
    claims 4 GB of samples would take 16 GB of memory; here memory follows the actual data.
    """
    with sf.SoundFile(str(path)) as f:
        chunks = []
        while True:
            chunk = f.read(_BLOCK, dtype="float32", always_2d=True)
            if len(chunk):
                chunks.append(chunk)
            if len(chunk) < _BLOCK:
                break
        data = np.concatenate(chunks) if chunks else np.zeros((0, f.channels), np.float32)
        return data, f.samplerate


UNKNOWN_DATA_SIZES = (0, 0xFFFFFFFF)
"""What a WAV writer that could not seek back (a pipe, a stream) leaves as the data chunk's size."""


def _check_whole_wav(path: Path) -> None:
    """Refuse a WAV file whose data chunk is shorter than its header declares.

    libsndfile decodes such a file without a word, so a recording cut off mid-transfer would be
    answered as if whole: half a "seven" can be a confident "six". A streamed WAV, whose writer
    left the size unknown, is read as far as it goes.
    """
    try:
        with path.open("rb") as f:
            head = f.read(12)
            if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return
            size = path.stat().st_size
            position = 12
            while position + 8 <= size:
                f.seek(position)
                chunk, length = struct.unpack("<4sI", f.read(8))
                if chunk == b"data":
                    present = size - position - 8
                    if length not in UNKNOWN_DATA_SIZES and length > present:
                        raise SdcError(
                            f"{path}: truncated: its header declares {length} bytes of audio, "
                            f"the file holds {present}"
                        )
                    return
                position += 8 + length + (length & 1)
    except PermissionError:
        raise SdcError(f"{path}: permission denied (not readable by this user)") from None
    except IsADirectoryError:
        raise SdcError(f"{path}: a folder, expected an audio file") from None
    except FileNotFoundError:
        raise SdcError(f"{path}: no such file") from None


def decode_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """A file as a 1-D float32 array (channels averaged) and its sample rate.

    Integer formats come out in [-1, 1]; float files keep their values. Raises SdcError naming
    the file when it cannot be read or decoded, is a truncated WAV, is empty, has an implausible
    sample rate or holds NaN/Inf: a silently wrong clip would poison training or give a
    confident wrong answer.
    """
    path = Path(path)
    _check_whole_wav(path)
    try:
        data, file_rate = _read_frames(path)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, EOFError) as err:
        raise SdcError(f"{path}: cannot read audio ({first_line(err)})") from None
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise SdcError(f"{path}: the file holds no samples")
    if not MIN_SAMPLE_RATE <= file_rate <= MAX_SAMPLE_RATE:
        raise SdcError(
            f"{path}: sample rate {file_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    if not np.isfinite(data).all():
        raise SdcError(f"{path}: the audio holds NaN or infinite samples")
    return np.ascontiguousarray(data.mean(axis=1)), int(file_rate)


def resample_array(wave: np.ndarray, orig_freq: int, new_freq: int) -> np.ndarray:
    """`wave` at `new_freq`: polyphase resampling with a Kaiser-windowed low-pass (scipy), the
    inference side's resampler; training resamples with torchaudio (`sdc.audio.io`)."""
    if orig_freq == new_freq:
        return wave
    common = math.gcd(int(orig_freq), int(new_freq))
    out = signal.resample_poly(wave, int(new_freq) // common, int(orig_freq) // common)
    return out.astype(np.float32)
