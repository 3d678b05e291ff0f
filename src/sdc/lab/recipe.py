"""What a trial learned: the parts of a run config its weights depend on.

`make results` reuses a finished trial only when its saved recipe equals the row's, so an edited
experiment or a quicker table never stands in for the real one. Options that are off compare
equal to their absence: a trial saved before an option existed, or with one sdc has since
retired switched off, learned what today's recipe learns.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

RETIRED = (
    "ema_decay",
    "label_smoothing",
    "ensemble_rule",
    "clean_final_epochs",
    "train_seed_offset",
)
"""Options sdc no longer has. A trial saved with one of them off learned what today's recipe
learns and is reused; one saved with it on learned something else."""

RECIPE_KEYS = (
    "seed",
    "data",
    "features",
    "model",
    "optim",
    "scheduler",
    "spec_augment",
    "vtlp",
    "experts",
    *RETIRED,
)
"""What a trial's weights depend on; `trainer.max_epochs` and `trainer.precision` too. Not
`test_time_speeds`: they change how the weights are tested, not what they are, so a trial is
reused and tested again at the row's speeds (`retest_run`)."""
NOT_RECIPE = ("root", "download", "num_workers")
"""Keys of `data` that say where and how the clips are read, not what is learned from them."""


def _without_disabled(node: Any) -> Any:
    """`node` without the augmentation steps that are off (`p: 0`).

    A step that is off draws no random numbers and changes nothing, so a trial saved before a
    step existed and one saved with the step off learned the same thing: both compare equal.
    """
    if not isinstance(node, dict):
        return node
    return {
        k: _without_disabled(v)
        for k, v in node.items()
        if not (isinstance(v, dict) and v.get("p") == 0)
    }


def _data_recipe(data: dict[str, Any]) -> dict[str, Any]:
    """`data` without where the clips are read from, and without extra clips that are off.

    No extra folders, no synthetic voices and no edge fade (a retired option) is the same
    training set as before those options existed, and the plain vocoder the same audio; where a
    synthetic corpus is kept (`synthetic.root`) does not change it.
    """
    kept = {k: v for k, v in data.items() if k not in NOT_RECIPE}
    augment = kept.get("augment")
    if isinstance(augment, dict) and augment.get("vocoder") == "plain":
        # The only vocoder before the option existed.
        kept["augment"] = {k: v for k, v in augment.items() if k != "vocoder"}
    if not kept.get("extra_train"):
        kept.pop("extra_train", None)
    if not kept.get("edge_fade_seconds"):
        # No fade is how every trial saved before the option existed was windowed.
        kept.pop("edge_fade_seconds", None)
    synthetic = kept.pop("synthetic", None)
    if isinstance(synthetic, dict) and synthetic.get("voices"):
        kept["synthetic"] = {k: v for k, v in synthetic.items() if k != "root"}
    return kept


def recipe(config: DictConfig) -> dict[str, Any]:
    """The parts of a (saved or composed) run config that decide what the run learns."""
    plain = _without_disabled(OmegaConf.to_container(config, resolve=False))
    picked = {k: plain.get(k) for k in RECIPE_KEYS}
    picked["data"] = _data_recipe(picked["data"] or {})
    for option in ("experts", *RETIRED):
        one_member = option == "ensemble_rule" and "experts" not in picked
        if not picked[option] or picked[option] == "mean" or one_member:
            # Off (0, no extra members, the mean rule, a rule with nothing to combine) is how
            # today's recipes train.
            del picked[option]
    members = [picked["features"], *(e.get("features") for e in picked.get("experts", {}).values())]
    for features in members:
        if isinstance(features, dict):
            if not features.get("pad_seconds", 1):
                # No padding, likewise (the speech embedding's `pad_seconds`).
                del features["pad_seconds"]
            if not features.get("finetune_layers"):
                # A frozen embedding, likewise: its learning rate scale is then unused.
                features.pop("finetune_layers", None)
                features.pop("finetune_lr_scale", None)
            # Where the pretrained weights are cached, not what they are (their SHA-256 is
            # pinned).
            features.pop("weights_dir", None)
            # A retired copy of data.edge_fade_seconds, which the data recipe keeps when on.
            features.pop("edge_fade_seconds", None)
            if features.get("kind") == "mfcc":
                # A retired option: MFCCs are the only kind of that front end now.
                del features["kind"]
    picked["trainer"] = {
        k: OmegaConf.select(config, f"trainer.{k}") for k in ("max_epochs", "precision")
    }
    # Which epoch is tested: a trial selected on another metric tested other weights.
    picked["selection"] = {
        k: OmegaConf.select(config, f"callbacks.model_checkpoint.{k}") for k in ("monitor", "mode")
    }
    return picked
