"""`option` and `check`: each option's default and range in one dataclass field, read back as a
one-line error naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from omegaconf import OmegaConf

from sdc.config.fields import check, option, probability
from sdc.errors import SdcError


@dataclass
class Inner:
    p: float = probability(0.5)
    span: tuple[float, float] = option((1.0, 2.0), low=0.0, high=10.0)


@dataclass
class Outer:
    size: int = option(4, above=0)
    kind: str = option("a", choices=("a", "b"))
    snr: tuple[float, float] | None = option(None, low=-20.0, high=100.0)
    free: str = "anything"
    inner: Inner = field(default_factory=Inner)


def test_the_defaults_are_the_fields_and_pass_their_own_checks() -> None:
    outer = Outer()
    assert (outer.size, outer.kind, outer.snr, outer.inner.span) == (4, "a", None, (1.0, 2.0))
    check(OmegaConf.structured(Outer), Outer, "x")
    check({}, Outer, "x")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"size": 0}, r"^x\.size: expected a number > 0, got 0$"),
        ({"kind": "c"}, r"^x\.kind: expected one of a, b, got 'c'$"),
        ({"snr": [30.0, 10.0]}, r"^x\.snr: expected null or \[min, max\] with -20\.0 <= min"),
        ({"inner": {"p": 1.5}}, r"^x\.inner\.p: expected a number in \[0\.0, 1\.0\], got 1\.5$"),
        ({"inner": {"span": [1.0, 11.0]}}, r"^x\.inner\.span: expected \[min, max\] with 0\.0"),
        ({"inner": {"span": [1.0]}}, r"^x\.inner\.span: "),
        ({"size": True}, r"^x\.size: "),
    ],
)
def test_a_value_out_of_range_names_its_key(values: dict, message: str) -> None:
    with pytest.raises(SdcError, match=message):
        check(values, Outer, "x")


def test_null_is_allowed_only_where_the_default_is_null() -> None:
    check({"snr": None, "snr_unknown": 1}, Outer, "x")
    check({"snr": [0.0, 20.0]}, Outer, "x")
    with pytest.raises(SdcError, match=r"^x\.size: "):
        check({"size": None}, Outer, "x")
