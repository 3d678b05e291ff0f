"""The service around one loaded model: the JSON API under `/v1`, `/healthz`, and the page at `/`.

Every error is JSON, `{"error": "one line"}`, with the status it deserves (400 unreadable
audio, 413 over a limit, 415 wrong content type, 422 a field missing, 503 busy with
Retry-After); an unexpected failure is a 500 with the same shape, logged here, and the service
goes on answering.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException

import sdc
from sdc.audio.decode import AudioTooLong
from sdc.errors import SdcError
from sdc.inference.recognizer import Prediction, Recognizer
from sdc.serve.pool import Busy, InferencePool
from sdc.serve.uploads import FORM_FIELD, RequestError, read_audio_upload

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("page")


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may bring and how much work runs at once; `sdc serve` sets them."""

    max_megabytes: float = 10.0
    """Largest upload, in MB (10^6 bytes)."""
    max_seconds: float = 60.0
    """Longest audio, in seconds, after decoding."""
    workers: int = 1
    """Inference threads. `sdc serve` gives an ONNX model one per core, and its recognizer then
    runs each inference on one thread."""
    max_pending: int = 16
    """Requests admitted at once (running or queued); one more gets 503 and Retry-After."""

    @property
    def max_bytes(self) -> int:
        return int(self.max_megabytes * 1e6)


class Scored(BaseModel):
    label: str
    probability: float


class Answer(BaseModel):
    """One digit: `digit` is null for "no digit" (no speech, or below the threshold)."""

    digit: str | None
    confidence: float
    top: list[Scored]
    speech: bool
    start: float
    """Seconds from the start of the recording."""
    end: float


class PredictResponse(Answer):
    file: str
    duration: float


class TranscriptResponse(BaseModel):
    file: str
    text: str
    """The digits said, in order; segments below the threshold are left out."""
    duration: float
    segments: list[Answer]


class ModelResponse(BaseModel):
    file: str
    format: str
    labels: list[str]
    sample_rate: int
    window_seconds: float
    threshold: float
    recipe: dict[str, Any]
    """The model's front end and network settings, as saved with it."""
    sdc_version: str
    limits: dict[str, float]


class ErrorResponse(BaseModel):
    error: str


AUDIO_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "An audio file in any format `sdc predict` reads (WAV, FLAC, OGG...).",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FORM_FIELD],
                    "properties": {FORM_FIELD: {"type": "string", "format": "binary"}},
                }
            },
            "audio/wav": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": what}
    for code, what in {
        400: "unreadable audio: not audio, truncated, empty",
        413: "over the upload or duration limit",
        415: "wrong content type",
        422: "the form's file field is missing",
        503: "busy: retry after the Retry-After header's seconds",
    }.items()
}


def model_format(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript"}.get(suffix, "checkpoint")


def answer(p: Prediction) -> Answer:
    return Answer(
        digit=p.label,
        confidence=round(p.confidence, 6),
        top=[Scored(label=label, probability=round(q, 6)) for label, q in p.top],
        speech=p.speech,
        start=round(p.start, 3),
        end=round(p.end, 3),
    )


def create_app(recognizer: Recognizer, model_path: Path, limits: ServiceLimits) -> FastAPI:
    """The application; `recognizer` is shared by every request (it holds no per-request state)."""
    pool = InferencePool(limits.workers, limits.max_pending)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        pool.close()

    app = FastAPI(
        title="sdc",
        summary="Spoken-digit recognition: which digit (0-9) is said in a recording.",
        version=sdc.__version__,
        lifespan=lifespan,
        # FastAPI's /docs and /redoc pages load their scripts from a CDN; nothing here may.
        docs_url=None,
        redoc_url=None,
    )
    app.state.pool = pool
    app.mount("/static", StaticFiles(directory=PAGE), name="static")

    def read(data: bytes, name: str) -> np.ndarray:
        try:
            return recognizer.read_bytes(data, name, limits.max_seconds)
        except AudioTooLong as err:
            raise RequestError(413, str(err)) from None
        except SdcError as err:
            raise RequestError(400, str(err)) from None

    def predict(data: bytes, name: str) -> PredictResponse:
        wave = read(data, name)
        (p,) = recognizer.predict_waves([wave])
        duration = round(len(wave) / recognizer.sample_rate, 3)
        return PredictResponse(**answer(p).model_dump(), file=name, duration=duration)

    def transcribe(data: bytes, name: str) -> TranscriptResponse:
        wave = read(data, name)
        transcript = recognizer.transcribe(wave)
        return TranscriptResponse(
            file=name,
            text=transcript.text,
            duration=round(len(wave) / recognizer.sample_rate, 3),
            segments=[answer(s) for s in transcript.segments],
        )

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE / "index.html")

    @app.get("/healthz", summary="Liveness: 200 while the service answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model", summary="What the loaded model is and expects")
    async def model() -> ModelResponse:
        info = recognizer.info
        return ModelResponse(
            file=model_path.name,
            format=model_format(model_path),
            labels=list(info.labels),
            sample_rate=info.sample_rate,
            window_seconds=info.window_seconds,
            threshold=recognizer.threshold,
            recipe={
                "frontend": info.frontend,
                "net": info.net,
                "test_time_speeds": list(info.test_time_speeds or []),
            },
            sdc_version=sdc.__version__,
            limits={"max_megabytes": limits.max_megabytes, "max_seconds": limits.max_seconds},
        )

    @app.post(
        "/v1/predict",
        summary="The one digit said in a recording (its loudest utterance if several)",
        openapi_extra=AUDIO_BODY,
        responses=ERRORS,
    )
    async def predict_route(request: Request) -> PredictResponse:
        async with pool.admitted():
            data, name = await read_audio_upload(request, limits.max_bytes)
            return await pool.run(predict, data, name)

    @app.post(
        "/v1/transcribe",
        summary="The digit string in a recording, one segment per utterance, with times",
        openapi_extra=AUDIO_BODY,
        responses=ERRORS,
    )
    async def transcribe_route(request: Request) -> TranscriptResponse:
        async with pool.admitted():
            data, name = await read_audio_upload(request, limits.max_bytes)
            return await pool.run(transcribe, data, name)

    @app.exception_handler(RequestError)
    async def request_error(_: Request, err: RequestError) -> JSONResponse:
        return JSONResponse({"error": err.message}, status_code=err.status)

    @app.exception_handler(Busy)
    async def busy(_: Request, err: Busy) -> JSONResponse:
        headers = {"Retry-After": str(err.retry_after)}
        return JSONResponse({"error": str(err)}, status_code=503, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(err.detail)}, err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"])
        return JSONResponse({"error": f"{where}: {first['msg']}"}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"internal error ({type(err).__name__})"}, 500)

    return app
