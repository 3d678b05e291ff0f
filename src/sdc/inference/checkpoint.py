"""Checkpoints as self-describing models: what a recognizer needs, read from the file alone.

A Lightning checkpoint holds the module's hyperparameters as plain data (network config, front-end
config, labels) next to the weights, so it loads with `torch.load(weights_only=True)`: no pickled
code runs, and nothing from the training config or the dataset is needed.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sdc.errors import SdcError, first_line
from sdc.inference.model_info import ModelInfo, refuse_retired

if TYPE_CHECKING:
    from sdc.training.module import DigitClassifier

RETIRED_OFF: dict[str, object] = {
    "label_smoothing": 0.0,
    "ensemble_rule": "mean",
}
"""Hyperparameters of checkpoints saved by earlier versions that sdc no longer has, with the
value at which they change nothing at inference: such a checkpoint loads as before."""


def upgrade(hparams: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """A checkpoint's hyperparameters as this version of `DigitClassifier` takes them.

    Options sdc measured and removed are dropped where they were off, and refused with one line
    where a model was trained with them on: loading it otherwise would silently hear or combine
    unlike its training.
    """
    hparams = dict(hparams)
    for key, off in RETIRED_OFF.items():
        value = hparams.pop(key, off)
        if value != off and (key != "ensemble_rule" or hparams.get("experts")):
            raise SdcError(f"{source}: {key} is {value!r}, which this version of sdc does not have")
    hparams["frontend"] = dict(hparams["frontend"])
    refuse_retired(hparams["frontend"], "", source)
    net = hparams["net"] = dict(hparams["net"])
    if net.get("_target_") == "sdc.models.cnn.DigitCNN":
        # Saved before the option existed: the CNN flattened its map.
        net.setdefault("time_pooling", "none")
    experts = {}
    for name, expert in (hparams.get("experts") or {}).items():
        expert = {**expert, "frontend": dict(expert["frontend"])}
        refuse_retired(expert["frontend"], f"experts.{name}.", source)
        experts[name] = expert
    if experts:
        hparams["experts"] = experts
    return hparams


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint's dictionary; SdcError, one line naming the file, if it is unusable.

    Loaded with `weights_only=True` passed explicitly, which no environment setting overrides
    (`TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD` only changes torch's default): a crafted pickle is
    refused and never runs. Weights that are not all finite are refused too: such a model
    answers NaN for every clip.
    """
    path = Path(path)
    if path.is_dir():
        raise SdcError(f"{path}: a folder, expected a checkpoint file")
    if not path.is_file():
        raise SdcError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():
            # torch warns before it fails on a file that is no zip archive: the error says it.
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise SdcError(f"{path}: permission denied (not readable by this user)") from None
    except pickle.UnpicklingError:
        raise SdcError(
            f"{path}: not a loadable checkpoint (it holds pickled objects other than weights "
            "and plain data, which could run code: refused)"
        ) from None
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise SdcError(f"{path}: not a loadable checkpoint ({first_line(err)})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise SdcError(f"{path}: not a Lightning checkpoint (no state_dict)")
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or not {"net", "frontend", "labels"} <= hparams.keys():
        raise SdcError(f"{path}: not an sdc checkpoint (hyper_parameters lack net/frontend/labels)")
    for name, tensor in checkpoint["state_dict"].items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not tensor.isfinite().all():
            raise SdcError(f"{path}: weight {name} holds NaN or infinite values")
    checkpoint["hyper_parameters"] = upgrade(hparams, path)
    return checkpoint


def read_model_info(path: str | Path) -> ModelInfo:
    return ModelInfo.from_hparams(read_checkpoint(path)["hyper_parameters"])


def load_classifier(
    path: str | Path, map_location: str | torch.device = "cpu", **overrides: Any
) -> DigitClassifier:
    """The trained `DigitClassifier` of a checkpoint, in eval mode; `overrides` replace its
    hyperparameters that change no weight (`test_time_speeds`)."""
    return classifier_from(read_checkpoint(path, map_location), path, map_location, **overrides)


def classifier_from(
    checkpoint: dict[str, Any],
    path: str | Path,
    map_location: str | torch.device = "cpu",
    **overrides: Any,
) -> DigitClassifier:
    """`load_classifier` of a checkpoint already read by `read_checkpoint` from `path`."""
    # Imported here so that reading metadata, and the ONNX path, never import Lightning.
    from sdc.training.module import DigitClassifier

    if checkpoint["hyper_parameters"].get("kind") == "digit_strings":
        raise SdcError(
            f"{path}: a digit-string reader, which sdc transcribe and sdc listen use; this "
            "command takes isolated-digit models"
        )
    try:
        model = DigitClassifier(**{**checkpoint["hyper_parameters"], **overrides})
        model.load_state_dict(checkpoint["state_dict"])
    except Exception as err:  # a config or weights that do not fit this version of sdc
        raise SdcError(f"{path}: cannot rebuild the model ({first_line(err)})") from None
    return model.to(map_location).eval()
