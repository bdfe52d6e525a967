"""Settings for the MQTT publisher, validated up front so mistakes fail at start-up.

The password is never part of the configuration: it lives in ``password_file``
(systemd ``LoadCredential=`` puts it under ``$CREDENTIALS_DIRECTORY``), is read
at every connect so it can be rotated without a restart, and is handled as a
``SecretStr`` until it is given to paho.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from agent.publish.topics import check_prefix

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883


class MqttConfigError(ValueError):
    """The MQTT settings cannot work (e.g. a TLS file cannot be loaded)."""


class MqttConfig(BaseModel):
    """How to reach the broker. Give ``url`` or ``host`` (and optionally the rest)."""

    # hide_input_in_errors: a rejected url may hold a password, and pydantic
    # otherwise repeats the input in the error message (and so in logs).
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    url: str | None = Field(
        default=None,
        description="Broker as mqtt://[user@]host[:port] or mqtts://[user@]host[:port] (TLS);"
        " fills host, port and username. A password here is refused: use password_file.",
    )
    host: str | None = Field(default=None, description="Broker host name or IP address.")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Broker port; default 1883, or 8883 with TLS."
    )
    username: str | None = Field(default=None, description="User name to log in with.")
    password_file: Path | None = Field(
        default=None,
        description="File whose first line is the password, read at every connect. A relative"
        " path is resolved against $CREDENTIALS_DIRECTORY (systemd LoadCredential=) when set.",
    )
    client_id: str | None = Field(
        default=None, description="MQTT client id; default vin-agent-<device_id>."
    )
    protocol: Literal["5", "3.1.1"] = Field(default="5", description="MQTT protocol version.")
    keepalive: int = Field(
        default=60, ge=5, le=65535, description="Seconds between keep-alive pings."
    )
    tls: bool = Field(default=False, description="Use TLS; implied by an mqtts:// url.")
    ca_file: Path | None = Field(
        default=None,
        description="CA certificate(s) (PEM) that signed the broker's certificate;"
        " default: the system's trusted CAs.",
    )
    cert_file: Path | None = Field(
        default=None, description="Client certificate (PEM) for TLS client authentication."
    )
    key_file: Path | None = Field(
        default=None, description="Private key (PEM) of cert_file, if not inside cert_file."
    )
    tls_insecure: bool = Field(
        default=False,
        description="Do not verify the broker's certificate or host name. Test setups only:"
        " anyone on the network path can then impersonate the broker.",
    )
    prefix: str = Field(default="vin", description="First topic level(s) of every topic.")
    homeassistant_discovery: bool = Field(
        default=False,
        description="On every connect, publish (retained) a Home Assistant MQTT discovery"
        " config per camera: a sensor showing the camera's last VIN.",
    )
    homeassistant_prefix: str = Field(
        default="homeassistant",
        description="Home Assistant's discovery prefix (set in its MQTT integration).",
    )
    outbox_max_messages: int = Field(
        default=100_000,
        ge=1,
        description="Events kept on disk while the broker is unreachable; beyond it the oldest"
        " are dropped (counted in stats as outbox.dropped_full).",
    )
    outbox_max_age_s: float = Field(
        default=7 * 86400,
        gt=0,
        description="Events older than this are dropped undelivered (stats: outbox.dropped_age).",
    )
    reconnect_min_s: int = Field(
        default=1, ge=1, description="First reconnect delay in seconds (doubles per attempt)."
    )
    reconnect_max_s: int = Field(
        default=60, ge=1, description="Longest reconnect delay in seconds."
    )

    @field_validator("host", "username", "client_id")
    @classmethod
    def _no_control_chars(cls, value: str | None) -> str | None:
        if value is not None and (value == "" or any(ord(c) < 32 or ord(c) == 127 for c in value)):
            raise ValueError("must be non-empty and free of control characters")
        return value

    @field_validator("prefix", "homeassistant_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        return check_prefix(value)

    @model_validator(mode="before")
    @classmethod
    def _refuse_password_in_url(cls, data: Any) -> Any:
        url = data.get("url") if isinstance(data, dict) else None
        if isinstance(url, str):
            parts = urlsplit(url)
            if parts.password is not None:
                # Redact the input in place: when this model is nested in another one,
                # that model's error message repeats the input, and would leak the secret.
                user = parts.username or ""
                netloc = f"{user}:***@{parts.netloc.rpartition('@')[2]}"
                data["url"] = parts._replace(netloc=netloc).geturl()
                raise ValueError(
                    "url must not contain a password (it would end up in config files,"
                    " process listings and logs); put the password in a file and set"
                    " password_file"
                )
        return data

    @model_validator(mode="after")
    def _resolve(self) -> Self:
        if self.url is not None:
            self._apply_url(self.url)
        if not self.host:
            raise ValueError("set the broker: url (mqtt://host) or host")
        if (self.ca_file or self.cert_file or self.key_file or self.tls_insecure) and not self.tls:
            # Connecting in plain text when someone set up certificates would be a
            # silent security downgrade; make them say which they meant.
            raise ValueError(
                "ca_file, cert_file, key_file or tls_insecure is set but TLS is off:"
                " use an mqtts:// url or tls: true"
            )
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file (the client certificate)")
        if self.password_file and not self.username:
            raise ValueError("password_file needs username (brokers expect both)")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if self.port is None:
            self.port = DEFAULT_TLS_PORT if self.tls else DEFAULT_PORT
        return self

    def _apply_url(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("mqtt", "mqtts"):
            raise ValueError("url must start with mqtt:// or mqtts://")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("url must be mqtt[s]://[user@]host[:port] with nothing after it")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"url has an invalid port: {exc}") from None
        from_url = {
            "host": parts.hostname,
            "port": port,
            "username": unquote(parts.username) if parts.username else None,
        }
        if not from_url["host"]:
            raise ValueError("url has no host")
        for name, value in from_url.items():
            current = getattr(self, name)
            if value is not None and current is not None and current != value:
                raise ValueError(f"{name} {current!r} disagrees with the url ({value!r})")
            if current is None:
                setattr(self, name, value)
        if scheme == "mqtts":
            if "tls" in self.model_fields_set and not self.tls:
                raise ValueError("an mqtts:// url needs TLS, but tls is false")
            self.tls = True

    @property
    def broker(self) -> str:
        """host:port for messages (never includes credentials)."""
        host = self.host or ""
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def password_path(self) -> Path | None:
        """Where the password is read from, after systemd credential resolution."""
        if self.password_file is None:
            return None
        path = self.password_file.expanduser()
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not path.is_absolute() and creds:
            path = Path(creds) / path
        return path

    def read_password(self) -> SecretStr | None:
        """The password (first line of password_file), or None without a password_file.

        Raises OSError if the file cannot be read and ValueError if it is empty.
        """
        path = self.password_path()
        if path is None:
            return None
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines or lines[0] == "":
            raise ValueError(f"password_file {path} is empty")
        return SecretStr(lines[0])
