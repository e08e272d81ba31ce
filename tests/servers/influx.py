"""Real time-series servers for the sink's integration tests: influxd 1.6 and VictoriaMetrics.

Both run as plain processes on free loopback ports with a temporary data directory, and are
stopped by their PID (terminate, then wait). influxd is the Debian ``influxdb`` package (1.6:
v1 ``/write`` only); VictoriaMetrics (Debian ``victoria-metrics``) takes the v2 write API.

``influxd`` and ``victoria_metrics`` are started once per session; ``influxd_own`` is a private
influxd for a test that stops and restarts it.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers.common import free_port, require_binary, stop, wait_until

_INFLUXD_CONF = """\
reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{dir}/meta"
[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  auth-enabled = {auth}
[ifql]
  enabled = false
[monitor]
  store-enabled = false
[logging]
  level = "warn"
"""


def _http(url: str, *, data: bytes | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class InfluxdServer:
    """One influxd 1.6 with its own config, data directory and loopback ports."""

    binary: str
    workdir: Path
    http_port: int = field(default_factory=free_port)
    rpc_port: int = field(default_factory=free_port)
    database: str = "netwatch"
    #: With auth: the admin user the fixture creates, as (username, password).
    admin: tuple[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _auth(self) -> dict[str, str]:
        return {"u": self.admin[0], "p": self.admin[1]} if self.admin else {}

    def start(self) -> None:
        """Start influxd (same ports and data as before, if it ran already) and wait for /ping."""
        conf = self.workdir / "influxdb.conf"
        conf.write_text(
            _INFLUXD_CONF.format(
                dir=self.workdir,
                rpc_port=self.rpc_port,
                http_port=self.http_port,
                auth="true" if self.admin else "false",
            )
        )
        log = self.workdir / "influxd.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen([self.binary, "-config", str(conf)], stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until(self.ping, timeout=20, what=f"influxd on port {self.http_port}", proc=self.proc)
        except pytest.fail.Exception:
            pytest.fail(f"influxd did not start; its log ends with:\n{_log_tail(log)}", pytrace=False)

    def stop(self) -> None:
        """Terminate influxd and wait for it to exit."""
        if self.proc is not None:
            stop(self.proc, timeout=10)
            self.proc = None

    def ping(self) -> bool:
        try:
            return _http(f"{self.url}/ping", timeout=1)[0] == 204
        except OSError:
            return False

    def execute(self, statement: str) -> dict[str, Any]:
        """Run a statement that changes something (CREATE, DROP) with POST /query."""
        form = urllib.parse.urlencode({"q": statement}).encode()
        status, body = _http(f"{self.url}/query?{urllib.parse.urlencode(self._auth())}", data=form)
        assert status == 200, (status, body)
        return dict(json.loads(body))

    def query(self, q: str, *, db: str | None = None) -> dict[str, Any]:
        """Run an InfluxQL query (GET /query, epoch=ns) and return the decoded JSON."""
        params = {"db": db or self.database, "q": q, "epoch": "ns", **self._auth()}
        status, body = _http(f"{self.url}/query?{urllib.parse.urlencode(params)}")
        assert status == 200, (status, body)
        return dict(json.loads(body))

    def series(self, q: str, *, db: str | None = None) -> list[dict[str, Any]]:
        """Return the series of the first statement's result (empty if there are none)."""
        result = self.query(q, db=db)["results"][0]
        assert "error" not in result, result["error"]
        return list(result.get("series", []))


@dataclass
class VictoriaMetricsServer:
    """One victoria-metrics single-node with its own data directory on a loopback port."""

    binary: str
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.workdir / "victoria-metrics.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"-httpListenAddr=127.0.0.1:{self.port}",
                    f"-storageDataPath={self.workdir / 'data'}",
                    "-retentionPeriod=100y",  # the tests write timestamps of their choosing
                    "-search.latencyOffset=0s",
                    "-loggerLevel=WARN",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(self.healthy, timeout=20, what=f"victoria-metrics on port {self.port}", proc=self.proc)
        except pytest.fail.Exception:
            pytest.fail(f"victoria-metrics did not start; its log ends with:\n{_log_tail(log)}", pytrace=False)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, timeout=10)
            self.proc = None

    def healthy(self) -> bool:
        try:
            return _http(f"{self.url}/health", timeout=1)[0] == 200
        except OSError:
            return False

    def export(
        self, match: str, *, ready: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        """Return the raw samples of series matching ``match`` (``/api/v1/export``), once ``ready``.

        Fresh data is not searchable at once (it took 7-10 s without a flush): flush, then poll
        until ``ready(rows)`` holds or ``timeout`` passes, and return the last rows either way.
        """
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            _http(f"{self.url}/internal/force_flush")
            status, body = _http(f"{self.url}/api/v1/export", data=urllib.parse.urlencode({"match[]": match}).encode())
            assert status == 200, (status, body)
            rows = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            if ready(rows):
                break
            time.sleep(0.2)
        return rows


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxdServer]:
    """A session-wide influxd 1.6 with database ``netwatch`` created."""
    server = InfluxdServer(require_binary("influxd", "influxdb"), tmp_path_factory.mktemp("influxd"))
    server.start()
    try:
        server.execute(f'CREATE DATABASE "{server.database}"')
        yield server
    finally:
        server.stop()


@pytest.fixture
def influxd_own(tmp_path: Path) -> Iterator[InfluxdServer]:
    """A private influxd (database ``netwatch``) the test may stop and start again."""
    workdir = tmp_path / "influxd"
    workdir.mkdir()
    server = InfluxdServer(require_binary("influxd", "influxdb"), workdir)
    server.start()
    try:
        server.execute(f'CREATE DATABASE "{server.database}"')
        yield server
    finally:
        server.stop()


@pytest.fixture
def influxd_auth(tmp_path: Path) -> Iterator[InfluxdServer]:
    """A private influxd with auth enabled: admin user, database ``netwatch``, and a user
    ``writer`` (password ``writer-pw``) with WRITE on it."""
    workdir = tmp_path / "influxd-auth"
    workdir.mkdir()
    server = InfluxdServer(require_binary("influxd", "influxdb"), workdir, admin=("admin", "admin-pw"))
    server.start()
    try:
        # The first user may be created without credentials; it must be an admin.
        server.execute("CREATE USER admin WITH PASSWORD 'admin-pw' WITH ALL PRIVILEGES")
        server.execute(f'CREATE DATABASE "{server.database}"')
        server.execute("CREATE USER writer WITH PASSWORD 'writer-pw'")
        server.execute(f'GRANT WRITE ON "{server.database}" TO writer')
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    """A session-wide VictoriaMetrics, ready at /health."""
    binary = require_binary("victoria-metrics", "victoria-metrics")
    server = VictoriaMetricsServer(binary, tmp_path_factory.mktemp("victoria-metrics"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
