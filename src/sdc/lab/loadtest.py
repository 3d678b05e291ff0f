"""`sdc loadtest MODEL [--clients 8] [--seconds 20] [--clip WAV]`: `sdc serve` under load.

Starts `sdc serve MODEL` on a free port of 127.0.0.1, then N clients post one clip to
`/v1/predict` back to back (keep-alive connections) for a fixed time, and reports requests per
second, p50/p99 latency, errors (any answer but 200) and the service's peak resident memory.
A benchmark, not a test: it asserts nothing about speed, and prints a table row for the README.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sdc.cli import ArgumentParser, output_file, positive_float, positive_int, user_errors
from sdc.errors import SdcError
from sdc.files import write_text

STARTUP_SECONDS = 180.0
"""A checkpoint imports torch and Lightning first: allow for a slow, busy machine."""


@dataclass(frozen=True)
class LoadResult:
    model: str
    clients: int
    seconds: float
    requests: int
    errors: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    peak_rss_mb: float | None
    machine: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (Linux's VmHWM), or None where /proc is not there."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _default_clip() -> bytes:
    """A second of a 400 Hz tone burst in silence, as 16-bit 8 kHz WAV: speech-like enough that
    the model classifies it (the work measured), whatever digit it says."""
    import soundfile as sf

    t = np.arange(8000) / 8000
    wave = 0.3 * np.sin(2 * np.pi * 400 * t) * ((t > 0.3) & (t < 0.7))
    buffer = io.BytesIO()
    sf.write(buffer, wave, 8000, "PCM_16", format="WAV")
    return buffer.getvalue()


def _wait_until_up(process: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SdcError(f"sdc serve exited with status {process.returncode} before answering")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SdcError(f"sdc serve did not answer /healthz within {STARTUP_SECONDS:g} s")


def _client(port: int, clip: bytes, until: float, latencies: list[float], errors: list[int]):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "audio/wav"}
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            connection.request("POST", "/v1/predict", body=clip, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except OSError:
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            status = 0
        latencies.append(time.perf_counter() - started)
        if status != 200:
            errors.append(status)
    connection.close()


def run_load(
    model: Path, clients: int, seconds: float, clip: bytes, serve_options: Sequence[str] = ()
) -> LoadResult:
    from sdc.lab.machine import summary

    port = _free_port()
    command = [sys.executable, "-m", "sdc", "serve", str(model), "--port", str(port)]
    command += ["--max-pending", str(max(16, 2 * clients)), *serve_options]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        _wait_until_up(process, port)
        latencies: list[float] = []
        errors: list[int] = []
        until = time.monotonic() + seconds
        threads = [
            threading.Thread(target=_client, args=(port, clip, until, latencies, errors))
            for _ in range(clients)
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - started
        peak = _peak_rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
    ms = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return LoadResult(
        model=model.name,
        clients=clients,
        seconds=round(took, 1),
        requests=len(latencies),
        errors=len(errors),
        requests_per_second=round(len(latencies) / took, 1),
        p50_ms=round(float(np.percentile(ms, 50)), 1),
        p99_ms=round(float(np.percentile(ms, 99)), 1),
        peak_rss_mb=None if peak is None else round(peak),
        machine=summary(),
    )


def markdown_row(r: LoadResult) -> str:
    rss = "n/a" if r.peak_rss_mb is None else f"{r.peak_rss_mb:g} MB"
    return (
        f"| {r.model} | {r.clients} | {r.requests_per_second:g} | {r.p50_ms:g} ms | "
        f"{r.p99_ms:g} ms | {r.errors} of {r.requests} | {rss} |"
    )


HEADER = (
    "| model | clients | requests/s | p50 | p99 | errors | service peak RSS |\n"
    "|---|---|---|---|---|---|---|"
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="sdc loadtest", description=__doc__.split("\n\n")[1])
    parser.add_argument("model", type=Path, help="a .ckpt, .onnx or TorchScript .pt to serve")
    parser.add_argument("--clients", type=positive_int, default=8, help="concurrent clients")
    parser.add_argument("--seconds", type=positive_float, default=20.0, help="how long to load")
    parser.add_argument("--clip", type=Path, help="the audio each request sends (default: a tone)")
    parser.add_argument(
        "--workers", type=positive_int, help="sdc serve --workers (default: sdc serve's)"
    )
    parser.add_argument("--json", type=output_file, help="also write the figures as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with user_errors():
        if not args.model.is_file():
            raise SdcError(f"{args.model}: no such model file")
        if args.clip is not None and not args.clip.is_file():
            raise SdcError(f"{args.clip}: no such audio file")
        clip = args.clip.read_bytes() if args.clip else _default_clip()
        workers = [] if args.workers is None else ["--workers", str(args.workers)]
        result = run_load(args.model, args.clients, args.seconds, clip, workers)
        print(f"{HEADER}\n{markdown_row(result)}\n\nmachine: {result.machine}")
        if args.json:
            write_text(args.json, json.dumps(asdict(result), indent=2) + "\n")
        if result.errors:
            raise SdcError(f"{result.errors} of {result.requests} requests failed")


if __name__ == "__main__":
    main()
