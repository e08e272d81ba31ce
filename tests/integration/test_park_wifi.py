"""End to end: `netwatch run` checks a park's captive portal and its APs and writes the park's
public WiFi state to a real influxd; the portal or every AP failing takes it down and pages.

The portal is a real HTTPS server (a plain process, certificates from a test CA given as the
check's ca_file); the APs are checked over HTTP against the same server, whose answers the test
switches, so an AP can fail without leaving loopback.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.influx import InfluxdServer
from tests.servers.portal import PortalProcess

NETWATCH = str(Path(sys.executable).parent / "netwatch")


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[PortalProcess]:
    server = PortalProcess(tmp_path / "portal")
    server.directory.mkdir()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def db(influxd: InfluxdServer) -> str:
    influxd.execute('DROP DATABASE "park_wifi"')
    influxd.execute('CREATE DATABASE "park_wifi"')
    return "park_wifi"


def write_config(path: Path, influx_url: str, db: str, portal: PortalProcess) -> None:
    plain = f"http://127.0.0.1:{portal.http_port}"
    path.write_text(
        f"""
instance: e2e-wifi
state_dir: {path.parent / "state"}
influxdb: {{url: "{influx_url}", database: {db}, flush_interval: 200ms}}
api: {{listen: "127.0.0.1:0"}}
log: {{format: json, level: info}}
defaults:
  interval: 1s
  timeout: 900ms
  http: {{timeout: 700ms}}
  portal: {{timeout: 700ms, ca_file: "{portal.ca_file}", expect_body: "Welcome to City WiFi"}}
alerts:
  - {{name: park_wifi_down, for: 0s}}
sites:
  - {{id: eoc, name: Emergency Operations Centre, kind: datacentre}}
  - {{id: villa-parke, name: Villa Parke, kind: park}}
devices:
  - {{id: ap-vp-1, site: villa-parke, kind: wifi_ap, address: 127.0.0.1, checks: [http],
     http: {{url: "{plain}/switch/ap1"}}}}
  - {{id: ap-vp-2, site: villa-parke, kind: wifi_ap, address: 127.0.0.1, checks: [http],
     http: {{url: "{plain}/switch/ap2"}}}}
  - {{id: portal-vp, site: villa-parke, kind: server, address: 127.0.0.1, checks: [portal],
     portal: {{url: "{plain}/via-https/portal"}}}}
"""
    )


def wait_for(what: str, fetch: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fetch()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_park_wifi_follows_portal_and_aps(
    tmp_path: Path, influxd: InfluxdServer, db: str, portal: PortalProcess
) -> None:
    """Up while the portal works and an AP is up; down (and paging) when the portal fails while the
    APs are fine, and when every AP fails while the portal is fine; up again once both are back."""
    config = tmp_path / "netwatch.yaml"
    write_config(config, influxd.url, db, portal)
    log = (tmp_path / "netwatch.log").open("wb")
    proc = subprocess.Popen([NETWATCH, "run", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:

        def wifi() -> dict[str, Any] | None:
            rows = influxd.series(
                "SELECT last(up) AS up, last(state) AS state, last(aps_up) AS aps_up, last(aps_total) AS aps_total,"
                " last(portal_up) AS portal_up FROM wifi_service WHERE site = 'villa-parke' AND time > now() - 2s",
                db=db,
            )
            if not rows:
                return None
            return dict(zip(rows[0]["columns"][1:], rows[0]["values"][0][1:], strict=True))

        def wifi_is(**want: Any) -> Callable[[], bool]:
            return lambda: (row := wifi()) is not None and all(row[k] == v for k, v in want.items())

        wait_for("the park's WiFi up", wifi_is(up=1, state="up", aps_up=2, aps_total=2, portal_up=1))
        # The portal check itself: one redirect to the HTTPS login page, its certificate, its content.
        portal_rows = influxd.series(
            "SELECT last(up), last(redirects), last(cert_days_left), last(body_match) FROM http "
            "WHERE device = 'portal-vp' AND check = 'portal' AND reason = 'ok'",
            db=db,
        )
        _, up, redirects, days, matched = portal_rows[0]["values"][0]
        assert (up, redirects, matched) == (1, 1, 1)
        assert 89 < days <= 90

        # The login page fails while both APs are fine: down.
        portal.set("portal", 503)
        wait_for("portal down: WiFi down", wifi_is(up=0, state="down", aps_up=2, portal_up=0))
        assert (
            influxd.series(
                "SELECT last(status_code) FROM http WHERE device = 'portal-vp' AND reason = 'bad_status'", db=db
            )[0]["values"][0][1]
            == 503
        )
        portal.set("portal", 200)
        wait_for("portal back: WiFi up", wifi_is(up=1, state="up", portal_up=1))

        # One AP down: still up. Both down while the portal is fine: down.
        portal.set("ap1", 503)
        wait_for("one AP down, WiFi still up", wifi_is(up=1, aps_up=1, portal_up=1))
        portal.set("ap2", 503)
        wait_for("no AP up: WiFi down", wifi_is(up=0, state="down", aps_up=0, portal_up=1))
        portal.set("ap1", 200)
        wait_for("an AP back: WiFi up", wifi_is(up=1, state="up", aps_up=1))

        def pages() -> list[str]:
            rows = influxd.series(
                "SELECT state FROM alert WHERE rule = 'park_wifi_down' AND entity = 'villa-parke'", db=db
            )
            return [v[1] for v in rows[0]["values"]] if rows else []

        wait_for("both outages paged and resolved", lambda: pages() == ["firing", "resolved"] * 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
