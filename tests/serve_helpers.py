"""A real `sdc serve` process on 127.0.0.1, and plain-urllib requests to it (what a client sees)."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Reply:
    status: int
    body: dict
    headers: dict[str, str]


def request(
    url: str, body: bytes | None = None, content_type: str | None = None, method: str = "GET"
) -> Reply:
    """One HTTP request with exactly these headers (urllib would add a form content type)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        headers = {"Content-Type": content_type} if content_type else {}
        connection.request(method, parts.path, body=body, headers=headers)
        response = connection.getresponse()
        return Reply(
            response.status,
            json.loads(response.read()),
            {k.lower(): v for k, v in response.getheaders()},
        )
    finally:
        connection.close()


def multipart(fields: dict[str, tuple[str, bytes] | str]) -> tuple[bytes, str]:
    """A multipart/form-data body: a (filename, bytes) value is a file, a str a text field."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            filename, data = value
            head = (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            )
        else:
            head, data = f'Content-Disposition: form-data; name="{name}"\r\n\r\n', value.encode()
        parts.append(f"--{boundary}\r\n{head}".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post_file(url: str, data: bytes, filename: str = "clip.wav") -> Reply:
    body, content_type = multipart({"file": (filename, data)})
    return request(url, body, content_type, "POST")


@contextmanager
def serving(model: Path, *options: str, startup_seconds: float = 90.0) -> Iterator[str]:
    """`sdc serve MODEL` in its own process; yields its base URL and stops it afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "sdc", "serve", str(model), "--port", str(port), *options]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            if process.poll() is not None:
                pytest.fail(f"sdc serve exited with {process.returncode}: {process.stderr.read()}")
            try:
                if request(f"{url}/healthz").status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"sdc serve did not answer /healthz within {startup_seconds} s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
