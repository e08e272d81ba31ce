"""A real Prometheus Alertmanager (Debian ``prometheus-alertmanager``) on a free loopback port.

Its one route forwards every alert to a loopback webhook (``hook_url``) that the test runs, with
``group_wait`` 1 s and ``group_interval`` 2 s so firing and resolved notifications arrive within
seconds. ``--cluster.listen-address=`` (empty) turns off the gossip listener, which otherwise
binds 0.0.0.0:9094 and leaves the cluster "settling"; the web listener is bound to loopback.
A fresh Alertmanager per test, so no alert carries over.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers.common import free_port, require_binary, stop, wait_until

_CONFIG = """\
route:
  receiver: netwatch-hook
  group_by: ['alertname', 'instance']
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
- name: netwatch-hook
  webhook_configs:
  - url: {hook_url}
    send_resolved: true
    max_alerts: 0
"""


@dataclass
class AlertmanagerServer:
    """One Alertmanager with its own config and storage, forwarding to ``hook_url``."""

    binary: str
    workdir: Path
    port: int = field(default_factory=free_port)
    hook_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hook_url(self) -> str:
        return f"http://127.0.0.1:{self.hook_port}/hook"

    def start(self) -> None:
        conf = self.workdir / "am.yml"
        conf.write_text(_CONFIG.format(hook_url=self.hook_url))
        log = self.workdir / "alertmanager.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={conf}",
                    f"--storage.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(self.ready, timeout=20, what=f"prometheus-alertmanager on port {self.port}", proc=self.proc)
        except pytest.fail.Exception:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            pytest.fail(f"prometheus-alertmanager did not start; its log ends with:\n{tail}", pytrace=False)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, timeout=10)
            self.proc = None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def alerts(self) -> list[dict[str, Any]]:
        """Return ``GET /api/v2/alerts`` (active, silenced and inhibited alerts)."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as resp:
            return list(json.loads(resp.read()))


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[AlertmanagerServer]:
    """A fresh Alertmanager forwarding to ``hook_url`` (start a WebhookServer on ``hook_port``)."""
    workdir = tmp_path / "alertmanager"
    workdir.mkdir()
    server = AlertmanagerServer(require_binary("prometheus-alertmanager", "prometheus-alertmanager"), workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
