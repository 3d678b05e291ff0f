"""Shared fixtures: a tiny synthetic FSDD and Hydra configs pointed at temporary folders."""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from sdc.config import config_dir

SPEAKERS = ("alice", "bob", "carol")
QUICK_FSDD = (
    "trainer.max_epochs=3",
    "optim.lr=2e-3",
    "model.dropout=0.1",
    "data.augment.placement.p=0",
    "data.augment.pitch_shift.p=0",
    "data.augment.time_stretch.p=0",
)
"""A model worth testing with in about 30 s of real-FSDD training: >85% on the random split."""
TAKES = 6
SAMPLE_RATE = 8000


@pytest.fixture(autouse=True)
def _torch_threads_kept() -> Iterator[None]:
    """`sdc predict` sets PyTorch's threads for its whole process (`load_batch_per_core`); in
    the test process that would slow every test after it."""
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def digit_tone(digit: int, take: int, speaker: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A short clip that a tiny model can tell apart by digit: a two-tone chirp per digit.

    Length, loudness and a small pitch offset vary with take and speaker, like real takes do.
    """
    seconds = 0.25 + 0.05 * ((take + speaker) % 5)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    base = 250.0 * (1 + 0.03 * speaker) + 160.0 * digit
    phase = 2 * math.pi * (base * t + 0.5 * 400.0 * t**2 * (1 if digit % 2 else -1))
    envelope = np.sin(np.pi * t / seconds) ** 2
    return (0.3 + 0.05 * take % 3) * envelope * np.sin(phase)


def write_dataset(folder: Path, speakers=SPEAKERS, takes: int = TAKES) -> Path:
    """FSDD naming, 16-bit PCM at 8 kHz: `{digit}_{speaker}_{index}.wav`."""
    folder.mkdir(parents=True, exist_ok=True)
    for s, speaker in enumerate(speakers):
        for digit in range(10):
            for take in range(takes):
                wave = digit_tone(digit, take, s)
                sf.write(folder / f"{digit}_{speaker}_{take}.wav", wave, SAMPLE_RATE, "PCM_16")
    return folder


@pytest.fixture(scope="session")
def tiny_fsdd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A release-shaped folder (`recordings/` inside) with 3 speakers x 10 digits x 6 takes."""
    root = tmp_path_factory.mktemp("fsdd")
    write_dataset(root / "recordings")
    return root


def compose_cfg(
    data_root: Path, run_dir: Path, *overrides: str, config_name: str = "train"
) -> DictConfig:
    """Compose a config as the CLI would, reading `data_root` and writing into `run_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            config_name=config_name,
            overrides=[
                f"data.root={data_root}",
                "data.download=false",
                "trainer.enable_progress_bar=false",
                "~callbacks.model_summary",
                *overrides,
            ],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.log_dir = str(run_dir.parent / "outputs")
        cfg.paths.output_dir = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return cfg


@pytest.fixture
def make_cfg(tiny_fsdd: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose the train config as the CLI would, with every path inside `tmp_path`."""

    def make(*overrides: str, config_name: str = "train") -> DictConfig:
        return compose_cfg(tiny_fsdd, tmp_path / "run", *overrides, config_name=config_name)

    yield make
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def fsdd_root() -> Path:
    """The real FSDD copy named by SDC_DATA_DIR, or a skip that says why."""
    root = os.environ.get("SDC_DATA_DIR")
    if not root:
        pytest.skip("SDC_DATA_DIR is not set: point it at a copy of FSDD to run this test")
    path = Path(root)
    if not path.is_dir():
        pytest.skip(f"SDC_DATA_DIR={root} is not a folder")
    return path


def train_checkpoint(
    data_root: Path, run_dir: Path, *overrides: str
) -> tuple[Path, dict[str, float]]:
    """Train with the train config (as the CLI composes it) into `run_dir`; return the best
    checkpoint and the metrics. For fixtures that share one trained model between tests."""
    from sdc.training.train import train

    cfg = compose_cfg(data_root, run_dir, *overrides)
    metrics = train(cfg)
    GlobalHydra.instance().clear()
    (best,) = sorted((run_dir / "checkpoints").glob("epoch*.ckpt"))
    return best, metrics


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_fsdd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained once per session on the tiny synthetic FSDD (30-75 s on 2 shared cores).

    Pitch and tempo augmentation are off (they cost most of the time); placement and noise stay
    on, so the model copes with digits anywhere in the window and with a little noise.
    """
    best, _ = train_checkpoint(
        tiny_fsdd,
        tmp_path_factory.mktemp("tiny_run"),
        "trainer.max_epochs=10",
        "data.batch_size=16",
        "optim.lr=3e-3",
        "model.dropout=0.0",
        "data.augment.pitch_shift.p=0",
        "data.augment.time_stretch.p=0",
    )
    return best


def evaluate_cfg(data_root: Path, out: Path, *overrides: str) -> DictConfig:
    """Compose the evaluate config as the CLI would, writing into `out`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            "evaluate",
            overrides=[f"data.root={data_root}", "data.download=false", *overrides],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.log_dir = str(out / "outputs")
        cfg.paths.output_dir = str(out)
    out.mkdir(parents=True, exist_ok=True)
    return cfg


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(folder served, base URL) of an HTTP server on 127.0.0.1 that lives for one test."""
    root = tmp_path / "srv"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
