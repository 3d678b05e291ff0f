"""The robustness evaluation: noise at fixed SNRs, clips at the window's edges."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sdc.audio.window import fit_to_window
from sdc.errors import SdcError
from sdc.evaluation.robustness import best_checkpoint, column_label, conditions, robustness

WINDOW = 3000


def clips() -> tuple[list[torch.Tensor], list[int]]:
    torch.manual_seed(0)
    waves = [torch.randn(n) * scale for n, scale in ((500, 0.05), (800, 0.5), (1200, 0.2))]
    return waves * 4, [1] * 12


class WhereIsTheEnergy(torch.nn.Module):
    """Class 0, 1 or 2 for energy mostly in the first, middle or last third of the window."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        thirds = windows.square().reshape(len(windows), 3, -1).sum(dim=-1)
        return torch.nn.functional.pad(thirds, (0, 7))


def test_each_condition_does_what_it_says() -> None:
    waves, _ = clips()
    batch = torch.nn.utils.rnn.pad_sequence(waves[:3], batch_first=True)
    lengths = torch.tensor([len(w) for w in waves[:3]])
    named = conditions(WINDOW, snr_db=(10.0, 0.0))
    assert list(named) == [
        "clean",
        "snr_10db",
        "snr_0db",
        "start",
        "end",
        "trimmed_15db",
        "pitch_+4st",
        "pitch_+8st",
    ]
    assert [column_label(n) for n in named][1:] == [
        "noise 10 dB",
        "noise 0 dB",
        "start",
        "end",
        "trimmed 15 dB",
        "pitch +4 st",
        "pitch +8 st",
    ]
    generator = torch.Generator().manual_seed(0)
    clean = named["clean"](batch, lengths, generator)
    assert torch.equal(clean, fit_to_window(batch, lengths, WINDOW))
    for snr in (10.0, 0.0):
        noisy = named[f"snr_{snr:g}db"](batch, lengths, generator)
        for n, c, length in zip(noisy - clean, clean, lengths.tolist(), strict=True):
            signal = float(c.square().sum()) / length
            assert 10 * math.log10(signal / float(n.square().mean())) == pytest.approx(snr, abs=1)
    start = named["start"](batch, lengths, generator)
    assert torch.equal(start[0, :500], waves[0])
    end = named["end"](batch, lengths, generator)
    assert torch.equal(end[0, -500:], waves[0])


def test_the_trimmed_condition_cuts_quiet_ends_and_centres_the_rest() -> None:
    # 0.1 s at -20 dB, 0.1 s at 0 dB, 0.1 s at -20 dB of the loudest: a 15 dB cut keeps the middle.
    t = torch.arange(800) / 8000
    tone = torch.sin(2 * math.pi * 400 * t)
    clip = torch.cat([0.1 * tone, tone, 0.1 * tone])
    trimmed = conditions(WINDOW)["trimmed_15db"](
        clip.unsqueeze(0), torch.tensor([len(clip)]), torch.Generator()
    )
    assert torch.equal(trimmed, fit_to_window(tone.unsqueeze(0), torch.tensor([800]), WINDOW))


@pytest.mark.parametrize("shift", [4.0, 8.0, -3.0])
def test_a_pitch_condition_raises_the_voice_and_keeps_its_duration(shift: float) -> None:
    t = torch.arange(2400) / 8000
    tone = torch.sin(2 * math.pi * 300 * t) * torch.hann_window(2400)
    named = conditions(WINDOW, semitones=(shift,))
    clean, heard = (
        named[name](tone.unsqueeze(0), torch.tensor([2400]), torch.Generator())[0]
        for name in ("clean", f"pitch_{shift:+g}st")
    )
    assert heard.shape == (WINDOW,)
    spectrum = torch.fft.rfft(heard).abs()
    peak_hz = float(spectrum.argmax()) * 8000 / WINDOW
    assert peak_hz == pytest.approx(300 * 2 ** (shift / 12), rel=0.03)

    def sounding(wave: torch.Tensor) -> tuple[int, int]:
        """Where the middle 90% of the energy lies (the vocoder smears the faintest tails)."""
        energy = wave.square().cumsum(0) / wave.square().sum()
        return int((energy < 0.05).sum()), int((energy < 0.95).sum())

    (start, end), (clean_start, clean_end) = sounding(heard), sounding(clean)
    assert end - start == pytest.approx(clean_end - clean_start, rel=0.05), "the same rate"
    assert start + end == pytest.approx(clean_start + clean_end, abs=120), "centred as clean"


def test_robustness_reports_every_condition_reproducibly() -> None:
    waves, labels = clips()
    model = WhereIsTheEnergy()
    first = robustness(model, waves, labels, WINDOW, snr_db=(20.0, 0.0), batch_size=5)
    assert first["clean"] == 1.0  # centred: the energy is in the middle third
    assert first["start"] == 0.0 and first["end"] == 0.0
    assert first["snr_20db"] == 1.0
    assert 0.0 <= first["snr_0db"] <= 1.0
    again = robustness(model, waves, labels, WINDOW, snr_db=(20.0, 0.0), batch_size=12)
    assert again == first


def test_a_run_folder_copied_from_another_machine_finds_its_checkpoint(tmp_path: Path) -> None:
    elsewhere = "/gpu-server/outputs/run/checkpoints/epoch007-val_acc0.9900.ckpt"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"best_checkpoint": elsewhere}))
    with pytest.raises(SdcError, match="no best checkpoint to evaluate"):
        best_checkpoint(run)
    copied = run / "checkpoints" / "epoch007-val_acc0.9900.ckpt"
    copied.write_bytes(b"weights")
    assert best_checkpoint(run) == copied
    here = tmp_path / "here.ckpt"
    here.write_bytes(b"weights")
    (run / "metrics.json").write_text(json.dumps({"best_checkpoint": str(here)}))
    assert best_checkpoint(run) == here
