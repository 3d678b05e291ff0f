"""A request's audio: the raw body (`Content-Type: audio/...`) or a form's `file` field.

Every way a request can fail here is a `RequestError` with the HTTP status it deserves and one
line saying what was expected; nothing reads more than the byte limit into memory.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import UploadFile
from starlette.requests import Request

FORM_FIELD = "file"
RAW_TYPES = ("audio/", "application/octet-stream")
FORM_TYPE = "multipart/form-data"


class RequestError(Exception):
    """A request the service cannot answer: `status` and a one-line `message` for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_audio_upload(request: Request, max_bytes: int) -> tuple[bytes, str]:
    """The audio file's bytes and the name to give it in errors."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE and not content_type.startswith(RAW_TYPES):
        raise RequestError(
            415,
            f"Content-Type {content_type or '(none)'}: expected {FORM_TYPE} with a "
            f"'{FORM_FIELD}' field, or audio/* (or application/octet-stream) with the file as "
            "the body",
        )
    body = await _bounded_body(request, max_bytes)
    if content_type != FORM_TYPE:
        if not body:
            raise RequestError(400, "the request body is empty: expected an audio file")
        return body, "the uploaded audio"
    return await _form_file(request, body, max_bytes)


DRAIN_BYTES = 64_000_000
"""How much of a refused upload is still read (and dropped): a client that is cut off while it
sends sees a reset connection instead of the 413 that says why."""


async def _bounded_body(request: Request, max_bytes: int) -> bytes:
    limit = f"the upload limit of {max_bytes / 1e6:g} MB"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        if int(declared) <= max_bytes + DRAIN_BYTES:
            await _drain(request)
        raise RequestError(413, f"the request is {int(declared)} bytes, over {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            await _drain(request, DRAIN_BYTES)
            raise RequestError(413, f"the request is over {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(request: Request, budget: int = DRAIN_BYTES) -> None:
    async for chunk in request.stream():
        budget -= len(chunk)
        if budget < 0:
            return


async def _form_file(request: Request, body: bytes, max_bytes: int) -> tuple[bytes, str]:
    async def replay() -> Mapping[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=8)
    except Exception as err:  # starlette's parser raises its own types for a malformed form
        raise RequestError(400, f"unreadable multipart form ({err})") from None
    upload = form.get(FORM_FIELD)
    if upload is None:
        fields = ", ".join(form.keys()) or "none"
        raise RequestError(
            422, f"the form has no '{FORM_FIELD}' field (it has: {fields}); put the audio there"
        )
    if not isinstance(upload, UploadFile):
        raise RequestError(422, f"the form's '{FORM_FIELD}' field is text, expected a file")
    data = await upload.read(max_bytes + 1)
    await form.close()
    if not data:
        raise RequestError(400, f"{upload.filename or FORM_FIELD}: empty file, expected audio")
    return data, upload.filename or FORM_FIELD
