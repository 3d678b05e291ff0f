"""The batched, device-side augmentation and the window fitting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchaudio

from sdc.audio.augment.chain import AugmentConfig, Gain, RandomPlacement, WaveformAugment
from sdc.audio.augment.cuts import OnsetCut, Trim, cut_onsets, trim_quiet_ends
from sdc.audio.augment.microphone import Microphone, microphone_response
from sdc.audio.augment.noise import GaussianNoise
from sdc.audio.augment.resample import PitchShift, Resamplers, SpeedPerturb, speed_change
from sdc.audio.augment.reverb import Reverb, reverberate, synthetic_rir
from sdc.audio.augment.vocoder import TimeStretch, phase_vocoder_stretch
from sdc.audio.window import fit_to_window
from sdc.errors import SdcError

SR = 8000


def only(**steps: object) -> AugmentConfig:
    """The chain with every step off but `steps` (the defaults are the write-up's recipe)."""
    off = {
        "pitch_shift": PitchShift(p=0.0),
        "time_stretch": TimeStretch(p=0.0),
        "placement": RandomPlacement(p=0.0),
        "noise": GaussianNoise(p=0.0),
    }
    return AugmentConfig(**{**off, **steps})


def tone(freq: float, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return torch.sin(2 * math.pi * freq * t)


def peak_frequency(wave: torch.Tensor) -> float:
    """Dominant frequency, refined by parabolic interpolation between FFT bins."""
    spectrum = torch.fft.rfft(wave.double() * torch.hann_window(len(wave), dtype=torch.float64))
    mag = spectrum.abs().log()
    k = int(mag[1:-1].argmax()) + 1
    a, b, c = mag[k - 1].item(), mag[k].item(), mag[k + 1].item()
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + offset) * SR / len(wave)


def test_window_centres_pads_and_crops() -> None:
    waves = torch.zeros(2, 6)
    waves[0, :4] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    waves[1, :6] = torch.arange(1.0, 7.0)
    lengths = torch.tensor([4, 6])
    out = fit_to_window(waves, lengths, window=5)
    assert out.shape == (2, 5)
    assert out[0].tolist() in ([0, 1, 2, 3, 4], [1, 2, 3, 4, 0])
    assert out[1].tolist() in ([1, 2, 3, 4, 5], [2, 3, 4, 5, 6])
    start = fit_to_window(waves, lengths, 5, position=torch.zeros(2))
    assert start[0].tolist() == [1, 2, 3, 4, 0]
    assert start[1].tolist() == [1, 2, 3, 4, 5]
    end = fit_to_window(waves, lengths, 5, position=torch.ones(2))
    assert end[0].tolist() == [0, 1, 2, 3, 4]
    assert end[1].tolist() == [2, 3, 4, 5, 6]


@pytest.mark.parametrize("semitones", [-4.0, -2.0, 1.5, 3.0])
def test_speed_change_moves_pitch_by_the_requested_semitones(semitones: float) -> None:
    wave = tone(440.0).unsqueeze(0)
    factor = torch.tensor([2 ** (semitones / 12)])
    shifted, lengths, applied = speed_change(wave, torch.tensor([SR]), factor, SR, Resamplers())
    # Pitch as a speed change, then the vocoder restores the duration: pitch must survive it.
    restored, restored_lengths = phase_vocoder_stretch(shifted, lengths, 1 / applied)
    measured = 12 * math.log2(peak_frequency(restored[0, : restored_lengths[0]]) / 440.0)
    assert measured == pytest.approx(semitones, abs=0.25)
    assert int(restored_lengths[0]) == pytest.approx(SR, rel=0.02)


@pytest.mark.parametrize("rate", [0.8, 0.9, 1.1, 1.25])
def test_time_stretch_changes_duration_and_keeps_pitch(rate: float) -> None:
    wave = tone(500.0).unsqueeze(0)
    out, lengths = phase_vocoder_stretch(wave, torch.tensor([SR]), torch.tensor([rate]))
    assert int(lengths[0]) == pytest.approx(SR / rate, rel=0.02)
    # The audible part (not the zero tail) must have the expected length too.
    energy = out[0].abs() > 0.05
    audible = int(np.flatnonzero(energy.numpy()).max()) + 1
    assert audible == pytest.approx(SR / rate, rel=0.02)
    assert peak_frequency(out[0, : lengths[0]]) == pytest.approx(500.0, rel=0.01)


@pytest.mark.parametrize("rate", [0.63, 0.8, 0.95, 1.25])
def test_the_phase_locked_vocoder_keeps_a_tones_amplitude(rate: float) -> None:
    out, length = phase_vocoder_stretch(
        tone(300.0).unsqueeze(0), torch.tensor([SR]), torch.tensor([rate])
    )
    steady = out[0, 1000 : int(length[0]) - 1000]
    assert float(steady.abs().max()) == pytest.approx(1.0, abs=0.02)
    assert float(steady.square().mean()) == pytest.approx(0.5, abs=0.02)


def test_the_plain_vocoder_is_torchaudios_and_loses_a_slowed_tone() -> None:
    """Why `vocoder: phase_locked` exists: torchaudio's (and librosa's) vocoder, which the plain
    one reproduces clip by clip, turns a tone slowed to 0.8 into a quarter of its amplitude."""
    wave = tone(300.0).unsqueeze(0)
    n_fft, hop = 256, 64
    window = torch.hann_window(n_fft)
    spec = torch.stft(wave, n_fft, hop, window=window, center=True, return_complex=True)
    advance = torch.linspace(0, math.pi * hop, n_fft // 2 + 1).unsqueeze(1)
    expected = torch.istft(
        torchaudio.functional.phase_vocoder(spec, 0.8, advance), n_fft, hop, window=window
    )
    plain, _ = phase_vocoder_stretch(
        wave, torch.tensor([SR]), torch.tensor([0.8]), lock_phases=False
    )
    width = min(plain.shape[1], expected.shape[1]) - 200
    torch.testing.assert_close(plain[0, :width], expected[0, :width], atol=1e-4, rtol=1e-4)
    assert float(plain[0, 1000:-1000].abs().max()) < 0.5


def test_speech_keeps_its_level_through_the_phase_locked_vocoder() -> None:
    """A voiced sound (harmonics of 120 Hz with a vibrato, starting after silence, as a clip
    does) keeps its power, slowed or sped up; the plain vocoder's loss is what this guards."""
    t = torch.arange(SR) / SR
    f0 = 120 * (1 + 0.03 * torch.sin(2 * math.pi * 5 * t))
    phase = 2 * math.pi * torch.cumsum(f0, 0) / SR
    voiced = sum(torch.sin(h * phase) / h for h in range(1, 20))
    voiced = torch.cat([torch.zeros(800), voiced * torch.hann_window(SR)]).unsqueeze(0)
    lengths = torch.tensor([voiced.shape[1]])
    power = float(voiced.square().sum())
    for rate in (0.8, 1.2):
        locked, _ = phase_vocoder_stretch(voiced, lengths, torch.tensor([rate]))
        plain, _ = phase_vocoder_stretch(voiced, lengths, torch.tensor([rate]), lock_phases=False)
        ratio = float(locked.square().sum()) * rate / power
        assert ratio == pytest.approx(1.0, abs=0.03), rate
        assert float(plain.square().sum()) * rate / power < 0.92, "0.69 and 0.87 when written"


def test_an_unknown_vocoder_is_one_line_naming_the_key() -> None:
    with pytest.raises(
        SdcError, match=r"^data.augment.vocoder: expected one of phase_locked, plain, got 'x'$"
    ):
        WaveformAugment(AugmentConfig(vocoder="x"), SR, window=5000)


def test_vocoder_rates_are_per_clip() -> None:
    waves = torch.stack([tone(400.0), tone(400.0)])
    rates = torch.tensor([0.8, 1.25])
    _, lengths = phase_vocoder_stretch(waves, torch.tensor([SR, SR]), rates)
    assert lengths.tolist() == [round(SR / 0.8), round(SR / 1.25)]


def batch_of_clips(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    lengths = torch.randint(1500, 4000, (n,))
    waves = torch.zeros(n, int(lengths.max()))
    for i, length in enumerate(lengths.tolist()):
        waves[i, :length] = tone(300.0 + 50 * i, length / SR)
    return waves, lengths


def test_all_augmentations_off_is_the_centred_window() -> None:
    waves, lengths = batch_of_clips()
    augment = WaveformAugment(only(), SR, window=5000)
    assert torch.equal(augment(waves, lengths), fit_to_window(waves, lengths, 5000))


@pytest.mark.parametrize(
    "config",
    [
        only(pitch_shift=PitchShift(p=1.0)),
        only(time_stretch=TimeStretch(p=1.0)),
        only(placement=RandomPlacement(p=1.0)),
        only(noise=GaussianNoise(p=1.0)),
    ],
    ids=["pitch", "stretch", "placement", "noise"],
)
def test_each_augmentation_changes_the_clips_and_keeps_the_shape(config: AugmentConfig) -> None:
    waves, lengths = batch_of_clips()
    clean = fit_to_window(waves, lengths, 5000)
    out = WaveformAugment(config, SR, window=5000)(waves, lengths)
    assert out.shape == (6, 5000)
    assert torch.isfinite(out).all()
    changed = (out - clean).abs().amax(dim=1) > 1e-3
    assert changed.sum() >= 5


def test_noise_covers_the_padding() -> None:
    waves, lengths = batch_of_clips()
    config = only(noise=GaussianNoise(p=1.0, std=(0.01, 0.01)))
    out = WaveformAugment(config, SR, window=5000)(waves, lengths)
    clean = fit_to_window(waves, lengths, 5000)
    padding = clean == 0
    assert out[padding].std().item() == pytest.approx(0.01, rel=0.1)


def test_placement_is_random_only_with_probability() -> None:
    waves, lengths = batch_of_clips(40)
    out = WaveformAugment(only(placement=RandomPlacement(p=0.0)), SR, 5000)(waves, lengths)
    assert torch.equal(out, fit_to_window(waves, lengths, 5000))


def clip_power(wave: torch.Tensor) -> float:
    return float(wave.double().square().mean())


@pytest.mark.parametrize(
    "config",
    [
        only(speed=SpeedPerturb(p=1.0)),
        only(reverb=Reverb(p=1.0)),
        only(microphone=Microphone(p=1.0)),
        only(gain=Gain(p=1.0, db=(3.0, 6.0))),
        only(noise=GaussianNoise(p=1.0, snr_db=(0.0, 20.0))),
    ],
    ids=["speed", "reverb", "microphone", "gain", "snr-noise"],
)
def test_new_steps_change_the_clips_and_keep_the_shape(config: AugmentConfig) -> None:
    waves, lengths = batch_of_clips()
    clean = fit_to_window(waves, lengths, 5000)
    out = WaveformAugment(config, SR, window=5000)(waves, lengths)
    assert out.shape == (6, 5000)
    assert torch.isfinite(out).all()
    assert ((out - clean).abs().amax(dim=1) > 1e-3).sum() >= 5


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_pitch_and_duration_together(factor: float) -> None:
    wave = tone(440.0).unsqueeze(0)
    config = only(speed=SpeedPerturb(p=1.0, factor=(factor, factor)))
    out = WaveformAugment(config, SR, window=2 * SR)(wave, torch.tensor([SR]))
    audible = torch.nonzero(out[0].abs() > 0.05).squeeze(1)
    clip = out[0, int(audible.min()) : int(audible.max()) + 1]
    assert len(clip) == pytest.approx(SR / factor, rel=0.01)
    assert peak_frequency(clip) == pytest.approx(440.0 * factor, rel=0.01)


def test_gain_is_exact_in_decibels() -> None:
    waves, lengths = batch_of_clips()
    clean = fit_to_window(waves, lengths, 5000)
    fixed = only(gain=Gain(p=1.0, db=(-7.5, -7.5)))
    out = WaveformAugment(fixed, SR, window=5000)(waves, lengths)
    for o, c in zip(out, clean, strict=True):
        assert 10 * math.log10(clip_power(o) / clip_power(c)) == pytest.approx(-7.5, abs=0.1)
    drawn = only(gain=Gain(p=1.0, db=(-12.0, 6.0)))
    out = WaveformAugment(drawn, SR, window=5000)(waves, lengths)
    measured = [
        10 * math.log10(clip_power(o) / clip_power(c)) for o, c in zip(out, clean, strict=True)
    ]
    assert all(-12.1 <= db <= 6.1 for db in measured)
    assert max(measured) - min(measured) > 1.0


@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_noise_snr_is_relative_to_each_clip(snr: float) -> None:
    waves, lengths = batch_of_clips()
    waves = waves * torch.linspace(0.05, 1.0, 6).unsqueeze(1)  # very different loudness
    config = only(noise=GaussianNoise(p=1.0, snr_db=(snr, snr)))
    out = WaveformAugment(config, SR, window=5000)(waves, lengths)
    clean = fit_to_window(waves, lengths, 5000)
    for o, c, length in zip(out, clean, lengths.tolist(), strict=True):
        signal = clip_power(c) * 5000 / length  # the clip's own samples only
        measured = 10 * math.log10(signal / clip_power(o - c))
        assert measured == pytest.approx(snr, abs=1.0)


def test_reverb_lengthens_the_decay_and_keeps_loudness() -> None:
    burst = torch.zeros(1, 800)
    burst[0, :400] = tone(500.0, 0.05)
    lengths = torch.tensor([400])

    def tail_energy(rt60: float) -> float:
        torch.manual_seed(0)
        rir = synthetic_rir(torch.tensor([rt60]), torch.tensor([0.0]), SR, int(rt60 * SR))
        out, new_lengths = reverberate(burst, lengths, rir, max_length=SR)
        assert int(new_lengths[0]) == min(400 + int(rt60 * SR) - 1, SR)
        return float(out[0, 600:].square().sum() / out[0].square().sum())

    assert tail_energy(0.05) < 1e-3
    assert tail_energy(0.5) > 0.05
    rir = synthetic_rir(torch.tensor([0.3, 0.6]), torch.tensor([5.0, 5.0]), SR, 4800)
    assert rir.square().sum(dim=1).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    # The envelope decays by 60 dB over rt60: the tail's last tenth is far quieter than its first.
    assert float(rir[0, 2160:2400].square().sum()) < 1e-3 * float(rir[0, 1:241].square().sum())


def test_reverb_tail_never_pushes_the_clip_out_of_the_window() -> None:
    wave = tone(300.0, 3900 / SR).unsqueeze(0)
    config = only(reverb=Reverb(p=1.0, rt60=(0.5, 0.5)))
    out = WaveformAugment(config, SR, window=4000)(wave, torch.tensor([3900]))
    # The tail fills only the 100 samples left: the clip's onset is still at the window's start.
    assert out.shape == (1, 4000)
    assert float(out[0, :50].abs().max()) > 0.05


def test_microphone_response_shapes_the_spectrum() -> None:
    freqs = torch.tensor([125.0, 250.0, 1000.0, 4000.0])
    none = torch.zeros(1, 0)

    def response(
        tilt: float,
        cut: float,
        peaks: tuple[list[float], list[float]] = ([], []),
        treble_cut: float = 1e6,
    ) -> torch.Tensor:
        hz, db = peaks
        return microphone_response(
            freqs,
            torch.tensor([tilt]),
            torch.tensor([cut]),
            torch.tensor([treble_cut]),
            torch.tensor([hz]) if hz else none,
            torch.tensor([db]) if db else none,
            torch.full((1, len(hz)), 0.5) if hz else none,
        )[0]

    flat = response(0.0, 1.0)
    assert flat.abs().max() < 1e-3
    tilted = response(3.0, 1.0)
    assert tilted.tolist() == pytest.approx([-9.0, -6.0, 0.0, 6.0], abs=1e-3)
    cut = response(0.0, 250.0)
    assert cut[1] == pytest.approx(-3.0, abs=0.02)  # a high-pass is 3 dB down at its corner
    assert cut[0] == pytest.approx(-12.3, abs=0.1)  # and falls 12 dB an octave below it
    assert cut[3] > -1e-3
    dull = response(0.0, 1.0, treble_cut=2000.0)
    assert dull[3] == pytest.approx(-24.1, abs=0.1)  # 24 dB an octave above the corner
    assert dull[1] > -1e-3
    bell = response(0.0, 1.0, ([1000.0], [6.0]))
    assert bell[2] == pytest.approx(6.0, abs=1e-3)
    assert bell[3] < 0.01  # two octaves away, four standard deviations


def test_microphone_colours_a_clip_and_keeps_its_power() -> None:
    low, high = tone(250.0, 0.5), tone(2000.0, 0.5)
    wave = torch.zeros(1, 5000)
    wave[0, :4000] = low + high
    config = only(
        microphone=Microphone(
            p=1.0,
            tilt_db=(3.0, 3.0),
            bass_cut_hz=(1.0, 1.0),
            treble_cut_hz=(1e5, 1e5),
            peaks=0,
        )
    )
    out = WaveformAugment(config, SR, window=5000)(wave, torch.tensor([4000]))
    clip = out[0, 500:4500]  # centred in the window
    spectrum = torch.fft.rfft(clip.double()).abs()
    bin_of = {f: round(f * len(clip) / SR) for f in (250.0, 2000.0)}
    ratio_db = 20 * math.log10(float(spectrum[bin_of[2000.0]] / spectrum[bin_of[250.0]]))
    assert ratio_db == pytest.approx(9.0, abs=0.3)  # three octaves of +3 dB per octave
    assert clip_power(clip) == pytest.approx(clip_power(wave[0, :4000]), rel=1e-4)
    assert float(out[0, :500].abs().max()) == 0.0  # padding stays silent


def test_microphone_is_drawn_per_clip() -> None:
    torch.manual_seed(0)
    waves = torch.randn(1, 3000).repeat(4, 1) * 0.1  # one broadband clip, four times
    lengths = torch.full((4,), 3000)
    config = only(microphone=Microphone(p=1.0))
    out = WaveformAugment(config, SR, window=3000)(waves, lengths)
    assert torch.isfinite(out).all()
    # Each clip's response in dB, in 30 bands of 50 bins: no two clips share one.
    gain = torch.fft.rfft(out)[:, :1500].abs() / torch.fft.rfft(waves)[:, :1500].abs()
    bands_db = 20 * torch.log10(gain.reshape(4, 30, 50).mean(dim=2))
    assert all((bands_db[i] - bands_db[j]).abs().max() > 2.0 for i in range(4) for j in range(i))


def stepped_clip(amplitudes: list[float], seconds: float = 0.1) -> torch.Tensor:
    """A 400 Hz tone whose amplitude steps through `amplitudes`, `seconds` each."""
    return torch.cat([a * tone(400.0, seconds) for a in amplitudes])


@pytest.mark.parametrize(
    ("threshold_db", "start", "end"),
    [(-50.0, 0, 7), (-30.0, 1, 6), (-10.0, 3, 5)],
)
def test_the_trim_cuts_the_ends_quieter_than_the_threshold(
    threshold_db: float, start: int, end: int
) -> None:
    # Steps of 0.1 s at -40, -20, -20, 0, 0, -20, -40 dB of the loudest.
    clip = stepped_clip([0.01, 0.1, 0.1, 1.0, 1.0, 0.1, 0.01])
    step = int(0.1 * SR)
    out, lengths = trim_quiet_ends(
        clip.unsqueeze(0), torch.tensor([len(clip)]), torch.tensor([threshold_db]), SR
    )
    assert lengths.tolist() == [(end - start) * step]
    assert torch.equal(out[0, : lengths[0]], clip[start * step : end * step])


def test_the_trim_judges_each_clip_by_its_own_loudness_and_length() -> None:
    quiet = stepped_clip([0.001, 0.01, 0.001])
    loud = stepped_clip([0.1, 1.0, 0.1, 0.1])
    waves = torch.zeros(2, len(loud))
    waves[0, : len(quiet)] = quiet
    waves[1] = loud
    lengths = torch.tensor([len(quiet), len(loud)])
    out, new_lengths = trim_quiet_ends(waves, lengths, torch.tensor([-10.0, -10.0]), SR)
    step = int(0.1 * SR)
    # The quiet clip keeps its own loud middle (not cut as "silence" next to the loud clip),
    # and the zeros after its end are not part of it.
    assert new_lengths.tolist() == [step, step]
    assert torch.equal(out[0, :step], quiet[step : 2 * step])
    assert torch.equal(out[1, :step], loud[step : 2 * step])


def test_the_trim_in_the_chain_is_the_cut_clip_in_the_window() -> None:
    clip = stepped_clip([0.01, 1.0, 0.01])
    lengths = torch.tensor([len(clip)])
    config = only(trim=Trim(p=1.0, threshold_db=(-20.0, -20.0)))
    out = WaveformAugment(config, SR, window=5000)(clip.unsqueeze(0), lengths)
    cut, cut_lengths = trim_quiet_ends(clip.unsqueeze(0), lengths, torch.tensor([-20.0]), SR)
    assert cut_lengths.tolist() == [int(0.1 * SR)]
    assert torch.equal(out, fit_to_window(cut, cut_lengths, 5000))


def test_the_onset_cut_starts_each_clip_its_own_time_past_its_own_onset() -> None:
    # 0.1 s of lead-in 30 dB down (below the onset's -20 dB), then the sound.
    step = int(0.1 * SR)
    first = stepped_clip([0.03, 1.0, 1.0])
    second = stepped_clip([1.0, 0.1, 0.1, 0.1])  # begins on its loudest: onset at sample 0
    waves = torch.zeros(2, len(second))
    waves[0, : len(first)] = first
    waves[1] = second
    lengths = torch.tensor([len(first), len(second)])
    out, new_lengths = cut_onsets(waves, lengths, torch.tensor([0.05, 0.02]), SR)
    first_start, second_start = step + int(0.05 * SR), int(0.02 * SR)
    assert new_lengths.tolist() == [len(first) - first_start, len(second) - second_start]
    assert torch.equal(out[0, : new_lengths[0]], first[first_start:])
    assert torch.equal(out[1, : new_lengths[1]], second[second_start:])
    assert not out[0, new_lengths[0] :].any(), "the row after the clip's new end is silence"


def test_the_onset_cut_leaves_at_least_half_of_a_clip() -> None:
    clip = tone(400.0, 0.1)
    out, lengths = cut_onsets(clip.unsqueeze(0), torch.tensor([len(clip)]), torch.tensor([1.0]), SR)
    assert lengths.tolist() == [len(clip) - len(clip) // 2]
    assert torch.equal(out[0, : lengths[0]], clip[len(clip) // 2 :])


def test_the_onset_cut_in_the_chain_is_the_cut_clip_in_the_window() -> None:
    clip = stepped_clip([0.01, 1.0, 0.5])
    lengths = torch.tensor([len(clip)])
    config = only(onset_cut=OnsetCut(p=1.0, seconds=(0.03, 0.03)))
    out = WaveformAugment(config, SR, window=5000)(clip.unsqueeze(0), lengths)
    start = int(0.1 * SR) + int(0.03 * SR)
    expected = fit_to_window(clip[start:].unsqueeze(0), torch.tensor([len(clip) - start]), 5000)
    assert torch.equal(out, expected)
