"""`sdc bench` (`make bench`): how fast sdc is on this machine, and how much memory.

Each measurement runs in its own fresh process, so its peak resident memory is its own and no
measurement warms caches for the next. Timings are the best of a few repeats, which is the
least disturbed by whatever else the machine is doing. Results go to `bench.json` and
`bench.md` in the run folder.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path
from queue import Empty
from typing import Any

import hydra
import torch
import torchaudio
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from sdc.audio.window import fit_to_window
from sdc.cli import run_hydra_app, user_errors
from sdc.config import config_dir, project_root
from sdc.config.validate import validate
from sdc.errors import SdcError
from sdc.files import write_text
from sdc.lab.machine import describe
from sdc.training.allocator import keep_freed_memory
from sdc.training.run_folder import refused_runs_leave_nothing

log = logging.getLogger(__name__)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports kilobytes, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _best_of(repeats: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(cfg: DictConfig, device: torch.device) -> torch.autocast:
    """Mixed precision as training runs it: bfloat16 where the recipe asks for it
    (`trainer.precision=bf16-mixed`), float16 on a GPU otherwise, none on a CPU otherwise."""
    if str(cfg.trainer.precision).startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=device.type == "cuda")


def _setup(cfg: DictConfig, device: torch.device) -> tuple[Any, Any, list[tuple]]:
    """The data module, a fresh model with fitted feature statistics, and the training batches."""
    from sdc.training.train import build_module

    torch.manual_seed(cfg.seed)
    datamodule = instantiate(cfg.data)
    # Finds or downloads FSDD and makes a recipe's synthetic voices, as a training run does.
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg).to(device)
    module.fit_frontends(datamodule)
    batches = [tuple(t.to(device) for t in batch) for batch in datamodule.train_dataloader()]
    return datamodule, module, batches


def reference_augment_features(
    wave: torch.Tensor,
    sample_rate: int,
    window: int,
    semitones: float,
    rate: float,
    noise_std: float,
    frontend: torch.nn.Module,
) -> torch.Tensor:
    """The straightforward per-clip version of the same chain, kept only to compare against.

    It builds a `PitchShift` and a `TimeStretch` per clip, as a first implementation of the
    write-up would, and pays for a fresh resampling kernel every time.
    """
    shifted = torchaudio.transforms.PitchShift(sample_rate, semitones)(wave)
    n_fft, hop = 256, 64
    hann = torch.hann_window(n_fft)
    spec = torch.stft(shifted, n_fft, hop, window=hann, return_complex=True)
    stretch = torchaudio.transforms.TimeStretch(hop_length=hop, n_freq=n_fft // 2 + 1)
    stretched = torch.istft(stretch(spec, rate), n_fft, hop, window=hann)
    placed = fit_to_window(stretched.unsqueeze(0), torch.tensor([len(stretched)]), window)
    noisy = placed + torch.randn_like(placed) * noise_std
    return frontend(noisy)


def measure_pipeline(cfg: DictConfig, device_name: str) -> dict[str, Any]:
    """Augmentation + features, clips/s: the batched pipeline against the per-clip reference."""
    device = torch.device(device_name)
    datamodule, module, batches = _setup(cfg, device)
    frontend = module.frontend
    n_clips = sum(len(b[2]) for b in batches)

    @torch.no_grad()
    def batched() -> None:
        for waves, lengths, _ in batches:
            frontend(datamodule.augment(waves, lengths))
        _sync(device)

    batched()
    seconds = _best_of(cfg.bench.repeats, batched)
    result = {"pipeline_clips_per_s": n_clips / seconds}

    if device.type == "cpu" and cfg.bench.reference_clips > 0:
        clips = datamodule.datasets["train"].waves[: cfg.bench.reference_clips]
        generator = torch.Generator().manual_seed(0)
        lo, hi = cfg.data.augment.pitch_shift.semitones
        r_lo, r_hi = cfg.data.augment.time_stretch.rate

        @torch.no_grad()
        def per_clip() -> None:
            for wave in clips:
                u = torch.rand(2, generator=generator).tolist()
                reference_augment_features(
                    wave,
                    datamodule.sample_rate,
                    datamodule.window,
                    lo + (hi - lo) * u[0],
                    r_lo + (r_hi - r_lo) * u[1],
                    0.002,
                    frontend,
                )

        reference = len(clips) / _best_of(1, per_clip)
        result["reference_clips_per_s"] = reference
        result["speedup_vs_reference"] = result["pipeline_clips_per_s"] / reference
    return result


def measure_epoch(cfg: DictConfig, device_name: str) -> dict[str, Any]:
    """One training epoch of the recipe, split into augmentation, features (with the recipe's
    training-only feature augmentations) and forward/backward.

    The fastest of `bench.repeats` epochs (after one warm-up), with that epoch's split, like
    every other timing here. The model keeps training across them, as it would in a run.
    """
    device = torch.device(device_name)
    datamodule, module, batches = _setup(cfg, device)
    module.train()
    optimizer = module.build_optimizer()
    amp = _autocast(cfg, device)
    totals = {"augment_s": 0.0, "features_s": 0.0, "forward_backward_s": 0.0}

    def epoch(record: bool) -> None:
        for waves, lengths, labels in batches:
            t0 = time.perf_counter()
            windows = datamodule.augment(waves, lengths)
            _sync(device)
            t1 = time.perf_counter()
            with amp:
                features = module.training_features(windows)
            _sync(device)
            t2 = time.perf_counter()
            with amp:
                loss = module.training_loss(module.member_logits(features), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            _sync(device)
            t3 = time.perf_counter()
            if record:
                totals["augment_s"] += t1 - t0
                totals["features_s"] += t2 - t1
                totals["forward_backward_s"] += t3 - t2

    epoch(record=False)
    best: dict[str, Any] = {}
    for _ in range(cfg.bench.repeats):
        for key in totals:
            totals[key] = 0.0
        start = time.perf_counter()
        epoch(record=True)
        totals["epoch_s"] = time.perf_counter() - start
        if not best or totals["epoch_s"] < best["epoch_s"]:
            best = dict(totals)
    best["epoch_clips"] = sum(len(b[2]) for b in batches)
    return best


def measure_inference(cfg: DictConfig, device_name: str) -> dict[str, Any]:
    """Waveform in memory to label: batched throughput, then single-clip latency on one thread.

    On a CPU the batches go through `Recognizer.classify` as `sdc predict` runs it
    (`load_batch_per_core`): batches of `INFERENCE_BATCH` windows, one on each core at once,
    each on one thread. On a GPU the model gets the whole batch at once, with mixed precision.
    """
    device = torch.device(device_name)
    datamodule, trained, _ = _setup(cfg, device)
    module = trained.for_inference()
    windows = torch.cat(list(datamodule.clean_windows("test")))
    batch_size = cfg.bench.inference_batch
    reps = math.ceil(cfg.bench.inference_clips / len(windows))
    data = windows.repeat(reps, 1)[: cfg.bench.inference_clips].to(device)

    if device.type == "cpu":
        from sdc.inference.recognizer import Recognizer, available_cores

        # As `load_batch_per_core` runs a checkpoint; this measurement runs in a process of
        # its own (`isolated`).
        torch.set_num_threads(1)
        recognizer = Recognizer.from_module(trained, workers=available_cores())
        batched = _classify_in_batches(recognizer, data, batch_size)

    else:

        @torch.inference_mode()
        def batched() -> None:
            with torch.autocast(device.type):
                for start in range(0, len(data), batch_size):
                    module(data[start : start + batch_size]).argmax(dim=-1)
            _sync(device)

    batched()
    result: dict[str, Any] = {
        "batched_clips_per_s": len(data) / _best_of(cfg.bench.repeats, batched)
    }
    if device.type == "cpu":
        result["recognizer_batch"] = recognizer.batch_size
        torch.set_num_threads(1)
        result.update(_latency(lambda clip: module(clip).argmax(dim=-1), windows, cfg))
        # 8-bit exports are calibrated on clean training windows, as `sdc export --int8` is on
        # a folder of recordings.
        calibration = next(iter(datamodule.clean_windows("train")))[:200].numpy()
        result.update(_onnx_figures(module, windows, data, cfg, calibration))
    return result


def _classify_in_batches(
    recognizer: Any, data: torch.Tensor, batch_size: int
) -> Callable[[], None]:
    """Labels for all of `data` through `Recognizer.classify`, `batch_size` windows per call."""
    arrays = [data[i : i + batch_size].numpy() for i in range(0, len(data), batch_size)]

    def batched() -> None:
        for batch in arrays:
            recognizer.classify(batch).argmax(axis=-1)

    return batched


def _latency(
    predict: Callable[[torch.Tensor], Any], windows: torch.Tensor, cfg: DictConfig
) -> dict:
    samples = []
    with torch.inference_mode():
        for i in range(cfg.bench.latency_iterations + 10):
            clip = windows[i % len(windows)].unsqueeze(0)
            start = time.perf_counter()
            predict(clip)
            if i >= 10:
                samples.append((time.perf_counter() - start) * 1000)
    quantiles = statistics.quantiles(samples, n=10)
    return {"single_clip_p50_ms": statistics.median(samples), "single_clip_p90_ms": quantiles[8]}


def _onnx_figures(
    module: Any, windows: torch.Tensor, data: torch.Tensor, cfg: DictConfig, calibration: Any
) -> dict:
    """The same figures for the exported model under ONNX Runtime, when export is available,
    and for its faster exports (`sdc export --single-view`, `--int8`, both)."""
    try:
        import onnxruntime  # noqa: F401

        from sdc.inference.export import export_int8, export_onnx
    except ImportError as err:
        return {"onnx": f"not measured ({err})"}
    out_dir = Path(cfg.paths.output_dir)
    exports = {"onnx": export_onnx(module, out_dir / "bench_model.onnx")}
    if module.speed_views is not None:
        single = deepcopy(module)
        single.speed_views = None
        exports["onnx_single_view"] = export_onnx(single, out_dir / "bench_single_view.onnx")
    for name, path in list(exports.items()):
        model = single if name == "onnx_single_view" else module
        exports[f"{name}_int8"] = export_int8(
            model, path, path.with_suffix(".int8.onnx"), calibration
        )
    figures: dict[str, Any] = {}
    for name, path in exports.items():
        figures.update(_onnx_model_figures(name, path, windows, data, cfg))
    return figures


def _onnx_model_figures(
    name: str, path: Path, windows: torch.Tensor, data: torch.Tensor, cfg: DictConfig
) -> dict[str, Any]:
    import onnxruntime

    from sdc.inference.recognizer import Recognizer

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(batch: torch.Tensor) -> Any:
        return session.run(None, {input_name: batch.numpy()})[0].argmax(axis=-1)

    out = {f"{name}_{k}": v for k, v in _latency(run, windows, cfg).items()}
    # Recognizer runs a batch on each core at once, as `sdc predict` does.
    batched = _classify_in_batches(Recognizer.from_onnx(path), data, cfg.bench.inference_batch)
    batched()
    out[f"{name}_batched_clips_per_s"] = len(data) / _best_of(cfg.bench.repeats, batched)
    return out


def _child(target: Callable, cfg_yaml: str, device: str, queue: Any) -> None:
    # A spawned process starts with glibc's defaults: measure the allocator training runs with.
    keep_freed_memory()
    cfg = OmegaConf.create(cfg_yaml)
    try:
        result = target(cfg, device)
    except SdcError as err:
        # The parent raises it: one line, not a child's traceback and a parent left waiting.
        queue.put({"error": str(err)})
        return
    result["peak_rss_mb"] = _peak_rss_mb()
    queue.put(result)


def isolated(target: Callable, cfg: DictConfig, device: str) -> dict[str, Any]:
    """Run one measurement in a fresh process and return its figures and its peak memory."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    # Resolved here: the child has no Hydra context for `${hydra:...}` interpolations.
    plain = OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True
    )
    cfg_yaml = OmegaConf.to_yaml(plain)
    process = context.Process(target=_child, args=(target, cfg_yaml, device, queue))
    process.start()
    result = None
    while result is None:
        try:
            result = queue.get(timeout=1.0)
        except Empty:
            if process.is_alive():
                continue
            try:  # what it sent just before it ended may still be on its way
                result = queue.get(timeout=5.0)
            except Empty:
                raise SdcError(
                    f"bench: measuring {target.__name__} on {device} ended without figures "
                    f"(exit {process.exitcode}; out of memory, or see the error above)"
                ) from None
    process.join()
    if "error" in result:
        raise SdcError(result["error"])
    return result


def full_run(cfg: DictConfig, device: str, recipe: str) -> dict[str, Any]:
    """`python -m sdc.train experiment=RECIPE`, wall time and test accuracy, as a user runs it."""
    out_dir = Path(cfg.paths.output_dir) / f"{recipe}_run"
    command = [
        sys.executable,
        "-m",
        "sdc.train",
        f"experiment={recipe}",
        f"hydra.run.dir={out_dir}",
        f"data.root={cfg.data.root}",
        f"data.download={str(cfg.data.download).lower()}",
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
        "trainer.enable_progress_bar=false",
    ]
    if device == "cuda":
        command.append("trainer.precision=16-mixed")
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=project_root(), capture_output=True)
    wall = time.perf_counter() - start
    metrics = json.loads((out_dir / "metrics.json").read_text())
    return {"full_run_wall_s": wall, "full_run_test_acc": metrics["test_acc"]}


BASELINE = "baseline"
TARGETS_CPU = {
    "pipeline_clips_per_s": (">=", 1000),
    "speedup_vs_reference": (">=", 500),
    "epoch_s": ("<=", 8),
    "full_run_wall_s": ("<=", 240),
    "full_run_test_acc": (">=", 0.97),
    "batched_clips_per_s": (">=", 1000),
    "single_clip_p50_ms": ("<=", 5),
    "single_clip_p90_ms": ("<=", 10),
}
TARGETS_GPU = {"full_run_wall_s": ("<=", 30), "batched_clips_per_s": (">=", 20000)}


def markdown(results: dict[str, Any]) -> str:
    """A table a person can paste into the README: figure, value, target, met or not.

    The targets are the baseline's (the write-up's recipe on the write-up's budget); another
    recipe's figures are shown without them.
    """
    recipe = results.get("recipe", BASELINE)
    lines = [f"Recipe: `{recipe}`", "", f"Machine: {results['machine']}", ""]
    for device, figures in results["devices"].items():
        targets = TARGETS_GPU if device == "cuda" else TARGETS_CPU
        if recipe != BASELINE:
            targets = {}
        lines += [f"### {device}", "", "| figure | value | target | |", "|---|---|---|---|"]
        for key, value in figures.items():
            if key.endswith("_acc") and isinstance(value, float):
                shown = f"{value:.2%}"
            else:
                shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
            target = targets.get(key)
            if target and isinstance(value, (int, float)):
                op, bound = target
                met = value >= bound if op == ">=" else value <= bound
                lines.append(f"| {key} | {shown} | {op} {bound} | {'met' if met else 'MISSED'} |")
            else:
                lines.append(f"| {key} | {shown} | | |")
        lines.append("")
    return "\n".join(lines)


def bench_devices(cfg: DictConfig) -> list[str]:
    """`bench.devices`, checked; by default the CPU and, where there is one, the GPU."""
    chosen = OmegaConf.select(cfg, "bench.devices")
    if chosen is None:
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    devices = [str(d) for d in chosen] if OmegaConf.is_list(chosen) else [str(chosen)]
    unknown = sorted(set(devices) - {"cpu", "cuda"})
    if unknown or not devices:
        raise SdcError(f"bench.devices: expected a list of cpu and cuda, got {devices}")
    if "cuda" in devices and not torch.cuda.is_available():
        raise SdcError("bench.devices: cuda was asked for, but torch sees no GPU here")
    return devices


def bench(cfg: DictConfig, recipe: str = BASELINE) -> dict[str, Any]:
    """Measure the recipe `cfg` composes (`recipe` names it in the results; the full training
    run, `bench.full_run`, trains that recipe too)."""
    validate(cfg)
    devices = bench_devices(cfg)
    results: dict[str, Any] = {"recipe": recipe, "machine": describe(), "devices": {}}
    for device in devices:
        figures: dict[str, Any] = {}
        for name, target in (
            ("pipeline", measure_pipeline),
            ("epoch", measure_epoch),
            ("inference", measure_inference),
        ):
            log.info("measuring %s on %s", name, device)
            part = isolated(target, cfg, device)
            figures.update({k: v for k, v in part.items() if k != "peak_rss_mb"})
            if name != "pipeline":
                figures[f"{name}_peak_rss_mb"] = part["peak_rss_mb"]
        if cfg.bench.full_run:
            log.info("training %s in full on %s", recipe, device)
            figures.update(full_run(cfg, device, recipe))
        results["devices"][device] = figures
    out_dir = Path(cfg.paths.output_dir)
    write_text(out_dir / "bench.json", json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    write_text(out_dir / "bench.md", table + "\n")
    print(table)
    return results


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="bench")
def hydra_app(cfg: DictConfig) -> None:
    with user_errors(), refused_runs_leave_nothing(cfg.paths.output_dir):
        bench(cfg, HydraConfig.get().runtime.choices.get("experiment") or BASELINE)


def main() -> None:
    run_hydra_app(hydra_app)


if __name__ == "__main__":
    main()
