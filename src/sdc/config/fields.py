"""One definition per option: its default and its allowed values, together in its dataclass.

Every configurable part of sdc describes its options as a dataclass whose fields are made with
`option`. Hydra composes the YAML files over these dataclasses (registered as schemas in
`sdc.config.schemas`), which rejects misspelt keys and wrong types; `check` then reads each
field's bounds and choices, so a value out of range is one line naming its key. YAML files hold
only what a recipe changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from omegaconf import MISSING

from sdc.errors import SdcError

__all__ = ["MISSING", "check", "option", "probability"]


def option(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    choices: Sequence[Any] | None = None,
) -> Any:
    """A dataclass field with its default and what it may be: `low <= value <= high`,
    `value > above`, or one of `choices`. A `[min, max]` pair must also have min <= max; None
    is allowed where the default is None (off)."""
    bounds = {"low": low, "high": high, "above": above, "choices": choices}
    metadata = {k: v for k, v in bounds.items() if v is not None}
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default=tuple(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def probability(default: float = 0.0) -> Any:
    """How often a random step is applied, per clip."""
    return option(default, low=0.0, high=1.0)


def _expected(meta: dict[str, Any], pair: bool, nullable: bool) -> str:
    if "choices" in meta:
        text = f"one of {', '.join(str(c) for c in meta['choices'])}"
    elif pair:
        low, high = meta.get("low", meta.get("above")), meta.get("high")
        text = f"[min, max] with {low} <= min <= max <= {high}"
    elif "above" in meta:
        text = f"a number > {meta['above']}" + (f" and <= {meta['high']}" if "high" in meta else "")
    elif "low" in meta and "high" in meta:
        text = f"a number in [{meta['low']}, {meta['high']}]"
    else:
        text = f"a number >= {meta['low']}"
    return f"null or {text}" if nullable else text


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _within(value: Any, meta: dict[str, Any]) -> bool:
    if not _number(value):
        return False
    if "low" in meta and value < meta["low"]:
        return False
    if "above" in meta and value <= meta["above"]:
        return False
    return not ("high" in meta and value > meta["high"])


def check(values: Any, schema: type, prefix: str) -> None:
    """Raise `SdcError` naming `prefix.key` for the first value of `values` (a mapping, e.g. a
    config node) outside what its field in `schema` allows; nested dataclasses are checked
    too, and keys the mapping lacks keep their defaults."""
    for spec in dataclasses.fields(schema):
        if spec.name not in values:
            continue
        value, key = values[spec.name], f"{prefix}.{spec.name}"
        nested = spec.default_factory
        if nested is not dataclasses.MISSING and dataclasses.is_dataclass(nested):
            check(value, nested, key)  # type: ignore[arg-type]
            continue
        meta = dict(spec.metadata)
        if not meta:
            continue
        nullable = spec.default is None
        if value is None and nullable:
            continue
        pair = "tuple" in str(spec.type)
        if "choices" in meta:
            ok = value in meta["choices"]
        elif pair:
            ok = (
                value is not None
                and len(value) == 2
                and all(_within(v, meta) for v in value)
                and value[0] <= value[1]
            )
        else:
            ok = _within(value, meta)
        if not ok:
            raise SdcError(
                f"{key}: expected {_expected(meta, pair, nullable)}, got {_plain(value)!r}"
            )


def _plain(value: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
