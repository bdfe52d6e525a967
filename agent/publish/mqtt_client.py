"""The paho client for one broker: credentials, TLS, last will, and plain-language
logs of why a connection does not work.

Connection problems are logged once when they start (then as a reminder at
most every ``REMIND_S``), so a broker that is down for a day does not flood
the journal. The password is read from ``password_file`` at every connect and
never logged.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import sys
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from agent.publish.mqtt_config import MqttConfig, MqttConfigError

logger = logging.getLogger(__name__)
_paho_logger = logging.getLogger(f"{__name__}.paho")

# paho's own limit of unacknowledged QoS>0 messages (the delivery window is smaller).
PAHO_INFLIGHT = 20
# Repeat a standing connection problem in the log at most this often.
REMIND_S = 600.0
# CONNACK reasons that mean "wrong credentials" (MQTT 3.1.1 codes 4 and 5 map here).
_AUTH_REFUSED = (0x86, 0x87)


class BrokerLink:
    """Builds and configures the paho client; owns its connection-problem logging.

    ``on_connect``, ``on_disconnect`` and ``on_publish`` are left to the publisher.
    """

    def __init__(self, config: MqttConfig, client_id: str, will_topic: str) -> None:
        self.config = config
        self._streak = 0  # failed attempts since the last accepted connection
        self._last_log = -float("inf")
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=(
                MQTTProtocolVersion.MQTTv5
                if config.protocol == "5"
                else MQTTProtocolVersion.MQTTv311
            ),
        )
        # A bug in a callback must be logged, not kill paho's network thread.
        client.suppress_exceptions = True
        client.on_log = self._on_log
        client.max_inflight_messages_set(PAHO_INFLIGHT)
        client.reconnect_delay_set(config.reconnect_min_s, config.reconnect_max_s)
        client.will_set(will_topic, b"offline", qos=1, retain=True)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect_fail = self._on_connect_fail
        self.client = client

    def setup_tls(self) -> None:
        """Load CA and client certificates; raises MqttConfigError if they are unusable."""
        cfg = self.config
        try:
            self.client.tls_set(
                ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                keyfile=str(cfg.key_file) if cfg.key_file else None,
                cert_reqs=ssl.CERT_NONE if cfg.tls_insecure else ssl.CERT_REQUIRED,
            )
        except (OSError, ValueError) as exc:
            raise MqttConfigError(
                f"cannot load the TLS files (ca_file={cfg.ca_file}, cert_file={cfg.cert_file},"
                f" key_file={cfg.key_file}): {exc}"
            ) from exc
        if cfg.tls_insecure:
            logger.warning(
                "TLS certificate verification is OFF (tls_insecure) for %s: anyone on the"
                " network path can impersonate the broker",
                cfg.broker,
            )

    def connected(self) -> None:
        """Log an accepted connection and end the failure streak."""
        if self._streak:
            logger.info(
                "connected to MQTT broker %s after %d failed attempt(s)",
                self.config.broker,
                self._streak,
            )
        else:
            logger.info("connected to MQTT broker %s", self.config.broker)
        self._streak = 0
        self._last_log = -float("inf")

    def refused(self, reason_code: ReasonCode) -> None:
        """Log a CONNACK refusal; paho retries with backoff by itself."""
        cfg = self.config
        if reason_code.value in _AUTH_REFUSED:
            self._problem(
                logging.ERROR,
                "broker %s refused the login for user %s: %s; check username and"
                " password_file (%s)",
                cfg.broker,
                cfg.username or "(anonymous)",
                str(reason_code).lower(),
                cfg.password_path() or "not set",
            )
        else:
            self._problem(
                logging.ERROR, "broker %s refused the connection: %s", cfg.broker, reason_code
            )

    def _problem(self, level: int, msg: str, *args: Any) -> None:
        self._streak += 1
        now = time.monotonic()
        if self._streak == 1 or now - self._last_log >= REMIND_S:
            self._last_log = now
            suffix = f" (attempt {self._streak})" if self._streak > 1 else ""
            logger.log(level, "%s%s", msg % args, suffix)
        else:
            logger.debug(msg, *args)

    # paho callbacks (network thread)

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, buf: str) -> None:
        # paho reports a lost link or even a clean shutdown ("Client is not connected")
        # at ERROR; our callbacks already explain connection trouble in plain words, so
        # only an exception raised inside one of our callbacks (a bug) stays an error.
        if level == mqtt.MQTT_LOG_ERR and buf.startswith("Caught exception"):
            _paho_logger.error("%s", buf)
        else:
            _paho_logger.debug("%s", buf)

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        # Read at every attempt so a rotated password is picked up without a restart.
        cfg = self.config
        if cfg.username is None:
            return
        password = None
        try:
            secret = cfg.read_password()
            password = secret.get_secret_value() if secret is not None else None
        except (OSError, ValueError) as exc:
            # Not "no password": a broker that lets the user in without one but then
            # drops its publishes by ACL would still PUBACK them (MQTT 3.1.1), and the
            # outbox would delete events that never arrived.  A throw-away password
            # makes the broker refuse the login, so the events wait in the outbox.
            logger.error(
                "cannot read password_file %s (%s); not logging in until it can be read,"
                " events are kept in the outbox",
                cfg.password_path(),
                exc,
            )
            password = "unreadable-password-file-" + secrets.token_hex(16)
        client.username_pw_set(cfg.username, password)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this from inside its `except OSError`, so the error is at hand.
        exc = sys.exc_info()[1]
        cfg = self.config
        if isinstance(exc, ssl.SSLCertVerificationError):
            self._problem(
                logging.ERROR,
                "TLS: refusing broker %s, its certificate failed verification (%s); check"
                " ca_file (%s) and that the certificate is issued for %r",
                cfg.broker,
                exc.verify_message or exc,
                cfg.ca_file or "system CAs",
                cfg.host,
            )
        elif isinstance(exc, ssl.SSLError):
            self._problem(logging.ERROR, "TLS handshake with broker %s failed: %s", cfg.broker, exc)
        else:
            self._problem(
                logging.WARNING,
                "cannot reach MQTT broker %s (%s); retrying every %d-%d s, events are kept"
                " in the outbox",
                cfg.broker,
                exc or "connection failed",
                cfg.reconnect_min_s,
                cfg.reconnect_max_s,
            )
