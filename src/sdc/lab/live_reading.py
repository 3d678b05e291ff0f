"""`sdc live-reading READER SPEAKER [--strings 100] [--hop-frames 1] [--settle 0.2] [--namer
MODEL]`: a digit-string reader live (`sdc listen`) against the whole recording (`sdc transcribe`).

Strings of SPEAKER's FSDD clips (cut as `sdc strings` cuts test clips) are joined with known
times, without pauses and with 0.1-0.3 s pauses, then each is read whole and streamed through
the listener one hop at a time. Reported per kind of string: how many came out right each way,
how many the two read alike, how long after each digit's end (its clip's, not the reader's
estimate) it was told, and the listener's CPU time per hop. Use a reader that never heard
SPEAKER (a fold's) to see what a new voice gets, and `--namer` with an isolated-digit model that
never heard SPEAKER either. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from sdc.cli import ArgumentParser, output_file, positive_float, positive_int, user_errors
from sdc.errors import SdcError
from sdc.files import write_text
from sdc.lab.machine import summary
from sdc.strings.recognizer import StringListener, StringRecognizer
from sdc.strings.synthesis import join
from sdc.strings.train import CONDITIONS, TEST_TRIM_DB, speaker_pools, trimmed

KINDS: dict[str, tuple[int, tuple[float, float]]] = {
    name: CONDITIONS[name][:2]
    for name in ("4 digits, no pause", "10 digits, no pause", "4 digits, 0.1-0.3 s pauses")
}
"""Strings streamed: digits and gap range (s; below 0 a crossfaded overlap), `sdc strings`'s."""
TAIL_SECONDS = 1.0
"""Silence streamed after each string, beyond the settle time, so its last digit is told."""

Made = tuple[np.ndarray, list[str], list[tuple[float, float]]]
"""A string: its wave, the digits said, and each digit's (start, end) in seconds."""


def make_strings(
    pool: Sequence[tuple[int, np.ndarray]], labels: Sequence[str], count: int, sample_rate: int
) -> dict[str, list[Made]]:
    """`count` strings of each of KINDS from `pool` (digit, clip), from a fixed seed."""
    rng = np.random.default_rng(4321)
    strings: dict[str, list[Made]] = {}
    for name, (digits, gaps) in KINDS.items():
        strings[name] = []
        for _ in range(count):
            picks = rng.integers(0, len(pool), digits)
            edges = (float(rng.uniform(0.1, 0.4)), float(rng.uniform(0.1, 0.4)))
            gap = rng.uniform(*gaps, digits - 1)
            wave, times = join([pool[i][1] for i in picks], gap, sample_rate, edges)
            strings[name].append((wave, [labels[pool[i][0]] for i in picks], times))
    return strings


def stream(
    recognizer: StringRecognizer, wave: np.ndarray, hop_frames: int, settle: float
) -> tuple[list[tuple[str, float]], int]:
    """Each digit the listener tells for `wave` streamed one hop at a time, with the stream
    time (s) it was told at; and the hops it took."""
    engine = StringListener(recognizer, hop_frames=hop_frames, settle_seconds=settle)
    rate = recognizer.sample_rate
    tail = np.zeros(round((settle + TAIL_SECONDS) * rate), np.float32)
    audio = np.concatenate([wave, tail])
    told = []
    hops = range(0, len(audio), engine.hop)
    for at in hops:
        for digit in engine.feed(audio[at : at + engine.hop]):
            if digit.label is not None:
                told.append((digit.label, engine.seen / rate))
    return told, len(hops)


def measure(
    recognizer: StringRecognizer, strings: dict[str, list[Made]], hop_frames: int, settle: float
) -> dict[str, dict[str, float | None]]:
    """The figures the module docstring lists, per kind of string."""
    figures = {}
    for name, made in strings.items():
        right_whole = right_live = alike = hops = 0
        delays: list[float] = []
        cpu = 0.0
        for wave, said, times in made:
            whole = [s.label for s in recognizer.transcribe(wave).segments if s.label is not None]
            started = time.process_time()
            told, streamed = stream(recognizer, wave, hop_frames, settle)
            cpu += time.process_time() - started
            hops += streamed
            live = [label for label, _ in told]
            right_whole += whole == said
            right_live += live == said
            alike += live == whole
            if len(told) == len(said):  # each told digit is the one said in its place
                delays += [at - end for (_, at), (_, end) in zip(told, times, strict=True)]
        figures[name] = {
            "strings": len(made),
            "right_whole": right_whole / len(made),
            "right_live": right_live / len(made),
            "alike": alike / len(made),
            "delay_p50_s": float(np.median(delays)) if delays else None,
            "delay_p90_s": float(np.percentile(delays, 90)) if delays else None,
            "cpu_ms_per_hop": 1000 * cpu / hops,
        }
    return figures


def markdown(figures: dict[str, dict[str, float | None]]) -> str:
    lines = [
        "| strings | right whole | right live | read alike | told after its end, median / 90% |",
        "|---|---|---|---|---|",
    ]
    for name, f in figures.items():
        delay = (
            "n/a"
            if f["delay_p50_s"] is None
            else (f"{f['delay_p50_s']:.2f} / {f['delay_p90_s']:.2f} s")
        )
        lines.append(
            f"| {name} | {100 * f['right_whole']:.0f}% | {100 * f['right_live']:.0f}% "
            f"| {100 * f['alike']:.0f}% | {delay} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="sdc live-reading", description=__doc__.split("\n\n")[1])
    parser.add_argument("reader", type=Path, help="a digit-string reader's checkpoint")
    parser.add_argument("speaker", help="whose FSDD clips make the strings, e.g. nicolas")
    parser.add_argument("--root", type=Path, help="FSDD (default: $SDC_DATA_DIR or data/fsdd)")
    parser.add_argument("--strings", type=positive_int, default=100, help="strings of each kind")
    parser.add_argument("--hop-frames", type=positive_int, default=1, help="the listener's hop")
    parser.add_argument("--settle", type=positive_float, default=0.2, help="the listener's (s)")
    parser.add_argument(
        "--namer", type=Path, help="an isolated-digit model naming each digit with the reader"
    )
    parser.add_argument("--json", type=output_file, help="also write the figures as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with user_errors():
        # One line naming the file if it is missing, unreadable or not a reader (or the namer
        # is not an isolated-digit model for it).
        recognizer = StringRecognizer.from_checkpoint(args.reader, namer=args.namer)
        root = args.root or Path(os.environ.get("SDC_DATA_DIR", "data/fsdd"))
        torch.set_num_threads(1)  # as a listener shares a laptop with everything else
        rate = recognizer.sample_rate
        pools = speaker_pools(root, rate)
        if args.speaker not in pools:
            raise SdcError(f"speaker: no {args.speaker!r} in {root}; it has {sorted(pools)}")
        pool = trimmed(pools[args.speaker], rate, TEST_TRIM_DB)
        strings = make_strings(pool, recognizer.labels, args.strings, rate)
        figures = measure(recognizer, strings, args.hop_frames, args.settle)
        cpu = max(f["cpu_ms_per_hop"] for f in figures.values())
        print(markdown(figures))
        named = f", named with {args.namer}" if args.namer else ""
        print(
            f"\nhop {args.hop_frames} frame(s), settle {args.settle} s{named}: about {cpu:.0f} ms "
            f"of one thread a hop; {summary()}"
        )
        if args.json:
            payload = {"args": {k: str(v) for k, v in vars(args).items()}, "figures": figures}
            write_text(args.json, json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
