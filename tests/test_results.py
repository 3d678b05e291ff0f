"""`make results` end to end on the tiny synthetic FSDD: sweeps, evaluation, the table, reuse."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

import sdc.lab.results
from sdc.config import config_dir
from sdc.errors import SdcError
from sdc.evaluation.robustness import best_checkpoint, evaluate_run
from sdc.lab.recipe import recipe
from sdc.lab.results import (
    check_conditions,
    compose_trial,
    ensemble_rows,
    new_attempt,
    results,
    snr_curves,
)

pytestmark = pytest.mark.slow

CONDITIONS = {"clean", "snr_10db", "snr_0db", "start", "end", "trimmed_15db", "pitch_+4st"}
"""The robustness conditions of `results_cfg`'s tables (two SNRs, one higher voice)."""


def results_cfg(tiny_fsdd: Path, out: Path, *extra: str):
    tiny = [
        f"data.root={tiny_fsdd}",
        "data.download=false",
        "data.clip_seconds=0.6",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "~callbacks.model_summary",
        "~callbacks.learning_rate_monitor",
        "logger=none",
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            "results",
            overrides=[
                "results.rows=[baseline]",
                "results.epochs=1",
                f"results.dir={out}",
                "results.snr_db=[10,0]",
                "results.pitch_semitones=[4]",
                "results.sweep_values.random='1,2'",
                "results.sweep_values.official='1'",
                "results.sweep_values.loso='[alice],[bob]'",
                "results.overrides=[" + ",".join(f"'{o}'" for o in tiny) + "]",
                *extra,
            ],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    GlobalHydra.instance().clear()
    return cfg


def test_results_trains_every_protocol_and_writes_the_table(
    tiny_fsdd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "results"
    cfg = results_cfg(tiny_fsdd, out)
    payload = results(cfg)

    row = payload["table"]["baseline"]
    assert row["random"]["test_acc"]["n"] == 2
    assert row["official"]["test_acc"]["n"] == 1
    assert set(row["loso"]["per_speaker"]) == {"alice", "bob"}
    assert row["loso"]["worst"]["speaker"] in {"alice", "bob"}
    assert set(row["random"]["robustness"]) == CONDITIONS
    assert "robustness" not in row["official"]
    for trial in row["random"]["trials"]:
        assert (Path(trial["folder"]) / "robustness.json").is_file()
    table = (out / "results.md").read_text()
    assert "| `baseline` |" in table and "LOSO worst" in table and "noise 10 dB" in table
    assert "| pitch +4 st |" in table
    assert json.loads((out / "results.json").read_text())["table"] == payload["table"]
    # Beside the table, the noise columns drawn: each row's accuracy against the SNR.
    assert (out / "accuracy_vs_snr.png").read_bytes()[:4] == b"\x89PNG"
    assert "accuracy_vs_snr.png" in table
    curves = snr_curves(payload["table"], cfg.results)
    noise = row["random"]["robustness"]["snr_10db"]["mean"]
    assert set(curves) == {"baseline"} and curves["baseline"]["snr_10db"] == noise
    assert "pitch_+4st" not in curves["baseline"]

    # An interrupted table continues: finished trials are reused, nothing is trained again.
    def no_training(*args: object, **kwargs: object) -> float:
        raise AssertionError("reuse must not train finished trials again")

    monkeypatch.setattr(sdc.lab.results, "run_sweep", no_training)
    again = results(results_cfg(tiny_fsdd, out))
    assert again["table"]["baseline"]["loso"]["per_speaker"] == row["loso"]["per_speaker"]

    # Robustness saved before a condition existed is measured again, not shown with a gap.
    cache = Path(row["random"]["trials"][0]["folder"]) / "robustness.json"
    saved = json.loads(cache.read_text())
    measured = dict(saved["accuracy"])
    del saved["accuracy"]["trimmed_15db"]
    cache.write_text(json.dumps(saved))
    results(results_cfg(tiny_fsdd, out))
    assert json.loads(cache.read_text())["accuracy"] == measured

    # Test-time speeds change no weight: the trials are reused and tested again with them.
    viewed = results_cfg(tiny_fsdd, out)
    with open_dict(viewed):
        viewed.results.overrides.append("test_time_speeds=[0.9,1.0,1.1]")
    payload = results(viewed)
    for protocol in ("random", "official", "loso"):
        for before, after in zip(
            row[protocol]["trials"], payload["table"]["baseline"][protocol]["trials"], strict=True
        ):
            folder = Path(after["folder"])
            assert folder == Path(before["folder"]) and after["test_time_speeds"] == [0.9, 1.0, 1.1]
            retested = evaluate_run(folder, (), test_time_speeds=[0.9, 1.0, 1.1], names=["clean"])
            assert after["test_acc"] == retested["clean"]
            (entry,) = json.loads((folder / "retest.json").read_text())["entries"]
            assert entry == {"test_time_speeds": [0.9, 1.0, 1.1], "test_acc": after["test_acc"]}
            assert (
                json.loads((folder / "metrics.json").read_text())["test_acc"] == before["test_acc"]
            )
    random_trial = Path(payload["table"]["baseline"]["random"]["trials"][0]["folder"])
    assert json.loads((random_trial / "robustness.json").read_text())["test_time_speeds"] == [
        0.9,
        1.0,
        1.1,
    ]
    assert (
        "`baseline` is tested hearing each window at speeds 0.9, 1, 1.1"
        in (out / "results.md").read_text()
    )

    # An edited recipe does not reuse the old trials: they are trained again.
    edited = results_cfg(tiny_fsdd, out)
    with open_dict(edited):
        edited.results.overrides.append("optim.lr=0.01")
    with pytest.raises(AssertionError, match="reuse must not"):
        results(edited)


def refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("reuse must not train or combine again")


def pair_cfg(tiny_fsdd: Path, out: Path, *overrides: str):
    """A table of `baseline` and `pair` (baseline and from_scratch, weights 2 and 1), random
    split only, with `overrides` for every run."""
    cfg = results_cfg(
        tiny_fsdd,
        out,
        "results.rows=[baseline,pair]",
        "results.protocols=[random]",
        "+results.ensembles.pair.members=[baseline,from_scratch]",
        "+results.ensembles.pair.weights=[2,1]",
    )
    with open_dict(cfg):
        # from_scratch's synthetic voices need espeak-ng; its other steps run as they are.
        cfg.results.overrides += ["data.synthetic.voices=0", *overrides]
    return cfg


@pytest.fixture(scope="module")
def pair_members(tiny_fsdd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder with the pair's members trained (two seeds each, no robustness yet):
    training them is most of an ensemble test's time, and what is tested is how the table
    combines and reuses trials, so each test starts from its own copy of these."""
    out = tmp_path_factory.mktemp("pair_members") / "results"
    cfg = pair_cfg(tiny_fsdd, out)
    with open_dict(cfg):
        cfg.results.rows = ["baseline", "from_scratch"]
        cfg.results.robustness_protocols = []
    results(cfg)
    return out


def members_copied(pair_members: Path, tmp_path: Path) -> Path:
    """A results folder of this test's own, holding the trained members' trials."""
    out = tmp_path / "results"
    shutil.copytree(pair_members, out)
    return out


def test_an_ensemble_row_averages_its_members_trials_seed_by_seed(
    tiny_fsdd: Path, pair_members: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = members_copied(pair_members, tmp_path)
    cfg = pair_cfg(tiny_fsdd, out)
    # The members are trained already: nothing in this test trains.
    monkeypatch.setattr(sdc.lab.results, "run_sweep", refuse)
    payload = results(cfg)

    members = {
        name: {
            _seed(metrics.parent): metrics.parent
            for metrics in out.glob(f"sweeps/{name}/random/*/*/metrics.json")
        }
        for name in ("baseline", "from_scratch")
    }
    cell = payload["table"]["pair"]["random"]
    assert cell["test_acc"]["n"] == 2
    for trial in cell["trials"]:
        folder = Path(trial["folder"])
        assert folder.is_relative_to(out / "sweeps" / "pair" / "random")
        saved = json.loads((folder / "metrics.json").read_text())
        expected = [str(best_checkpoint(members[name][trial["value"]])) for name in members]
        assert saved["members"] == expected, "members paired by seed"
        assert saved["weights"] == [2.0, 1.0]
        assert (folder / "robustness.json").is_file()
    table = (out / "results.md").read_text()
    assert "| `pair` |" in table
    assert "`pair` averages the class probabilities of `baseline` and `from_scratch`" in table
    assert "(weights 2, 1)" in table

    # Built once: a second table reuses the members' trials and the ensembles.
    monkeypatch.setattr(sdc.lab.results, "build_ensemble", refuse)
    again = results(cfg)["table"]["pair"]["random"]
    assert again["trials"] == cell["trials"] and again["robustness"] == cell["robustness"]
    assert again["wall_seconds_this_run"] == 0.0

    # An ensemble hears as its first member's row does: at that row's test-time speeds, the
    # ensembles already built are reused and tested again with them.
    viewed = results(pair_cfg(tiny_fsdd, out, "test_time_speeds=[0.9,1.0,1.1]"))["table"]
    heard = viewed["pair"]["random"]
    for before, after in zip(cell["trials"], heard["trials"], strict=True):
        folder = Path(after["folder"])
        assert folder == Path(before["folder"]) and after["test_time_speeds"] == [0.9, 1.0, 1.1]
        retested = evaluate_run(folder, (), test_time_speeds=[0.9, 1.0, 1.1], names=["clean"])
        assert after["test_acc"] == retested["clean"]
        saved = json.loads((folder / "robustness.json").read_text())
        assert saved["test_time_speeds"] == [0.9, 1.0, 1.1]
    assert "`baseline` and `pair` are tested hearing each window at speeds 0.9, 1, 1.1" in (
        (out / "results.md").read_text()
    )

    # Other weights are another ensemble, built beside the first.
    with open_dict(cfg):
        cfg.results.ensembles.pair.weights = None
    with pytest.raises(AssertionError, match="combine again"):
        results(cfg)

    # An ensemble that an earlier version combined by another rule is never taken for this one.
    with open_dict(cfg):
        cfg.results.ensembles.pair.weights = [2, 1]
    for trial in cell["trials"]:
        metrics_file = Path(trial["folder"]) / "metrics.json"
        metrics_file.write_text(json.dumps({**json.loads(metrics_file.read_text()), "rule": "x"}))
    with pytest.raises(AssertionError, match="combine again"):
        results(cfg)


def test_an_ensemble_without_robustness_columns_is_tested_on_clean_clips_only(
    tiny_fsdd: Path, pair_members: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held-out speakers have no robustness columns: their ensembles measure only what the table
    reads, and are measured further if a later table asks for more."""
    out = members_copied(pair_members, tmp_path)
    cfg = pair_cfg(tiny_fsdd, out)
    # The members are trained already: nothing in this test trains.
    monkeypatch.setattr(sdc.lab.results, "run_sweep", refuse)
    with open_dict(cfg):
        cfg.results.robustness_protocols = []
    cell = results(cfg)["table"]["pair"]["random"]
    assert "robustness" not in cell
    for trial in cell["trials"]:
        folder = Path(trial["folder"])
        assert not (folder / "robustness.json").exists()
        assert trial["test_acc"] == evaluate_run(folder, (), names=["clean"])["clean"]

    monkeypatch.setattr(sdc.lab.results, "build_ensemble", refuse)
    with open_dict(cfg):
        cfg.results.robustness_protocols = ["random"]
    measured = results(cfg)["table"]["pair"]["random"]
    assert measured["trials"] == cell["trials"]
    assert set(measured["robustness"]) == CONDITIONS
    for trial in measured["trials"]:
        assert (Path(trial["folder"]) / "robustness.json").is_file()


def test_runs_started_in_the_same_second_get_their_own_attempt_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Frozen(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:
            return datetime(2026, 11, 27, 16, 22, 43)

    monkeypatch.setattr(sdc.lab.results, "datetime", Frozen)
    first, second = new_attempt(tmp_path), new_attempt(tmp_path)
    assert first.name == "2026-11-27_16-22-43" and second.name == "2026-11-27_16-22-43_2"
    assert first.is_dir() and second.is_dir()


def _seed(folder: Path) -> int:
    return int(OmegaConf.load(folder / ".hydra" / "config.yaml").seed)


@pytest.mark.parametrize(
    ("ensembles", "message"),
    [
        ({"best": {"members": ["baseline", "from_scratch"]}}, r"results.ensembles.best: the name"),
        ({"pair": {"members": ["baseline"]}}, r"results.ensembles.pair.members: expected two"),
        ({"pair": {"members": ["baseline", "nope"]}}, r"pair.members: .*got \['baseline', 'nope"),
        (
            {"pair": {"members": ["baseline", "best"], "weights": [1]}},
            r"results.ensembles.pair.weights: expected null or 2 numbers > 0, got \[1\]",
        ),
        ({"pair": {"members": ["baseline", "best"], "weights": [1, 0]}}, r"pair.weights"),
    ],
)
def test_a_bad_ensemble_row_is_one_line_naming_its_key(ensembles: dict, message: str) -> None:
    with pytest.raises(SdcError, match=message):
        ensemble_rows(OmegaConf.create({"ensembles": ensembles}))
    pair = {"pair": {"members": ["baseline", "best"], "weights": None}}
    row = ensemble_rows(OmegaConf.create({"ensembles": pair}))["pair"]
    assert row.weights == [1.0, 1.0]


@pytest.mark.parametrize(
    ("key", "values", "message"),
    [
        ("pitch_semitones", [4, 20], r"^results.pitch_semitones: expected numbers from -12 to 12"),
        ("snr_db", ["loud"], r"^results.snr_db: expected numbers from -20 to 100, got \['loud'\]$"),
    ],
)
def test_bad_robustness_conditions_are_one_line_naming_the_key(
    key: str, values: list, message: str
) -> None:
    with pytest.raises(SdcError, match=message):
        check_conditions(OmegaConf.create({key: values}))


def test_a_step_that_is_off_matches_a_recipe_saved_before_it_existed() -> None:
    old = OmegaConf.create(
        {"seed": 1, "data": {"augment": {"noise": {"p": 0.5}}}, "trainer": {"max_epochs": 3}}
    )
    new = OmegaConf.merge(
        old,
        {
            "data": {"augment": {"microphone": {"p": 0.0, "peaks": 3}}},
            "vtlp": {"p": 0.0, "factor": [0.9, 1.1]},
        },
    )
    assert recipe(new) == recipe(old)
    on = OmegaConf.merge(new, {"vtlp": {"p": 0.5}})
    assert recipe(on) != recipe(old)
    assert recipe(OmegaConf.merge(old, {"data": {"augment": {"noise": {"p": 0.0}}}})) != recipe(old)


def test_the_plain_vocoder_matches_a_recipe_saved_before_the_option_existed() -> None:
    old = OmegaConf.create(
        {"seed": 1, "data": {"augment": {"noise": {"p": 0.5}}}, "trainer": {"max_epochs": 3}}
    )
    plain = OmegaConf.merge(old, {"data": {"augment": {"vocoder": "plain"}}})
    locked = OmegaConf.merge(old, {"data": {"augment": {"vocoder": "phase_locked"}}})
    assert recipe(plain) == recipe(old)
    assert recipe(locked) != recipe(old), "trained on other audio"


@pytest.mark.parametrize(
    ("option", "on"),
    [
        ("ema_decay", 0.998),
        ("label_smoothing", 0.5),
        ("clean_final_epochs", 1),
        ("train_seed_offset", 1000),
    ],
)
def test_a_retired_option_off_matches_todays_recipe_and_on_does_not(option: str, on: float) -> None:
    old = OmegaConf.create({"seed": 1, "data": {"split": "random"}, "trainer": {"max_epochs": 3}})
    assert recipe(OmegaConf.merge(old, {option: 0})) == recipe(old)
    assert recipe(OmegaConf.merge(old, {option: on})) != recipe(old), "learned other weights"


def test_no_extra_clips_match_a_recipe_saved_before_the_options_existed() -> None:
    old = OmegaConf.create({"seed": 1, "data": {"split": "random"}, "trainer": {"max_epochs": 3}})
    off = {"extra_train": [], "synthetic": {"voices": 0, "takes": 1, "seed": 0, "root": "/a"}}
    assert recipe(OmegaConf.merge(old, {"data": off})) == recipe(old)
    voices = {"synthetic": {"voices": 150, "takes": 1, "seed": 0, "root": "/a"}}
    with_voices = recipe(OmegaConf.merge(old, {"data": voices}))
    assert with_voices != recipe(old)
    moved = {"synthetic": {**voices["synthetic"], "root": "/elsewhere"}}
    assert recipe(OmegaConf.merge(old, {"data": moved})) == with_voices, "where is not what"
    folder = recipe(OmegaConf.merge(old, {"data": {"extra_train": ["/mine"]}}))
    assert folder != recipe(old)


def test_checkpoint_selection_is_part_of_the_recipe_and_the_weights_folder_is_not() -> None:
    old = OmegaConf.create(
        {
            "seed": 1,
            "features": {"pad_seconds": 0.4, "weights_dir": "/a"},
            "callbacks": {"model_checkpoint": {"monitor": "val_acc", "mode": "max"}},
        }
    )
    on_loss = {"callbacks": {"model_checkpoint": {"monitor": "val_loss", "mode": "min"}}}
    assert recipe(OmegaConf.merge(old, on_loss)) != recipe(old)
    renamed = {"callbacks": {"model_checkpoint": {"filename": "other"}}}
    assert recipe(OmegaConf.merge(old, renamed)) == recipe(old)
    moved = {"features": {"weights_dir": "/elsewhere"}}
    assert recipe(OmegaConf.merge(old, moved)) == recipe(old), "where is not what"
    assert recipe(OmegaConf.merge(old, {"features": {"pad_seconds": 0.2}})) != recipe(old)


def test_a_frozen_embedding_is_the_recipe_of_trials_saved_before_fine_tuning_existed() -> None:
    old = OmegaConf.create({"seed": 1, "features": {"pad_seconds": 0.4, "weights_dir": "/a"}})
    frozen = {"features": {"finetune_layers": 0, "finetune_lr_scale": 0.1}}
    assert recipe(OmegaConf.merge(old, frozen)) == recipe(old)
    tuned = recipe(OmegaConf.merge(old, {"features": {"finetune_layers": 5}}))
    assert tuned != recipe(old)
    slower = {"features": {"finetune_layers": 5, "finetune_lr_scale": 0.01}}
    assert recipe(OmegaConf.merge(old, slower)) != tuned


def test_an_ensemble_is_another_recipe_and_none_matches_trials_saved_before_them() -> None:
    old = OmegaConf.create({"seed": 1, "features": {"n_mfcc": 40}, "model": {"width": 8}})
    assert recipe(OmegaConf.merge(old, {"experts": {}})) == recipe(old)
    member = {"features": {"n_mfcc": 20, "weights_dir": "/a"}, "model": {"width": 4}}
    ensemble = recipe(OmegaConf.merge(old, {"experts": {"mfcc": member}}))
    assert ensemble != recipe(old)
    moved = {"experts": {"mfcc": {**member, "features": {"n_mfcc": 20, "weights_dir": "/b"}}}}
    assert recipe(OmegaConf.merge(old, moved)) == ensemble, "where is not what"
    heavier = {"experts": {"mfcc": {**member, "weight": 2.0}}}
    assert recipe(OmegaConf.merge(old, heavier)) != ensemble
    # `ensemble_rule` is retired: the mean, or any rule with one member, is today's recipe; an
    # ensemble trained as one by another rule learned other weights.
    with_experts = OmegaConf.merge(old, {"experts": {"mfcc": member}})
    assert recipe(OmegaConf.merge(with_experts, {"ensemble_rule": "mean"})) == ensemble
    assert recipe(OmegaConf.merge(with_experts, {"ensemble_rule": "product"})) != ensemble
    assert recipe(OmegaConf.merge(old, {"ensemble_rule": "product"})) == recipe(old), "one member"


@pytest.mark.parametrize(
    ("row", "protocol"), [("baseline", "random"), ("best", "random"), ("best", "loso")]
)
def test_trials_saved_before_the_redesign_are_todays_recipes(row: str, protocol: str) -> None:
    """The table's trials were trained with configs composed before options were retired and
    groups got their schemas: `make results` must still read them as today's rows."""
    saved = OmegaConf.load(
        Path(__file__).parent / "data" / "saved_before_redesign" / f"{row}_{protocol}.yaml"
    )
    assert recipe(saved) == recipe(compose_trial(row, protocol, []))
