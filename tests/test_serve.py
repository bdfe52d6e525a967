"""The local /v1/vinocr endpoint, driven over real HTTP against a running uvicorn server."""

from __future__ import annotations

import base64
import http.server
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")

from agent.reader import Reader
from agent.serve import ServeConfig, ServeError, Server, create_app

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "scenes"
CARSXE_FIELDS = {"success", "vin", "box", "confidence", "candidates", "message"}


@pytest.fixture(scope="module")
def reader() -> Reader:
    return Reader()


@pytest.fixture
def serve(reader: Reader) -> Iterator[Callable[..., str]]:
    servers: list[Server] = []

    def start(**options: Any) -> str:
        config = ServeConfig(enabled=True, port=0, **options)
        server = Server(create_app(reader, config), config)
        server.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.stop()


def post(url: str, body: bytes | dict[str, Any], timeout: float = 30) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def sample_b64() -> str:
    return base64.b64encode((SAMPLES / "scene_0000.jpg").read_bytes()).decode()


def test_response_has_the_carsxe_fields_for_base64_and_data_uris(
    serve: Callable[..., str],
) -> None:
    """A CarsXE client must get the fields it parses, with the same types, for each input form."""
    base = serve()
    for spec in (sample_b64(), "data:image/jpeg;base64," + sample_b64()):
        status, out = post(base + "/v1/vinocr", {"image_url": spec})
        assert status == 200
        assert CARSXE_FIELDS <= out.keys()
        assert isinstance(out["success"], bool) and isinstance(out["candidates"], list)
        assert 0.0 <= out["confidence"] <= 1.0
        assert out["timing_ms"]["total"] > 0
        if out["success"]:
            assert len(out["vin"]) == 17 and set(out["box"]) == {"xmin", "xmax", "ymin", "ymax"}
        else:
            assert out["message"]


def test_keys_are_enforced(serve: Callable[..., str], tmp_path: Path) -> None:
    """Missing and unknown keys get 401 in the CarsXE error shape; a listed key is served."""
    keys = tmp_path / "keys"
    keys.write_text("# fleet backend\nsecret-1\n\nsecret-2\n")
    base = serve(keys_file=keys)
    body = {"image_url": sample_b64()}
    for suffix in ("", "?key=", "?key=nope", "?key=secret-1x"):
        status, out = post(base + "/v1/vinocr" + suffix, body)
        assert status == 401 and out["success"] is False and "key" in out["message"]
    status, out = post(base + "/v1/vinocr?key=secret-2", body)
    assert status == 200 and CARSXE_FIELDS <= out.keys()


def test_open_endpoint_refused_off_loopback(reader: Reader, tmp_path: Path) -> None:
    """Listening beyond loopback without keys would hand the reader to the whole network."""
    with pytest.raises(ServeError, match="keys_file"):
        create_app(reader, ServeConfig(host="0.0.0.0"))  # noqa: S104
    empty = tmp_path / "keys"
    empty.write_text("# none yet\n")
    with pytest.raises(ServeError, match="no keys"):
        create_app(reader, ServeConfig(keys_file=empty))


def test_a_request_cannot_make_the_server_read_its_own_files(serve: Callable[..., str]) -> None:
    """``read`` accepts paths for the local user; over HTTP a path must be refused, not opened."""
    base = serve()
    for spec in (str(SAMPLES / "scene_0000.jpg"), "file:///etc/passwd", "/etc/passwd"):
        status, out = post(base + "/v1/vinocr", {"image_url": spec})
        assert status == 200 and out["success"] is False
        assert "base64" in out["message"] or "scheme" in out["message"]


def test_bad_bodies_and_oversize_bodies(serve: Callable[..., str]) -> None:
    """Malformed JSON, a missing field and an oversize body each get a clear JSON error."""
    base = serve(max_body_bytes=4096)
    status, out = post(base + "/v1/vinocr", b"{not json")
    assert status == 400 and out["success"] is False and "image_url" in out["message"]
    status, out = post(base + "/v1/vinocr", {"url": "x"})
    assert status == 400 and "image_url" in out["message"]
    status, out = post(base + "/v1/vinocr", {"image_url": "A" * 10_000})
    assert status == 413 and "limit" in out["message"]
    status, out = post(base + "/v1/vinocr", {"image_url": "!!!"})
    assert status == 200 and out["success"] is False and "base64" in out["message"]


class _Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(1.5)
        self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


def test_requests_beyond_the_limit_get_429_and_private_urls_can_be_refused(
    serve: Callable[..., str],
) -> None:
    """A burst must not queue without bound: with one slot busy (a slow image URL), the next
    request is turned away at once; with allow_private_urls off, LAN URLs are refused."""
    slow = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    try:
        base = serve(max_concurrent=1)
        url = f"http://127.0.0.1:{slow.server_address[1]}/snap.jpg"
        first: dict[str, Any] = {}
        t = threading.Thread(
            target=lambda: first.update(r=post(base + "/v1/vinocr", {"image_url": url}))
        )
        t.start()
        time.sleep(0.5)
        status, out = post(base + "/v1/vinocr", {"image_url": sample_b64()})
        assert status == 429 and out["success"] is False
        t.join()
        assert first["r"][0] == 200 and "HTTP 404" in first["r"][1]["message"]

        strict = serve(allow_private_urls=False)
        status, out = post(strict + "/v1/vinocr", {"image_url": url})
        assert status == 200 and out["success"] is False
        assert "allow_private_urls" in out["message"]
    finally:
        slow.shutdown()


def test_openapi_and_health(serve: Callable[..., str]) -> None:
    """Clients and tools discover the endpoint from the OpenAPI description the app serves."""
    base = serve()
    with urllib.request.urlopen(base + "/openapi.json", timeout=10) as resp:
        spec = json.loads(resp.read())
    op = spec["paths"]["/v1/vinocr"]["post"]
    assert "image_url" in json.dumps(op["requestBody"])
    assert {"200", "401", "413", "429"} <= set(op["responses"])
    with urllib.request.urlopen(base + "/healthz", timeout=10) as resp:
        health = json.loads(resp.read())
    assert health["ok"] is True and "recognizer" in json.dumps(health["model"])


@pytest.mark.slow
def test_schemathesis_finds_no_contract_violations(
    serve: Callable[..., str], tmp_path: Path
) -> None:
    """Property-based requests from the OpenAPI description: no 5xx, every response matches
    its documented schema, and the documented status codes are the ones returned."""
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("schemathesis is not installed (dev extra)")
    base = serve()
    proc = subprocess.run(
        [
            exe,
            "run",
            base + "/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,"
            "content_type_conformance",
            "--max-examples",
            "40",
            "--seed",
            "7",
            "--generation-database",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # its report directory
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_cli_refuses_an_open_endpoint_off_loopback(cli: list[str]) -> None:
    """The installed command says what to change instead of exposing the reader."""
    from tests.conftest import run_cli

    proc = run_cli(cli, "serve", "--host", "0.0.0.0", "--port", "0")  # noqa: S104
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "keys_file" in err and "Traceback" not in err
