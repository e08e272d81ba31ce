"""Config loading: every mistake is reported with file, line and key path, all at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netwatch.config import ConfigError, config_schema, load_config

DATA = Path(__file__).parent.parent / "data" / "config"
ROOT = Path(__file__).parent.parent.parent

BAD = [
    ("bad-unknown-key.yaml", "4: devices[0].intervall: unknown key 'intervall' (did you mean 'interval'?)"),
    ("bad-unknown-site.yaml", "4: devices[0].site: unknown site 'hqq' (did you mean 'hq'?)"),
    ("bad-duplicate-id.yaml", "5: devices[1].id: duplicate id 'r1' (first used at devices[0])"),
    ("bad-parent-cycle.yaml", "parent cycle: a -> c -> b -> a"),
    ("bad-unknown-parent.yaml", "5: devices[1].parents[0]: unknown parent device 'r2'"),
    ("bad-link-device.yaml", "6: links[0].b.device: unknown device 'r9'"),
    (
        "bad-inline-secret.yaml",
        "2: defaults.snmp.community: unknown key 'community': secrets are never written",
    ),
    (
        "bad-missing-secret-file.yaml",
        "2: defaults.snmp.community_file: secret file '/nonexistent/netwatch-community'",
    ),
    ("bad-no-community.yaml", "4: devices[0].snmp: r1: SNMP v2c needs community_file"),
    ("bad-duration.yaml", "2: defaults.interval: invalid duration '30 seconds'"),
    ("bad-unknown-check.yaml", "4: devices[0].checks[0]: unknown check 'pnig' (did you mean 'ping'?)"),
    ("bad-yaml-syntax.yaml", "3: YAML syntax"),
    ("bad-duplicate-key.yaml", "3: sites: duplicate key"),
    ("bad-timeout.yaml", "4: devices[0].timeout: timeout 10s must be shorter than interval 5s"),
    ("bad-address.yaml", "4: devices[0].address: '10.0.0.300 x' is neither an IP address nor a host name"),
    ("bad-v3-incomplete.yaml", "8: devices[0].snmp: r1: SNMPv3 authPriv needs priv_key_file"),
    ("bad-port-twice.yaml", "9: links[1].a.port: port r1:eth0 already ends span 's1'"),
    ("bad-budget.yaml", "7: devices[0].snmp: r1: snmp may take 8s (timeout 2s x 4 tries), which does not fit"),
    # icmplib waits out each reply in turn: a dead host takes 3 x 1 s + 2 x 0.2 s, not 1.4 s.
    ("bad-ping-budget.yaml", "7: devices[0].ping: r1: ping may take 3.4s (3 requests, each waited for up to 1s"),
    ("bad-dotted-address.yaml", "4: devices[0].address: '10.20.51' is not a valid IPv4 address"),
    ("bad-zero-timeout.yaml", "2: defaults.timeout: Input should be greater than 0"),
    ("bad-url-credentials.yaml", "2: influxdb.url: no user:password in the URL; use username_file"),
    ("bad-route-receiver.yaml", "5: routes[0].receivers[0]: unknown receiver 'nco' (did you mean 'noc'?)"),
    ("bad-maintenance-scope.yaml", "3: maintenance[0].scope.site: unknown site 'hqq' (did you mean 'hq'?)"),
    ("bad-rule-field.yaml", "3: alerts[0]: rule 'rx': measurement 'optics' has no field 'rx_dmb'"),
]


@pytest.mark.parametrize(("name", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_file_line_and_key(name: str, fragment: str) -> None:
    """Each bad file is refused with a message naming the file, the line and the key path."""
    with pytest.raises(ConfigError) as info:
        load_config(DATA / name)
    text = str(info.value)
    assert f"{DATA / name}:" in text
    assert fragment in text, text


def test_all_errors_are_reported_at_once() -> None:
    """Field errors and cross-reference errors of different entries come in one report."""
    with pytest.raises(ConfigError) as info:
        load_config(DATA / "bad-many.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == 3, lines
    assert "2: sites[0].location.lat" in lines[0]
    assert "4: devices[0].kind" in lines[1]
    assert "5: devices[1].site: unknown site 'nowhere'" in lines[2]


def test_secret_never_appears_in_errors_or_repr(tmp_path: Path) -> None:
    """A secret read from a file shows as stars in the parsed config and in error output."""
    (tmp_path / "community").write_text("s3cr3t-community\n")
    (tmp_path / "c.yaml").write_text(
        "defaults: {snmp: {community_file: community}}\nsites: [{id: hq, name: HQ}]\n"
        "devices: [{id: r1, site: hq, kind: router, address: 127.0.0.1, snmp: {version: '3'}}]\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "c.yaml")
    assert "s3cr3t" not in str(info.value)
    (tmp_path / "c.yaml").write_text(
        "defaults: {snmp: {community_file: community}}\nsites: [{id: hq, name: HQ}]\n"
        "devices: [{id: r1, site: hq, kind: router, address: 127.0.0.1}]\n"
    )
    loaded = load_config(tmp_path / "c.yaml")
    assert "s3cr3t" not in repr(loaded.config)
    snmp = loaded.inventory.devices["r1"].checks[1].config
    assert snmp.community_file.get_secret_value() == "s3cr3t-community"


def test_a_ca_file_that_is_no_ca_bundle_is_refused_at_load_for_every_user_of_it(tmp_path: Path) -> None:
    """Found only at connect time, a broken bundle stopped a receiver or the MQTT ingest; a reload
    could not refuse it. Now check-config names the file, line and key."""
    (tmp_path / "not-a-ca.pem").write_text("this is not a certificate\n")
    (tmp_path / "hook.key").write_text("a-webhook-secret-of-some-length")
    (tmp_path / "c.yaml").write_text(
        "influxdb: {url: 'https://127.0.0.1:8086', ca_file: not-a-ca.pem}\n"
        "mqtt: {host: 127.0.0.1, tls: true, ca_file: not-a-ca.pem}\n"
        "receivers: [{name: noc, kind: webhook, url: 'https://127.0.0.1/h', secret_file: hook.key,"
        " ca_file: not-a-ca.pem}]\n"
        "sites: [{id: hq, name: HQ}]\n"
        "devices: [{id: r1, site: hq, kind: router, address: 127.0.0.1, checks: [ping]}]\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "c.yaml")
    found = {
        (i.line, ".".join(str(p) for p in i.path)) for i in info.value.issues if "not a PEM CA bundle" in i.message
    }
    assert found == {(1, "influxdb.ca_file"), (2, "mqtt.ca_file"), (3, "receivers.0.webhook.ca_file")}


def test_relative_secret_is_found_in_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under systemd, a bare *_file name is read from $CREDENTIALS_DIRECTORY."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "snmp-community").write_text("from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = tmp_path / "etc" / "netwatch.yaml"
    cfg.parent.mkdir()
    cfg.write_text(
        "defaults: {snmp: {community_file: snmp-community}}\nsites: [{id: hq, name: HQ}]\n"
        "devices: [{id: r1, site: hq, kind: router, address: 127.0.0.1}]\n"
    )
    snmp = load_config(cfg).inventory.devices["r1"].checks[1].config
    assert snmp.community_file.get_secret_value() == "from-systemd"


def test_settings_layer_defaults_kind_then_device() -> None:
    """A device inherits defaults, then its kind's defaults, then its own keys win."""
    inv = load_config(DATA / "good.yaml").inventory
    assert [c.name for c in inv.devices["r1"].checks] == ["ping", "snmp"]
    assert [c.name for c in inv.devices["ap1"].checks] == ["ping"]
    assert inv.devices["ap1"].checks[0].interval == 60.0
    assert inv.devices["r1"].checks[0].interval == 30.0


def test_span_ends_are_polled_with_link_and_lessee() -> None:
    """A port that ends a span is polled even if the device does not list it, tagged with the span."""
    inv = load_config(DATA / "good.yaml").inventory
    ports = {p.name: p for p in inv.devices["sw1"].target.ports}
    assert ports["Gi1/0/1"].link == "span-1"
    assert ports["Gi1/0/1"].lessee == "univ"
    assert inv.links["span-1"].tags() == {
        "link": "span-1",
        "site_a": "hq",
        "site_b": "park",
        "lessee": "univ",
    }


def test_example_config_passes() -> None:
    """The shipped example city is valid: a ring of facilities, spans, leased spans and parks."""
    loaded = load_config(ROOT / "config" / "example.yaml")
    inv = loaded.inventory
    assert len([s for s in inv.sites.values() if s.kind in ("facility", "yard", "datacentre")]) >= 6
    assert len([link for link in inv.links.values() if link.lessee]) >= 3
    assert any(s.kind == "park" for s in inv.sites.values())


def test_schema_is_json_and_knows_the_keys() -> None:
    """The JSON Schema names the top-level sections and the per-kind probe settings."""
    schema = config_schema()
    json.dumps(schema)
    assert {"sites", "devices", "links", "influxdb", "defaults"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    defs = schema["$defs"]
    assert "snmp" in defs["DeviceConfig"]["properties"]
    assert "ping" in defs["DeviceConfig"]["properties"]


def test_snmp_version_may_be_written_as_a_number(tmp_path: Path) -> None:
    """`version: 3` (a YAML integer) means SNMPv3, `version: 2` means v2c."""
    (tmp_path / "k").write_text("key-material")
    (tmp_path / "c.yaml").write_text(
        "sites: [{id: hq, name: HQ}]\n"
        "devices:\n"
        "  - {id: r1, site: hq, kind: router, address: 127.0.0.1,\n"
        "     snmp: {version: 3, user: nw, auth_key_file: k, priv_key_file: k}}\n"
        "  - {id: r2, site: hq, kind: router, address: 127.0.0.2, snmp: {version: 2, community_file: k}}\n"
    )
    devices = load_config(tmp_path / "c.yaml").inventory.devices
    assert devices["r1"].checks[1].config.version == "3"
    assert devices["r2"].checks[1].config.version == "2c"
