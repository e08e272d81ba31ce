"""A real mosquitto 2.0 broker on a free loopback port: anonymous, or with users and passwords.

It is the lab's broker (:class:`netwatch.lab.broker.MosquittoBroker`), where the config and its
pitfalls live (``set_tcp_nodelay``, ``user root`` for a root-owned password file, persistence on
SIGTERM); here it only becomes a fixture that fails the test, with the install command or the
end of mosquitto's log, when it cannot start. The broker can be stopped and started again on the
same port (``restart``), so a test can take it away and bring it back. Without persistence
unless a test sets ``persistence = True`` before starting it.

With ``tls`` (a server certificate from :class:`tests.servers.pki.TestCA`) it also listens with
TLS on a second port (``tls_port``, ``tls_url``); the plain listener stays, so a test's own
publisher needs no certificates. Logins apply to both (``per_listener_settings false``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from netwatch.lab.broker import BrokerError, MosquittoBroker
from tests.servers.common import free_port, require_binary
from tests.servers.pki import ServerCert, TestCA


@dataclass
class MosquittoServer(MosquittoBroker):
    """The lab's broker, failing the test instead of raising when it cannot start; optionally with TLS."""

    #: A certificate for 127.0.0.1: also listen with TLS on ``tls_port`` (0: a free one at start).
    tls: ServerCert | None = None
    tls_port: int = 0

    @property
    def tls_url(self) -> str:
        assert self.tls is not None, "this broker has no TLS listener"
        return f"mqtts://127.0.0.1:{self.tls_port}"

    def start(self, timeout: float = 10.0) -> None:
        if self.tls is not None and self.tls_port == 0:
            self.tls_port = free_port()
        try:
            super().start(timeout)
        except BrokerError as exc:
            pytest.fail(f"mosquitto did not start: {exc}", pytrace=False)

    def _config(self) -> str:
        if self.tls is None:
            return super()._config()
        # A listener's TLS options follow its "listener" line; the plain listener comes first.
        tls = [f"listener {self.tls_port} 127.0.0.1", f"certfile {self.tls.cert_file}", f"keyfile {self.tls.key_file}"]
        return super()._config() + "\n".join(tls) + "\n"

    def listening(self) -> bool:
        # With TLS, ready only once both listeners accept connections.
        if self.tls is None:
            return super().listening()
        if not super().listening():
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.5):
                return True
        except OSError:
            return False


def _server(workdir: Path, users: dict[str, str] | None = None, tls: ServerCert | None = None) -> MosquittoServer:
    require_binary("mosquitto", "mosquitto")
    return MosquittoServer(workdir, users=users or {}, persistence=False, tls=tls)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoServer]:
    """An anonymous broker the test may stop and start again."""
    server = _server(tmp_path / "mosquitto")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mosquitto_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """A broker that requires a login: user ``netwatch`` with password ``s3cret``."""
    server = _server(tmp_path_factory.mktemp("mosquitto-auth"), {"netwatch": "s3cret"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class TlsBroker:
    """A broker with a TLS listener, and the CA that signed its certificate."""

    server: MosquittoServer
    ca: TestCA


@pytest.fixture(scope="module")
def mosquitto_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """A broker that requires a login (``netwatch`` / ``s3cret``) and also listens with TLS, its
    certificate for 127.0.0.1 signed by a throwaway CA (``ca.cert_file``)."""
    workdir = tmp_path_factory.mktemp("mosquitto-tls")
    ca = TestCA(workdir / "pki")
    server = _server(workdir, {"netwatch": "s3cret"}, tls=ca.issue("127.0.0.1"))
    server.start()
    try:
        yield TlsBroker(server, ca)
    finally:
        server.stop()
