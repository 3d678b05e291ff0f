"""The edge fade: each clip's start and end ramped where it meets the window's zero padding, the
same in training, evaluation and inference, and kept with the checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import train_checkpoint
from sdc.audio.augment import AugmentConfig, WaveformAugment
from sdc.audio.window import centre_recording, edge_ramp, fit_to_window
from sdc.checkpoint import ModelInfo, read_model_info
from sdc.data.datamodule import FSDDDataModule
from sdc.errors import SdcError
from sdc.inference import Recognizer
from sdc.module import DigitClassifier
from sdc.results import recipe
from sdc.robustness import conditions

FADE = 10


def test_a_clip_at_full_level_meets_its_padding_without_a_step() -> None:
    clips = torch.ones(2, 100)
    lengths = torch.tensor([100, 60])
    plain = fit_to_window(clips, lengths, 200)
    faded = fit_to_window(clips, lengths, 200, fade=FADE)
    assert torch.equal(fit_to_window(clips, lengths, 200, fade=0), plain)
    # Nothing moves and the padding stays silent: only the edges are scaled.
    assert torch.equal(faded != 0, plain != 0)
    for row, length in zip(faded, lengths.tolist(), strict=True):
        clip = row[row != 0]
        assert len(clip) == length
        assert clip[0] < 0.05 and clip[-1] < 0.05, "the step at each edge is gone"
        assert torch.all(clip[1:FADE] >= clip[: FADE - 1]), "the ramp only rises"
        assert torch.equal(clip[FADE:-FADE], torch.ones(length - 2 * FADE))
        torch.testing.assert_close(clip, clip.flip(0))


def test_a_clip_shorter_than_two_fades_still_reaches_full_level() -> None:
    ramp = edge_ramp(torch.arange(6), torch.tensor(6), fade=FADE)
    assert ramp.max() == 1.0 and ramp[0] < 0.3
    torch.testing.assert_close(ramp, ramp.flip(0))


def test_a_cropped_clip_is_faded_only_at_its_own_edges() -> None:
    clip = torch.arange(1.0, 301.0).unsqueeze(0)
    middle = fit_to_window(clip, torch.tensor([300]), 100, fade=FADE)
    assert torch.equal(middle, fit_to_window(clip, torch.tensor([300]), 100))
    start = fit_to_window(clip, torch.tensor([300]), 100, torch.zeros(1), fade=FADE)
    assert start[0, 0] < 1.0 and start[0, -1] == 100.0


def test_evaluation_and_training_windows_are_faded_alike(tiny_fsdd: Path) -> None:
    plain = FSDDDataModule(tiny_fsdd, download=False)
    faded = FSDDDataModule(tiny_fsdd, download=False, edge_fade_seconds=FADE / 8000)
    for datamodule in (plain, faded):
        datamodule.setup()
    batch = next(iter(faded.test_dataloader()))
    waves, lengths, _ = batch
    expected = fit_to_window(waves, lengths, faded.window, fade=FADE)
    assert torch.equal(faded.on_after_batch_transfer(batch, 0)[0], expected)
    assert not torch.equal(plain.on_after_batch_transfer(batch, 0)[0], expected)
    assert torch.equal(next(iter(faded.clean_windows("test"))), expected)
    # Every augmentation off, training windows are the evaluation's: faded as well.
    off = {"pitch_shift": {"p": 0}, "time_stretch": {"p": 0}, "noise": {"p": 0}}
    augment = WaveformAugment(
        OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AugmentConfig), off)),
        8000,
        faded.window,
        fade=FADE,
    )
    assert torch.equal(augment(waves, lengths), expected)


def test_robustness_conditions_fade_every_clip_as_the_model_was_trained() -> None:
    clips = torch.ones(2, 3000)
    lengths = torch.tensor([3000, 2000])
    faded = conditions(8000, fade=FADE)
    generator = torch.Generator().manual_seed(0)
    expected = fit_to_window(clips, lengths, 8000, fade=FADE)
    assert torch.equal(faded["clean"](clips, lengths, generator), expected)
    start = faded["start"](clips, lengths, generator)
    assert start[0, 0] < 0.05 and start[0, FADE] == 1.0
    trimmed = faded["trimmed_15db"](clips, lengths, generator)
    assert torch.equal(trimmed, expected)


def test_models_keep_their_fade_and_older_ones_have_none() -> None:
    mfcc = {"_target_": "sdc.audio.features.MfccFrontend", "normalize": "utterance"}
    cnn = {"_target_": "sdc.models.cnn.DigitCNN"}
    adam = {"_target_": "torch.optim.Adam", "_partial_": True}
    model = DigitClassifier(
        net=cnn, frontend={**mfcc, "edge_fade_seconds": 0.005}, optim=adam
    ).eval()
    info = ModelInfo.from_hparams(dict(model.hparams))
    assert model.edge_fade == info.edge_fade == 40
    assert ModelInfo.from_json(info.to_json(), "exported").edge_fade == 40
    assert ModelInfo.from_hparams({**dict(model.hparams), "frontend": mfcc}).edge_fade == 0
    # Inference places a recording as the model was trained to hear it.
    clip = np.ones(4000, dtype=np.float32) + np.linspace(0, 1, 4000, dtype=np.float32)
    centred = Recognizer.from_module(model).centred(clip)
    np.testing.assert_array_equal(centred, centre_recording(clip, model.window, 40))
    assert not np.array_equal(centred, centre_recording(clip, model.window))
    with pytest.raises(SdcError, match=r"^experts\.mel: expected windows .* edges faded over 40"):
        DigitClassifier(
            net=cnn,
            frontend={**mfcc, "edge_fade_seconds": 0.005},
            optim=adam,
            experts={"mel": {"frontend": mfcc, "net": cnn}},
        )


def test_no_fade_matches_a_recipe_saved_before_the_option_existed() -> None:
    old = OmegaConf.create(
        {"seed": 1, "data": {"split": "random"}, "features": {"n_mfcc": 20}, "trainer": {}}
    )
    off = OmegaConf.merge(
        old,
        {
            "data": {"edge_fade_seconds": 0.0},
            "features": {"edge_fade_seconds": "${data.edge_fade_seconds}"},
        },
    )
    assert recipe(off) == recipe(old)
    on = OmegaConf.merge(off, {"data": {"edge_fade_seconds": 0.01}})
    assert recipe(on) != recipe(old), "heard other windows"


def test_a_trained_checkpoint_is_heard_with_its_fade(tiny_fsdd: Path, tmp_path: Path) -> None:
    best, metrics = train_checkpoint(
        tiny_fsdd,
        tmp_path / "run",
        "trainer.max_epochs=1",
        "data.edge_fade_seconds=0.005",
        "data.augment.pitch_shift.p=0",
        "data.augment.time_stretch.p=0",
    )
    assert 0.0 <= metrics["test_acc"] <= 1.0
    assert read_model_info(best).edge_fade == 40
    recognizer = Recognizer.from_checkpoint(best)
    clip = np.full(4000, 0.5, dtype=np.float32) + np.linspace(0, 1, 4000, dtype=np.float32)
    np.testing.assert_array_equal(
        recognizer.centred(clip), centre_recording(clip, recognizer.window, 40)
    )
