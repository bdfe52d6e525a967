"""A local, CarsXE-compatible VIN OCR endpoint: ``POST /v1/vinocr?key=KEY``.

A backend written for the CarsXE VIN OCR API sends ``{"image_url": ...}``
and gets ``success``, ``vin``, ``box``, ``confidence``, ``candidates`` and
``message`` back; pointing its base URL at the device is the whole migration.
This project's extra fields (``checksum_valid``, ``source``, ``quad``,
``decoded``, ``timing_ms``, ...) ride along; clients that do not know them
ignore them.

Why FastAPI on uvicorn: both are pure Python wheels that install on a Pi
without compiling, FastAPI writes the OpenAPI description from the same
pydantic models that validate requests, and pydantic is already a dependency.
They are the optional ``serve`` extra and imported only by ``create_app``.

Limits: the body is read in chunks and refused past ``max_body_bytes``; at
most ``max_concurrent`` requests are in flight (the rest get 429 at once,
so a burst cannot queue unbounded memory); inference itself is serialised
because one TFLite interpreter is not re-entrant.  Image URLs follow the
``read`` URL policy (``agent.fetch``); a request can never name a file on the
device.
"""

# No "from __future__ import annotations": FastAPI reads the endpoint annotations at
# runtime, and Request is imported inside create_app (fastapi is an optional extra).
import asyncio
import hmac
import ipaddress
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent import __version__
from agent.fetch import UrlPolicy

if TYPE_CHECKING:
    from agent.reader import Reader

logger = logging.getLogger(__name__)


class ServeError(ValueError):
    """The server cannot start as configured; the message says what to change."""


class ServeConfig(BaseModel):
    """The HTTP endpoint, off unless enabled."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="serve /v1/vinocr from the daemon")
    host: str = Field("127.0.0.1", description="address to listen on (loopback by default)")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0: any free port)")
    keys_file: Path | None = Field(
        None, description="API keys, one per line; required when host is not loopback"
    )
    max_body_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="largest request body accepted (413 beyond)"
    )
    max_concurrent: int = Field(4, ge=1, description="requests in flight; more get HTTP 429")
    allow_private_urls: bool = Field(
        True, description="fetch image URLs on private/loopback addresses (LAN cameras)"
    )


def load_keys(path: Path | None) -> set[str] | None:
    """API keys from a file (one per line, ``#`` comments), or None when no file is set."""
    if path is None:
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ServeError(f"keys_file {path}: cannot read ({exc.strerror})") from None
    keys = {line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")}
    if not keys:
        raise ServeError(f"keys_file {path}: no keys in it (one key per line)")
    return keys


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class VinOcrRequest(BaseModel):
    """The CarsXE VIN OCR request body."""

    image_url: str = Field(
        description="An http(s) URL of the image, a base64 string, or a data:image/...;base64, URI",
        min_length=1,
    )


class Box(BaseModel):
    xmin: int
    xmax: int
    ymin: int
    ymax: int


class Candidate(BaseModel):
    vin: str
    confidence: float = Field(ge=0, le=1)
    box: Box | None = None


class VinOcrResponse(BaseModel):
    """The CarsXE response fields; this project's extra fields are allowed beside them."""

    model_config = ConfigDict(extra="allow")

    success: bool
    vin: str | None = None
    box: Box | None = None
    confidence: float = Field(0.0, ge=0, le=1)
    candidates: list[Candidate] = Field(default_factory=list)
    message: str = ""


class ErrorResponse(BaseModel):
    success: bool = False
    message: str


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"success": False, "message": message}, status, headers=headers)


def create_app(reader: "Reader", config: ServeConfig) -> Any:
    """The ASGI app serving ``reader``; refuses an open endpoint on a non-loopback host."""
    from fastapi import FastAPI, Query, Request
    from fastapi.concurrency import run_in_threadpool

    from agent import imageio
    from agent.reader import FrameResult
    from agent.response import response

    keys = load_keys(config.keys_file)
    if keys is None and not is_loopback(config.host):
        raise ServeError(
            f"serving on {config.host} without keys_file would let anyone on the network use"
            " the reader; set keys_file (serve --keys-file) or listen on 127.0.0.1"
        )
    policy = UrlPolicy(allow_private=config.allow_private_urls)
    infer_lock = threading.Lock()  # one interpreter: one inference at a time
    slots = asyncio.Semaphore(config.max_concurrent)
    app = FastAPI(
        title="vin-agent VIN OCR",
        version=__version__,
        description="A local, CarsXE-compatible VIN OCR endpoint served by vin-agent.",
        docs_url=None,  # the docs pages load scripts from a CDN; the device may be offline
        redoc_url=None,
    )
    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse, "description": text}
        for code, text in (
            (400, "body is not the expected JSON"),
            (401, "missing or unknown key"),
            (413, "body over the size limit"),
            (429, "too many requests in flight"),
        )
    }

    def work(spec: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            loaded = imageio.load_remote(spec, policy)
        except imageio.ImageInputError as exc:
            return response(FrameResult(), reader, message=str(exc))
        t1 = time.perf_counter()
        with infer_lock:
            out = response(reader.read_frame(loaded.image), reader)
        out["timing_ms"] = {"decode": round(1000 * (t1 - t0), 2), **out["timing_ms"]}
        out["timing_ms"]["total"] = round(1000 * (time.perf_counter() - t0), 2)
        return out

    @app.post(
        "/v1/vinocr",
        response_model=VinOcrResponse,
        responses=errors,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": VinOcrRequest.model_json_schema()}},
            }
        },
    )
    async def vinocr(request: Request, key: str | None = Query(None)) -> Any:
        """Read the VIN in one image (CarsXE VIN OCR API)."""
        if keys is not None and not any(hmac.compare_digest(key or "", k) for k in keys):
            return _error(401, "missing or unknown API key; pass ?key=KEY")
        if slots.locked():
            return _error(429, "busy: too many requests in flight; retry", {"Retry-After": "1"})
        async with slots:
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > config.max_body_bytes:
                return _error(413, f"body over the {config.max_body_bytes} byte limit")
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > config.max_body_bytes:
                    return _error(413, f"body over the {config.max_body_bytes} byte limit")
            try:
                req = VinOcrRequest.model_validate_json(bytes(body))
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                    for e in exc.errors()
                )
                return _error(400, 'expected JSON {"image_url": "..."}: ' + problems)
            return await run_in_threadpool(work, req.image_url)

    @app.get("/healthz", response_model=dict[str, Any])
    async def healthz() -> dict[str, Any]:
        """Liveness and the models in use."""
        return {"ok": True, "version": __version__, "model": reader.models}

    return app


class Server:
    """uvicorn in a background thread: ``vin-agent serve`` and the daemon's ``[serve]``."""

    def __init__(self, app: Any, config: ServeConfig) -> None:
        import uvicorn

        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=config.host,
                port=config.port,
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=5,
            )
        )
        self._thread = threading.Thread(target=self._server.run, name="serve", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServeError("HTTP server did not start (port in use? see the log above)")
            time.sleep(0.02)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        for server in self._server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise ServeError("server is not listening")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
