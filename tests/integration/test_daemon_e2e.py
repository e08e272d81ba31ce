"""End to end: `netwatch run` polls a real snmpd and loopback ICMP and writes to a real influxd.

The daemon runs as a real process (the installed console script), so signals, logging and the
exit code are the ones systemd will see. Everything is read back with InfluxQL by the names in
the data contract.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers.influx import InfluxdServer
from tests.servers.snmpd import SnmpServer

NETWATCH = str(Path(sys.executable).parent / "netwatch")


def write_config(path: Path, influx_url: str, database: str, snmp: SnmpServer, *, interval: str = "2s") -> None:
    path.write_text(
        f"""
instance: e2e
state_dir: {path.parent / "state"}
influxdb: {{url: "{influx_url}", database: {database}, flush_interval: 500ms, batch_size: 500}}
scheduler: {{stats_interval: 2s}}
api: {{listen: "127.0.0.1:0"}}
log: {{format: json, level: info}}
defaults:
  interval: {interval}
  timeout: 1500ms
  ping: {{count: 2, spacing: 50ms, wait: 500ms}}
  snmp: {{community_file: {snmp.community_file}, port: {snmp.port}, timeout: 500ms, retries: 1}}
sites:
  - {{id: city-hall, name: City Hall, kind: facility, location: {{lat: 34.1478, lon: -118.1436}}}}
  - {{id: villa-parke, name: Villa Parke, kind: park}}
devices:
  - {{id: core-ch, site: city-hall, kind: router, address: 127.0.0.1, ports: [xe-0/0/4]}}
  - id: sw-vp
    site: villa-parke
    kind: switch
    address: 127.0.0.1
    parents: [core-ch]
    snmp: {{version: "3", user: nw-sha256-aes256, auth_protocol: SHA256, priv_protocol: AES256,
            auth_key_file: {snmp.auth_key_file}, priv_key_file: {snmp.priv_key_file}}}
  - {{id: ap-vp-1, site: villa-parke, kind: wifi_ap, address: 127.0.0.3, parents: [sw-vp]}}
links:
  - {{id: span-ch-vp, a: {{device: core-ch, port: xe-0/0/1}}, b: {{device: sw-vp, port: xe-0/0/2}},
     length_km: 3.1, lessee: university, sla: 99.95}}
"""
    )


@pytest.fixture
def e2e_db(influxd: InfluxdServer, request: pytest.FixtureRequest) -> str:
    name = "e2e_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")[:40]
    influxd.execute(f'DROP DATABASE "{name}"')
    influxd.execute(f'CREATE DATABASE "{name}"')
    return name


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[[Path], subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(config: Path) -> subprocess.Popen[bytes]:
        log = (tmp_path / "netwatch.log").open("wb")
        proc = subprocess.Popen([NETWATCH, "run", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for(what: str, fetch: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fetch()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


def last(influxd: InfluxdServer, db: str, field: str, measurement: str, where: str) -> Any:
    series = influxd.series(f'SELECT last("{field}") FROM "{measurement}" WHERE {where}', db=db)
    return series[0]["values"][0][1] if series else None


def open_incidents(api_url: str, severity: str) -> float:
    """Return ``netwatch_incidents_open`` for a severity with nothing holding it, scraped from /metrics."""
    with urllib.request.urlopen(api_url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        if family.name == "netwatch_incidents_open"
        for s in family.samples
        if s.labels["severity"] == severity and s.labels["held"] == "none"
    )


def log_events(tmp_path: Path) -> list[dict[str, Any]]:
    events = []
    for line in (tmp_path / "netwatch.log").read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def test_daemon_writes_the_backbone_to_influxdb(
    tmp_path: Path,
    influxd: InfluxdServer,
    e2e_db: str,
    snmp_agent: SnmpServer,
    daemon: Callable[[Path], subprocess.Popen[bytes]],
) -> None:
    """Within a couple of intervals every contract measurement is in InfluxDB with the right values;
    a port going down takes the span down; SIGHUP with a broken file keeps the old config;
    SIGTERM exits 0."""
    snmp_agent.rebase()
    snmp_agent.iface("xe-0/0/1").update(in_octets_per_s=125_000_000, out_octets_per_s=12_500_000)
    snmp_agent.iface("xe-0/0/2").update(in_octets_per_s=1_250_000, in_errors_per_s=50)
    snmp_agent.write()
    config = tmp_path / "netwatch.yaml"
    write_config(config, influxd.url, e2e_db, snmp_agent)
    started = time.monotonic()
    proc = daemon(config)

    def q(field: str, measurement: str, where: str) -> Any:
        return last(influxd, e2e_db, field, measurement, where)

    # Ping for every device, one interval after start.
    for device in ("core-ch", "sw-vp", "ap-vp-1"):
        assert wait_for(f"ping of {device}", lambda d=device: q("up", "ping", f"device = '{d}'")) == 1
    first_write_s = time.monotonic() - started
    assert first_write_s < 10

    # Rates need two polls: in_bps of xe-0/0/1 is 125 MB/s * 8 = 1 Gbit/s, 10 % of 10G.
    in_bps = wait_for("interface rates", lambda: q("in_bps", "interface", "device = 'core-ch' AND port = 'xe-0/0/1'"))
    assert in_bps == pytest.approx(1e9, rel=0.1)
    assert q("in_util_pct", "interface", "device = 'core-ch' AND port = 'xe-0/0/1'") == pytest.approx(10.0, rel=0.1)
    assert q("out_bps", "interface", "device = 'core-ch' AND port = 'xe-0/0/1'") == pytest.approx(1e8, rel=0.1)
    # The v3 (SHA-256/AES-256) device polled the same agent: errors per second on its span port.
    assert wait_for(
        "v3 error rate", lambda: q("in_errors_ps", "interface", "device = 'sw-vp' AND port = 'xe-0/0/2'")
    ) == pytest.approx(50.0, rel=0.1)
    assert q("speed_bps", "interface", "device = 'core-ch' AND port = 'xe-0/0/1'") == 10_000_000_000
    assert q("oper_up", "interface", "device = 'core-ch' AND port = 'xe-0/0/4'") == 0

    # Span ends carry the span and lessee as tags; a port the config did not name is not polled.
    tags = influxd.series('SHOW TAG VALUES FROM "interface" WITH KEY = "port"', db=e2e_db)
    assert sorted(v[1] for v in tags[0]["values"]) == ["xe-0/0/1", "xe-0/0/2", "xe-0/0/4"]
    span_rows = influxd.series(
        "SELECT last(in_bps) FROM interface WHERE link = 'span-ch-vp' AND lessee = 'university' GROUP BY device",
        db=e2e_db,
    )
    assert {s["tags"]["device"] for s in span_rows} == {"core-ch", "sw-vp"}

    # Optics, mapped to the right port through ENTITY-MIB, scale and precision honoured.
    assert q("rx_dbm", "optics", "device = 'core-ch' AND port = 'xe-0/0/1'") == pytest.approx(-3.1)
    assert q("rx_dbm", "optics", "device = 'sw-vp' AND port = 'xe-0/0/2'") == pytest.approx(-14.2)
    assert q("uptime_s", "system", "device = 'core-ch'") >= 86_400
    assert q("state", "device", "device = 'core-ch'") == "up"
    assert wait_for("span state", lambda: q("state", "link", "link = 'span-ch-vp'")) == "up"
    assert wait_for("self-observation", lambda: q("checks_run", "netwatch", "component = 'scheduler'")) > 0
    assert q("points_written", "netwatch", "component = 'sink' AND instance = 'e2e'") > 0

    # The health API (port picked at start, logged) answers like the data says.
    listening = next(e for e in log_events(tmp_path) if e.get("event") == "api_listening")
    with urllib.request.urlopen(listening["url"] + "/healthz", timeout=5) as resp:
        assert json.loads(resp.read())["status"] == "ok"
    with urllib.request.urlopen(listening["url"] + "/readyz", timeout=5) as resp:
        assert json.loads(resp.read())["ready"] is True
    with urllib.request.urlopen(listening["url"] + "/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    assert 'netwatch_points_written_total{instance="e2e"}' in metrics
    assert 'netwatch_devices{instance="e2e",state="up"} 3.0' in metrics
    assert 'netwatch_incidents_open{held="none",instance="e2e",severity="critical"} 0.0' in metrics
    assert 'netwatch_silences_active{instance="e2e"} 0.0' in metrics
    # No receivers, mqtt or traps configured: no such series (rather than zeros that look healthy).
    for absent in ("netwatch_outbox_", "netwatch_broker_connected", "netwatch_mqtt_", "netwatch_traps_"):
        assert absent not in metrics

    # The far end's port goes down: the span follows within an interval or two.
    snmp_agent.set_interface("xe-0/0/2", oper=2)
    wait_for("span down", lambda: q("state", "link", "link = 'span-ch-vp'") == "down")
    assert q("up", "link", "link = 'span-ch-vp'") == 0
    # ...and a NOC scraping /metrics sees a critical incident that nothing holds.
    assert wait_for("the span's incident on /metrics", lambda: open_incidents(listening["url"], "critical")) == 1

    # SIGHUP with a broken file: errors logged, the old config keeps polling.
    good = config.read_text()
    config.write_text(good.replace("kind: router", "kind: rooter"))
    proc.send_signal(signal.SIGHUP)
    wait_for(
        "reload failure logged",
        lambda: any(e.get("event") == "config_reload_failed" for e in log_events(tmp_path)),
    )
    failed = next(e for e in log_events(tmp_path) if e.get("event") == "config_reload_failed")
    assert any("kind" in err and ":" in err for err in failed["errors"])
    before = q("checks_run", "netwatch", "component = 'scheduler'")
    wait_for("polling goes on", lambda: (q("checks_run", "netwatch", "component = 'scheduler'") or 0) > before)
    assert proc.poll() is None

    # SIGTERM: a clean exit, status 0.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    events = [e.get("event") for e in log_events(tmp_path)]
    assert "netwatch_stopping" in events
    # No secret in the log.
    text = (tmp_path / "netwatch.log").read_text()
    for secret in ("nw-test-community", "auth-key-0123", "priv-key-4567"):
        assert secret not in text


def test_check_config_and_probe_commands(tmp_path: Path, influxd: InfluxdServer, snmp_agent: SnmpServer) -> None:
    """check-config says ok or lists errors with exit 1; probe prints what it would write and writes nothing."""
    config = tmp_path / "netwatch.yaml"
    write_config(config, influxd.url, "probe_nothing_written", snmp_agent)
    ok = subprocess.run([NETWATCH, "check-config", str(config)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "3 devices, 1 spans" in ok.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        config.read_text().replace("kind: router", "kind: rooter").replace("site: villa-parke", "site: nowhere")
    )
    out = subprocess.run([NETWATCH, "check-config", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1
    assert f"{bad}:" in out.stderr
    assert "devices[0].kind" in out.stderr
    assert "unknown site 'nowhere'" in out.stderr

    probe = subprocess.run(
        [NETWATCH, "probe", "-c", str(config), "core-ch", "--rounds", "2", "--spacing", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert "snmp   up   ok" in probe.stdout
    assert "interface" in probe.stdout
    assert "port=xe-0/0/1" in probe.stdout
    assert "in_bps=" in probe.stdout
    assert "optics" in probe.stdout
    assert "rx_dbm=-3.1" in probe.stdout
    assert "nw-test-community" not in probe.stdout + probe.stderr
    as_json = subprocess.run(
        [NETWATCH, "probe", "-c", str(config), "core-ch", "--json"], capture_output=True, text=True, timeout=30
    )
    records = [json.loads(line) for line in as_json.stdout.splitlines()]  # nothing but JSON on stdout
    assert {r["measurement"] for r in records if "measurement" in r} >= {"ping", "system", "interface", "optics"}

    typo = tmp_path / "typo.yaml"
    typo.write_text(config.read_text().replace("ports: [xe-0/0/4]", "ports: [xe-0/0/44]"))
    out = subprocess.run([NETWATCH, "probe", "-c", str(typo), "core-ch"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "no such port(s) on the device: xe-0/0/44" in out.stderr

    databases = influxd.series("SHOW DATABASES")
    assert ["probe_nothing_written"] not in databases[0]["values"]
