"""Each protocol is one config away and sweeps what it says."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from sdc.config import config_dir
from sdc.config.validate import validate
from sdc.lab.results import sweep_plan

FSDD_SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


@pytest.mark.parametrize(
    ("protocol", "split", "key", "values"),
    [
        ("random", "random", "seed", ["1", "2", "3", "4", "5"]),
        ("official", "official", "seed", ["1", "2", "3"]),
        ("loso", "speaker", "data.test_speakers", [f"[{s}]" for s in FSDD_SPEAKERS]),
    ],
)
@pytest.mark.parametrize("experiment", ["baseline", "best"])
def test_protocols_compose_and_sweep(
    experiment: str, protocol: str, split: str, key: str, values: list[str]
) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", f"protocol={protocol}"])
        validate(cfg)
        assert cfg.data.split == split
        assert cfg.name == experiment
        assert sweep_plan(experiment, protocol, []) == (key, values)
        assert sweep_plan(experiment, protocol, [], values="7,8") == (key, ["7", "8"])
    GlobalHydra.instance().clear()
