"""`sdc live-reading`: a reader live against whole reads, on strings with known times."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from burst_reader import BurstReader
from conftest import SAMPLE_RATE
from sdc import cli
from sdc.lab.live_reading import KINDS, make_strings, markdown, measure
from sdc.strings.config import StringsConfig
from sdc.strings.reader import DigitStringReader
from sdc.strings.train import save_reader

LABELS = tuple(str(d) for d in range(10))
PAUSES = "4 digits, 0.1-0.3 s pauses"


def test_each_digit_is_told_within_the_settle_time_and_a_hop_of_its_end() -> None:
    burst = np.full(round(0.3 * SAMPLE_RATE), 0.5, np.float32)
    strings = make_strings([(7, burst)], LABELS, 3, SAMPLE_RATE)
    assert set(strings) == set(KINDS) and all(len(made) == 3 for made in strings.values())
    wave, said, times = strings[PAUSES][0]
    assert said == ["7"] * 4 and len(times) == 4
    assert np.abs(wave[round(times[1][0] * SAMPLE_RATE) + 10]) > 0  # the clip is where it says

    figures = measure(BurstReader(), {PAUSES: strings[PAUSES]}, hop_frames=1, settle=0.2)  # type: ignore[arg-type]
    pauses = figures[PAUSES]
    assert pauses["right_whole"] == pauses["right_live"] == pauses["alike"] == 1.0
    # Told once settled (0.2 s after its end), at the next hop (80 ms) at the latest.
    assert 0.2 <= pauses["delay_p50_s"] <= pauses["delay_p90_s"] <= 0.2 + 0.08 + 1e-6
    assert pauses["cpu_ms_per_hop"] > 0
    # A slower listener tells later.
    later = measure(BurstReader(), {PAUSES: strings[PAUSES]}, hop_frames=3, settle=0.4)  # type: ignore[arg-type]
    assert later[PAUSES]["delay_p50_s"] > pauses["delay_p90_s"]
    assert "| 4 digits, 0.1-0.3 s pauses | 100% | 100% | 100% | 0.2" in markdown(figures)


def test_a_speaker_fsdd_lacks_is_one_line_naming_the_speakers_it_has(
    tiny_fsdd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reader = tmp_path / "reader.ckpt"
    save_reader(DigitStringReader(LABELS, {}, SAMPLE_RATE, 0.4), StringsConfig("r", "w"), reader)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["live-reading", str(reader), "nobody", "--root", str(tiny_fsdd)])
    assert exit_.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "no 'nobody'" in errors[0] and "carol" in errors[0], errors


def test_a_namer_that_is_missing_or_a_reader_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reader = tmp_path / "reader.ckpt"
    save_reader(DigitStringReader(LABELS, {}, SAMPLE_RATE, 0.4), StringsConfig("r", "w"), reader)
    missing = tmp_path / "none.ckpt"
    for namer, says in [(missing, f"{missing}: no such"), (reader, f"{reader}: a digit-string")]:
        with pytest.raises(SystemExit) as exit_:
            cli.main(["live-reading", str(reader), "carol", "--namer", str(namer)])
        assert exit_.value.code == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert len(errors) == 1 and says in errors[0], errors
