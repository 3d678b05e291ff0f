"""`sdc strings [overrides]`: train the digit-string reader, and measure it on held-out voices.

For each fold (`strings.folds`, default every speaker) a reader is trained on the other
speakers' strings (and on phrases by espeak-ng voices) and tested on the held-out speaker's:
strings of 4 and of 10 digits said with no pause, with 0.1-0.3 s pauses, and at 10 dB SNR, the
speaker's isolated digits, and phrases by espeak-ng voices of variants never trained on (and,
given `strings.segmenters`, the same strings cut at pauses as `sdc transcribe` cuts them). Then
(`strings.final`) one reader is trained on every speaker and saved as `model.ckpt`, which
`sdc transcribe` reads. The run folder gets `strings.md` and `strings.json` (whole-string
accuracy and digit error rate per condition and fold), each fold's reader (`fold_SPEAKER.ckpt`)
and TensorBoard's loss curves.

The embedding's bottom is frozen, so what it makes of each training string is computed once
(float16), and masked afresh every epoch (`strings.masks`); its last `strings.finetune_layers`
convolutions and the network (a few hundred thousand weights) learn from that with CTC, about
2.5 minutes an epoch on 2 cores: a plain loop, without Lightning's machinery, which would add
nothing here.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from sdc import LABELS
from sdc.audio.augment.resample import Resamplers, speed_change
from sdc.audio.augment.vocoder import phase_vocoder_stretch
from sdc.audio.decode import decode_audio, resample_array
from sdc.cli import run_hydra_app, user_errors
from sdc.config import config_dir
from sdc.config.fields import check
from sdc.config.validate import SPEEDS, speeds_in_range
from sdc.data.fsdd import find_recordings_dir, index_recordings
from sdc.errors import SdcError
from sdc.files import write_text
from sdc.strings.config import StringsConfig
from sdc.strings.cut_at_pauses import SUFFIX, models_by_held_out_speaker, score_cut_at_pauses
from sdc.strings.naming import DigitNamer
from sdc.strings.reader import DigitStringReader, greedy_read
from sdc.strings.recognizer import KIND
from sdc.strings.scoring import string_scores
from sdc.strings.spoken import spoken_strings
from sdc.strings.synthesis import SynthesisConfig, synthesize, training_strings, trim_to_speech
from sdc.training.run_folder import refused_runs_leave_nothing

log = logging.getLogger(__name__)
CONDITIONS: dict[str, tuple[int, tuple[float, float], float | None]] = {
    "4 digits, no pause": (4, (-0.03, 0.0), None),
    "10 digits, no pause": (10, (-0.03, 0.0), None),
    "4 digits, 0.1-0.3 s pauses": (4, (0.1, 0.3), None),
    "10 digits, 0.1-0.3 s pauses": (10, (0.1, 0.3), None),
    "4 digits, no pause, 10 dB": (4, (-0.03, 0.0), 10.0),
}
"""Test strings: digits, gap range (s; below 0 a crossfaded overlap), SNR (None: clean)."""
ISOLATED = "isolated digits"
SPOKEN: dict[str, int] = {"espeak-ng, unheard voices, 4 digits": 4, "... 10 digits": 10}
"""Test phrases by espeak-ng voices whose variants no training phrase used: digits per phrase."""
NAMED = ", named with the isolated-digit model too"
"""Appended to a test condition's name for the reader's row with the fold's isolated-digit
model (`strings.segmenters`) naming each digit it finds (`sdc.strings.naming`)."""
TEST_TRIM_DB = 40.0
"""Test clips and phrases are cut this many dB below their loudest 10 ms, deeper than training's
`strings.synthesis.trim_db`: at 30 dB a quiet speaker's "s" of "six" (31-39 dB down in
yweweler's clips) is cut off, and a test string would hold a word nobody said in full."""


FINETUNE_LR_SCALE = 0.1
"""The embedding's fine-tuned convolutions learn at this times `strings.lr`, as `best`'s do."""
Frames = list[np.ndarray]
Labels = list[list[int]]


def speaker_pools(root: Path, sample_rate: int) -> dict[str, list]:
    """Each speaker's (digit, clip) pairs, as recorded (mean removed) at `sample_rate`."""
    pools: dict[str, list] = {}
    for rec in index_recordings(find_recordings_dir(root)):
        wave, rate = decode_audio(rec.path)
        pools.setdefault(rec.speaker, []).append(
            (rec.digit, resample_array(wave - wave.mean(), rate, sample_rate))
        )
    if len(pools) < 2:
        raise SdcError(f"strings.root: {root} holds {len(pools)} speaker(s); folds need two")
    return pools


def trimmed(pool: list, sample_rate: int, trim_db: float) -> list:
    """The pool's (digit, clip) pairs, each clip cut to its speech (`trim_to_speech`)."""
    return [(digit, trim_to_speech(clip, sample_rate, trim_db)) for digit, clip in pool]


def pitch_shifted(
    waves: list[np.ndarray], cfg: SynthesisConfig, sample_rate: int, seed: int, batch: int = 32
) -> list[np.ndarray]:
    """Each string, with probability `cfg.pitch`, made higher or lower by a whole-string shift
    drawn from `cfg.pitch_semitones`: resampled (pitch and formants move together, as between
    voices), then stretched back to its duration by the phase-locked vocoder."""
    rng = np.random.default_rng(seed)
    shifts = np.where(
        rng.random(len(waves)) < cfg.pitch, rng.uniform(*cfg.pitch_semitones, len(waves)), 0.0
    )
    resamplers = Resamplers()
    out = list(waves)
    chosen = np.flatnonzero(shifts)
    for start in range(0, len(chosen), batch):
        ids = chosen[start : start + batch]
        lengths = torch.tensor([len(waves[i]) for i in ids])
        padded = torch.zeros(len(ids), int(lengths.max()))
        for row, i in enumerate(ids):
            padded[row, : len(waves[i])] = torch.from_numpy(waves[i])
        factors = torch.tensor(2.0 ** (shifts[ids] / 12), dtype=torch.float32)
        with torch.no_grad():
            higher, shorter, applied = speed_change(
                padded, lengths, factors, sample_rate, resamplers
            )
            restored, restored_lengths = phase_vocoder_stretch(higher, shorter, 1 / applied)
        for row, i in enumerate(ids):
            out[i] = restored[row, : restored_lengths[row]].numpy().astype(np.float32)
    return out


def embed(
    reader: DigitStringReader, waves: Sequence[np.ndarray], top: int = 0, batch: int = 32
) -> Frames:
    """Each recording's frames (T, 96) as float16, computed in batches of similar lengths; with
    `top`, what the network learns from instead: the embedding's output under its last `top`
    convolutions (T, W, C), which stay frozen."""
    order = np.argsort([len(w) for w in waves])
    frames: list[np.ndarray | None] = [None] * len(waves)
    for start in range(0, len(order), batch):
        ids = order[start : start + batch]
        padded = torch.zeros(len(ids), max(len(waves[i]) for i in ids))
        for row, i in enumerate(ids):
            padded[row, : len(waves[i])] = torch.from_numpy(np.asarray(waves[i], np.float32))
        if top:
            out = reader.below(padded, top).permute(0, 2, 3, 1)
            counts = [reader.below_count(len(waves[i]), top) for i in ids]
        else:
            out = reader.frames(padded)
            counts = [reader.frame_count(len(waves[i])) for i in ids]
        for row, i in enumerate(ids):
            frames[i] = out[row, : counts[row]].numpy().astype(np.float16)
    return frames  # type: ignore[return-value]


def test_sets(
    pool: list, count: int, sample_rate: int, seed: int
) -> dict[str, tuple[list, Labels]]:
    rng = np.random.default_rng(seed)
    sets = {}
    for name, (digits, gaps, snr) in CONDITIONS.items():
        made = [
            synthesize(pool, digits, rng, sample_rate, gaps, 0.0, (0.2, 0.3), snr)
            for _ in range(count)
        ]
        sets[name] = ([w for w, _ in made], [d for _, d in made])
    edge = np.zeros(round(0.2 * sample_rate), np.float32)
    sets[ISOLATED] = ([np.concatenate([edge, c, edge]) for _, c in pool], [[d] for d, _ in pool])
    return sets


def _batches(frames: Frames, labels: Labels, size: int, rng: np.random.Generator | None):
    """Batches of similar lengths (little padding), in random order when `rng` is given."""
    order = np.argsort([len(f) for f in frames], kind="stable")
    groups = [order[i : i + size] for i in range(0, len(order), size)]
    if rng is not None:
        rng.shuffle(groups)
    for ids in groups:
        lengths = torch.tensor([len(frames[i]) for i in ids])
        x = torch.zeros(len(ids), int(lengths.max()), *frames[ids[0]].shape[1:])
        for row, i in enumerate(ids):
            x[row, : lengths[row]] = torch.from_numpy(frames[i].astype(np.float32))
        targets = torch.tensor([d for i in ids for d in labels[i]])
        target_lengths = torch.tensor([len(labels[i]) for i in ids])
        yield x, lengths, targets, target_lengths, ids


def fit(
    reader: DigitStringReader,
    frames: Frames,
    labels: Labels,
    cfg: StringsConfig,
    writer: SummaryWriter,
    tag: str,
) -> None:
    """Train `reader.network` with CTC on the strings' frames, or with `cfg.finetune_layers`
    on what the embedding's frozen bottom made of them (`embed`), its top learning too."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    network, top = reader.network, cfg.finetune_layers
    reader.embedding.unfreeze_last(top)
    tuned = [p for p in reader.embedding.parameters() if p.requires_grad]
    groups = [{"params": list(network.parameters()), "lr": cfg.lr}]
    if tuned:
        groups.append({"params": tuned, "lr": cfg.lr * FINETUNE_LR_SCALE})
    learning = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.AdamW(groups, cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(frames) / cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, [group["lr"] for group in groups], total_steps=steps
    )
    ctc = nn.CTCLoss(blank=reader.blank, zero_infinity=True)
    # Its own generator: the masks leave the batches and the noise as drawn without them.
    masks, spec = torch.Generator().manual_seed(cfg.seed + 1), cfg.masks
    count = (lambda n: reader.below_count(n, top)) if top else reader.frame_count
    time_width = round(spec.time_seconds * (count(2 * cfg.sample_rate) - count(cfg.sample_rate)))
    for epoch in range(cfg.epochs):
        network.train()
        total, started = 0.0, time.perf_counter()
        for x, lengths, targets, target_lengths, _ in _batches(frames, labels, cfg.batch_size, rng):
            if top:
                x = x.permute(0, 3, 1, 2)  # (B, C, T, bands)
                x = masked(x, 2, lengths, spec.time, time_width, masks)
                bands = int(spec.band_fraction * x.shape[3])
                x = masked(x, 3, None, spec.bands, bands, masks)
                x = reader.above(x, top)
                lengths = torch.tensor([reader.above_count(int(n), top) for n in lengths])
            else:
                x = masked(x, 1, lengths, spec.time, time_width, masks)
            x = x + cfg.frame_noise * torch.randn_like(x)
            log_probs = reader(x).transpose(0, 1)  # CTC wants (T, B, classes)
            loss = ctc(log_probs, targets, lengths, target_lengths)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(learning, 5.0)
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(lengths)
        writer.add_scalar(f"{tag}/train_loss", total / len(frames), epoch)
        log.info(
            "%s epoch %d: loss %.3f (%.0f s)",
            tag,
            epoch,
            total / len(frames),
            time.perf_counter() - started,
        )
    network.eval()
    reader.embedding.requires_grad_(False)


def masked(
    x: torch.Tensor,
    dim: int,
    lengths: torch.Tensor | None,
    count: int,
    width: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """`x` with `count` spans of up to `width` positions along `dim` set to 0 in each row,
    inside the row's first `lengths` positions (None: all of them)."""
    rows, size = x.shape[0], x.shape[dim]
    if not count or not width:
        return x
    limit = torch.full((rows,), size) if lengths is None else lengths.clamp(max=size)
    positions = torch.arange(size)
    keep = torch.ones(rows, size, dtype=torch.bool)
    for _ in range(count):
        widths = torch.randint(0, width + 1, (rows,), generator=generator)
        room = (limit - widths).clamp(min=0)
        starts = (torch.rand(rows, generator=generator) * (room + 1)).long()
        inside = (positions >= starts[:, None]) & (positions < (starts + widths)[:, None])
        keep &= ~inside
    shape = [rows] + [1] * (x.dim() - 1)
    shape[dim] = size
    return x * keep.view(shape)


@torch.no_grad()
def score(
    reader: DigitStringReader,
    waves: Sequence[np.ndarray],
    labels: Labels,
    namer: DigitNamer | None = None,
) -> dict[str, float]:
    """Whole-string accuracy, and digit error rate (edit distance over the digits said), of
    each recording read as `sdc transcribe` reads it (at the reader's test-time speeds; with
    `namer`, as `sdc transcribe --namer` reads it)."""
    pairs = []
    for wave, said in zip(waves, labels, strict=True):
        wave = np.asarray(wave, np.float32)
        log_probs = reader.read_log_probs(torch.from_numpy(wave))
        digits = greedy_read(log_probs, reader, math.inf)
        if namer is not None:
            digits = namer.name(digits, log_probs, wave)
        pairs.append(([d.label for d in digits], said))
    return string_scores(pairs)


def new_reader(cfg: StringsConfig) -> DigitStringReader:
    """A reader with the pretrained embedding and the network's initial weights drawn from
    `cfg.seed` (whatever drew from torch's generator before), so a fold trains the same way
    in every run."""
    torch.manual_seed(cfg.seed)
    reader = DigitStringReader(
        LABELS,
        asdict(cfg.net),
        cfg.sample_rate,
        cfg.pad_seconds,
        cfg.weights_dir,
        tuple(cfg.test_time_speeds),
    )
    reader.load_pretrained()
    return reader.eval()


def save_reader(reader: DigitStringReader, cfg: StringsConfig, path: Path) -> None:
    """A checkpoint in sdc's layout (weights, and the hyperparameters that rebuild the model),
    so it loads with `weights_only=True` like every other."""
    hparams = {
        "kind": KIND,
        "labels": list(reader.labels),
        "net": asdict(cfg.net),
        "frontend": {"sample_rate": cfg.sample_rate, "pad_seconds": cfg.pad_seconds},
        "test_time_speeds": list(reader.test_time_speeds),
    }
    checkpoint = {"state_dict": reader.state_dict(), "hyper_parameters": hparams}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)


def markdown(table: dict[str, dict[str, dict[str, float]]], folds: list[str]) -> str:
    """One row per condition; a fold without it (no segmenter given for it) reads n/a, and the
    mean and worst are over the folds that have it."""
    order = [
        *CONDITIONS,
        ISOLATED,
        *SPOKEN,
        *(c + NAMED for c in [*CONDITIONS, ISOLATED]),
        *(c + SUFFIX for c in CONDITIONS),
    ]
    names = [n for n in order if any(n in table[f] for f in folds)]
    head = ["condition", "mean", "worst", *folds]
    lines = [
        "Whole-string accuracy (%) / digit error rate (%), speakers held out of training:",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name in names:
        cells = {f: table[f][name] for f in folds if name in table[f]}
        have = list(cells)
        acc = [c["string_accuracy"] for c in cells.values()]
        der = [c["digit_error_rate"] for c in cells.values()]
        worst = int(np.argmin(acc))
        row = [
            name,
            f"{100 * statistics.fmean(acc):.1f} / {100 * statistics.fmean(der):.2f}",
            f"{100 * acc[worst]:.1f} ({have[worst]})",
            *(
                f"{100 * cells[f]['string_accuracy']:.1f} / "
                f"{100 * cells[f]['digit_error_rate']:.2f}"
                if f in cells
                else "n/a"
                for f in folds
            ),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def run(cfg: StringsConfig, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    if cfg.synthesis.min_digits > cfg.synthesis.max_digits:
        raise SdcError(
            f"strings.synthesis.min_digits: {cfg.synthesis.min_digits} is above max_digits "
            f"({cfg.synthesis.max_digits})"
        )
    speeds = list(cfg.test_time_speeds)
    if not speeds or not speeds_in_range(speeds):
        raise SdcError(f"strings.test_time_speeds: expected {SPEEDS}, got {speeds}")
    recorded = speaker_pools(Path(cfg.root), cfg.sample_rate)
    pools = {s: trimmed(p, cfg.sample_rate, cfg.synthesis.trim_db) for s, p in recorded.items()}
    speakers = sorted(pools)
    folds = speakers if cfg.folds is None else list(cfg.folds)
    unknown = sorted(set(folds) - set(speakers))
    if unknown:
        raise SdcError(f"strings.folds: no speaker(s) {unknown} in {cfg.root}; it has {speakers}")
    segmenters = models_by_held_out_speaker(cfg.segmenters or [])
    strays = sorted(set(segmenters) - set(folds))
    if strays:
        raise SdcError(f"strings.segmenters: a model holds out {strays[0]}, which is not a fold")
    reader = new_reader(cfg)
    train = {}
    for k, speaker in enumerate(speakers):
        waves, labels = training_strings(
            pools[speaker],
            cfg.strings_per_speaker,
            cfg.synthesis,
            cfg.sample_rate,
            cfg.seed * 1000 + k,
        )
        waves = pitch_shifted(waves, cfg.synthesis, cfg.sample_rate, cfg.seed * 1000 + k)
        train[speaker] = (embed(reader, waves, cfg.finetune_layers), labels)
        log.info("%s: %d training strings embedded", speaker, len(waves))
    spoken: tuple[Frames, Labels] = ([], [])
    if cfg.spoken_strings:
        waves, labels = spoken_strings(
            cfg.spoken_strings, cfg.synthesis, cfg.sample_rate, cfg.seed + 7
        )
        spoken = (embed(reader, waves, cfg.finetune_layers), labels)
        log.info("%d espeak-ng training strings embedded", len(waves))
    spoken_tests: dict[str, tuple[list, Labels]] = {}
    if folds:
        test_cut = replace(cfg.synthesis, trim_db=TEST_TRIM_DB)
        for k, (name, digits) in enumerate(SPOKEN.items()):
            waves, labels = spoken_strings(
                cfg.test_strings, test_cut, cfg.sample_rate, 20_000 + k, True, digits
            )
            spoken_tests[name] = (waves, labels)
    writer = SummaryWriter(str(out / "tensorboard"))
    table: dict[str, dict[str, dict[str, float]]] = {}
    for held in folds:
        # Seeded by the speaker, not the fold's place in the list: a fold run alone
        # (`strings.folds=[nicolas]`) tests the strings it tests in the full run.
        seed = 10_000 + speakers.index(held)
        test_pool = trimmed(recorded[held], cfg.sample_rate, TEST_TRIM_DB)
        sets = test_sets(test_pool, cfg.test_strings, cfg.sample_rate, seed)
        frames = [f for s in speakers if s != held for f in train[s][0]] + spoken[0]
        labels = [d for s in speakers if s != held for d in train[s][1]] + spoken[1]
        fold_reader = new_reader(cfg)
        fit(fold_reader, frames, labels, cfg, writer, f"fold_{held}")
        # Kept: a reader that never heard `held`, to try live (`sdc live-reading`) or by ear.
        save_reader(fold_reader, cfg, out / f"fold_{held}.ckpt")
        # Tested as `sdc transcribe` reads: the whole embedding, fine-tuned top included.
        table[held] = {
            name: score(fold_reader, waves, digits)
            for name, (waves, digits) in {**sets, **spoken_tests}.items()
        }
        if held in segmenters:
            strings = {name: sets[name] for name in CONDITIONS}
            table[held].update(score_cut_at_pauses(segmenters[held], strings))
            namer = DigitNamer.load(segmenters[held], fold_reader)
            for name, (waves, digits) in sets.items():
                table[held][name + NAMED] = score(fold_reader, waves, digits, namer)
        log.info("held out %s: %s", held, json.dumps(table[held]))
    payload: dict[str, Any] = {
        "folds": table,
        "config": OmegaConf.to_container(OmegaConf.structured(cfg)),
    }
    if folds:
        text = markdown(table, folds)
        write_text(out / "strings.md", text)
        print(text)
    if cfg.final:
        frames = [f for s in speakers for f in train[s][0]] + spoken[0]
        labels = [d for s in speakers for d in train[s][1]] + spoken[1]
        fit(reader, frames, labels, cfg, writer, "final")
        save_reader(reader, cfg, out / "model.ckpt")
        payload["model"] = str(out / "model.ckpt")
        print(f"model: {out / 'model.ckpt'} (sdc transcribe MODEL RECORDING)")
    writer.close()
    payload["seconds"] = time.perf_counter() - started
    write_text(out / "strings.json", json.dumps(payload, indent=2) + "\n")
    return payload


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="strings")
def hydra_app(cfg: DictConfig) -> None:
    with user_errors(), refused_runs_leave_nothing(cfg.paths.output_dir):
        check(cfg.strings, StringsConfig, "strings")
        strings = OmegaConf.to_object(cfg.strings)
        run(strings, Path(cfg.paths.output_dir))


def main() -> None:
    run_hydra_app(hydra_app)


if __name__ == "__main__":
    main()
