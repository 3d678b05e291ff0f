"""What a trained model is, apart from its weights: labels, sample rate, window, the front end's
and the network's configs. Checkpoints carry it in their hyperparameters, exports in their
metadata; reading it needs no torch."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sdc.errors import SdcError

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
    test_time_speeds: tuple[float, ...] | None = None
    """The playback speeds each window is heard at (None: once, as recorded)."""

    @property
    def window_seconds(self) -> float:
        return self.window / self.sample_rate

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "labels": list(self.labels)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str | Path) -> ModelInfo:
        try:
            data = json.loads(text)
            refuse_retired(data["frontend"], "", source)
            return cls(
                labels=tuple(str(label) for label in data["labels"]),
                sample_rate=int(data["sample_rate"]),
                window=int(data["window"]),
                frontend=dict(data["frontend"]),
                net=dict(data["net"]),
                test_time_speeds=_speeds(data.get("test_time_speeds")),
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
            test_time_speeds=_speeds(hparams.get("test_time_speeds")),
        )


def _speeds(speeds: Any) -> tuple[float, ...] | None:
    return tuple(float(s) for s in speeds) if speeds else None


def refuse_retired(frontend: dict[str, Any], prefix: str, source: str | Path) -> None:
    """Drop a front end's retired settings that were off; refuse a model that used them."""
    fade = frontend.pop("edge_fade_seconds", 0.0)
    if fade:
        raise SdcError(
            f"{source}: {prefix}frontend.edge_fade_seconds is {fade}; this version of sdc no "
            "longer fades clip edges, so the model would hear unlike its training"
        )
    if frontend.pop("kind", "mfcc") != "mfcc":
        raise SdcError(f"{source}: {prefix}frontend.kind: log-mel front ends are no longer built")
