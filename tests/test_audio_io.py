"""Reading audio: every format people have, and a clear one-line error for everything else."""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdc.audio.io import read_audio
from sdc.errors import SdcError


def sine(rate: int, seconds: float = 0.5, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * math.pi * freq * t)


@pytest.mark.parametrize(
    ("subtype", "rate", "channels"),
    [
        ("PCM_U8", 8000, 1),
        ("PCM_16", 8000, 1),
        ("PCM_24", 16000, 2),
        ("PCM_32", 44100, 1),
        ("FLOAT", 48000, 2),
        ("DOUBLE", 22050, 6),
    ],
)
def test_integer_and_float_wavs_at_any_rate_and_channel_count(
    tmp_path: Path, subtype: str, rate: int, channels: int
) -> None:
    wave = np.repeat(sine(rate)[:, None], channels, axis=1)
    path = tmp_path / f"clip_{subtype}.wav"
    sf.write(path, wave, rate, subtype=subtype)
    out = read_audio(path, 8000)
    assert out.dtype == torch.float32 and out.ndim == 1
    assert len(out) == pytest.approx(4000, abs=2)
    peak = np.abs(np.fft.rfft(out.numpy() * np.hanning(len(out)))).argmax() * 8000 / len(out)
    assert peak == pytest.approx(440, abs=20)
    assert float(out.abs().max()) == pytest.approx(0.5, abs=0.05)


def test_flac_and_ogg(tmp_path: Path) -> None:
    for name, fmt in (("a.flac", "FLAC"), ("a.ogg", "OGG")):
        sf.write(tmp_path / name, sine(16000), 16000, format=fmt)
        assert len(read_audio(tmp_path / name, 8000)) == pytest.approx(4000, abs=2)


def test_non_ascii_path(tmp_path: Path) -> None:
    path = tmp_path / "zéro_ünïcødé_数字.wav"
    sf.write(path, sine(8000), 8000)
    assert len(read_audio(path, 8000)) == 4000


def test_long_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "ten_minutes.wav"
    sf.write(path, np.zeros(16000 * 600, dtype=np.int16), 16000, subtype="PCM_16")
    assert len(read_audio(path, 8000)) == 8000 * 600


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "cannot read audio"),
        (b"this is a text file, not audio\n" * 10, "cannot read audio"),
    ],
    ids=["zero-bytes", "text"],
)
def test_unreadable_files_name_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(SdcError, match=message) as err:
        read_audio(path, 8000)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_file_and_folder_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(SdcError, match=r"missing\.wav"):
        read_audio(tmp_path / "missing.wav", 8000)
    (tmp_path / "folder.wav").mkdir()
    with pytest.raises(SdcError, match=r"folder\.wav: a folder, expected an audio file"):
        read_audio(tmp_path / "folder.wav", 8000)


def test_a_truncated_wav_is_an_error_naming_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    sf.write(path, sine(8000), 8000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    declared, present = len(data) - 44, len(data) // 2 - 44
    with pytest.raises(
        SdcError,
        match=rf"^{path}: truncated: its header declares {declared} bytes of audio, "
        rf"the file holds {present}$",
    ):
        read_audio(path, 8000)


def test_a_header_claiming_gigabytes_over_one_second_is_truncated(tmp_path: Path) -> None:
    samples = (sine(8000) * 32767).astype("<i2").tobytes()
    path = tmp_path / "liar.wav"
    path.write_bytes(wav_header(1, 8000, 16, 1, 2**31) + samples)
    with pytest.raises(SdcError, match=r"truncated: its header declares 2147483648 bytes"):
        read_audio(path, 8000)


def test_a_streamed_wav_of_unknown_size_is_read_as_far_as_it_goes(tmp_path: Path) -> None:
    samples = (sine(8000) * 32767).astype("<i2").tobytes()
    path = tmp_path / "stream.wav"
    path.write_bytes(wav_header(1, 8000, 16, 1, 0xFFFFFFFF) + samples)
    assert len(read_audio(path, 8000)) == len(samples) // 2


def test_an_unreadable_file_says_permission_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "locked.wav"
    sf.write(path, sine(8000), 8000, subtype="PCM_16")

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    # Root reads any file, so the refusal a user meets is simulated where sdc opens it.
    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(SdcError, match=rf"^{path}: permission denied"):
        read_audio(path, 8000)


def test_header_only_wav_has_no_samples(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0), 8000, subtype="PCM_16")
    with pytest.raises(SdcError, match="no samples"):
        read_audio(path, 8000)


def test_nan_and_inf_samples_are_refused(tmp_path: Path) -> None:
    wave = sine(8000).astype(np.float32)
    wave[100] = np.nan
    sf.write(tmp_path / "nan.wav", wave, 8000, subtype="FLOAT")
    wave[100] = np.inf
    sf.write(tmp_path / "inf.wav", wave, 8000, subtype="FLOAT")
    for name in ("nan.wav", "inf.wav"):
        with pytest.raises(SdcError, match="NaN or infinite"):
            read_audio(tmp_path / name, 8000)


def wav_header(channels: int, rate: int, bits: int, fmt: int, data_size: int) -> bytes:
    block = channels * max(bits // 8, 1)
    byte_rate = (rate * block) & 0xFFFFFFFF
    fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, byte_rate, block & 0xFFFF, bits)
    riff_size = 4 + 8 + len(fmt_chunk) + 8 + data_size
    return (
        b"RIFF"
        + struct.pack("<I", riff_size & 0xFFFFFFFF)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt_chunk))
        + fmt_chunk
        + b"data"
        + struct.pack("<I", data_size & 0xFFFFFFFF)
    )


FIXTURE_OK = [HealthCheck.function_scoped_fixture]  # the file is rewritten for every example


def check_read(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "fuzz.wav"
    path.write_bytes(payload)
    try:
        out = read_audio(path, 8000)
    except SdcError as err:
        assert "fuzz.wav" in str(err) and "\n" not in str(err)
    else:
        assert out.ndim == 1 and len(out) > 0 and torch.isfinite(out).all()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=st.binary(max_size=2048))
def test_random_bytes_never_crash_the_reader(tmp_path: Path, payload: bytes) -> None:
    check_read(tmp_path, payload)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    channels=st.integers(0, 12),
    rate=st.one_of(
        st.sampled_from([0, 1, 999, 8000, 11025, 16000, 44100, 48000, 768_001, 2**31 - 1]),
        st.integers(1000, 50_000),
    ),
    bits=st.sampled_from([0, 1, 8, 12, 16, 24, 32, 64, 99]),
    fmt=st.sampled_from([0, 1, 2, 3, 6, 7, 0xFFFE, 1234]),
    declared=st.integers(0, 2**32 - 1),
    body=st.binary(max_size=4096),
)
def test_random_wav_headers_give_a_clear_error_or_audio(
    tmp_path: Path, channels: int, rate: int, bits: int, fmt: int, declared: int, body: bytes
) -> None:
    check_read(tmp_path, wav_header(channels, rate, bits, fmt, declared) + body)


def test_valid_header_from_the_fuzzer_reads_back(tmp_path: Path) -> None:
    samples = (sine(8000) * 32767).astype("<i2").tobytes()
    buffer = io.BytesIO(wav_header(1, 8000, 16, 1, len(samples)) + samples)
    path = tmp_path / "built.wav"
    path.write_bytes(buffer.getvalue())
    assert len(read_audio(path, 8000)) == 4000
