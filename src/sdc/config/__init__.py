"""Configuration: where the YAML files live, the schemas they compose over, and the checks that
turn a bad value into a one-line error naming its key."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def project_root() -> Path:
    """The source checkout when sdc runs from one (editable install), else the working folder."""
    checkout = PACKAGE_DIR.parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "configs").is_dir():
        return checkout
    return Path.cwd()


def config_dir() -> Path:
    """The configs folder, with the schemas its YAML files name registered: a wheel ships it as
    `sdc/configs`, a checkout keeps it at the top level."""
    from sdc.config.schemas import register

    register()
    bundled = PACKAGE_DIR / "configs"
    return bundled if bundled.is_dir() else PACKAGE_DIR.parents[1] / "configs"


if not OmegaConf.has_resolver("sdc.project_root"):
    OmegaConf.register_new_resolver("sdc.project_root", lambda: str(project_root()))
