"""The checks that run before anything is loaded or trained.

Hydra already rejects unknown keys and wrong types (the configs compose over the schemas of
`sdc.config.schemas`); `validate` adds each option's range and choices, read from its dataclass
field, and the few rules that tie two options together.
"""

from __future__ import annotations

from collections.abc import Iterable

from omegaconf import DictConfig, OmegaConf

from sdc.config.fields import check
from sdc.config.schemas import BY_TARGET, GROUPS
from sdc.errors import SdcError


def _require(cfg: DictConfig, key: str, ok: bool, expected: str) -> None:
    if not ok:
        value = OmegaConf.select(cfg, key)
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        raise SdcError(f"{key}: expected {expected}, got {value!r}")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


SPEEDS = "a list of speeds, each in [0.5, 2] (1: as recorded)"
"""What a list of test-time playback speeds must be: `best`'s and the string reader's."""


def speeds_in_range(speeds: Iterable[object]) -> bool:
    """Whether every one of `speeds` is a number in [0.5, 2] (see `SPEEDS`)."""
    return all(_number(v) and 0.5 <= v <= 2.0 for v in speeds)  # type: ignore[operator]


def validate(cfg: DictConfig) -> None:
    """Fail fast, naming the key, on values that would crash or silently mislead a run."""
    for group, schema in GROUPS.items():
        node = cfg.get(group)
        if node is not None:
            check(node, BY_TARGET.get(str(node.get("_target_")), schema), group)
    _require(
        cfg,
        "data.test_fraction",
        cfg.data.val_fraction + cfg.data.test_fraction < 1,
        "val_fraction + test_fraction < 1",
    )
    threads = cfg.get("threads")
    _require(
        cfg,
        "threads",
        threads is None or (type(threads) is int and threads >= 1),
        "null or an integer >= 1",
    )
    lr = OmegaConf.select(cfg, "optim.lr")
    _require(cfg, "optim.lr", _number(lr) and lr > 0, "a positive number")
    wd = OmegaConf.select(cfg, "optim.weight_decay", default=0.0)
    _require(cfg, "optim.weight_decay", _number(wd) and wd >= 0, "a number >= 0")
    speeds = cfg.get("test_time_speeds")
    _require(
        cfg,
        "test_time_speeds",
        speeds is None or (OmegaConf.is_list(speeds) and speeds_in_range(speeds)),
        f"null or {SPEEDS}",
    )
    epochs = cfg.trainer.max_epochs
    _require(
        cfg,
        "trainer.max_epochs",
        isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1,
        "an integer >= 1",
    )
