"""A real mosquitto 2.0 broker on a free loopback port: anonymous, or with users and passwords.

It is the lab's broker (:class:`netwatch.lab.broker.MosquittoBroker`), where the config and its
pitfalls live (``set_tcp_nodelay``, ``user root`` for a root-owned password file, persistence on
SIGTERM); here it only becomes a fixture that fails the test, with the install command or the
end of mosquitto's log, when it cannot start. The broker can be stopped and started again on the
same port (``restart``), so a test can take it away and bring it back. Without persistence
unless a test sets ``persistence = True`` before starting it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from netwatch.lab.broker import BrokerError, MosquittoBroker
from tests.servers.common import require_binary


class MosquittoServer(MosquittoBroker):
    """The lab's broker, failing the test instead of raising when it cannot start."""

    def start(self, timeout: float = 10.0) -> None:
        try:
            super().start(timeout)
        except BrokerError as exc:
            pytest.fail(f"mosquitto did not start: {exc}", pytrace=False)


def _server(workdir: Path, users: dict[str, str] | None = None) -> MosquittoServer:
    require_binary("mosquitto", "mosquitto")
    return MosquittoServer(workdir, users=users or {}, persistence=False)


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
