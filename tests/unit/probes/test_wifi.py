"""WiFi profiles (loading, validation, errors an operator can act on) and the wifi probe's logic.

The probe's requests go to a scripted agent (a dict of OIDs, through the ``_request`` seam that
the snmp probe's tests use too); polling each shipped profile against a real snmpd is in
tests/integration/test_wifi.py.
"""

from __future__ import annotations

import bisect
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pysnmp.proto import rfc1902
from pysnmp.proto.rfc1905 import EndOfMibView, NoSuchInstance

from netwatch.config import ConfigError, load_config
from netwatch.model import Outcome, Sample, Target
from netwatch.probes.base import ProbeResources
from netwatch.probes.snmpclient import Oid, fmt
from netwatch.probes.wifi import WifiConfig, WifiProbe, build
from netwatch.probes.wifiprofile import ProfileError, builtin_dir, catalog, load_file, parse_oid

SHIPPED = ("aruba-wlan", "cisco-wlc", "generic", "unifi")
#: Every OID of a vendor profile lies under the vendor's enterprise number (or the standard MIBs).
ROOTS = {
    "unifi": (1, 3, 6, 1, 4, 1, 41112),
    "cisco-wlc": (1, 3, 6, 1, 4, 1, 14179),
    "aruba-wlan": (1, 3, 6, 1, 4, 1, 14823),
}

UNIFI_RADIO = (1, 3, 6, 1, 4, 1, 41112, 1, 6, 1, 1, 1)
UNIFI_VAP = (1, 3, 6, 1, 4, 1, 41112, 1, 6, 1, 2, 1)
BSN_AP_NAME = (1, 3, 6, 1, 4, 1, 14179, 2, 2, 1, 1, 3)
BSN_AP_IF = (1, 3, 6, 1, 4, 1, 14179, 2, 2, 2, 1)
BSN_LOAD = (1, 3, 6, 1, 4, 1, 14179, 2, 2, 13, 1)


# -- profiles ----------------------------------------------------------------------------------


def test_shipped_profiles_load_and_cite_their_mib() -> None:
    """The four shipped profiles are valid; vendor ones read only their vendor's subtree."""
    found = catalog()
    assert found.broken == {}
    assert sorted(found.profiles) == list(SHIPPED)
    assert builtin_dir() is not None
    for name, profile in found.profiles.items():
        spec = profile.spec
        assert spec.vendor
        assert spec.mib
        assert spec.revision
        text = profile.path.read_text()
        assert spec.mib.split(",")[0] in text.split("vendor:")[0], f"{name}: the header cites the MIB file"
        root = ROOTS.get(name)
        if root is None:
            continue
        columns = [spec.radios.rows, *(c for _, col in spec.radios.fields.items() for c in col.chain())]
        if spec.controller:
            columns.append(spec.controller.ap_name)
        for column in columns:
            assert column.oid[: len(root)] == root, (name, fmt(column.oid))
            assert column.name, f"{name}: {fmt(column.oid)} has its MIB name for messages"


GOOD = """\
vendor: Example
mib: EXAMPLE-MIB
revision: "202401010000Z"
radios:
  rows: {oid: 1.3.6.1.4.1.99999.1.1.2, name: exRadioType}
  fields:
    up: {oid: 1.3.6.1.4.1.99999.1.1.3, map: {1: 1, 2: 0}}
    clients: {oid: 1.3.6.1.4.1.99999.1.1.4}
"""

BAD_PROFILES = [
    # (text, fragment of the error: file line, key path, message)
    (GOOD.replace("map: {1: 1, 2: 0}", "mpa: {1: 1, 2: 0}"), "x.yaml:7: radios.fields.up.mpa: unknown key 'mpa'"),
    (GOOD.replace("map: {1: 1, 2: 0}", "map: {1: up, 2: down}"), "x.yaml:7: radios.fields.up.map: up maps to 1"),
    (GOOD.replace(", map: {1: 1, 2: 0}", ""), "x.yaml:7: radios.fields.up: up needs a map"),
    (GOOD.replace("1.3.6.1.4.1.99999.1.1.4", "1.3.6.1.4.1.ex.1"), "x.yaml:8: radios.fields.clients.oid: "),
    (GOOD.replace("{oid: 1.3.6.1.4.1.99999.1.1.4}", "{oid: 1.3}"), "is a number, not an OID"),
    (GOOD.replace("vendor: Example\n", ""), "x.yaml:1: vendor: required key is missing"),
    (GOOD.replace("1.1.4}", "1.1.4, join: vaps, aggregate: sum}"), "radios.fields.clients.join: join 'vaps' is not"),
    (GOOD.replace("1.1.4}", "1.1.4, aggregate: sum}"), "x.yaml:8: radios.fields.clients: join and aggregate go"),
    (GOOD.replace("1.1.4}", "1.1.4, map: {1: many}}"), "x.yaml:8: radios.fields.clients.map: clients maps to whole"),
    (GOOD.replace("  fields:", "  fields: [\n"), "x.yaml:9: YAML syntax"),
    ("- just a list\n", "x.yaml:1: a profile is a mapping"),
]


@pytest.mark.parametrize(("text", "fragment"), BAD_PROFILES)
def test_bad_profiles_name_file_line_and_key(tmp_path: Path, text: str, fragment: str) -> None:
    """Each mistake is reported as file:line: key.path: message, as config errors are."""
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError) as caught:
        load_file(path)
    assert fragment in str(caught.value).replace(str(tmp_path) + "/", "")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Two broken keys in one file: both are listed, each with its own line."""
    path = tmp_path / "x.yaml"
    path.write_text(GOOD.replace("1.1.4}", "1.1.4, sclae: 2}").replace("revision: ", "revisoin: "))
    with pytest.raises(ProfileError) as caught:
        load_file(path)
    lines = [str(i).replace(str(tmp_path) + "/", "") for i in caught.value.issues]
    assert any(s.startswith("x.yaml:8: radios.fields.clients.sclae: unknown key 'sclae'") for s in lines), lines
    assert any(s.startswith("x.yaml:3: revisoin: unknown key") for s in lines), lines


def test_good_profile_loads_with_its_file_name(tmp_path: Path) -> None:
    """A profile's name is its file name; OIDs are parsed to tuples."""
    path = tmp_path / "example.yaml"
    path.write_text(GOOD)
    profile = load_file(path)
    assert profile.name == "example"
    assert profile.spec.radios.rows.oid == parse_oid(".1.3.6.1.4.1.99999.1.1.2")
    assert profile.fields() == ["up", "clients"]


def test_site_directory_adds_and_replaces_profiles(tmp_path: Path) -> None:
    """A site profile with a shipped name wins; new names are added; the shipped ones stay."""
    (tmp_path / "unifi.yaml").write_text(GOOD)
    (tmp_path / "example.yaml").write_text(GOOD)
    found = catalog(tmp_path)
    assert found.get("unifi").path == tmp_path / "unifi.yaml"
    assert found.get("example").spec.vendor == "Example"
    assert found.get("cisco-wlc").spec.vendor == "Cisco"


def test_an_edited_profile_is_read_again(tmp_path: Path) -> None:
    """The catalog cache follows the files: a fixed profile is valid on the next load (a reload)."""
    path = tmp_path / "example.yaml"
    path.write_text(GOOD.replace("vendor: Example", "vendor: ''"))
    assert "example" in catalog(tmp_path).broken
    path.write_text(GOOD)
    assert catalog(tmp_path).get("example").spec.vendor == "Example"


def test_unknown_profile_names_the_known_ones() -> None:
    """A typo gets a suggestion and the list of profiles, not a traceback."""
    issues = WifiConfig(community_file=SecretStr("c"), profile="unfi").problems()
    assert len(issues) == 1
    assert "unknown profile 'unfi' (did you mean 'unifi'?)" in issues[0]
    assert "known: aruba-wlan, cisco-wlc, generic, unifi" in issues[0]
    assert WifiConfig(community_file=SecretStr("c")).problems() == [
        "the wifi check needs a profile (known: aruba-wlan, cisco-wlc, generic, unifi)"
    ]
    assert WifiConfig(community_file=SecretStr("c"), profile="unifi").problems() == []


# -- the config file -----------------------------------------------------------------------------

CONFIG = """\
defaults:
  snmp: {community_file: community, timeout: 1s, retries: 0}
  kinds:
    wifi_ap: {checks: [ping, wifi], wifi: {profile: unifi}}
sites:
  - {id: park, name: Park, kind: park}
devices:
  - {id: ap-1, site: park, kind: wifi_ap, address: 127.0.0.3}
  - {id: ap-2, site: park, kind: wifi_ap, address: 127.0.0.4,
     wifi: {profile: cisco-wlc, agent: 127.0.0.9, ap: AP-PARK-2, community_file: wlc-community}}
"""


def write_config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "community").write_text("ap-community\n")
    (tmp_path / "wlc-community").write_text("wlc-community\n")
    path = tmp_path / "netwatch.yaml"
    path.write_text(text)
    return path


def test_wifi_check_takes_snmp_credentials_from_the_snmp_settings(tmp_path: Path) -> None:
    """defaults.snmp serves the wifi check too; a key under wifi: wins at its level."""
    loaded = load_config(write_config(tmp_path, CONFIG))
    checks = {d.id: {c.name: c.config for c in d.checks} for d in loaded.inventory.devices.values()}
    ap1, ap2 = checks["ap-1"]["wifi"], checks["ap-2"]["wifi"]
    assert isinstance(ap1, WifiConfig)
    assert isinstance(ap2, WifiConfig)
    assert (ap1.profile, ap1.timeout, ap1.retries) == ("unifi", 1.0, 0)
    assert ap1.community_file is not None
    assert ap1.community_file.get_secret_value() == "ap-community"
    assert ap2.community_file is not None
    assert ap2.community_file.get_secret_value() == "wlc-community"
    assert (ap2.profile, ap2.agent, ap2.ap) == ("cisco-wlc", "127.0.0.9", "AP-PARK-2")


def test_unknown_profile_in_the_config_names_line_and_known_profiles(tmp_path: Path) -> None:
    """check-config reports the device's line, the bad name and every profile it could be."""
    path = write_config(tmp_path, CONFIG.replace("profile: cisco-wlc", "profile: cisco"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (issue,) = caught.value.issues
    text = str(issue)
    assert text.startswith(f"{path}:10: devices[1].wifi: ap-2: unknown profile 'cisco'"), text
    assert "aruba-wlan, cisco-wlc, generic, unifi" in text


def test_wifi_check_without_credentials_is_a_config_error(tmp_path: Path) -> None:
    """No community anywhere: the wifi check says so, naming where it can be set."""
    path = write_config(tmp_path, CONFIG.replace("community_file: community, ", ""))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "ap-1: SNMP v2c needs community_file (set it in defaults.snmp, defaults.wifi" in str(caught.value)


# -- the probe, against a scripted agent -----------------------------------------------------------


class ScriptedWifi(WifiProbe):
    """A WifiProbe whose requests are answered from a dict, like an agent would."""

    def __init__(self, mib: dict[Oid, Any], cfg: WifiConfig, resources: ProbeResources, device: str = "ap-1") -> None:
        super().__init__(Target(device, "park", "wifi_ap", "192.0.2.10"), cfg, cfg.load_profile(), resources)
        self.mib = mib
        self.walked: list[Oid] = []

    async def _request(self, op: str, oids: Sequence[Oid], reps: int = 0) -> list[Any]:
        if op == "GET":
            return [(rfc1902.ObjectName(o), self.mib.get(o, NoSuchInstance())) for o in oids]
        keys = sorted(self.mib)
        cursors, out = list(oids), []
        self.walked.extend(o for o in oids if o in (BSN_AP_NAME,))
        for _ in range(reps):
            for col, cursor in enumerate(cursors):
                pos = bisect.bisect_right(keys, cursor)
                if pos >= len(keys):
                    out.append((rfc1902.ObjectName(cursor), EndOfMibView()))
                    continue
                cursors[col] = keys[pos]
                out.append((rfc1902.ObjectName(keys[pos]), self.mib[keys[pos]]))
        return out


def wifi_cfg(profile: str, **values: Any) -> WifiConfig:
    return WifiConfig.model_validate({"community_file": SecretStr("c"), "profile": profile, **values})


def unifi_mib(clients: tuple[int, int, int, int] = (3, 4, 10, 0), up: tuple[int, int, int, int] = (1, 1, 1, 1)) -> dict:
    """Two radios (ng, na), two SSIDs on each; VAP rows deliberately not in radio order."""
    mib: dict[Oid, Any] = {}
    for index, (name, code, util) in enumerate((("wifi0", "ng", 35), ("wifi1", "na", 62))):
        mib[(*UNIFI_RADIO, 2, index)] = rfc1902.OctetString(name)
        mib[(*UNIFI_RADIO, 3, index)] = rfc1902.OctetString(code)
        mib[(*UNIFI_RADIO, 6, index)] = rfc1902.Integer32(util)
    vaps = [("na", 36), ("ng", 6), ("na", 36), ("ng", 6)]
    order = (2, 0, 3, 1)  # clients tuple is (ng ssid1, ng ssid2, na ssid1, na ssid2)
    for vap, ((code, channel), which) in enumerate(zip(vaps, order, strict=True), start=1):
        mib[(*UNIFI_VAP, 4, vap)] = rfc1902.Integer32(channel)
        mib[(*UNIFI_VAP, 8, vap)] = rfc1902.Integer32(clients[which])
        mib[(*UNIFI_VAP, 9, vap)] = rfc1902.OctetString(code)
        mib[(*UNIFI_VAP, 22, vap)] = rfc1902.Integer32(up[which])
    return mib


def by_radio(outcome: Outcome) -> dict[str, Sample]:
    return {s.tags["radio"]: s for s in outcome.samples if s.measurement == "wifi_radio"}


def ap_sample(outcome: Outcome) -> Sample:
    (sample,) = [s for s in outcome.samples if s.measurement == "wifi"]
    return sample


async def test_unifi_clients_are_summed_over_the_ssids_of_each_radio() -> None:
    """VAPs join their radio by ng/na: clients sum, channel and up come from the VAPs."""
    outcome = await ScriptedWifi(unifi_mib(), wifi_cfg("unifi"), ProbeResources()).check()
    assert (outcome.up, outcome.reason, outcome.detail) == (True, "ok", "")
    radios = by_radio(outcome)
    assert radios["wifi0"].tags == {"device": "ap-1", "site": "park", "radio": "wifi0", "band": "2.4GHz"}
    assert radios["wifi0"].fields == {"up": 1, "channel": 6, "channel_util_pct": 35.0, "clients": 7}
    assert radios["wifi1"].fields == {"up": 1, "channel": 36, "channel_util_pct": 62.0, "clients": 10}
    assert ap_sample(outcome).fields == {"radios_up": 2, "radios_down": 0, "clients": 17, "channel_util_pct": 62.0}


async def test_a_radio_whose_ssids_are_all_down_is_down() -> None:
    """One radio down: still up, with the radio named; its load does not count as the AP's."""
    outcome = await ScriptedWifi(unifi_mib(up=(1, 1, 2, 2)), wifi_cfg("unifi"), ProbeResources()).check()
    assert (outcome.up, outcome.reason) == (True, "ok")
    assert outcome.detail == "1 of 2 radios down: wifi1 (5GHz)"
    assert ap_sample(outcome).fields["channel_util_pct"] == 35.0
    assert by_radio(outcome)["wifi1"].fields["up"] == 0


async def test_every_radio_down_is_bad_status_with_samples() -> None:
    """No radio serves: the check is down (bad_status) and still writes radios_up=0."""
    outcome = await ScriptedWifi(unifi_mib(up=(2, 2, 2, 2)), wifi_cfg("unifi"), ProbeResources()).check()
    assert (outcome.up, outcome.reason) == (False, "bad_status")
    assert outcome.detail == "no radio up: wifi0 (2.4GHz), wifi1 (5GHz) down"
    assert ap_sample(outcome).fields["radios_up"] == 0
    assert ap_sample(outcome).fields["radios_down"] == 2


async def test_zero_clients_is_up_and_said() -> None:
    """An empty park at night: up, clients=0, and the detail says no clients."""
    outcome = await ScriptedWifi(unifi_mib(clients=(0, 0, 0, 0)), wifi_cfg("unifi"), ProbeResources()).check()
    assert (outcome.up, outcome.reason, outcome.detail) == (True, "ok", "no clients associated")
    assert ap_sample(outcome).fields["clients"] == 0


async def test_wrong_profile_names_the_missing_oids() -> None:
    """A UniFi AP polled with the generic profile: bad_content naming what is missing, no exception."""
    outcome = await ScriptedWifi(unifi_mib(), wifi_cfg("generic"), ProbeResources()).check()
    assert (outcome.up, outcome.reason) == (False, "bad_content")
    assert "ifType (1.3.6.1.2.1.2.2.1.3)" in outcome.detail
    assert "ifOperStatus (1.3.6.1.2.1.2.2.1.8)" in outcome.detail
    assert "profile 'generic'" in outcome.detail


async def test_missing_column_of_the_right_table_is_bad_content() -> None:
    """Radios answer but clients do not: the profile does not fit this firmware; say which OID."""
    mib = {k: v for k, v in unifi_mib().items() if k[: len(UNIFI_VAP) + 1] != (*UNIFI_VAP, 8)}
    outcome = await ScriptedWifi(mib, wifi_cfg("unifi"), ProbeResources()).check()
    assert (outcome.up, outcome.reason) == (False, "bad_content")
    assert outcome.detail.startswith("the agent lacks unifiVapNumStations (1.3.6.1.4.1.41112.1.6.1.2.1.8)")
    assert by_radio(outcome)["wifi0"].fields["up"] == 1, "what was read is still written"


def wlc_mib(aps: int = 3) -> dict[Oid, Any]:
    """A controller with ``aps`` APs (MAC 00:11:22:33:44:0N), two radios each."""
    mib: dict[Oid, Any] = {}
    for n in range(1, aps + 1):
        mac = (0x00, 0x11, 0x22, 0x33, 0x44, n)
        mib[(*BSN_AP_NAME, *mac)] = rfc1902.OctetString(f"AP-PARK-{n}")
        for slot, (kind, channel) in enumerate(((1, 11), (2, 149))):
            mib[(*BSN_AP_IF, 2, *mac, slot)] = rfc1902.Integer32(kind)
            mib[(*BSN_AP_IF, 4, *mac, slot)] = rfc1902.Integer32(channel)
            mib[(*BSN_AP_IF, 12, *mac, slot)] = rfc1902.Integer32(2)
            mib[(*BSN_LOAD, 3, *mac, slot)] = rfc1902.Integer32(10 * n + slot)
            mib[(*BSN_LOAD, 4, *mac, slot)] = rfc1902.Integer32(n + slot)
    return mib


async def test_controller_rows_of_one_ap_only_and_one_name_walk_for_all_aps() -> None:
    """Three APs on one WLC: each gets its own radios; the AP list is walked once for all three."""
    resources = ProbeResources()
    mib = wlc_mib(3)
    probes = [
        ScriptedWifi(mib, wifi_cfg("cisco-wlc", agent="192.0.2.1", ap=f"AP-PARK-{n}"), resources, f"ap-{n}")
        for n in (1, 2, 3)
    ]
    outcomes = [await p.check() for p in probes]
    assert all(o.up for o in outcomes), [o.detail for o in outcomes]
    second = by_radio(outcomes[1])
    assert sorted(second) == ["0", "1"]
    assert second["0"].tags["band"] == "2.4GHz"
    assert second["1"].fields == {"up": 1, "channel": 149, "channel_util_pct": 21.0, "clients": 3}
    assert ap_sample(outcomes[1]).fields["clients"] == 2 + 3
    assert sum(len(p.walked) for p in probes) == 1


async def test_ap_given_as_mac_needs_no_lookup() -> None:
    """wifi.ap as a MAC address indexes the controller's rows directly (profile ap_index: mac)."""
    probe = ScriptedWifi(wlc_mib(2), wifi_cfg("cisco-wlc", ap="00:11:22:33:44:02"), ProbeResources())
    outcome = await probe.check()
    assert outcome.up, outcome.detail
    assert ap_sample(outcome).fields["clients"] == 2 + 3
    assert probe.walked == []


async def test_ap_not_on_the_controller_is_bad_status() -> None:
    """An AP that has not joined: down, and the detail says how many APs the WLC lists."""
    outcome = await ScriptedWifi(wlc_mib(2), wifi_cfg("cisco-wlc", ap="AP-GONE"), ProbeResources()).check()
    assert (outcome.up, outcome.reason) == (False, "bad_status")
    assert "AP 'AP-GONE' is not on the controller 192.0.2.10 (2 APs listed in bsnAPName" in outcome.detail


async def test_controller_profile_against_a_plain_ap_is_bad_content() -> None:
    """The cisco-wlc profile pointed at a UniFi AP: it lacks bsnAPName; the detail says so."""
    outcome = await ScriptedWifi(unifi_mib(), wifi_cfg("cisco-wlc"), ProbeResources()).check()
    assert (outcome.up, outcome.reason) == (False, "bad_content")
    assert "lacks bsnAPName (1.3.6.1.4.1.14179.2.2.1.1.3)" in outcome.detail


def test_build_refuses_an_unknown_profile() -> None:
    """The loader reports it with file and line; build() refuses too rather than poll blind."""
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        build(Target("ap", "park", "wifi_ap", "192.0.2.1"), wifi_cfg("nope"), ProbeResources())


def test_profile_text_is_readable(tmp_path: Path) -> None:
    """A profile written by hand with comments and flow mappings loads (the format of the shipped ones)."""
    path = tmp_path / "mine.yaml"
    path.write_text(textwrap.dedent(GOOD).replace("vendor: Example", "# my AP\nvendor: Example  # a comment"))
    assert load_file(path).spec.vendor == "Example"


def test_lab_agent_serves_any_oid_from_its_state(tmp_path: Path) -> None:
    """The lab agent answers a vendor subtree from the state's oids; [type, base, per_s] grows."""
    import io

    from netwatch.lab import snmpagent

    state = tmp_path / "s.json"
    snmpagent.write_state(
        state,
        {
            "epoch": 1000.0,
            "oids": {
                "1.3.6.1.4.1.41112.1.6.1.1.1.2.0": ["string", "wifi0"],
                ".1.3.6.1.4.1.41112.1.6.1.2.1.8.1": ["counter", 4294967290, 1.0],
                "1.3.6.1.4.1.14179.1": ["integer", 1],  # outside this process's root: not served
            },
        },
    )
    agent = snmpagent.Agent(state, [(1, 3, 6, 1, 4, 1, 41112)], clock=lambda: 1010.0)
    out = io.StringIO()
    commands = "get\n.1.3.6.1.4.1.41112.1.6.1.1.1.2.0\ngetnext\n.1.3.6.1.4.1.41112.1.6.1.1.1.2.0\n"
    snmpagent.serve(agent, io.StringIO(commands + "getnext\n.1.3.6.1.4.1.41112.1.6.1.2.1.8.1\n\n"), out)
    assert out.getvalue().splitlines() == [
        ".1.3.6.1.4.1.41112.1.6.1.1.1.2.0",
        "string",
        "wifi0",
        ".1.3.6.1.4.1.41112.1.6.1.2.1.8.1",
        "counter",
        "4",  # 2**32 - 6 + 10 s x 1/s, wrapped at 32 bits
        "NONE",
    ]


async def test_a_missing_joined_table_is_no_value_not_zero() -> None:
    """Without unifiVapTable's station counts, clients are missing (bad_content), not 0 clients."""
    mib = {k: v for k, v in unifi_mib().items() if k[: len(UNIFI_VAP) + 1] != (*UNIFI_VAP, 8)}
    outcome = await ScriptedWifi(mib, wifi_cfg("unifi"), ProbeResources()).check()
    assert "clients" not in by_radio(outcome)["wifi0"].fields
    assert "clients" not in ap_sample(outcome).fields


async def test_an_ap_that_leaves_the_controller_is_looked_up_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its rows vanish: first 'no radios', then (after the retry delay) 'not on the controller'."""
    from netwatch.probes import wifi

    monkeypatch.setattr(wifi, "LOOKUP_RETRY_S", 0.0)
    mib = wlc_mib(2)
    probe = ScriptedWifi(mib, wifi_cfg("cisco-wlc", ap="AP-PARK-2"), ProbeResources())
    assert (await probe.check()).up
    for key in [k for k in mib if k[-2:] in ((0x44, 2), (2, 0), (2, 1)) and 2 in k[-3:]]:
        del mib[key]
    first = await probe.check()
    assert (first.reason, first.detail) == (
        "bad_status",
        "the controller 192.0.2.10 lists no radios of AP 'AP-PARK-2' in bsnAPIfType (1.3.6.1.4.1.14179.2.2.2.1.2): "
        "it left, or is joining",
    )
    second = await probe.check()
    assert second.reason == "bad_status"
    assert "is not on the controller 192.0.2.10 (1 APs listed" in second.detail
