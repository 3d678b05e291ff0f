"""The digit-string reader: making strings, reading CTC output, training, and using a model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from burst_reader import BurstReader
from conftest import SAMPLE_RATE, digit_tone
from sdc.config import config_dir
from sdc.errors import SdcError
from sdc.inference.listen import parse_args as listen_args
from sdc.inference.model_info import ModelInfo
from sdc.inference.predict import parse_args as predict_args
from sdc.inference.recognizer import (
    DEFAULT_THRESHOLD,
    Recognizer,
    load_transcriber,
)
from sdc.inference.transcribe import parse_args as transcribe_args
from sdc.strings.config import StringsConfig
from sdc.strings.cut_at_pauses import SUFFIX, models_by_held_out_speaker
from sdc.strings.naming import DigitNamer
from sdc.strings.reader import (
    FRAME_SECONDS,
    MAX_DIGIT_SECONDS,
    RECEPTIVE_SECONDS,
    DigitStringReader,
    greedy_read,
)
from sdc.strings.recognizer import (
    READER_THRESHOLD,
    StringListener,
    StringRecognizer,
    ended_by_silence,
)
from sdc.strings.scoring import edit_distance
from sdc.strings.synthesis import SynthesisConfig, join, training_strings, trim_to_speech
from sdc.strings.train import CONDITIONS, ISOLATED, NAMED, SPOKEN, run, save_reader
from speech_embedding_stand_in import stand_in

RATE = SAMPLE_RATE


def test_trimming_keeps_the_speech_and_drops_the_silence_around_it() -> None:
    tone = digit_tone(4, 0, 0).astype(np.float32)
    padded = np.concatenate([np.zeros(2000, np.float32), tone, np.zeros(3000, np.float32)])
    trimmed = trim_to_speech(padded, RATE, 30.0)
    assert len(tone) * 0.7 < len(trimmed) <= len(tone) + 160


def test_joining_places_each_clip_where_its_gap_says() -> None:
    a, b, c = (np.ones(800, np.float32) * v for v in (0.1, 0.2, 0.3))
    wave, times = join([a, b, c], [0.1, -0.025], RATE, (0.05, 0.2))
    assert times[0] == pytest.approx((0.05, 0.15))
    assert times[1] == pytest.approx((0.25, 0.35))  # after 0.1 s of silence
    assert times[2] == pytest.approx((0.325, 0.425))  # overlapping b by 25 ms
    assert len(wave) == round((0.425 + 0.2) * RATE)
    overlap = wave[round(0.325 * RATE) : round(0.35 * RATE)]
    assert np.all((overlap >= 0.2 - 1e-6) & (overlap <= 0.3 + 1e-6))  # crossfaded, not summed
    assert np.all(wave[round(0.15 * RATE) : round(0.25 * RATE)] == 0)


def test_training_strings_are_seeded_and_within_their_ranges() -> None:
    pool = [(d, digit_tone(d, 0, 0).astype(np.float32)) for d in range(10)]
    cfg = SynthesisConfig(min_digits=2, max_digits=5)
    waves, labels = training_strings(pool, 30, cfg, RATE, seed=3)
    again, same = training_strings(pool, 30, cfg, RATE, seed=3)
    assert same == labels and all(np.array_equal(x, y) for x, y in zip(waves, again, strict=True))
    assert {len(digits) for digits in labels} <= {2, 3, 4, 5}
    assert training_strings(pool, 30, cfg, RATE, seed=4)[1] != labels


def test_greedy_reading_merges_repeats_drops_blanks_and_keeps_a_double_digit() -> None:
    reader = DigitStringReader(tuple(str(d) for d in range(10)), {}, RATE, 0.4)
    blank = reader.blank
    path = [blank, 5, 5, blank, 5, blank, blank, 3, 3, 3, blank]  # "55" needs its blank
    log_probs = torch.full((len(path), 11), -20.0)
    for t, label in enumerate(path):
        log_probs[t, label] = 0.0
    read = greedy_read(log_probs.log_softmax(-1), reader, duration=10.0)
    assert [d.label for d in read] == [5, 5, 3]
    assert all(d.confidence > 0.99 for d in read)
    # Each digit from its spike to the next one's, at most half a second, within the recording.
    assert read[0].end == pytest.approx(read[1].start)
    assert read[1].end == pytest.approx(read[2].start)
    assert read[2].end == pytest.approx(read[2].start + MAX_DIGIT_SECONDS)
    assert read[1].start - read[0].start == pytest.approx(3 * FRAME_SECONDS)
    assert greedy_read(log_probs.log_softmax(-1), reader, duration=0.1)[-1].end == 0.1


def test_a_reader_keeps_every_digit_it_reads_unless_told_a_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "reader.ckpt"
    labels = tuple(str(d) for d in range(10))
    save_reader(DigitStringReader(labels, {}, RATE, 0.4), StringsConfig("r", "w"), path)
    recognizer = load_transcriber(path)  # as `sdc transcribe` and `sdc listen` load it
    assert isinstance(recognizer, StringRecognizer) and recognizer.threshold == READER_THRESHOLD
    strict = load_transcriber(path, threshold=0.6)
    assert isinstance(strict, StringRecognizer) and strict.threshold == 0.6
    # A "4" the reader is unsure of (0.45, against 0.35 for "9"), then a sure "2".
    probs = torch.full((6, 11), 1e-4)
    probs[:, 10] = 1.0  # blank
    probs[1, [4, 9, 10]] = torch.tensor([0.45, 0.35, 0.2])
    probs[4, [2, 10]] = torch.tensor([0.99, 0.01])
    log_probs = (probs / probs.sum(-1, keepdim=True)).log()
    for model in (recognizer, strict):
        monkeypatch.setattr(model.reader, "read_log_probs", lambda wave, start: log_probs)
    wave = np.zeros(RATE, np.float32)
    assert recognizer.transcribe(wave).text == "42"
    unsure = strict.transcribe(wave)
    assert unsure.text == "2" and [s.label for s in unsure.segments] == [None, "2"]
    # The commands leave the default to the model only where a reader may be given.
    assert transcribe_args(["m.ckpt", "a.wav"]).threshold is None
    assert listen_args(["m.ckpt", "--wav", "a.wav"]).threshold is None
    assert predict_args(["m.ckpt", "a.wav"]).threshold == DEFAULT_THRESHOLD


def test_a_namer_overrules_the_reader_only_where_it_is_the_surer() -> None:
    labels = tuple(str(d) for d in range(10))
    reader = DigitStringReader(labels, {}, RATE, 0.4)
    # An isolated-digit model whose classes run 9..0, sure of "7" in the first window it is
    # given and unsure ("3" 0.4, "5" 0.3) in the second.
    answers = np.full((2, 10), 0.3 / 8)
    answers[0] = 0.0001
    answers[0, 9 - 7] = 1.0 - 0.0009
    answers[1, [9 - 3, 9 - 5]] = [0.4, 0.3]
    windows: list[np.ndarray] = []

    def backend(batch: np.ndarray) -> np.ndarray:
        windows.append(batch)
        return np.log(answers[: len(batch)])

    info = ModelInfo(labels[::-1], RATE, RATE, {}, {})
    namer = DigitNamer(Recognizer(backend, info), reader, "model.ckpt")
    # The reader: unsure between "1" and "7" at frame 1, sure of "5" at frame 4.
    probs = torch.full((6, 11), 1e-4)
    probs[:, 10] = 1.0
    probs[1, [1, 7, 10]] = torch.tensor([0.5, 0.4, 0.1])
    probs[4, [5, 10]] = torch.tensor([0.99, 0.01])
    log_probs = (probs / probs.sum(-1, keepdim=True)).log()
    wave = np.random.default_rng(0).normal(0, 0.1, 2 * RATE).astype(np.float32)
    digits = greedy_read(log_probs, reader, 2.0)
    assert [d.label for d in digits] == [1, 5]
    named = namer.name(digits, log_probs, wave)
    assert [d.label for d in named] == [7, 5]
    assert [(d.start, d.end) for d in named] == [(d.start, d.end) for d in digits]
    assert named[0].confidence > 0.99 and named[1].confidence > 0.99
    assert windows[0].shape == (2, RATE)  # each digit in the namer's window
    assert namer.name([], log_probs, wave) == []
    # A namer must hear what the reader hears and name the same digits.
    with pytest.raises(SdcError, match=r"model\.ckpt: an isolated-digit model at 16000 Hz"):
        DigitNamer(
            Recognizer(backend, ModelInfo(labels, 16000, RATE, {}, {})), reader, "model.ckpt"
        )
    with pytest.raises(SdcError, match=r"model\.ckpt: labels"):
        DigitNamer(
            Recognizer(backend, ModelInfo(labels[:9], RATE, RATE, {}, {})), reader, "model.ckpt"
        )


def test_a_namer_goes_with_a_reader_and_is_an_isolated_digit_model(tmp_path: Path) -> None:
    labels = tuple(str(d) for d in range(10))
    path = tmp_path / "reader.ckpt"
    save_reader(DigitStringReader(labels, {}, RATE, 0.4), StringsConfig("r", "w"), path)
    with pytest.raises(
        SdcError, match=r"reader\.ckpt: a digit-string reader, which sdc transcribe"
    ):
        load_transcriber(path, namer=path)
    with pytest.raises(SdcError, match=r"--namer: .*x\.onnx is an isolated-digit model"):
        load_transcriber(tmp_path / "x.onnx", namer=path)
    with pytest.raises(SdcError, match="no such checkpoint file"):
        load_transcriber(path, namer=tmp_path / "missing.ckpt")
    assert transcribe_args(["m.ckpt", "a.wav", "--namer", "best.ckpt"]).namer == Path("best.ckpt")
    assert listen_args(["m.ckpt", "--namer", "best.ckpt"]).namer == Path("best.ckpt")


def test_a_digit_followed_by_silence_ends_where_its_speech_does() -> None:
    apart = np.array([[0.5, 0.9], [1.3, 1.6]])  # two digits with a pause between
    assert ended_by_silence(0.45, 0.95, apart) == pytest.approx(0.9)  # was start + 0.5 s
    assert ended_by_silence(1.25, 1.75, apart) == pytest.approx(1.6)
    joined = np.array([[0.5, 2.0]])  # said without a pause: one stretch of speech
    assert ended_by_silence(0.5, 0.8, joined) == 0.8  # the next digit's start stays the end
    assert ended_by_silence(1.7, 2.2, joined) == pytest.approx(2.0)  # the last: where speech ends
    # Read where no speech was found near it (noise everywhere, or speech starting later): kept.
    assert ended_by_silence(1.0, 1.3, np.array([[1.25, 1.6]])) == 1.3
    assert ended_by_silence(1.0, 1.3, np.zeros((0, 2))) == 1.3


def test_a_recording_ending_before_a_views_first_frame_is_read_without_that_view() -> None:
    labels = tuple(str(d) for d in range(10))
    reader = DigitStringReader(labels, {}, RATE, 0.4, test_time_speeds=(0.925, 1.0, 1.075)).eval()
    wave = torch.randn(300, generator=torch.Generator().manual_seed(0)) * 0.1
    # 300 samples from stream sample 5: the slower and faster views' grids start 587 and 683
    # samples on, past the end, so only the recording as it is is heard.
    late = reader.read_log_probs(wave, start=5)
    reader.test_time_speeds = (1.0,)
    assert torch.allclose(late.exp(), reader.read_log_probs(wave).exp(), atol=1e-6)


def test_edit_distance() -> None:
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert edit_distance([1, 3], [1, 2, 3]) == 1
    assert edit_distance([4, 1, 2, 3], [1, 2, 5]) == 2


def test_the_string_listener_tells_each_digit_once_soon_after_it_ends() -> None:
    bursts = [(0.5, 0.9), (1.0, 1.4), (1.45, 1.8), (4.6, 5.0)]  # the third follows at once
    stream = np.zeros(round(6.0 * RATE), np.float32)
    for start, end in bursts:
        stream[round(start * RATE) : round(end * RATE)] = 0.5
    engine = StringListener(BurstReader(), settle_seconds=0.3)  # type: ignore[arg-type]
    told: list[tuple[float, float]] = []  # (end of the digit, stream time it was told at)
    hop = 400
    for i in range(0, len(stream), hop):
        told += [(d.end, (i + hop) / RATE) for d in engine.feed(stream[i : i + hop])]
    told += [(d.end, len(stream) / RATE) for d in engine.flush()]
    assert [end for end, _ in told] == pytest.approx([e for _, e in bursts], abs=0.02)
    for end, at in told:
        # Told within the settle time, plus one hop of the engine and one chunk of the feed.
        assert at - end <= 0.3 + engine.hop / RATE + hop / RATE


@pytest.fixture
def stand_in_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DigitStringReader, "load_pretrained", lambda self: stand_in(self.embedding))


def strings_config(root: Path, *overrides: str) -> StringsConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="strings", overrides=[f"strings.root={root}", *overrides])
    GlobalHydra.instance().clear()
    return OmegaConf.to_object(cfg.strings)


def held_out_run(checkpoint: Path, folder: Path, tested: list[str]) -> Path:
    """A copy of `checkpoint` in a run folder whose split.csv says it was tested on `tested`."""
    (folder / "checkpoints").mkdir(parents=True)
    shutil.copy(checkpoint, folder / "checkpoints" / "best.ckpt")
    rows = [f"{d}_{s}_0.wav,{d},{s},0,test" for s in tested for d in range(10)]
    (folder / "split.csv").write_text("file,digit,speaker,index,subset\n" + "\n".join(rows))
    return folder / "checkpoints" / "best.ckpt"


@pytest.mark.slow
def test_sdc_strings_tests_its_folds_and_saves_a_model_transcribe_reads(
    tiny_fsdd: Path, tmp_path: Path, stand_in_weights: None, tiny_checkpoint: Path
) -> None:
    segmenter = held_out_run(tiny_checkpoint, tmp_path / "carol_out", ["carol"])
    cfg = strings_config(
        tiny_fsdd,
        "strings.strings_per_speaker=150",
        "strings.test_strings=20",
        "strings.epochs=12",
        "strings.synthesis.max_digits=4",
        "strings.folds=[carol]",
        "strings.spoken_strings=40",
        f"strings.segmenters=[{segmenter}]",
        "strings.finetune_layers=2",  # the fine-tuned path, cheaper than the default ten
    )
    payload = run(cfg, tmp_path)
    fold = payload["folds"]["carol"]
    assert set(fold) == {
        *CONDITIONS,
        ISOLATED,
        *SPOKEN,
        *(c + SUFFIX for c in CONDITIONS),
        *(c + NAMED for c in [*CONDITIONS, ISOLATED]),
    }
    # Cutting at pauses hears digits said without one as fewer digits than were said.
    assert fold["10 digits, no pause" + SUFFIX]["digit_error_rate"] > 0.3
    assert fold["... 10 digits"]["n"] == 20
    assert fold[ISOLATED]["n"] == 60 and fold["4 digits, no pause"]["n"] == 20
    for scores in fold.values():
        assert 0.0 <= scores["string_accuracy"] <= 1.0 and scores["digit_error_rate"] >= 0.0
    # Chirps through random convolutions: learnable, though no speech model.
    assert fold[ISOLATED]["digit_error_rate"] < 0.5, fold
    table = (tmp_path / "strings.md").read_text()
    assert "| 10 digits, no pause |" in table and "(carol)" in table
    assert "| espeak-ng, unheard voices, 4 digits |" in table
    assert "| 4 digits, 0.1-0.3 s pauses, cut at pauses |" in table
    assert f"| 10 digits, no pause{NAMED} |" in table
    assert json.loads((tmp_path / "strings.json").read_text())["folds"] == payload["folds"]

    # The fold's reader, kept, and read as one.
    assert isinstance(load_transcriber(tmp_path / "fold_carol.ckpt"), StringRecognizer)
    model = tmp_path / "model.ckpt"
    # Every digit labelled, so that this barely trained model's answers are compared whole
    # rather than on which side of the threshold each falls.
    recognizer = load_transcriber(model, threshold=0.0)
    # Three hearings: the live buffer's faster and slower views begin on the stream's grid of
    # their frames, so they hear from the points the whole recording's do (begun where the
    # buffer begins, the confidences came out 0.07 apart).
    assert isinstance(recognizer, StringRecognizer) and len(recognizer.reader.test_time_speeds) > 1
    said = [3, 8, 1]
    # 1.2 s of silence each side: more than the reader hears around a frame (1.03 s).
    wave, _ = join(
        [digit_tone(d, 1, 2).astype(np.float32) for d in said], [0.0, 0.0], RATE, (1.2, 1.2)
    )
    transcript = recognizer.transcribe(wave)
    assert transcript.segments
    assert all(0 <= s.start <= s.end <= len(wave) / RATE for s in transcript.segments)
    # Live, the reader waits until it has heard as much after a digit as the whole read has.
    # (By default it waits 0.2 s: sooner, on less of what follows, so it may read otherwise.)
    assert isinstance(recognizer.listener(), StringListener)
    engine = StringListener(recognizer, settle_seconds=1.1)
    heard = [d for i in range(0, len(wave), 1000) for d in engine.feed(wave[i : i + 1000])]
    heard += engine.flush()
    assert [d.label for d in heard] == [s.label for s in transcript.segments]
    for live, whole in zip(heard, transcript.segments, strict=True):
        assert (live.start, live.end) == pytest.approx((whole.start, whole.end), abs=1e-6)
        assert live.confidence == pytest.approx(whole.confidence, abs=1e-4)

    # With the isolated-digit model naming the digits: the same digits found, at the same
    # times, and live as whole.
    named = load_transcriber(model, 0.0, tiny_checkpoint)
    assert isinstance(named, StringRecognizer) and named.namer is not None
    named_whole = named.transcribe(wave)
    assert [(s.start, s.end) for s in named_whole.segments] == [
        (s.start, s.end) for s in transcript.segments
    ]
    engine = StringListener(named, settle_seconds=1.1)
    heard = [d for i in range(0, len(wave), 1000) for d in engine.feed(wave[i : i + 1000])]
    heard += engine.flush()
    assert [d.label for d in heard] == [s.label for s in named_whole.segments]
    for live, whole in zip(heard, named_whole.segments, strict=True):
        assert live.confidence == pytest.approx(whole.confidence, abs=1e-4)

    # The isolated-digit commands refuse it in one line.
    with pytest.raises(SdcError, match="a digit-string reader"):
        from sdc.inference.recognizer import Recognizer

        Recognizer.load(model)
    result = subprocess.run(
        [sys.executable, "-m", "sdc", "predict", str(model), str(tmp_path / "x.wav")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "a digit-string reader" in result.stderr


def test_segmenters_must_each_hold_out_one_fold_speaker(
    tiny_fsdd: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    two = held_out_run(tiny_checkpoint, tmp_path / "two", ["carol", "bob"])
    with pytest.raises(SdcError, match=r"strings\.segmenters: .* tested on \['bob', 'carol'\]"):
        models_by_held_out_speaker([str(two)])
    with pytest.raises(SdcError, match=r"strings\.segmenters: expected a run's checkpoint"):
        models_by_held_out_speaker([str(tmp_path / "nothing.ckpt")])
    carol = held_out_run(tiny_checkpoint, tmp_path / "carol", ["carol"])
    again = held_out_run(tiny_checkpoint, tmp_path / "again", ["carol"])
    assert models_by_held_out_speaker([str(carol)]) == {"carol": carol}
    with pytest.raises(SdcError, match="two models hold out carol"):
        models_by_held_out_speaker([str(carol), str(again)])
    cfg = strings_config(tiny_fsdd, "strings.folds=[bob]", f"strings.segmenters=[{carol}]")
    with pytest.raises(SdcError, match="holds out carol, which is not a fold"):
        run(cfg, tmp_path / "run")


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("strings.epochs=0", "strings.epochs: expected"),
        ("strings.synthesis.gap_seconds=[0.3,0.1]", "strings.synthesis.gap_seconds"),
        ("strings.folds=[nobody]", "no speaker(s) ['nobody']"),
        ("strings.synthesis.min_digits=5 strings.synthesis.max_digits=2", "above max_digits"),
        ("strings.test_time_speeds=[1.0,3.0]", "strings.test_time_speeds: expected"),
    ],
)
def test_bad_options_are_one_line_naming_the_key(
    tiny_fsdd: Path, tmp_path: Path, override: str, words: str
) -> None:
    command = ["strings", f"strings.root={tiny_fsdd}", f"hydra.run.dir={tmp_path / 'run'}"]
    result = subprocess.run(
        [sys.executable, "-m", "sdc", *command, *override.split()],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert words in result.stderr and result.stderr.count("\n") == 1, result.stderr[-2000:]


def test_spoken_test_voices_are_never_training_voices() -> None:
    from sdc.data.espeak import espeak
    from sdc.strings.spoken import split_voices

    variants = espeak().variants()
    trained = {v.variant for v in split_voices(variants, 400, 0, held_out=False)}
    unheard = {v.variant for v in split_voices(variants, 100, 1, held_out=True)}
    assert trained and unheard and not trained & unheard


def test_a_pitch_shift_moves_the_voice_and_keeps_the_duration() -> None:
    from sdc.strings.train import pitch_shifted

    t = np.arange(RATE) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 500 * t)).astype(np.float32)
    octave = SynthesisConfig(pitch=1.0, pitch_semitones=(12.0, 12.0))
    (shifted,) = pitch_shifted([tone], octave, RATE, seed=0)
    assert abs(len(shifted) - len(tone)) <= 2
    peak = np.argmax(np.abs(np.fft.rfft(shifted[1000:-1000]))) * RATE / (len(shifted) - 2000)
    assert peak == pytest.approx(1000, rel=0.03)
    (same,) = pitch_shifted([tone], SynthesisConfig(pitch=0.0), RATE, seed=0)
    assert np.array_equal(same, tone)


def test_a_fold_run_alone_tests_the_strings_it_tests_in_the_full_run(
    tiny_fsdd: Path, tmp_path: Path, stand_in_weights: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sdc.strings.train as strings_train

    made: list[list[list[int]]] = []
    original = strings_train.test_sets

    def recorded(*args: object) -> dict:
        sets = original(*args)
        made.append(sets["4 digits, no pause"][1])
        return sets

    monkeypatch.setattr(strings_train, "test_sets", recorded)
    quick = ("strings.epochs=1", "strings.strings_per_speaker=4", "strings.test_strings=5")
    quick += ("strings.spoken_strings=0", "strings.final=false")
    run(strings_config(tiny_fsdd, "strings.folds=[carol]", *quick), tmp_path / "alone")
    run(strings_config(tiny_fsdd, "strings.folds=[alice,carol]", *quick), tmp_path / "both")
    alone, _, with_alice = made
    assert alone == with_alice and alone != made[1]


def test_test_strings_keep_the_quiet_ends_that_training_strings_cut(
    tiny_fsdd: Path, tmp_path: Path, stand_in_weights: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sdc.strings.train as strings_train

    loud, quiet = round(0.3 * RATE), round(0.1 * RATE)
    t = np.arange(loud + quiet) / RATE
    clip = (0.3 * np.sin(2 * np.pi * 400 * t)).astype(np.float32)
    clip[loud:] *= 10 ** (-35 / 20)  # a trailing "s", 35 dB below the vowel
    pools = {s: [(d, clip.copy()) for d in range(10)] for s in ("alice", "bob")}
    monkeypatch.setattr(strings_train, "speaker_pools", lambda *_: pools)
    lengths: dict[str, set[int]] = {"test": set(), "training": set()}
    test_sets, training_strings = strings_train.test_sets, strings_train.training_strings

    def tested(pool: list, *args: object) -> dict:
        lengths["test"].update(len(c) for _, c in pool)
        return test_sets(pool, *args)

    def trained(pool: list, *args: object) -> tuple:
        lengths["training"].update(len(c) for _, c in pool)
        return training_strings(pool, *args)

    monkeypatch.setattr(strings_train, "test_sets", tested)
    monkeypatch.setattr(strings_train, "training_strings", trained)
    quick = ("strings.epochs=1", "strings.strings_per_speaker=4", "strings.test_strings=2")
    quick += ("strings.spoken_strings=0", "strings.final=false", "strings.folds=[bob]")
    quick += ("strings.finetune_layers=0", "strings.test_time_speeds=[1.0]")
    run(strings_config(tiny_fsdd, *quick), tmp_path)
    assert lengths == {"test": {loud + quiet}, "training": {loud}}


def test_a_new_reader_starts_from_the_configs_seed_whatever_drew_before(
    tiny_fsdd: Path, stand_in_weights: None
) -> None:
    from sdc.strings.train import new_reader

    cfg = strings_config(tiny_fsdd)
    torch.manual_seed(1)
    first = new_reader(cfg).network.state_dict()
    torch.rand(1000)
    second = new_reader(cfg).network.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = new_reader(strings_config(tiny_fsdd, "strings.seed=5")).network.state_dict()
    assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize("top", [1, 10, 20])
def test_the_embeddings_bottom_then_top_make_its_frames(stand_in_weights: None, top: int) -> None:
    reader = DigitStringReader(("0", "1"), {}, RATE, 0.4)
    reader.load_pretrained()
    waves = torch.randn(3, 9000) * 0.1
    waves[1, 4000:] = 0.0  # a shorter recording, zero-padded as a batch pads it
    with torch.no_grad():
        frames = reader.frames(waves)
        rebuilt = reader.above(reader.below(waves, top), top)
    torch.testing.assert_close(rebuilt, frames, rtol=1e-4, atol=1e-4)
    for samples in (1, 4000, 9000, 23456):
        below = reader.below_count(samples, top)
        assert reader.above_count(below, top) == reader.frame_count(samples)


def test_a_view_at_another_speed_is_read_back_onto_the_recordings_frame_times() -> None:
    reader = DigitStringReader(("0", "1"), {}, RATE, 0.4)
    pad = reader.pad / RATE
    for speed in (0.925, 1.075):
        # Each of the view's frames holds the time (s, in the view) its stretch is centred on.
        view_times = torch.arange(60) * FRAME_SECONDS + RECEPTIVE_SECONDS / 2 - pad
        mapped = reader._on_frames(view_times[:, None], speed, 50)[:, 0]
        times = torch.arange(50) * FRAME_SECONDS + RECEPTIVE_SECONDS / 2 - pad
        inside = (times / speed >= view_times[0]) & (times / speed <= view_times[-1])
        # A moment t of the recording is heard at t / speed in the view.
        torch.testing.assert_close(mapped[inside] * speed, times[inside])
        assert inside.sum() > 40


def test_reading_at_several_speeds_averages_the_views(stand_in_weights: None) -> None:
    once = DigitStringReader(("0", "1"), {}, RATE, 0.4)
    once.load_pretrained()
    thrice = DigitStringReader(("0", "1"), {}, RATE, 0.4, test_time_speeds=(0.925, 1.0, 1.075))
    thrice.load_state_dict(once.state_dict())
    assert set(thrice.state_dict()) == set(once.state_dict()), "the views hold no weights"
    once.eval(), thrice.eval()
    wave = torch.randn(12000) * 0.1
    with torch.no_grad():
        plain = once(once.frames(wave[None])[:, : once.frame_count(len(wave))])[0]
    torch.testing.assert_close(once.read_log_probs(wave), plain)
    averaged = thrice.read_log_probs(wave)
    assert averaged.shape == plain.shape
    torch.testing.assert_close(averaged.exp().sum(dim=-1), torch.ones(len(plain)))
    assert not torch.allclose(averaged, plain, atol=1e-3)
    # One speed other than 1 is still read onto the recording's frames.
    faster = DigitStringReader(("0", "1"), {}, RATE, 0.4, test_time_speeds=(1.075,))
    faster.load_state_dict(once.state_dict())
    assert faster.eval().read_log_probs(wave).shape == plain.shape
    # Too short to be heard (0.5 s without padding): no frames, no digits.
    for speeds in ((1.0,), (0.925, 1.0)):
        unpadded = DigitStringReader(("0", "1"), {}, RATE, 0.0, test_time_speeds=speeds)
        assert unpadded.read_log_probs(torch.zeros(4000)).shape == (0, 3)


def test_fine_tuning_trains_the_embeddings_top_and_the_saved_model_reads_with_it(
    tiny_fsdd: Path, tmp_path: Path, stand_in_weights: None
) -> None:
    quick = ("strings.epochs=1", "strings.strings_per_speaker=6", "strings.spoken_strings=0")
    cfg = strings_config(tiny_fsdd, "strings.folds=[]", "strings.finetune_layers=2", *quick)
    run(cfg, tmp_path)
    pinned = DigitStringReader(("0",), {}, RATE, 0.4)
    pinned.load_pretrained()
    saved = StringRecognizer.from_checkpoint(tmp_path / "model.ckpt").reader.embedding
    convs = zip(pinned.embedding.convolutions(), saved.convolutions(), strict=True)
    moved = [not torch.equal(before.weight, after.weight) for before, after in convs]
    assert moved == [False] * 18 + [True] * 2
    assert not any(p.requires_grad for p in saved.parameters())
    # The reader reads at the speeds it was tested at; one saved before them, once.
    model = StringRecognizer.from_checkpoint(tmp_path / "model.ckpt")
    assert model.reader.test_time_speeds == (0.925, 1.0, 1.075)
    checkpoint = torch.load(tmp_path / "model.ckpt", weights_only=True)
    del checkpoint["hyper_parameters"]["test_time_speeds"]
    torch.save(checkpoint, tmp_path / "older.ckpt")
    assert StringRecognizer.from_checkpoint(tmp_path / "older.ckpt").reader.test_time_speeds == (
        1.0,
    )


def test_masks_fall_inside_each_string_and_no_wider_than_asked() -> None:
    from sdc.strings.train import masked

    generator = torch.Generator().manual_seed(0)
    x = torch.ones(64, 3, 40, 8)
    lengths = torch.randint(5, 41, (64,))
    out = masked(x, 2, lengths, 2, 4, generator)
    hidden = out[:, 0, :, 0] == 0
    assert hidden.any() and (hidden.sum(dim=1) <= 8).all()
    beyond = torch.arange(40) >= lengths[:, None]
    assert not (hidden & beyond).any()
    # Whole positions: every channel and band of a masked position, nothing else.
    assert torch.equal(out == 0, hidden[:, None, :, None].expand_as(out))
    bands = masked(x, 3, None, 1, 2, generator)[:, 0, 0, :] == 0
    assert bands.any() and (bands.sum(dim=1) <= 2).all()
    assert torch.equal(masked(x, 2, lengths, 0, 4, generator), x)
