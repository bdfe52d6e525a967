"""A real mosquitto broker on a free loopback port, for tests.

Each broker gets its own directory with a generated config, an optional
password file (``mosquitto_passwd -b``) and an optional TLS listener using a
throw-away CA made with the ``openssl`` command. It can be stopped, started
again on the same ports (restart tests) and killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

HOST = "127.0.0.1"


def mosquitto_binary() -> str | None:
    """Path of the mosquitto daemon; /usr/sbin is often not on a normal user's PATH."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def free_port() -> int:
    """A port nobody listens on right now (the broker binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TestPki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    __test__ = False  # not a test class, whatever its name says

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_test_pki(directory: Path) -> TestPki:
    """Generate the certificates with the openssl CLI (EC P-256: fast to make)."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is needed to make test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=vin-agent test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    for name, usage, san in (
        ("server", "serverAuth", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"),
        ("client", "clientAuth", ""),
    ):
        (directory / f"{name}.ext").write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            f"extendedKeyUsage={usage}\n"
            "authorityKeyIdentifier=keyid\n" + san
        )
        _openssl(
            "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=vin-agent test {name}", cwd=directory,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
            "-extfile", f"{name}.ext", cwd=directory,
        )  # fmt: skip
    return TestPki(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )


class MosquittoBroker:
    """One mosquitto process; ``port`` is plain MQTT, ``tls_port`` (if any) is TLS.

    Options: ``users`` (name -> password; anonymous access is then off),
    ``pki`` (adds a TLS listener), ``persistence``, ``acl`` (acl_file text).
    """

    def __init__(
        self,
        directory: Path,
        *,
        users: dict[str, str] | None = None,
        pki: TestPki | None = None,
        require_client_cert: bool = True,
        persistence: bool = False,
        acl: str | None = None,
    ) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed")
        self.binary = binary
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = free_port()
        self.tls_port = free_port() if pki else None
        self.log_file = directory / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        lines = [
            # Off by default: sessions and queued messages vanish with a restart,
            # which is what the outage tests must cope with. On for tests that
            # need a subscriber's session to survive a restart.
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {directory}/",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "per_listener_settings false",
            # Running as root, mosquitto would otherwise switch to the "mosquitto"
            # user, who cannot read the files in the test's tmp directory.
            "user root" if os.geteuid() == 0 else "",
        ]
        if users:
            passwd = directory / "passwd"
            passwd.write_text("")
            for user, password in users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(passwd), user, password],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:
            (directory / "acl").write_text(acl)
            lines.append(f"acl_file {directory / 'acl'}")
        lines.append(f"listener {self.port} {HOST}")
        if pki:
            lines += [
                f"listener {self.tls_port} {HOST}",
                f"cafile {pki.ca}",
                f"certfile {pki.server_cert}",
                f"keyfile {pki.server_key}",
                f"require_certificate {'true' if require_client_cert else 'false'}",
            ]
        self.config_file = directory / "mosquitto.conf"
        self.config_file.write_text("\n".join(line for line in lines if line) + "\n")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start (again, on the same ports) and wait until every listener accepts."""
        if self.running:
            return
        stderr = (self.directory / "stderr.log").open("ab")
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_file)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        stderr.close()
        deadline = time.monotonic() + timeout
        for port in (self.port, self.tls_port):
            if port is None:
                continue
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited at start:\n{self.log_text()}")
                try:
                    socket.create_connection((HOST, port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        self.kill()
                        raise RuntimeError(
                            f"mosquitto did not listen on {port}:\n{self.log_text()}"
                        ) from None
                    time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown (SIGTERM): clients see the connection close."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """Abrupt death (SIGKILL)."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        parts = []
        for name in ("mosquitto.log", "stderr.log"):
            path = self.directory / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


Messages = list[mqtt.MQTTMessage]


class Collector:
    """A paho subscriber that records every message it gets."""

    def __init__(
        self,
        host: str,
        port: int,
        topic: str = "vin/#",
        *,
        client_id: str = "",
        persistent: bool = False,
        v5: bool = True,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.messages: Messages = []
        self._cond = threading.Condition()
        subscribed = threading.Event()
        if v5 and not persistent:
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id, protocol=mqtt.MQTTv5)
        else:
            # A persistent session (clean_session false) keeps queuing for us while
            # we are disconnected, and across a broker restart with persistence on.
            c = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id, clean_session=not persistent
            )
        if username is not None:
            c.username_pw_set(username, password)
        c.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 1)
        c.connect(host, port)
        c.loop_start()
        assert subscribed.wait(5), "subscriber got no SUBACK"
        self.client = c

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[Messages], bool], timeout: float = 10.0) -> Messages:
        with self._cond:
            self._cond.wait_for(lambda: pred(self.messages), timeout)
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def event_ids(messages: Messages) -> list[str]:
    return [json.loads(m.payload)["id"] for m in messages if m.topic.endswith("/events")]


def payloads(messages: Messages, topic: str) -> list[bytes]:
    return [m.payload for m in messages if m.topic == topic]


def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
