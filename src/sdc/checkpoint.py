"""Checkpoints as self-describing models: what a recognizer needs, read from the file alone.

A Lightning checkpoint holds the module's hyperparameters as plain data (network config, front-end
config, labels) next to the weights, so it loads with `torch.load(weights_only=True)`: no pickled
code runs, and nothing from the training config or the dataset is needed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sdc.errors import SdcError

if TYPE_CHECKING:
    from sdc.module import DigitClassifier

METADATA_KEY = "sdc.model_info"
"""Where exported models (ONNX metadata_props, TorchScript extra files) keep their `ModelInfo`."""


@dataclass(frozen=True)
class ModelInfo:
    """Everything about a trained model that is not a weight: what it expects and what it says."""

    labels: tuple[str, ...]
    sample_rate: int
    window: int
    """Samples per input window (clip length x sample rate)."""
    frontend: dict[str, Any]
    net: dict[str, Any]

    @property
    def window_seconds(self) -> float:
        return self.window / self.sample_rate

    @property
    def edge_fade(self) -> int:
        """Samples of fade at each clip's edges in the windows the model was trained on
        (`sdc.audio.window.edge_ramp`); 0 for models from before the option."""
        return round(float(self.frontend.get("edge_fade_seconds", 0.0)) * self.sample_rate)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "labels": list(self.labels)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str | Path) -> ModelInfo:
        try:
            data = json.loads(text)
            return cls(
                labels=tuple(str(label) for label in data["labels"]),
                sample_rate=int(data["sample_rate"]),
                window=int(data["window"]),
                frontend=dict(data["frontend"]),
                net=dict(data["net"]),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise SdcError(f"{source}: unreadable sdc model metadata ({err})") from None

    @classmethod
    def from_hparams(cls, hparams: dict[str, Any]) -> ModelInfo:
        frontend = dict(hparams["frontend"])
        sample_rate = int(frontend.get("sample_rate", 8000))
        clip_seconds = float(frontend.get("clip_seconds", 2.3))
        return cls(
            labels=tuple(str(label) for label in hparams["labels"]),
            sample_rate=sample_rate,
            window=round(clip_seconds * sample_rate),
            frontend=frontend,
            net=dict(hparams["net"]),
        )


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint's dictionary, loaded without running pickled code; SdcError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise SdcError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SdcError(f"{path}: not a loadable checkpoint ({reason[:200]})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise SdcError(f"{path}: not a Lightning checkpoint (no state_dict)")
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or not {"net", "frontend", "labels"} <= hparams.keys():
        raise SdcError(f"{path}: not an sdc checkpoint (hyper_parameters lack net/frontend/labels)")
    return checkpoint


def read_model_info(path: str | Path) -> ModelInfo:
    return ModelInfo.from_hparams(read_checkpoint(path)["hyper_parameters"])


def load_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> DigitClassifier:
    """The trained `DigitClassifier` of a checkpoint, in eval mode."""
    # Imported here so that reading metadata, and the ONNX path, never import Lightning.
    from sdc.module import DigitClassifier

    checkpoint = read_checkpoint(path, map_location)
    try:
        model = DigitClassifier(**checkpoint["hyper_parameters"])
        model.load_state_dict(checkpoint["state_dict"])
    except Exception as err:  # a config or weights that do not fit this version of sdc
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SdcError(f"{path}: cannot rebuild the model ({reason[:200]})") from None
    return model.to(map_location).eval()
