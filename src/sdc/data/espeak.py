"""espeak-ng, the formant synthesizer, through its C API.

The library and its voice data come from the `espeakng-loader` wheel (`pip install
'sdc[voices]'`), so no system package is needed. espeak-ng is GPL-3.0: sdc only loads it at
run time, when synthetic voices are asked for, and the clips it writes are plain data.

The C library keeps one global synthesizer per process, so `espeak()` hands out one shared
instance and every call holds a lock. That synthesizer carries state from one utterance to the
next: a clip depends on what the process said before it (`sdc.data.synthetic` speaks each
corpus in a fresh process for that reason).
"""

from __future__ import annotations

import ctypes
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from sdc.errors import SdcError

_RETRIEVAL = 1
"""AUDIO_OUTPUT_RETRIEVAL: samples go to our callback instead of a sound card."""
_RATE, _PITCH, _RANGE = 1, 3, 4
"""espeak_PARAMETER: words per minute, base pitch (0-100), pitch range (0-100)."""
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class Espeak:
    """Text to 16-bit samples at the synthesizer's own rate (22,050 Hz)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise SdcError(
                "synthetic voices need espeak-ng: pip install 'sdc[voices]' (espeakng-loader)"
            ) from None
        self.data_path = Path(espeakng_loader.get_data_path())
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self._lib.espeak_Info.restype = ctypes.c_char_p
        self.sample_rate = self._lib.espeak_Initialize(
            _RETRIEVAL, 0, str(self.data_path).encode(), 0
        )
        if self.sample_rate <= 0:
            raise SdcError(f"espeak-ng could not start with its data at {self.data_path}")
        self.version = self._lib.espeak_Info(None).decode()
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept alive: the library holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()

    def _collect(self, samples: Any, count: int, events: int) -> int:
        """The library's callback: `samples` points at `count` new 16-bit samples."""
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0  # 0: go on synthesizing

    def seed(self, value: int) -> bool:
        """Seed espeak-ng's own noise: breathy variants (f2, f3, ...) differ between runs without.

        False where the library has no `espeak_ng_SetRandSeed`: their clips then differ.
        """
        set_seed = getattr(self._lib, "espeak_ng_SetRandSeed", None)
        if set_seed is None:
            return False
        with self._lock:
            set_seed(ctypes.c_long(value))
        return True

    def variants(self) -> list[str]:
        """The voice variants (`+name` suffixes: m1-m8, f1-f5, klatt, ...) in the data."""
        return sorted(p.name for p in (self.data_path / "voices" / "!v").iterdir() if p.is_file())

    def say(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int) -> np.ndarray:
        """`text` spoken by `voice` (e.g. `en-gb-scotland+f3`) as float32 samples in [-1, 1].

        `rate` is in words per minute (80-450), `pitch` and `pitch_range` on espeak's 0-100.
        """
        with self._lock:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise SdcError(f"espeak-ng has no voice {voice!r}")
            for parameter, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range)):
                self._lib.espeak_SetParameter(parameter, int(value), 0)
            self._chunks.clear()
            encoded = text.encode()
            self._lib.espeak_Synth(
                encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            self._lib.espeak_Synchronize()
            samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            self._chunks.clear()
        return samples.astype(np.float32) / 32768.0


@lru_cache(maxsize=1)
def espeak() -> Espeak:
    """The process's one synthesizer (the C library cannot hold two)."""
    return Espeak()
