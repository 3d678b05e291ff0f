"""The recognizer on a model trained on the tiny synthetic FSDD: checkpoints, batch invariance,
any audio file, speech finding, "no digit", transcription and the live-stream engine."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import SAMPLE_RATE, digit_tone
from sdc.errors import SdcError
from sdc.inference.checkpoint import load_classifier, read_model_info
from sdc.inference.recognizer import Recognizer, load_batch_per_core, sound_extent
from sdc.inference.stream import StreamListener, listen, pcm_chunks


@pytest.fixture(scope="module")
def recognizer(tiny_checkpoint: Path) -> Recognizer:
    return Recognizer.from_checkpoint(tiny_checkpoint)


def clips(digits: list[int], speaker: int = 1, take: int = 2) -> list[np.ndarray]:
    return [digit_tone(d, take, speaker).astype(np.float32) for d in digits]


def join(
    parts: list[np.ndarray], gaps: list[float], noise: float = 0.0, lead: float = 0.5
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Clips with silences between them; returns the recording and each clip's (start, end)."""
    pieces, times, t = [np.zeros(round(lead * SAMPLE_RATE))], [], lead
    for part, gap in zip(parts, gaps, strict=True):
        times.append((t, t + len(part) / SAMPLE_RATE))
        pieces += [part, np.zeros(round(gap * SAMPLE_RATE))]
        t += len(part) / SAMPLE_RATE + gap
    wave = np.concatenate(pieces).astype(np.float32)
    if noise:
        wave += np.random.default_rng(0).normal(0, noise, len(wave)).astype(np.float32)
    return wave, times


def test_checkpoint_alone_describes_the_model(tiny_checkpoint: Path) -> None:
    info = read_model_info(tiny_checkpoint)
    assert info.labels == tuple(str(d) for d in range(10))
    assert (info.sample_rate, info.window) == (8000, 18400)
    assert info.frontend["n_mfcc"] == 40 and info.net["time_pooling"] == "max"
    model = load_classifier(tiny_checkpoint)
    assert not model.training and bool(model.frontend.fitted)


def test_sound_extent_is_the_span_of_non_zero_samples() -> None:
    windows = np.zeros((3, 100), dtype=np.float32)
    windows[1, 40:70] = 0.5
    windows[1, 55] = 0.0  # a zero inside the sound does not split it
    windows[2] = np.random.default_rng(0).normal(0, 0.01, 100)
    assert sound_extent(windows).tolist() == [0, 30, 100]


def test_classify_groups_windows_of_like_extent_and_answers_in_order(
    tiny_checkpoint: Path,
) -> None:
    """Windows go to the model sorted by sound extent (a short clip's batch stays short under
    the silence-skipping embedding), and each answer comes back at its window's place."""
    window = 18400
    lengths = [9000, 1000, 8000, 2000, 0]
    windows = np.zeros((len(lengths), window), dtype=np.float32)
    for i, length in enumerate(lengths):
        start = (window - length) // 2
        windows[i, start : start + length] = (i + 1) / 10  # the window's class, as its level
    calls: list[list[int]] = []

    def backend(batch: np.ndarray) -> np.ndarray:
        calls.append(sound_extent(batch).tolist())
        return np.eye(10, dtype=np.float32)[np.round(batch.max(axis=1) * 10).astype(int)] * 20

    info = read_model_info(tiny_checkpoint)
    probs = Recognizer(backend, info, batch_size=2).classify(windows)
    assert calls == [[0, 1000], [2000, 8000], [9000]]
    assert probs.argmax(axis=1).tolist() == [1, 2, 3, 4, 0]


class Unsafe:
    """Anything that is not plain data: weights_only loading must refuse to unpickle it."""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such checkpoint"),
        (b"not a checkpoint at all", "not a loadable checkpoint"),
        ({"weights": torch.zeros(2)}, "not a Lightning checkpoint"),
        ({"state_dict": {}, "hyper_parameters": {"lr": 1}}, "not an sdc checkpoint"),
        ({"state_dict": {}, "extra": Unsafe()}, "not a loadable checkpoint"),
    ],
    ids=["missing", "garbage", "plain tensors", "other model", "pickled code"],
)
def test_unusable_checkpoints_are_one_sdc_error_naming_the_file(
    tmp_path: Path, content: object, message: str
) -> None:
    path = tmp_path / "model.ckpt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(SdcError, match=message) as err:
        load_classifier(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_clip_gets_the_same_logits_alone_and_in_a_batch(tiny_checkpoint: Path) -> None:
    model = load_classifier(tiny_checkpoint)
    rng = np.random.default_rng(0)
    windows = torch.from_numpy(rng.normal(0, 0.05, (7, model.window)).astype(np.float32))
    windows[3] *= 0.01  # a quiet clip between loud ones: per-clip, not per-batch, dB floor
    windows[5] = 0.0
    with torch.no_grad():
        batch = model(windows)
        alone = torch.cat([model(w.unsqueeze(0)) for w in windows])
    torch.testing.assert_close(alone, batch, atol=1e-5, rtol=0)


def test_any_rate_depth_channels_and_container_gives_the_same_digit(
    recognizer: Recognizer, tmp_path: Path
) -> None:
    digit = 3
    reference = recognizer.predict_waves([digit_tone(digit, 1, 0)])[0]
    wide = digit_tone(digit, 1, 0, sample_rate=16000)
    files = {
        "stereo_24bit_16k.wav": (np.stack([wide, 0.5 * wide], axis=1), 16000, "PCM_24"),
        "float_8k.wav": (digit_tone(digit, 1, 0), 8000, "FLOAT"),
        "mono_44k.flac": (digit_tone(digit, 1, 0, sample_rate=44100), 44100, "PCM_16"),
    }
    for name, (data, rate, subtype) in files.items():
        sf.write(tmp_path / name, data, rate, subtype)
    answers = recognizer.predict_files([tmp_path / name for name in files])
    for answer in answers:
        assert answer.error is None, answer
        assert answer.speech
        assert answer.top[0][0] == reference.top[0][0], answer
        assert answer.confidence == pytest.approx(reference.confidence, abs=0.1), answer


@pytest.mark.parametrize("level", [1.0, 0.1, 0.01])
def test_quiet_clips_with_an_offset_or_a_hum_are_still_speech(
    recognizer: Recognizer, level: float
) -> None:
    clip = level * digit_tone(4, 1, 0).astype(np.float32)
    peak = float(np.abs(clip).max())
    t = np.arange(len(clip)) / SAMPLE_RATE
    hum = clip + peak / 3 * np.sin(2 * np.pi * 50 * t).astype(np.float32)
    offset = clip + np.float32(peak / 3)
    reference, hummed, shifted = recognizer.predict_waves([clip, hum, offset])
    assert reference.speech and hummed.speech and shifted.speech
    # The offset is taken off before the clip meets the window's zero padding: no trace left.
    assert shifted.top[0][0] == reference.top[0][0]
    assert shifted.confidence == pytest.approx(reference.confidence, abs=1e-4)


def test_a_long_recording_is_classified_around_its_speech(recognizer: Recognizer) -> None:
    clip = digit_tone(7, 1, 2)
    wave, [(start, end)] = join([clip], [4.0], noise=0.001, lead=5.0)
    assert len(wave) > 3 * recognizer.window
    answer = recognizer.predict_waves([wave])[0]
    alone = recognizer.predict_waves([clip])[0]
    assert (answer.start, answer.end) == pytest.approx((start, end), abs=0.1)
    assert answer.top[0][0] == alone.top[0][0]


def test_silence_is_no_digit_and_so_is_anything_below_the_threshold(tiny_checkpoint: Path) -> None:
    recognizer = Recognizer.from_checkpoint(tiny_checkpoint)
    hiss = np.random.default_rng(0).normal(0, 3e-4, 3 * SAMPLE_RATE)
    for wave in (np.zeros(SAMPLE_RATE), hiss, np.zeros(5 * recognizer.window)):
        answer = recognizer.predict_waves([wave])[0]
        assert answer.label is None and not answer.speech
    strict = Recognizer.from_checkpoint(tiny_checkpoint, threshold=1.0)
    answer = strict.predict_waves([digit_tone(1, 1, 0)])[0]
    assert answer.speech and answer.label is None and answer.top
    with pytest.raises(SdcError, match="threshold"):
        Recognizer.from_checkpoint(tiny_checkpoint, threshold=1.5)


def test_one_bad_file_is_reported_and_the_rest_answered(
    recognizer: Recognizer, tmp_path: Path
) -> None:
    good = tmp_path / "good.wav"
    sf.write(good, digit_tone(2, 1, 1), SAMPLE_RATE)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEnot really")
    answers = recognizer.predict_files([good, broken, tmp_path / "missing.wav", good])
    assert [a.error is None for a in answers] == [True, False, False, True]
    assert "broken.wav" in answers[1].error and "missing.wav" in answers[2].error
    assert answers[0].top == answers[3].top and answers[0].top


def test_many_files_are_answered_in_order_group_by_group(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Files are read a few batches at a time: across groups, order and answers stay."""
    small = Recognizer.from_checkpoint(tiny_checkpoint, batch_size=2)  # groups of 16 files
    paths = []
    for i in range(37):
        path = tmp_path / f"{i:02d}.wav"
        if i == 20:
            path.write_bytes(b"not audio")
        else:
            sf.write(path, digit_tone(i % 10, 1, i % 3), SAMPLE_RATE)
        paths.append(path)
    answers = small.predict_files(paths)
    assert [a.file for a in answers] == [str(p) for p in paths]
    assert [i for i, a in enumerate(answers) if a.error] == [20]
    alone = [small.predict_files([p])[0] for p in paths[30:]]
    for grouped, single in zip(answers[30:], alone, strict=True):
        assert [label for label, _ in grouped.top] == [label for label, _ in single.top]
        assert grouped.confidence == pytest.approx(single.confidence, abs=1e-5)


def test_transcribing_joined_clips_gives_the_string_and_times(tiny_checkpoint: Path) -> None:
    recognizer = Recognizer.from_checkpoint(tiny_checkpoint, threshold=0.0)
    digits = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    parts = clips(digits, speaker=0, take=0)
    gaps = [0.3, 0.6, 0.35, 1.0, 0.4, 0.3, 0.8, 0.3, 0.5, 0.4]
    alone = "".join(p.label for p in recognizer.predict_waves(parts))
    # The test is about segmentation; the tiny model only has to know (almost) all the clips.
    assert sum(a != str(d) for a, d in zip(alone, digits, strict=True)) <= 1, alone
    # A little noise: the tiny model never heard much (the real-FSDD test uses more).
    for noise in (0.0, 0.0005):
        wave, times = join(parts, gaps, noise=noise)
        transcript = recognizer.transcribe(wave)
        # Every digit found once; its answer may differ from the clip alone only where the tiny
        # model is unsure (a segment's edges are not the clip's, so its centring moves a little).
        assert len(transcript.text) == len(digits), transcript.text
        assert sum(a != b for a, b in zip(transcript.text, alone, strict=True)) <= 1
        found = [(s.start, s.end) for s in transcript.segments]
        assert np.allclose(found, times, atol=0.1), (found, times)


def test_the_live_engine_says_each_digit_once_in_order(tiny_checkpoint: Path) -> None:
    recognizer = Recognizer.from_checkpoint(tiny_checkpoint, threshold=0.0)
    digits = [8, 6, 7, 5, 3, 0, 9]
    wave, times = join(clips(digits), [0.4, 1.2, 0.3, 2.5, 0.5, 0.35, 0.3], noise=0.0005)
    expected = recognizer.transcribe(wave).text
    assert len(expected) == len(digits)

    # Chunks of uneven sizes, as a sound card delivers them.
    rng = np.random.default_rng(1)
    cuts = np.cumsum(rng.integers(50, 3000, size=len(wave) // 50))
    chunks = np.split(wave, cuts[cuts < len(wave)])
    heard = list(listen(recognizer, chunks))
    assert "".join(p.label for p in heard) == expected
    assert np.allclose([(p.start, p.end) for p in heard], times, atol=0.1)

    # Raw 16-bit PCM on stdin goes through the same engine.
    pcm = io.BytesIO((np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes())
    from_pcm = list(listen(recognizer, pcm_chunks(recognizer, pcm, SAMPLE_RATE)))
    assert "".join(p.label for p in from_pcm) == expected


def test_the_live_engine_answers_a_digit_soon_after_it_ends(tiny_checkpoint: Path) -> None:
    recognizer = Recognizer.from_checkpoint(tiny_checkpoint, threshold=0.0)
    engine = StreamListener(recognizer)
    wave, [(_, end)] = join([digit_tone(4, 1, 1)], [3.0], lead=1.0)
    hop = engine.hop
    for i in range(0, len(wave), hop):
        if engine.feed(wave[i : i + hop]):
            latency = (i + hop) / SAMPLE_RATE - end
            break
    else:
        pytest.fail("the digit was never answered")
    assert latency <= recognizer.vad.min_silence_seconds + 2 * hop / SAMPLE_RATE


class RunsCode:
    """A pickle that would create a file when unpickled: the classic malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_a_crafted_pickle_is_refused_and_its_code_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": RunsCode(marker)}, path)
    with pytest.raises(SdcError, match="not a loadable checkpoint") as err:
        load_classifier(path)
    assert "evil.ckpt" in str(err.value)
    assert not marker.exists(), "loading a checkpoint must never run code from it"


def test_a_program_of_its_own_runs_a_checkpoint_one_batch_per_core_on_one_thread_each(
    tiny_checkpoint: Path, recognizer: Recognizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sdc predict` with a checkpoint: a batch on each core at once, PyTorch on one thread
    for the process; the same probabilities, in the windows' order, as one batch at a time."""
    monkeypatch.setattr("sdc.inference.recognizer.available_cores", lambda: 2)
    side_by_side = load_batch_per_core(tiny_checkpoint, threshold=0.5)
    assert torch.get_num_threads() == 1  # conftest's `_torch_threads_kept` restores them
    assert side_by_side.workers == 2 and side_by_side.threshold == 0.5
    windows = np.stack([recognizer.centred(c) for c in clips(list(range(10)) * 3)])
    expected = recognizer.classify(windows)
    assert recognizer.workers == 1
    assert np.abs(side_by_side.classify(windows) - expected).max() < 1e-5
