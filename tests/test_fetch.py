"""URL fetching under a policy, against a real HTTP server the test starts on loopback."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from agent.fetch import FetchError, UrlPolicy, check_url, fetch

BODY = b"x" * 5000


class _Handler(http.server.BaseHTTPRequestHandler):
    requests = 0  # requests this server answered, across instances

    def do_GET(self) -> None:
        type(self).requests += 1
        routes = {
            "/ok": lambda: self._send(BODY),
            "/hop": lambda: self._redirect("/ok"),
            "/loop": lambda: self._redirect("/loop"),
            "/to-ftp": lambda: self._redirect("ftp://127.0.0.1/x"),
            "/slow": lambda: (time.sleep(2), self._send(BODY)),
            "/liar": lambda: self._send(BODY, declared=10**10),
        }
        route = routes.get(self.path)
        if route is None:
            self.send_error(404)
        else:
            route()

    def _send(self, body: bytes, declared: int | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(declared or len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def _redirect(self, to: str) -> None:
        self.send_response(302)
        self.send_header("Location", to)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.integration
def test_redirects_are_followed_and_bounded(server: str) -> None:
    """A redirect to the image works; a redirect loop ends with a clear error, not a hang."""
    assert fetch(server + "/hop") == BODY
    with pytest.raises(FetchError, match="redirect"):
        fetch(server + "/loop")


@pytest.mark.integration
def test_a_redirect_is_checked_like_the_first_url(server: str) -> None:
    """Redirects are re-checked: an http URL must not bounce the fetch to another scheme."""
    with pytest.raises(FetchError, match="only http and https"):
        fetch(server + "/to-ftp")


@pytest.mark.integration
def test_size_cap_and_timeout(server: str) -> None:
    """Oversize bodies (declared or actual) and slow servers are refused within the limits."""
    with pytest.raises(FetchError, match="byte limit"):
        fetch(server + "/ok", UrlPolicy(max_bytes=1000))
    with pytest.raises(FetchError, match="byte limit"):
        fetch(server + "/liar")
    t0 = time.monotonic()
    with pytest.raises(FetchError, match="cannot fetch"):
        fetch(server + "/slow", UrlPolicy(timeout_s=0.3))
    assert time.monotonic() - t0 < 1.5


@pytest.mark.integration
def test_private_addresses_refused_only_when_the_policy_says_so(server: str) -> None:
    """The default fetches LAN cameras; allow_private=False refuses loopback before connecting."""
    assert fetch(server + "/ok") == BODY
    with pytest.raises(FetchError, match="allow_private_urls is false"):
        fetch(server + "/ok", UrlPolicy(allow_private=False))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.jpg",
        "http://localhost/x.jpg",
        "http://10.1.2.3/x.jpg",
        "http://192.168.1.20/snap.jpg",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x.jpg",
        "http://0.0.0.0/x.jpg",
    ],
)
def test_non_global_addresses_are_refused(url: str) -> None:
    """Every non-public address class a server could be tricked into fetching is refused."""
    with pytest.raises(FetchError, match="allow_private_urls is false"):
        check_url(url, UrlPolicy(allow_private=False))


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x/", "http:///nohost"])
def test_only_http_urls_with_a_host(url: str) -> None:
    """Schemes other than http(s), and URLs without a host, never reach urllib."""
    with pytest.raises(FetchError):
        check_url(url, UrlPolicy())


@pytest.mark.integration
def test_dns_rebinding_is_refused_at_connect(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host that resolves to a public address for the check and to loopback for the
    connection (DNS rebinding) is refused before the request is sent.

    No rebinding DNS server can run here, so the resolver is the stand-in: the
    first lookup answers a public address, every later one the loopback server.
    """
    port = int(server.rsplit(":", 1)[1])
    real = socket.getaddrinfo
    answers: list[str] = []

    def rebinding(host: str, *args: object, **kwargs: object) -> list:
        if host != "rebind.example":
            return real(host, *args, **kwargs)  # type: ignore[arg-type]
        address = "93.184.216.34" if not answers else "127.0.0.1"
        answers.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    _Handler.requests = 0
    with pytest.raises(FetchError, match=r"127\.0\.0\.1.*allow_private_urls is false"):
        fetch(f"http://rebind.example:{port}/ok", UrlPolicy(allow_private=False))
    assert answers[0] == "93.184.216.34" and "127.0.0.1" in answers[1:]
    assert _Handler.requests == 0  # refused before a byte of the request was sent
