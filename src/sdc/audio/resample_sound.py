"""Resampling of windows that are mostly silence: only the samples around the sound.

A centred digit fills about a fifth of its 2.3 s window; the rest is zeros, whose resampling is
zeros. Inference resamples every window to the embedding's 16 kHz and, for the speed views, to
two more rates, over the whole window: 8% of `best`'s batched time on a CPU. Here the
resampling runs over the stretch of the batch that holds sound, with the kernel's reach on
each side, and the output is zeros elsewhere: the same numbers to float rounding.
"""

from __future__ import annotations

import torch
from torch import nn
from torchaudio.transforms import Resample

from sdc.audio.sound_stretch import sound_stretch


def resample_sound(resample: nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """`resample(windows)` for (B, samples) windows, computed only around their non-zero
    samples; over the whole windows where sound fills more than half of them, where
    `resample` is not a torchaudio `Resample`, and in a graph being exported or traced,
    whose sizes cannot depend on the samples."""
    exporting = torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()
    if exporting or not isinstance(resample, Resample) or resample.orig_freq == resample.new_freq:
        return resample(windows)
    samples = windows.shape[-1]
    step, up = _block_sizes(resample)
    outputs = -(-up * samples // step)
    stretch = sound_stretch(windows)
    if stretch is None:
        return windows.new_zeros(windows.shape[0], outputs)
    # An output block reads the kernel's length of input from its start less `width`: beyond
    # this margin, outputs read only zeros.
    margin = resample.kernel.shape[-1] + step
    first = max(0, stretch[0] - margin) // step * step
    stop = min(samples, stretch[1] + margin)
    if 2 * (stop - first) > samples:
        return _on_these_threads(resample, windows)
    out = windows.new_zeros(windows.shape[0], outputs)
    part = _on_these_threads(resample, windows[:, first:stop])
    offset = first // step * up
    length = min(part.shape[-1], out.shape[-1] - offset)
    out[:, offset : offset + length] = part[:, :length]
    return out


def _on_these_threads(resample: Resample, windows: torch.Tensor) -> torch.Tensor:
    """`resample(windows)` the faster way for torch's threads: on one (a single clip, or
    `sdc predict`'s batch per core), `resampled`; on more, torchaudio's convolution, which
    oneDNN spreads over them (50 clips of 1.1 s on 2 threads: 2.4 ms against 4.1 ms)."""
    if torch.get_num_threads() == 1:
        return resampled(resample, windows)
    return resample(windows)


def resampled(resample: Resample, windows: torch.Tensor) -> torch.Tensor:
    """`resample(windows)`, as one matrix product of its kernel with blocks of the input.

    torchaudio convolves one input channel into one output channel per phase; oneDNN runs that
    one and a half to three times slower on one thread (8 -> 16 kHz for two clips of 0.6 s: 73
    against 182 us; 8.6 -> 8 kHz for one: 27 against 54 us; eight windows of 1 s: 0.33 against
    0.63 ms).
    """
    step, up = _block_sizes(resample)
    kernel = resample.kernel[:, 0]  # (up, taps): one filter per output phase
    padded = nn.functional.pad(windows, (resample.width, resample.width + step))
    blocks = padded.unfold(-1, kernel.shape[-1], step)  # (B, blocks, taps), a view
    if up < 8:
        # MKL's product with fewer than 8 columns is slow; with 8 rows, not.
        out = torch.matmul(kernel, blocks.transpose(-1, -2)).transpose(-1, -2)
    else:
        out = torch.matmul(blocks, kernel.T)
    return out.flatten(-2)[..., : -(-up * windows.shape[-1] // step)]


def _block_sizes(resample: Resample) -> tuple[int, int]:
    """Input samples per block, and the outputs each block gives (one per kernel phase)."""
    return int(resample.orig_freq) // resample.gcd, int(resample.new_freq) // resample.gcd
