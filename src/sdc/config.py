"""Where the configs live, and the checks that turn a bad value into a one-line error.

Hydra already rejects unknown keys (the configs are in struct mode); `validate` adds the range and
choice checks a type system cannot express, before anything is loaded or trained.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from sdc import schemas
from sdc.audio import embedding
from sdc.audio.augment import check_vocoder
from sdc.audio.features import KINDS, NORMALIZATIONS
from sdc.data.fsdd import SPLITS
from sdc.errors import SdcError
from sdc.module import check_ensemble_rule
from sdc.pretrained.speech_embedding import CONVOLUTIONS

PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The source checkout when sdc runs from one (editable install), else the working folder."""
    checkout = PACKAGE_DIR.parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "configs").is_dir():
        return checkout
    return Path.cwd()


def config_dir() -> Path:
    """Configs ship inside a wheel as `sdc/configs`; a checkout keeps them at the top level."""
    bundled = PACKAGE_DIR / "configs"
    return bundled if bundled.is_dir() else PACKAGE_DIR.parents[1] / "configs"


schemas.register()

if not OmegaConf.has_resolver("sdc.project_root"):
    OmegaConf.register_new_resolver("sdc.project_root", lambda: str(project_root()))


FADE_LIMIT_SECONDS = 0.1
"""The longest edge fade: a few milliseconds remove a click; a tenth of a second would take
away the start of a short word."""


def _require(cfg: DictConfig, key: str, ok: bool, expected: str) -> None:
    if not ok:
        value = OmegaConf.select(cfg, key)
        raise SdcError(f"{key}: expected {expected}, got {value!r}")


def _positive(cfg: DictConfig, key: str, integer: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    kind = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool) and value > 0
    _require(cfg, key, ok, "a positive integer" if integer else "a positive number")


def _probability(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    ok = isinstance(value, (int, float)) and 0.0 <= value <= 1.0
    _require(cfg, key, ok, "a probability in [0, 1]")


def _fraction_below_one(cfg: DictConfig, key: str) -> None:
    """An optional share in [0, 1), where 0 (or no key) is off."""
    value = OmegaConf.select(cfg, key)
    ok = value is None or (
        isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1
    )
    _require(cfg, key, ok, "a number in [0, 1) (0: off)")


def _speeds(cfg: DictConfig, key: str) -> None:
    """Optional playback speeds, each within the octave either side of 1 that resampling
    keeps sensible; none (null or []) is off."""
    value = OmegaConf.select(cfg, key)
    ok = value is None or (
        OmegaConf.is_list(value)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        and all(0.5 <= v <= 2.0 for v in value)
    )
    _require(cfg, key, ok, "null or a list of speeds, each in [0.5, 2] (1: as recorded)")


def _is_integer(value: object) -> bool:
    """An int and not a bool (YAML's `true` is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _count(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    ok = _is_integer(value) and value >= 0
    _require(cfg, key, ok, "an integer >= 0")


def _range(cfg: DictConfig, key: str, low: float, high: float) -> None:
    value = OmegaConf.select(cfg, key)
    ok = (
        value is not None
        and len(value) == 2
        and all(isinstance(v, (int, float)) for v in value)
        and low <= value[0] <= value[1] <= high
    )
    _require(cfg, key, ok, f"[min, max] with {low} <= min <= max <= {high}")


def _front_end(cfg: DictConfig, key: str) -> None:
    pretrained = str(OmegaConf.select(cfg, f"{key}._target_", default="")).endswith(
        embedding.SpeechEmbeddingFrontend.__name__
    )
    normalizations = embedding.NORMALIZATIONS if pretrained else NORMALIZATIONS
    for name, choices in (("kind", KINDS), ("normalize", normalizations)):
        value = OmegaConf.select(cfg, f"{key}.{name}", default=choices[0])
        _require(cfg, f"{key}.{name}", value in choices, f"one of {', '.join(choices)}")
    # The front end records the fade the datamodule puts on the windows: they must agree, or a
    # checkpoint would be heard at inference unlike its training.
    fade = OmegaConf.select(cfg, f"{key}.edge_fade_seconds", default=0.0)
    data_fade = OmegaConf.select(cfg, "data.edge_fade_seconds", default=0.0)
    _require(
        cfg,
        f"{key}.edge_fade_seconds",
        fade == data_fade,
        f"data.edge_fade_seconds ({data_fade!r}), which fades the windows",
    )
    if pretrained:
        layers = OmegaConf.select(cfg, f"{key}.finetune_layers", default=0)
        _require(
            cfg,
            f"{key}.finetune_layers",
            _is_integer(layers) and 0 <= layers <= CONVOLUTIONS,
            f"an integer in [0, {CONVOLUTIONS}] (0: the embedding frozen)",
        )
        if OmegaConf.select(cfg, f"{key}.finetune_lr_scale") is not None:
            _positive(cfg, f"{key}.finetune_lr_scale")


def _spec_augment(cfg: DictConfig, key: str) -> None:
    """A member's settings may name only some keys: the others keep SpecAugment's defaults."""
    given = OmegaConf.select(cfg, key)
    _require(cfg, key, OmegaConf.is_dict(given), "a mapping of SpecAugment settings")
    for name in ("p", "freq_masks", "freq_width", "time_masks", "time_width"):
        if name in given:
            (_probability if name == "p" else _count)(cfg, f"{key}.{name}")


def validate(cfg: DictConfig) -> None:
    """Fail fast, naming the key, on values that would crash or silently mislead a run."""
    _require(
        cfg,
        "data.split",
        cfg.data.split in SPLITS,
        f"one of {', '.join(SPLITS)}",
    )
    for key in ("data.batch_size", "data.eval_batch_size", "data.sample_rate"):
        _positive(cfg, key, integer=True)
    _positive(cfg, "data.clip_seconds")
    fade = OmegaConf.select(cfg, "data.edge_fade_seconds", default=0.0)
    _require(
        cfg,
        "data.edge_fade_seconds",
        isinstance(fade, (int, float))
        and not isinstance(fade, bool)
        and 0 <= fade <= FADE_LIMIT_SECONDS,
        f"seconds in [0, {FADE_LIMIT_SECONDS}] (0: no fade)",
    )
    _count(cfg, "data.num_workers")
    if OmegaConf.select(cfg, "data.synthetic") is not None:
        _count(cfg, "data.synthetic.voices")
        _positive(cfg, "data.synthetic.takes", integer=True)
    for key in ("data.val_fraction", "data.test_fraction"):
        value = OmegaConf.select(cfg, key)
        _require(
            cfg, key, isinstance(value, (int, float)) and 0 < value < 1, "a fraction in (0, 1)"
        )
    _require(
        cfg,
        "data.test_fraction",
        cfg.data.val_fraction + cfg.data.test_fraction < 1,
        "val_fraction + test_fraction < 1",
    )
    _front_end(cfg, "features")
    experts = cfg.get("experts")
    _require(
        cfg, "experts", experts is None or OmegaConf.is_dict(experts), "a mapping of name -> member"
    )
    for name, expert in (experts or {}).items():
        for part in ("features", "model"):
            key = f"experts.{name}.{part}"
            _require(cfg, key, OmegaConf.is_dict(expert.get(part)), "a config with a _target_")
        _front_end(cfg, f"experts.{name}.features")
        if expert.get("spec_augment") is not None:
            _spec_augment(cfg, f"experts.{name}.spec_augment")
        if expert.get("weight") is not None:
            _positive(cfg, f"experts.{name}.weight")
    threads = cfg.get("threads")
    _require(
        cfg,
        "threads",
        threads is None or (type(threads) is int and threads >= 1),
        "null or an integer >= 1",
    )
    _positive(cfg, "optim.lr")
    wd = OmegaConf.select(cfg, "optim.weight_decay", default=0.0)
    _require(cfg, "optim.weight_decay", isinstance(wd, (int, float)) and wd >= 0, "a number >= 0")
    steps = (
        "onset_cut",
        "offset_cut",
        "pitch_shift",
        "speed",
        "time_stretch",
        "reverb",
        "microphone",
        "gain",
        "trim",
        "placement",
        "noise",
    )
    check_vocoder(OmegaConf.select(cfg, "data.augment.vocoder"), "data.augment.vocoder")
    for step in steps:
        _probability(cfg, f"data.augment.{step}.p")
    _range(cfg, "data.augment.onset_cut.seconds", 0, 1)
    _range(cfg, "data.augment.offset_cut.seconds", 0, 1)
    _range(cfg, "data.augment.pitch_shift.semitones", -12, 12)
    _range(cfg, "data.augment.speed.factor", 0.5, 2.0)
    _range(cfg, "data.augment.time_stretch.rate", 0.25, 4.0)
    _range(cfg, "data.augment.reverb.rt60", 0.01, 2.0)
    _range(cfg, "data.augment.reverb.drr_db", -20, 40)
    _range(cfg, "data.augment.microphone.tilt_db", -12, 12)
    _range(cfg, "data.augment.microphone.bass_cut_hz", 1, 4000)
    _range(cfg, "data.augment.microphone.treble_cut_hz", 100, 100_000)
    _range(cfg, "data.augment.microphone.peak_db", -30, 30)
    _range(cfg, "data.augment.microphone.peak_octaves", 0.05, 4)
    _count(cfg, "data.augment.microphone.peaks")
    _range(cfg, "data.augment.gain.db", -60, 20)
    _range(cfg, "data.augment.trim.threshold_db", -100, 0)
    _range(cfg, "data.augment.noise.std", 1e-6, 1.0)
    if OmegaConf.select(cfg, "data.augment.noise.snr_db") is not None:
        _range(cfg, "data.augment.noise.snr_db", -20, 100)
    if cfg.get("spec_augment") is not None:
        _spec_augment(cfg, "spec_augment")
    if cfg.get("vtlp") is not None:
        _probability(cfg, "vtlp.p")
        _range(cfg, "vtlp.factor", 0.5, 2.0)
    _fraction_below_one(cfg, "ema_decay")
    _fraction_below_one(cfg, "label_smoothing")
    _speeds(cfg, "test_time_speeds")
    _require(cfg, "train_seed_offset", _is_integer(cfg.get("train_seed_offset", 0)), "an integer")
    check_ensemble_rule(cfg.get("ensemble_rule", "mean"), "ensemble_rule")
    _require(
        cfg,
        "trainer.max_epochs",
        isinstance(cfg.trainer.max_epochs, int) and cfg.trainer.max_epochs >= 1,
        "an integer >= 1",
    )
    clean = cfg.get("clean_final_epochs", 0)
    _require(
        cfg,
        "clean_final_epochs",
        _is_integer(clean) and 0 <= clean < cfg.trainer.max_epochs,
        f"an integer in [0, trainer.max_epochs) = [0, {cfg.trainer.max_epochs})",
    )
