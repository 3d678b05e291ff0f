"""Batched waveform augmentation that runs on the training device.

The write-up shifted pitch and stretched time clip by clip with librosa. Doing that with a fresh
`torchaudio.transforms.PitchShift` per clip costs about a second per clip (it rebuilds a long sinc
kernel every call). Here a whole batch is augmented with a handful of tensor ops:

0. onset cut: the start of each clip's sound cut off, as a recording started late leaves it;
1. pitch and speed: one speed change by resampling. Rates are rounded to a 50 Hz grid, so the
   few resampling kernels needed are tiny and cached, and the clips that share a rate are
   resampled together. Resampling moves the formants with the pitch, as a shorter vocal tract
   does, so a wide upward range imitates women's and children's voices from adult men's;
2. tempo: one batched phase vocoder with a rate per clip undoes the duration change of the pitch
   shift (not of the speed perturbation, which keeps it) and applies the random time stretch.
   Its phases are locked to the spectral peaks (`vocoder: phase_locked`): the plain vocoder,
   librosa's and torchaudio's, takes about 3 dB from a slowed clip and smears it;
3. reverb: FFT convolution with a synthetic room impulse response (exponentially decaying noise);
4. microphone: a random smooth frequency response (tilt, bass and treble cuts, resonances) by
   one batched FFT;
5. gain: a random loudness in dB;
6. endpointing: a clip's quiet start and end cut off at a random level below its loudest part,
   as an energy-based voice activity detector or a tightly trimmed recording leaves it;
7. placement: each clip lands at a random position of the fixed window (see `window.py`);
8. noise: Gaussian noise over the whole window, padding included, at an absolute level or at a
   signal-to-noise ratio relative to the clip.

Each step has its own probability; a clip the dice skip passes through that step untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torchaudio

from sdc.audio.dice import coin, log_uniform, uniform
from sdc.audio.window import fit_to_window
from sdc.errors import SdcError

RATE_GRID_HZ = 50
"""Resampling rates are rounded to this grid: gcd(8000, 8000 + k*50) >= 50 keeps kernels short."""


@dataclass
class OnsetCut:
    """Cut into the start of each clip's sound, as a recording started a moment late, a
    push-to-talk pressed after the first syllable, or a voice activity detector slow to open
    leaves it: "nine" without its "n".

    FSDD has such clips: in 518 of its 3,000 the sound reaches a quarter of its peak within the
    first 10 ms (theo 172, nicolas 132, george 116, jackson 92, lucas 5, yweweler 1), and they
    drew about half of the wrong answers of `best`'s head over `make results`' 14 splits in
    round 11's screen (docs/accuracy.md). The endpointing step (`trim`) cuts only what is
    quieter than a threshold; this one cuts into the sound itself.
    """

    p: float = 0.0
    seconds: tuple[float, float] = (0.0, 0.06)
    """How far past the clip's onset the cut falls, uniform per clip. The onset is the first
    10 ms frame within `ONSET_DB` of the clip's loudest; at most half of a clip is cut."""


ONSET_DB = -20.0
"""A clip's sound starts at its first frame this close (in dB) to its loudest: the quiet lead-in
that FSDD's trimming left is not what the onset cut removes. Its sound ends, for the offset
cut, at its last such frame."""


@dataclass
class OffsetCut:
    """Cut into the end of each clip's sound, as a recording stopped a moment early, a
    push-to-talk released too soon, or a voice activity detector quick to close leaves it:
    "seven" without its "n".

    FSDD has such clips too, fewer than cut onsets: 40 of its 3,000 still sound within 12 dB of
    their peak in their last 10 ms (nicolas 19, theo 18, george 3), and two of `best`'s clean
    errors end loud: nicolas's "seven"s heard as "eight" and "zero", their last 10 ms 14 and
    16 dB below their peaks (round 29 of docs/accuracy.md).
    """

    p: float = 0.0
    seconds: tuple[float, float] = (0.0, 0.06)
    """How far before the clip's offset the cut falls, uniform per clip. The offset is the end
    of the last 10 ms frame within `ONSET_DB` of the clip's loudest; at most half of a clip is
    cut."""


@dataclass
class PitchShift:
    p: float = 0.0
    semitones: tuple[float, float] = (-2.0, 2.0)


@dataclass
class TimeStretch:
    p: float = 0.0
    rate: tuple[float, float] = (0.85, 1.15)
    """> 1 speeds up (shorter clip), < 1 slows down; pitch is kept."""


@dataclass
class SpeedPerturb:
    p: float = 0.0
    factor: tuple[float, float] = (0.9, 1.1)
    """Playback speed: > 1 is higher and shorter, pitch and tempo together (Kaldi-style).

    Equal to a pitch shift of 12*log2(factor) semitones plus a time stretch with rate `factor`,
    and done as exactly that, in one resampling: the phase vocoder only runs when a pitch shift
    or a time stretch is also drawn for the clip.
    """


@dataclass
class Reverb:
    p: float = 0.0
    rt60: tuple[float, float] = (0.1, 0.6)
    """Reverberation time in seconds (decay by 60 dB), drawn uniformly per clip."""
    drr_db: tuple[float, float] = (0.0, 15.0)
    """Direct-to-reverberant energy ratio in dB: low is a far microphone in a live room."""


@dataclass
class Microphone:
    """A random frequency response: the colouring of another microphone, preamp or codec.

    FSDD's speakers each used their own microphone, and that, more than the voice, is what a
    model trained on five of them fails on with the sixth (docs/accuracy.md). Each clip gets a
    smooth response made of a tilt, a bass cut, a treble cut and a few resonances or dips; the
    clip's power is kept, so loudness stays the `gain` step's job.
    """

    p: float = 0.0
    tilt_db: tuple[float, float] = (-3.0, 3.0)
    """Spectral tilt in dB per octave around 1 kHz: bright (> 0) or dull (< 0) microphones."""
    bass_cut_hz: tuple[float, float] = (20.0, 300.0)
    """Corner of a 12 dB/octave high-pass, log-uniform: small capsules and phones lose bass."""
    treble_cut_hz: tuple[float, float] = (2500.0, 8000.0)
    """Corner of a 24 dB/octave low-pass, log-uniform: band-limited microphones, codecs and
    recordings made at a lower rate (FSDD's own differ: one speaker's fall off above 3.5 kHz,
    another's are 10 dB duller from 1 kHz up). Corners above the Nyquist frequency only tilt
    the top band a little."""
    peaks: int = 3
    """Bell-shaped resonances (or dips) per clip, each at a log-uniform centre frequency."""
    peak_db: tuple[float, float] = (-8.0, 8.0)
    """Gain of each resonance at its centre, uniform in dB."""
    peak_octaves: tuple[float, float] = (0.3, 1.0)
    """Width of each resonance (the bell's standard deviation, in octaves), uniform."""


@dataclass
class Gain:
    p: float = 0.0
    db: tuple[float, float] = (-12.0, 6.0)
    """Loudness change in dB, drawn uniformly per clip (before noise, so SNR is unaffected)."""


@dataclass
class Endpointing:
    """Cut each clip's start and end where they are quieter than a random threshold.

    FSDD's clips were trimmed, and not alike: nicolas's "four" starts on its vowel (its first
    20 ms are on average 7 dB below the clip's loudest, george's 29 dB), and a user's voice
    activity detector cuts wherever its threshold lies. `best` trained without this step lost
    3-22 points (13 on average) on the held-out speaker's clips cut at 15 dB below their
    loudest, most of all on "six" (docs/accuracy.md). This step shows the model digits without
    their weak onsets and codas.
    """

    p: float = 0.0
    threshold_db: tuple[float, float] = (-30.0, -10.0)
    """Frames (10 ms) at both ends quieter than this, relative to the clip's loudest frame, are
    cut: drawn uniformly per clip. -10 keeps little more than the vowel."""


ENDPOINT_FRAME_SECONDS = 0.01
"""The endpointing step's frame: short enough to keep a stop's burst, long enough to smooth the
waveform's own zero crossings."""


@dataclass
class RandomPlacement:
    p: float = 0.0
    """Probability that a clip goes to a uniformly random position instead of the centre."""


@dataclass
class GaussianNoise:
    p: float = 0.0
    std: tuple[float, float] = (0.001, 0.005)
    """Noise standard deviation, drawn log-uniformly per clip (full scale is 1.0)."""
    snr_db: tuple[float, float] | None = None
    """When set, replaces `std`: the signal-to-noise ratio in dB, drawn uniformly per clip,
    relative to the clip's RMS over its own samples (the window's padding does not count)."""


VOCODERS = ("phase_locked", "plain")
"""How the phase vocoder sets its phases (`phase_vocoder_stretch`)."""


def check_vocoder(vocoder: object, key: str) -> str:
    """`vocoder` if it is one of `VOCODERS`, else a one-line error naming `key`."""
    if vocoder not in VOCODERS:
        raise SdcError(f"{key}: expected one of {', '.join(VOCODERS)}, got {vocoder!r}")
    return str(vocoder)


@dataclass
class AugmentConfig:
    vocoder: str = "phase_locked"
    """`phase_locked` or `plain` (`VOCODERS`): how the pitch shift's and the time stretch's
    phase vocoder keeps each harmonic's bins together (`phase_vocoder_stretch`)."""
    onset_cut: OnsetCut = field(default_factory=OnsetCut)
    offset_cut: OffsetCut = field(default_factory=OffsetCut)
    pitch_shift: PitchShift = field(default_factory=PitchShift)
    speed: SpeedPerturb = field(default_factory=SpeedPerturb)
    time_stretch: TimeStretch = field(default_factory=TimeStretch)
    reverb: Reverb = field(default_factory=Reverb)
    microphone: Microphone = field(default_factory=Microphone)
    gain: Gain = field(default_factory=Gain)
    trim: Endpointing = field(default_factory=Endpointing)
    placement: RandomPlacement = field(default_factory=RandomPlacement)
    noise: GaussianNoise = field(default_factory=GaussianNoise)


class Resamplers:
    """Resampling kernels cached per (from, to, device, dtype): built once, reused each batch."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int, str, torch.dtype], torchaudio.transforms.Resample] = {}

    def __call__(
        self, waves: torch.Tensor, orig_freq: int, new_freq: int
    ) -> torchaudio.transforms.Resample:
        key = (orig_freq, new_freq, str(waves.device), waves.dtype)
        if key not in self._cache:
            self._cache[key] = torchaudio.transforms.Resample(
                orig_freq, new_freq, dtype=waves.dtype
            ).to(waves.device)
        return self._cache[key](waves)


def on_rate_grid(factors: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Round speed factors to those `speed_change` can apply exactly."""
    return torch.round(sample_rate * factors / RATE_GRID_HZ) * RATE_GRID_HZ / sample_rate


def speed_change(
    waves: torch.Tensor,
    lengths: torch.Tensor,
    factors: torch.Tensor,
    sample_rate: int,
    resamplers: Resamplers,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Play each clip `factors[b]` times faster (higher and shorter) by resampling.

    Returns the new padded batch, the new lengths and the factors actually applied after
    rounding to the rate grid (the caller compensates the duration with exactly those).
    """
    applied = on_rate_grid(factors, sample_rate)
    grid = torch.round(applied * sample_rate)
    new_lengths = torch.ceil(lengths.to(applied.dtype) / applied).long()
    out = waves.new_zeros(waves.shape[0], int(new_lengths.max()))
    # A loop over the distinct rates in the batch, not over clips; each group is cut to its own
    # longest clip, so one long clip in the batch does not make every resampling long.
    for rate in torch.unique(grid).tolist():
        members = torch.nonzero(grid == rate).squeeze(1)
        group = waves[members, : int(lengths[members].max())]
        rate = int(rate)
        shifted = group if rate == sample_rate else resamplers(group, rate, sample_rate)
        width = min(shifted.shape[1], out.shape[1])
        out[members, :width] = shifted[:, :width]
    mask = torch.arange(out.shape[1], device=out.device) < new_lengths.unsqueeze(1)
    return out * mask, new_lengths, applied


def phase_vocoder_stretch(
    waves: torch.Tensor,
    lengths: torch.Tensor,
    rates: torch.Tensor,
    n_fft: int = 256,
    hop_length: int = 64,
    lock_phases: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Change each clip's duration by 1/`rates[b]` keeping its pitch: one STFT for the batch.

    The plain phase vocoder (torchaudio's `phase_vocoder`, with a time step per clip instead of
    one per batch, and librosa's) advances every frequency bin's phase on its own. Where it
    repeats or skips an analysis frame (any rate but 1), the bins that carry one harmonic drift
    out of phase with each other, most at once from a silent or noisy frame: a slowed tone came
    out at a quarter of its amplitude, FSDD clips slowed to 0.8 2-4.5 dB quieter (the locked
    vocoder: 0.1-0.5 dB), smeared.
    `lock_phases` (identity phase locking, Laroche and Dolson, 1999) advances only each
    spectral peak's phase and gives the bins around it the peak's phase plus their offset from
    it in the analysis frame, which keeps tones at full amplitude and speech at its level. It
    needs one step per output frame (a loop of about a hundred small batched operations), about
    twice the plain vocoder's time.
    """
    window = torch.hann_window(n_fft, device=waves.device, dtype=waves.dtype)
    spec = torch.stft(
        waves, n_fft, hop_length, window=window, center=True, return_complex=True
    )  # (B, F, T)
    batch, freqs, frames = spec.shape
    in_frames = lengths.to(waves.device) // hop_length + 1
    out_lengths = torch.round(lengths.to(rates.dtype) / rates).long()
    out_frames = int((out_lengths.max() // hop_length + 1).item())

    steps = torch.arange(out_frames, device=waves.device, dtype=rates.dtype)
    time_steps = steps.unsqueeze(0) * rates.unsqueeze(1)  # (B, K)
    valid = time_steps < in_frames.unsqueeze(1)
    # Magnitude and phase once per input frame, then gathered: cheaper than gathering complex
    # frames and taking the angle of each gathered pair.
    magnitude = torch.nn.functional.pad(spec.abs(), (0, 2))
    angle = torch.nn.functional.pad(spec.angle(), (0, 2))
    idx0 = time_steps.floor().long().clamp(max=frames)
    alphas = (time_steps - idx0).unsqueeze(1)
    idx0 = idx0.unsqueeze(1).expand(batch, freqs, out_frames)
    idx1 = idx0 + 1

    phase_advance = torch.linspace(0, math.pi * hop_length, freqs, device=waves.device)
    phase_advance = phase_advance.to(waves.dtype).unsqueeze(1)
    angle0 = angle.gather(2, idx0)
    advance = angle.gather(2, idx1) - angle0 - phase_advance
    advance = advance - 2 * math.pi * torch.round(advance / (2 * math.pi)) + phase_advance
    m0, m1 = magnitude.gather(2, idx0), magnitude.gather(2, idx1)
    stretched_magnitude = (alphas * m1 + (1 - alphas) * m0) * valid.unsqueeze(1)
    if lock_phases:
        phase = _locked_phases(stretched_magnitude, angle0, advance)
    else:
        phase = torch.cumsum(torch.cat([angle[..., :1], advance[..., :-1]], dim=-1), dim=-1)
    stretched = torch.polar(stretched_magnitude, phase)

    out = torch.istft(
        stretched,
        n_fft,
        hop_length,
        window=window,
        center=True,
        length=int(out_lengths.max()),
    )
    mask = torch.arange(out.shape[1], device=out.device) < out_lengths.unsqueeze(1)
    return out * mask, out_lengths


def _locked_phases(
    magnitude: torch.Tensor, analysis_phase: torch.Tensor, advance: torch.Tensor
) -> torch.Tensor:
    """Identity phase locking over (B, F, K) output frames: each bin follows its nearest peak.

    `analysis_phase` is the phase of the input frame each output frame is read from, `advance`
    the phase each bin advances by to the next output frame (the plain vocoder's increment).
    """
    freqs = magnitude.shape[1]
    below = torch.nn.functional.pad(magnitude[:, :-1], (0, 0, 1, 0), value=-1.0)
    above = torch.nn.functional.pad(magnitude[:, 1:], (0, 0, 0, 1), value=-1.0)
    peak = (magnitude > below) & (magnitude >= above)
    bins = torch.arange(freqs, device=magnitude.device).view(1, freqs, 1).expand_as(magnitude)
    lower = torch.where(peak, bins, -1).cummax(dim=1).values
    upper = torch.where(peak, bins, freqs).flip(1).cummin(dim=1).values.flip(1)
    take_upper = (lower < 0) | ((upper < freqs) & (upper - bins < bins - lower))
    nearest = torch.where(take_upper, upper, lower)
    # A frame without a peak (digital silence) keeps every bin its own.
    nearest = torch.where((nearest < 0) | (nearest >= freqs), bins, nearest)
    offset = analysis_phase - analysis_phase.gather(1, nearest)

    phase = torch.empty_like(magnitude)
    current = analysis_phase[..., 0]
    phase[..., 0] = current
    for k in range(1, magnitude.shape[-1]):
        advanced = current + advance[..., k - 1]
        current = advanced.gather(1, nearest[..., k]) + offset[..., k]
        phase[..., k] = current
    return phase


def synthetic_rir(
    rt60: torch.Tensor, drr_db: torch.Tensor, sample_rate: int, length: int
) -> torch.Tensor:
    """Room impulse responses (B, length): a direct path, then exponentially decaying noise.

    The tail's amplitude falls by 60 dB after `rt60[b]` seconds; its energy is `drr_db[b]` below
    the direct path's. Each response has unit energy, so reverberation keeps a clip's loudness.
    """
    t = torch.arange(length, device=rt60.device, dtype=rt60.dtype) / sample_rate
    decay = torch.exp(-math.log(1000.0) * t / rt60.unsqueeze(1))
    tail = torch.randn(len(rt60), length, device=rt60.device, dtype=rt60.dtype) * decay
    tail[:, 0] = 0.0
    tail_energy = tail.square().sum(dim=1, keepdim=True).clamp(min=1e-12)
    tail = tail * torch.sqrt(torch.pow(10.0, -drr_db / 10).unsqueeze(1) / tail_energy)
    tail[:, 0] = 1.0
    return tail / tail.square().sum(dim=1, keepdim=True).sqrt()


def reverberate(
    waves: torch.Tensor, lengths: torch.Tensor, rirs: torch.Tensor, max_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convolve each clip with its impulse response by one batched FFT.

    The reverberant tail lengthens a clip, but never past `max_length` (the window), so that a
    long clip is not cropped at its start to make room for its own echo.
    """
    width = waves.shape[1] + rirs.shape[1] - 1
    n_fft = 1 << (width - 1).bit_length()
    spectrum = torch.fft.rfft(waves, n_fft) * torch.fft.rfft(rirs, n_fft)
    out = torch.fft.irfft(spectrum, n_fft)[:, :width]
    grown = (lengths + rirs.shape[1] - 1).clamp(max=max_length)
    new_lengths = torch.maximum(lengths, grown)
    mask = torch.arange(width, device=out.device) < new_lengths.unsqueeze(1)
    return out * mask, new_lengths


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


class WaveformAugment:
    """The training-time chain: pitch and speed, tempo, reverb, microphone, gain, endpointing,
    placement, noise.

    Not an `nn.Module`: it holds no learned state and is never saved in a checkpoint, so a
    trained model carries no trace of how it was augmented.
    """

    def __init__(self, config: AugmentConfig, sample_rate: int, window: int, fade: int = 0) -> None:
        check_vocoder(config.vocoder, "data.augment.vocoder")
        self.config = config
        self.sample_rate = sample_rate
        self.window = window
        self.fade = fade
        self.lock_phases = config.vocoder == "phase_locked"
        self._resamplers = Resamplers()

    @torch.no_grad()
    def __call__(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Augment a padded batch (B, L) of clips with `lengths`; returns (B, window)."""
        cfg, device, n = self.config, waves.device, waves.shape[0]
        lengths = lengths.to(device)
        ones = torch.ones(n, device=device)

        waves, lengths = self._cut(
            waves, lengths, cfg.onset_cut.p, cfg.onset_cut.seconds, cut_onsets
        )
        waves, lengths = self._cut(
            waves, lengths, cfg.offset_cut.p, cfg.offset_cut.seconds, cut_offsets
        )

        # Pitch shift and speed perturbation are one resampling; only the pitch shift's change
        # of duration is undone by the vocoder.
        factors, speed_factors, applied = ones, ones, ones
        pitched = coin(n, cfg.pitch_shift.p, device)
        if pitched.any():
            semitones = uniform(n, *cfg.pitch_shift.semitones, device) * pitched
            factors = torch.pow(2.0, semitones / 12.0)
        sped = coin(n, cfg.speed.p, device)
        if sped.any():
            # On the resampling grid already, so a clip with speed alone needs no vocoder.
            drawn = on_rate_grid(uniform(n, *cfg.speed.factor, device), self.sample_rate)
            speed_factors = torch.where(sped, drawn, ones)
            factors = factors * speed_factors
        resampled = (factors - 1).abs() > 1e-6
        if resampled.any():
            sub = torch.nonzero(resampled).squeeze(1)
            shifted, new_lengths, applied_sub = speed_change(
                waves[sub], lengths[sub], factors[sub], self.sample_rate, self._resamplers
            )
            waves, lengths = _scatter_clips(waves, lengths, sub, shifted, new_lengths)
            applied = ones.clone()
            applied[sub] = applied_sub.to(applied.dtype)

        stretched = coin(n, cfg.time_stretch.p, device)
        tempo = ones
        if stretched.any():
            tempo = torch.where(stretched, uniform(n, *cfg.time_stretch.rate, device), ones)
        # The vocoder both restores the duration the pitch shift altered and applies the tempo;
        # the speed perturbation's own change of duration is kept.
        vocoder_rate = tempo * speed_factors / applied
        needs_vocoder = (vocoder_rate - 1).abs() > 1e-6
        if needs_vocoder.any():
            for sub in _similar_lengths(torch.nonzero(needs_vocoder).squeeze(1), lengths):
                trimmed = waves[sub, : int(lengths[sub].max())]
                out, new_lengths = phase_vocoder_stretch(
                    trimmed, lengths[sub], vocoder_rate[sub], lock_phases=self.lock_phases
                )
                waves, lengths = _scatter_clips(waves, lengths, sub, out, new_lengths)

        reverberant = torch.nonzero(coin(n, cfg.reverb.p, device)).squeeze(1)
        if len(reverberant):
            m = len(reverberant)
            rt60 = uniform(m, *cfg.reverb.rt60, device)
            drr = uniform(m, *cfg.reverb.drr_db, device)
            rir_length = math.ceil(float(rt60.max()) * self.sample_rate)
            rirs = synthetic_rir(rt60, drr, self.sample_rate, rir_length).to(waves.dtype)
            trimmed = waves[reverberant, : int(lengths[reverberant].max())]
            out, new_lengths = reverberate(
                trimmed, lengths[reverberant], rirs, max(self.window, trimmed.shape[1])
            )
            waves, lengths = _scatter_clips(waves, lengths, reverberant, out, new_lengths)

        coloured = torch.nonzero(coin(n, cfg.microphone.p, device)).squeeze(1)
        if len(coloured):
            trimmed = waves[coloured, : int(lengths[coloured].max())]
            waves = waves.clone()
            waves[coloured, : trimmed.shape[1]] = self._microphone(trimmed, lengths[coloured])

        louder = coin(n, cfg.gain.p, device)
        if louder.any():
            gain_db = uniform(n, *cfg.gain.db, device) * louder
            waves = waves * torch.pow(10.0, gain_db / 20).unsqueeze(1).to(waves.dtype)

        waves, lengths = self._cut(waves, lengths, cfg.trim.p, cfg.trim.threshold_db, endpoint)

        position = torch.where(
            coin(n, cfg.placement.p, device),
            torch.rand(n, device=device),
            torch.full((n,), 0.5, device=device),
        )
        # The fade goes on the clip as it ends up (onset cut, endpointed), before the noise,
        # which covers the padding too.
        windows = fit_to_window(waves, lengths, self.window, position, self.fade)

        noisy = torch.nonzero(coin(n, cfg.noise.p, device)).squeeze(1)
        if len(noisy):
            if cfg.noise.snr_db is not None:
                snr = uniform(len(noisy), *cfg.noise.snr_db, device)
                std = noise_std_for_snr(windows[noisy], lengths[noisy], snr)
            else:
                std = log_uniform(len(noisy), *cfg.noise.std, device)
            noise = torch.randn(len(noisy), self.window, device=device, dtype=windows.dtype)
            windows[noisy] += noise * std.unsqueeze(1).to(windows.dtype)
        return windows

    def _cut(
        self,
        waves: torch.Tensor,
        lengths: torch.Tensor,
        p: float,
        drawn: tuple[float, float],
        cut: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`cut(clips, lengths, values, sample_rate)` on the clips the dice pick (probability
        `p`), each with its own value drawn uniformly from `drawn`: the onset cut's and the
        endpointing's shared shape."""
        members = torch.nonzero(coin(waves.shape[0], p, waves.device)).squeeze(1)
        if not len(members):
            return waves, lengths
        values = uniform(len(members), *drawn, waves.device)
        out, new_lengths = cut(waves[members], lengths[members], values, self.sample_rate)
        return _scatter_clips(waves, lengths, members, out, new_lengths)

    def _microphone(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        cfg, device, m = self.config.microphone, waves.device, waves.shape[0]
        n_fft = 1 << (waves.shape[1] + MICROPHONE_MARGIN - 1).bit_length()
        freqs = torch.fft.rfftfreq(n_fft, 1 / self.sample_rate, device=device)
        peaks = (m, cfg.peaks)
        response = microphone_response(
            freqs,
            tilt_db=uniform(m, *cfg.tilt_db, device),
            bass_cut_hz=log_uniform(m, *cfg.bass_cut_hz, device),
            treble_cut_hz=log_uniform(m, *cfg.treble_cut_hz, device),
            peak_hz=log_uniform(peaks, PEAK_LOWEST_HZ, self.sample_rate / 2, device),
            peak_db=uniform(peaks, *cfg.peak_db, device),
            peak_octaves=uniform(peaks, *cfg.peak_octaves, device),
        )
        return colour(waves, lengths, response, n_fft)


PEAK_LOWEST_HZ = 100.0
"""Resonances are centred between this and the Nyquist frequency (log-uniform)."""
MICROPHONE_MARGIN = 512
"""Zeros after each clip before the microphone's FFT filter: its smooth responses ring for far
less than this, so nothing wraps from a clip's end onto its start."""


def _loud_frames(
    waves: torch.Tensor, lengths: torch.Tensor, threshold_db: torch.Tensor, sample_rate: int
) -> tuple[torch.Tensor, int]:
    """Which frames (B, frames) of each clip (B, L) are within `threshold_db` (B,) of the clip's
    loudest frame, and the frame's length in samples.

    Each clip is judged against its own loudest frame only, so nothing depends on the other
    clips of the batch. A clip's last, partial frame counts by its own samples; frames past its
    end are never loud.
    """
    frame = max(1, round(ENDPOINT_FRAME_SECONDS * sample_rate))
    batch, width = waves.shape
    n_frames = -(-width // frame)
    samples = torch.arange(n_frames * frame, device=waves.device)
    inside = samples < lengths.unsqueeze(1)
    padded = torch.nn.functional.pad(waves, (0, n_frames * frame - width)) * inside
    counts = inside.view(batch, n_frames, frame).sum(dim=2)
    power = padded.square().view(batch, n_frames, frame).sum(dim=2) / counts.clamp(min=1)
    decibels = 10 * torch.log10(power + 1e-10)
    loud = decibels >= decibels.amax(dim=1, keepdim=True) + threshold_db.unsqueeze(1)
    return loud & (counts > 0), frame


def _from(waves: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Each clip (B, L) from sample `start[b]` on, moved to the start of its row."""
    width = waves.shape[1]
    source = (torch.arange(width, device=waves.device) + start.unsqueeze(1)).clamp(max=width - 1)
    return waves.gather(1, source)


def _sound_span(
    waves: torch.Tensor, lengths: torch.Tensor, threshold_db: torch.Tensor, sample_rate: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each clip's sound starts and ends (samples, (B,) each): the start of its first and
    the end of its last frame within `threshold_db` (B,) of its loudest. The endpointing, the
    onset cut and the offset cut all measure a clip so."""
    loud, frame = _loud_frames(waves, lengths, threshold_db, sample_rate)
    # With no loud frame (no samples at all) both argmaxes are 0: start 0, end 0.
    start = loud.int().argmax(dim=1) * frame
    last = loud.shape[1] - 1 - loud.flip(1).int().argmax(dim=1)
    return start, torch.minimum((last + 1) * frame, lengths)


def endpoint(
    waves: torch.Tensor, lengths: torch.Tensor, threshold_db: torch.Tensor, sample_rate: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut each clip (B, L) to the frames from its first to its last within `threshold_db` (B,)
    of its loudest frame; returns the clips, moved to the start of the rows, and their lengths.

    A clip with no samples keeps length 0.
    """
    lengths = lengths.to(waves.device)
    start, end = _sound_span(waves, lengths, threshold_db, sample_rate)
    return _from(waves, start), (end - start).to(lengths.dtype)


def cut_onsets(
    waves: torch.Tensor, lengths: torch.Tensor, seconds: torch.Tensor, sample_rate: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Start each clip (B, L) `seconds[b]` after its onset, the first frame within `ONSET_DB` of
    its loudest, cutting at most half of it; returns the clips, moved to the start of the rows
    and zero after their ends, and their lengths."""
    lengths = lengths.to(waves.device)
    threshold = torch.full_like(seconds, ONSET_DB, dtype=waves.dtype)
    onset, _ = _sound_span(waves, lengths, threshold, sample_rate)
    start = torch.minimum(onset + torch.round(seconds * sample_rate).long(), lengths // 2)
    new_lengths = lengths - start
    inside = torch.arange(waves.shape[1], device=waves.device) < new_lengths.unsqueeze(1)
    return _from(waves, start) * inside, new_lengths


def cut_offsets(
    waves: torch.Tensor, lengths: torch.Tensor, seconds: torch.Tensor, sample_rate: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """End each clip (B, L) `seconds[b]` before its offset, the end of its last frame within
    `ONSET_DB` of its loudest, cutting at most half of it; returns the clips, zero after their
    new ends, and their lengths."""
    lengths = lengths.to(waves.device)
    threshold = torch.full_like(seconds, ONSET_DB, dtype=waves.dtype)
    _, offset = _sound_span(waves, lengths, threshold, sample_rate)
    end = offset - torch.round(seconds * sample_rate).long()
    new_lengths = torch.maximum(end, lengths - lengths // 2)
    inside = torch.arange(waves.shape[1], device=waves.device) < new_lengths.unsqueeze(1)
    return waves * inside, new_lengths


def noise_std_for_snr(
    windows: torch.Tensor, lengths: torch.Tensor, snr_db: torch.Tensor
) -> torch.Tensor:
    """The noise standard deviation that puts each clip at `snr_db` (B,).

    The signal's power is its mean square over the clip's own samples inside the window, so a
    short clip in a long window is not judged quieter than it sounds.
    """
    samples = lengths.to(windows.device).clamp(min=1, max=windows.shape[1])
    power = windows.square().sum(dim=1) / samples
    return torch.sqrt(power * torch.pow(10.0, -snr_db / 10))


VOCODER_GROUP = 16
"""Clips per phase-vocoder call. Each call pads its clips to the longest of them; FSDD's longest
clip is five times its mean, so grouping clips of similar length saves most of the padding."""


def _similar_lengths(members: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    """`members` (indices into the batch) in groups of similar `lengths`, shortest first."""
    ordered = members[torch.argsort(lengths[members])]
    return list(torch.split(ordered, VOCODER_GROUP))


def _scatter_clips(
    waves: torch.Tensor,
    lengths: torch.Tensor,
    members: torch.Tensor,
    clips: torch.Tensor,
    clip_lengths: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Put re-timed clips back into the batch, widening it if they grew longer."""
    width = max(waves.shape[1], clips.shape[1])
    out = torch.nn.functional.pad(waves, (0, width - waves.shape[1]))
    out[members] = torch.nn.functional.pad(clips, (0, width - clips.shape[1]))
    lengths = lengths.clone()
    lengths[members] = clip_lengths.to(lengths.dtype)
    return out, lengths
