"""The two filters inference needs, in numpy alone: a Butterworth high-pass and polyphase
resampling, equal to scipy.signal's `butter` + `sosfilt` and `resample_poly` to float rounding.

Importing scipy.signal takes 0.6 s on a 2-core laptop (it pulls in scipy.stats and its array-API
layer), about two thirds of what `sdc predict model.onnx clip.wav` takes in all. Both filters are
short enough to write out: the high-pass as a convolution with its impulse response, the
resampler as scipy's Kaiser-windowed low-pass applied one output phase at a time.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

_TAIL = 1e-12
"""The high-pass's impulse response is cut where it has decayed below this (relative)."""
_RESAMPLE_BLOCK = 8192
"""Outputs computed per step of the resampler: bounds its working memory to a few MB."""


@lru_cache(maxsize=16)
def _highpass_response(cutoff_hz: float, sample_rate: int) -> np.ndarray:
    """Impulse response of the 2nd-order Butterworth high-pass (bilinear transform with the
    cutoff pre-warped, as `scipy.signal.butter(2, cutoff_hz, "highpass", fs=sample_rate)`)."""
    k = math.tan(math.pi * cutoff_hz / sample_rate)
    norm = 1.0 / (1.0 + math.sqrt(2.0) * k + k * k)
    b = (norm, -2.0 * norm, norm)
    a1 = 2.0 * (k * k - 1.0) * norm
    a2 = (1.0 - math.sqrt(2.0) * k + k * k) * norm
    radius = math.sqrt(abs(a2))  # the poles' distance from the origin (a complex pair)
    length = 64 + math.ceil(math.log(_TAIL) / math.log(max(radius, 1e-3)))
    response = np.zeros(length)
    y1 = y2 = 0.0
    for n in range(length):
        x = b[n] if n < 3 else 0.0
        y = x - a1 * y1 - a2 * y2
        response[n] = y
        y1, y2 = y, y1
    return response


def _convolve_head(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The first len(x) samples of the full convolution of x and h (by FFT when long)."""
    if len(x) * len(h) <= 1 << 20:
        return np.convolve(x, h)[: len(x)]
    size = 1 << (len(x) + len(h) - 2).bit_length()
    spectrum = np.fft.rfft(x, size) * np.fft.rfft(h, size)
    return np.fft.irfft(spectrum, size)[: len(x)]


def butterworth_highpass(x: np.ndarray, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    """`x` (float64) through a 2nd-order Butterworth high-pass that starts as if `x[0]` had
    always been there (scipy's `sosfilt` with `zi = sosfilt_zi(sos) * x[0]`).

    A high-pass passes no DC, so that steady state is the filter's rest applied to `x - x[0]`.
    """
    h = _highpass_response(float(cutoff_hz), int(sample_rate))
    x = np.asarray(x, dtype=np.float64)
    return _convolve_head(x - x[0], h)


@lru_cache(maxsize=16)
def _resampling_filter(up: int, down: int) -> np.ndarray:
    """scipy.signal.resample_poly's default filter for (up, down): a Kaiser (beta 5) windowed
    sinc low-pass at 1 / max(up, down) of Nyquist, 20 * max(up, down) + 1 taps, gain `up`."""
    max_rate = max(up, down)
    half_len = 10 * max_rate
    m = np.arange(2 * half_len + 1) - half_len
    cutoff = 1.0 / max_rate
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(2 * half_len + 1, 5.0)
    return h / h.sum() * up


def resample_poly(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """`x` resampled by up / down (integers), as `scipy.signal.resample_poly(x, up, down)`:
    the same filter, the same delay compensation and output length, zero outside `x`."""
    gcd = math.gcd(up, down)
    up, down = up // gcd, down // gcd
    x = np.asarray(x, dtype=np.float64)
    if up == down == 1:
        return x.copy()
    h = _resampling_filter(up, down)
    half_len = (len(h) - 1) // 2
    n_out = len(x) * up // down + bool(len(x) * up % down)
    # scipy's framing: the filter is delayed by `pre_pad` zeros, and the first `skip` outputs of
    # the zero-stuffed signal's convolution (up - 1 zeros after each sample) are dropped.
    pre_pad = down - half_len % down
    skip = (half_len + pre_pad) // down
    taps = -(-(pre_pad + len(h)) // up)
    delayed = np.zeros(taps * up)
    delayed[pre_pad : pre_pad + len(h)] = h
    # Row p: the taps that meet input samples when the output falls on phase p of `up`.
    phases = delayed.reshape(taps, up).T[:, ::-1]
    margin = taps + (skip * down) // up + 2
    padded = np.concatenate([np.zeros(margin), x, np.zeros(margin)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, taps)
    out = np.empty(n_out)
    for start in range(0, n_out, _RESAMPLE_BLOCK):
        k = np.arange(start, min(start + _RESAMPLE_BLOCK, n_out))
        position = (k + skip) * down
        # Output k is sum over t of delayed[phase + t * up] * x[newest - t].
        newest = position // up
        rows = windows[newest - taps + 1 + margin]  # x[newest - taps + 1 .. newest]
        out[start : start + len(k)] = np.einsum("kt,kt->k", phases[position % up], rows)
    return out
