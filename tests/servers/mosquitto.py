"""A real mosquitto 2.0 broker on a free loopback port: anonymous, or with users and passwords.

``set_tcp_nodelay true`` matters: without it each QoS 1 round trip takes ~40 ms (Nagle and
delayed ACKs). With users, the password file is made by ``mosquitto_passwd`` and the broker runs
with ``user root``: started as root, mosquitto would otherwise drop to the ``mosquitto`` user and
then fail to read the root-owned 0600 password file. The broker can be stopped and started again
on the same port (``restart``), so a test can take it away and bring it back.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers.common import free_port, require_binary, stop, wait_until


@dataclass
class MosquittoServer:
    """One mosquitto with its own config; anonymous unless ``users`` are given."""

    binary: str
    workdir: Path
    users: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    #: Keep sessions and queued QoS 1 messages across a restart (saved on SIGTERM).
    persistence: bool = False
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _config(self) -> str:
        lines = [
            "per_listener_settings false",
            f"listener {self.port} 127.0.0.1",
            "persistence true" if self.persistence else "persistence false",
            f"persistence_location {self.workdir}/",
            "set_tcp_nodelay true",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "user root",
        ]
        if self.users:
            passwd = self.workdir / "passwd"
            tool = require_binary("mosquitto_passwd", "mosquitto")
            passwd.unlink(missing_ok=True)
            for i, (user, password) in enumerate(self.users.items()):
                flags = ["-c", "-b"] if i == 0 else ["-b"]
                subprocess.run([tool, *flags, str(passwd), user, password], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self._config())
        log = self.workdir / "mosquitto.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until(self.listening, timeout=10, what=f"mosquitto on port {self.port}", proc=self.proc)
        except pytest.fail.Exception:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            pytest.fail(f"mosquitto did not start; its log ends with:\n{tail}", pytrace=False)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False


def _server(workdir: Path, users: dict[str, str] | None = None) -> MosquittoServer:
    workdir.mkdir(parents=True, exist_ok=True)
    return MosquittoServer(require_binary("mosquitto", "mosquitto"), workdir, users=users or {})


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
