"""Another microphone: a random smooth frequency response per clip, by one batched FFT."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sdc.audio.augment.draws import log_uniform, uniform
from sdc.config.fields import option, probability


@dataclass
class Microphone:
    """A random frequency response: the colouring of another microphone, preamp or codec.

    FSDD's speakers each used their own microphone, and that, more than the voice, is what a
    model trained on five of them fails on with the sixth. Each clip gets a smooth response made
    of a tilt, a bass cut, a treble cut and a few resonances or dips; the clip's power is kept,
    so loudness stays the `gain` step's job.
    """

    p: float = probability(0.0)
    tilt_db: tuple[float, float] = option((-3.0, 3.0), low=-12.0, high=12.0)
    """Spectral tilt in dB per octave around 1 kHz: bright (> 0) or dull (< 0) microphones."""
    bass_cut_hz: tuple[float, float] = option((20.0, 300.0), low=1.0, high=4000.0)
    """Corner of a 12 dB/octave high-pass, log-uniform: small capsules and phones lose bass."""
    treble_cut_hz: tuple[float, float] = option((2500.0, 8000.0), low=100.0, high=100_000.0)
    """Corner of a 24 dB/octave low-pass, log-uniform: band-limited microphones and codecs.
    Corners above the Nyquist frequency only tilt the top band a little."""
    peaks: int = option(3, low=0)
    """Bell-shaped resonances (or dips) per clip, each at a log-uniform centre frequency."""
    peak_db: tuple[float, float] = option((-8.0, 8.0), low=-30.0, high=30.0)
    """Gain of each resonance at its centre, uniform in dB."""
    peak_octaves: tuple[float, float] = option((0.3, 1.0), low=0.05, high=4.0)
    """Width of each resonance (the bell's standard deviation, in octaves), uniform."""


PEAK_LOWEST_HZ = 100.0
"""Resonances are centred between this and the Nyquist frequency (log-uniform)."""
MICROPHONE_MARGIN = 512
"""Zeros after each clip before the FFT filter: its smooth responses ring for far less than
this, so nothing wraps from a clip's end onto its start."""


MIN_RESPONSE_HZ = 20.0
"""Below this, `microphone_response` holds its value: log-frequency curves diverge at 0 Hz."""


def microphone_response(
    freqs: torch.Tensor,
    tilt_db: torch.Tensor,
    bass_cut_hz: torch.Tensor,
    treble_cut_hz: torch.Tensor,
    peak_hz: torch.Tensor,
    peak_db: torch.Tensor,
    peak_octaves: torch.Tensor,
) -> torch.Tensor:
    """Magnitude responses in dB (B, F) at `freqs` (F,) Hz, one per clip.

    A tilt of `tilt_db[b]` dB per octave around 1 kHz, a second-order (12 dB/octave) high-pass
    at `bass_cut_hz[b]`, a fourth-order (24 dB/octave) low-pass at `treble_cut_hz[b]` (both
    Butterworth magnitudes), and Gaussian bells in log-frequency (`peak_*`: (B, peaks)).
    """
    f = freqs.clamp(min=MIN_RESPONSE_HZ).unsqueeze(0)  # (1, F)
    octaves = torch.log2(f / 1000.0)
    response = tilt_db.unsqueeze(1) * octaves
    response = response - 10 * torch.log10(1 + (bass_cut_hz.unsqueeze(1) / f) ** 4)
    response = response - 10 * torch.log10(1 + (f / treble_cut_hz.unsqueeze(1)) ** 8)
    distance = torch.log2(f.unsqueeze(1) / peak_hz.unsqueeze(2)) / peak_octaves.unsqueeze(2)
    bells = peak_db.unsqueeze(2) * torch.exp(-0.5 * distance.square())  # (B, peaks, F)
    return response + bells.sum(dim=1)


def colour(
    waves: torch.Tensor, lengths: torch.Tensor, response_db: torch.Tensor, n_fft: int
) -> torch.Tensor:
    """Filter each clip by its zero-phase `response_db` (B, n_fft // 2 + 1), keeping its power.

    `n_fft` should exceed the clips' width by the filter's length (a few hundred samples for
    these smooth responses), so that the circular convolution does not wrap the end round.
    """
    spectrum = torch.fft.rfft(waves, n_fft) * torch.pow(10.0, response_db / 20).to(waves.dtype)
    out = torch.fft.irfft(spectrum, n_fft)[:, : waves.shape[1]]
    mask = torch.arange(out.shape[1], device=out.device) < lengths.unsqueeze(1)
    out = out * mask
    before = waves.square().sum(dim=1, keepdim=True)
    after = out.square().sum(dim=1, keepdim=True).clamp(min=1e-20)
    return out * torch.sqrt(before / after)


def random_microphones(
    waves: torch.Tensor, lengths: torch.Tensor, config: Microphone, sample_rate: int
) -> torch.Tensor:
    """Each clip (B, L) through a microphone response of its own, drawn from `config`."""
    device, m = waves.device, waves.shape[0]
    n_fft = 1 << (waves.shape[1] + MICROPHONE_MARGIN - 1).bit_length()
    freqs = torch.fft.rfftfreq(n_fft, 1 / sample_rate, device=device)
    peaks = (m, config.peaks)
    response = microphone_response(
        freqs,
        tilt_db=uniform(m, *config.tilt_db, device),
        bass_cut_hz=log_uniform(m, *config.bass_cut_hz, device),
        treble_cut_hz=log_uniform(m, *config.treble_cut_hz, device),
        peak_hz=log_uniform(peaks, PEAK_LOWEST_HZ, sample_rate / 2, device),
        peak_db=uniform(peaks, *config.peak_db, device),
        peak_octaves=uniform(peaks, *config.peak_octaves, device),
    )
    return colour(waves, lengths, response, n_fft)
