"""Fetching image URLs under a policy: http(s) only, size cap, timeout, redirects re-checked,
and optionally no private or loopback addresses.

Why the address rule is optional: on a gate or lot network the image URL is
usually a camera's snapshot on the LAN, so refusing private addresses by
default would break the common case.  A device that exposes ``read`` or
``/v1/vinocr`` to other people turns URL fetching into a way to probe its own
network (SSRF); there ``allow_private_urls = false`` refuses them, for the
first URL and for every redirect.  The check resolves the host and refuses if
any of its addresses is not global, and the address actually connected to is
checked again before a byte is sent, so a DNS answer that changes between the
two (rebinding) is refused too.  (Through an HTTP proxy, the proxy is what is
connected to: with the rule on, a proxy on a private address is refused.)
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

MAX_BYTES = 40 * 1024 * 1024
URL_TIMEOUT_S = 10.0


class FetchError(ValueError):
    """A URL could not be fetched under the policy; the message says why."""


@dataclass(frozen=True)
class UrlPolicy:
    """What ``fetch`` may do."""

    allow_private: bool = True
    timeout_s: float = URL_TIMEOUT_S
    max_bytes: int = MAX_BYTES
    max_redirects: int = 3


def _refuse(url: str, host: str, address: object) -> FetchError:
    return FetchError(
        f"{url}: host {host} resolves to {address}, a private, loopback or"
        " reserved address; refused because allow_private_urls is false"
    )


def check_url(url: str, policy: UrlPolicy) -> None:
    """Raise FetchError unless ``url`` is http(s) and, if required, resolves to public addresses."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise FetchError(f"{url}: only http and https URLs are supported")
    if not parts.hostname:
        raise FetchError(f"{url}: no host in URL")
    if policy.allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 0, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"{url}: cannot resolve host ({exc})") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global:
            raise _refuse(url, parts.hostname, address)


def _public_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    """``socket.create_connection``, refusing a peer that is not a global address."""
    sock = socket.create_connection(address, *args, **kwargs)
    peer = ipaddress.ip_address(str(sock.getpeername()[0]).split("%")[0])
    if not peer.is_global:
        sock.close()
        raise _refuse(f"{address[0]}:{address[1]}", address[0], peer)
    return sock


class _PublicHTTP(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _public_connection


class _PublicHTTPS(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _public_connection


class _PublicHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: Any) -> Any:
        return self.do_open(_PublicHTTP, req)


class _PublicHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: Any) -> Any:
        return self.do_open(_PublicHTTPS, req, context=self._context)  # type: ignore[attr-defined]


class _Redirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, policy: UrlPolicy) -> None:
        self.policy = policy
        self.max_redirections = policy.max_redirects  # type: ignore[misc]  # per policy

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> Any:
        check_url(newurl, self.policy)  # a public URL must not bounce to a private one
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(url: str, policy: UrlPolicy | None = None) -> bytes:
    """GET ``url`` under ``policy``; FetchError with an actionable message on any failure."""
    policy = policy or UrlPolicy()
    check_url(url, policy)
    handlers: list[Any] = [_Redirects(policy)]
    if not policy.allow_private:
        handlers += [_PublicHTTPHandler(), _PublicHTTPSHandler()]
    opener = urllib.request.build_opener(*handlers)
    req = urllib.request.Request(url, headers={"User-Agent": "vin-agent"})  # noqa: S310
    max_bytes = policy.max_bytes
    try:
        with opener.open(req, timeout=policy.timeout_s) as resp:
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"{url}: {declared} bytes is over the {max_bytes} byte limit")
            data = resp.read(max_bytes + 1)
    except FetchError:
        raise
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            raise FetchError(f"{url}: too many redirects (HTTP {exc.code})") from None
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, FetchError):
            raise reason from None
        raise FetchError(f"{url}: cannot fetch ({reason})") from None
    if len(data) > max_bytes:
        raise FetchError(f"{url}: response is over the {max_bytes} byte limit")
    return data
