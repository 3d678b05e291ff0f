"""The MFCC front end: shapes, normalization, batch independence."""

from __future__ import annotations

import pytest
import torch

from sdc.audio.features import MfccFrontend


def test_recipe_shape_is_40_mfccs_by_201_frames() -> None:
    frontend = MfccFrontend(sample_rate=8000, clip_seconds=2.3)
    assert frontend.output_shape == (1, 40, 201)
    assert frontend(torch.randn(3, 18400) * 0.1).shape == (3, 1, 40, 201)


@pytest.mark.parametrize("normalize", ["global", "utterance", "speech", "none"])
def test_features_of_a_clip_do_not_depend_on_its_batch(normalize: str) -> None:
    torch.manual_seed(0)
    frontend = MfccFrontend(normalize=normalize).eval()
    quiet = torch.randn(1, 18400) * 1e-3
    loud = torch.randn(7, 18400)
    alone = frontend(quiet)
    together = frontend(torch.cat([quiet, loud]))[:1]
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-5)


def test_global_statistics_standardize_the_training_features() -> None:
    torch.manual_seed(0)
    frontend = MfccFrontend()
    assert not bool(frontend.fitted)
    batches = [torch.randn(8, 18400) * 0.2 for _ in range(3)]
    frontend.fit(batches)
    assert bool(frontend.fitted)
    features = frontend(torch.cat(batches))
    per_coefficient = features.transpose(0, 2).reshape(40, -1)
    assert per_coefficient.mean(dim=1).abs().max() < 1e-3
    assert (per_coefficient.std(dim=1) - 1).abs().max() < 1e-2


def test_statistics_travel_in_the_state_dict() -> None:
    frontend = MfccFrontend()
    frontend.fit([torch.randn(4, 18400)])
    copy = MfccFrontend()
    copy.load_state_dict(frontend.state_dict())
    assert bool(copy.fitted)
    torch.testing.assert_close(copy.mean, frontend.mean)


def test_evaluation_features_are_the_same_one_clip_at_a_time_or_in_a_batch() -> None:
    from torch.nn.utils.rnn import pad_sequence

    from sdc.audio.window import fit_to_window

    torch.manual_seed(0)
    frontend = MfccFrontend().eval()
    clips = [torch.randn(n) * 0.1 for n in (1200, 4000, 2500, 19000)]
    lengths = torch.tensor([len(c) for c in clips])
    batch = frontend(fit_to_window(pad_sequence(clips, batch_first=True), lengths, 18400))
    for i, clip in enumerate(clips):
        alone = frontend(fit_to_window(clip.unsqueeze(0), lengths[i : i + 1], 18400))
        torch.testing.assert_close(alone[0], batch[i], atol=1e-5, rtol=1e-5)


def test_front_end_equals_torchaudio_mfcc() -> None:
    import torchaudio

    torch.manual_seed(0)
    frontend = MfccFrontend(normalize="none")
    reference = torchaudio.transforms.MFCC(
        sample_rate=8000,
        n_mfcc=40,
        log_mels=False,
        melkwargs={
            "n_fft": 256,
            "win_length": 184,
            "hop_length": 92,
            "f_min": 0.0,
            "f_max": 4000.0,
            "n_mels": 64,
        },
    )
    windows = torch.randn(3, 18400) * torch.tensor([[0.5], [0.01], [1e-4]])
    torch.testing.assert_close(
        frontend(windows), reference(windows.unsqueeze(1)), atol=1e-3, rtol=1e-4
    )


def test_speech_normalization_ignores_the_padding_and_the_level() -> None:
    """Per-clip statistics from speech frames only: the same clip gives the same normalized
    speech frames wherever it sits, however much padding surrounds it and however loud it is."""
    torch.manual_seed(0)
    frontend = MfccFrontend(normalize="speech")
    tone = torch.sin(torch.arange(3000) * 0.3) * torch.hann_window(3000) * 0.3
    tone = tone + 0.05 * torch.randn(3000)
    short = torch.zeros(1, 18400)
    short[0, 9200:12200] = tone
    loud = short * 8
    hop = frontend.hop_length
    speech = slice(9200 // hop + 4, 12200 // hop - 4)
    a, b = frontend(short)[..., speech], frontend(loud)[..., speech]
    torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)
    # Per-clip CMVN over the whole window is not padding-blind: its speech frames change
    # when the same clip is fitted into a longer window.
    wide = MfccFrontend(normalize="speech", clip_seconds=4.0)
    wide_utterance = MfccFrontend(normalize="utterance", clip_seconds=4.0)
    longer = torch.zeros(1, 32000)
    longer[0, 9200:12200] = tone
    torch.testing.assert_close(wide(longer)[..., speech], a, atol=1e-3, rtol=1e-3)
    utterance = MfccFrontend(normalize="utterance")(short)[..., speech]
    assert (wide_utterance(longer)[..., speech] - utterance).abs().max() > 0.1


def test_features_stay_float32_under_mixed_precision() -> None:
    """Mixed precision is for the network: in float16 a loud frame's mel power overflows and
    the features would differ from the ones the exported model computes."""
    torch.manual_seed(0)
    frontend = MfccFrontend(normalize="speech").eval()
    windows = torch.randn(4, 18400) * 0.5
    plain = frontend(windows)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = frontend(windows)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, plain, atol=0, rtol=0)
