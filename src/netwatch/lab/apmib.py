"""The lab's WiFi AP MIBs: radios laid out as each shipped wifi profile reads them.

One builder per profile in ``config/profiles``, each following the MIB its profile cites:

* :func:`unifi`: a UniFi AP's unifiRadioTable and unifiVapTable (two SSIDs per radio, the VAP rows
  interleaved across radios, so a poll has to join them by radio code, not by position);
* :func:`cisco_wlc`: a Cisco WLC's bsnAPTable, bsnAPIfTable and bsnAPIfLoadParametersTable,
  rows indexed by the AP's MAC address (and the radio slot);
* :func:`aruba`: an Aruba controller's wlsxWlanAPTable and wlsxWlanRadioTable, indexed the same way;
* :func:`generic`: IF-MIB interfaces of type ieee80211 (71) and IEEE802dot11-MIB channels.

The output is the lab agents' ``oids`` format (``{"1.3.6...": [type, value]}``, see
:mod:`netwatch.lab.snmpagent`), so the same tables serve both the snmpd-based test agent and the
lab's own (:mod:`netwatch.lab.simdevice`). The builders write what the radios say; what a radio
that is down reports (no clients) is the device model's business.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

Band = Literal["2.4GHz", "5GHz", "6GHz"]
Oids = dict[str, list[Any]]

UNIFI_RADIO: Final = "1.3.6.1.4.1.41112.1.6.1.1.1"
UNIFI_VAP: Final = "1.3.6.1.4.1.41112.1.6.1.2.1"
BSN_AP: Final = "1.3.6.1.4.1.14179.2.2.1.1"
BSN_AP_IF: Final = "1.3.6.1.4.1.14179.2.2.2.1"
BSN_LOAD: Final = "1.3.6.1.4.1.14179.2.2.13.1"
ARUBA_AP: Final = "1.3.6.1.4.1.14823.2.2.1.5.2.1.4.1"
ARUBA_RADIO: Final = "1.3.6.1.4.1.14823.2.2.1.5.2.1.5.1"
DOT11_DSSS: Final = "1.2.840.10036.4.5.1"
DOT11_OFDM: Final = "1.2.840.10036.4.11.1"
DOT11_DSSS_CHANNEL: Final = DOT11_DSSS + ".1"
DOT11_OFDM_CHANNEL: Final = DOT11_OFDM + ".1"

#: The table entries above: what follows an entry's column is a row index (for noSuchInstance).
TABLE_ENTRIES: Final[tuple[tuple[int, ...], ...]] = tuple(
    tuple(int(p) for p in entry.split("."))
    for entry in (UNIFI_RADIO, UNIFI_VAP, BSN_AP, BSN_AP_IF, BSN_LOAD, ARUBA_AP, ARUBA_RADIO, DOT11_DSSS, DOT11_OFDM)
)

#: bsnAPIfType: dot11b(1), dot11a(2), dot116ghz(6)
_CISCO_TYPE: Final[dict[str, int]] = {"2.4GHz": 1, "5GHz": 2, "6GHz": 6}
#: ArubaPhyType: dot11a(1), dot11g(3), dot11ax6ghz(6)
_ARUBA_TYPE: Final[dict[str, int]] = {"2.4GHz": 3, "5GHz": 1, "6GHz": 6}
#: unifiRadioRadio: ng and na; the MIB names no 6 GHz code, so such a radio gets none the profile maps
_UNIFI_CODE: Final[dict[str, str]] = {"2.4GHz": "ng", "5GHz": "na", "6GHz": "6e"}
_MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


@dataclass(eq=False)
class SimRadio:
    """One radio of an AP: ``index`` is its slot (0, 1 ...), ``util_pct`` its channel utilisation."""

    index: int
    band: Band
    channel: int
    clients: int = 0
    util_pct: int = 0
    up: bool = True


@dataclass(eq=False)
class ControllerAp:
    """An AP that joined a controller: its name and MAC address there, and its radios."""

    name: str
    mac: str
    radios: list[SimRadio] = field(default_factory=list)
    joined: bool = True

    def __post_init__(self) -> None:
        if not _MAC.match(self.mac):
            raise ValueError(f"AP {self.name!r}: MAC address {self.mac!r} is not six colon-separated hex bytes")


def mac_index(mac: str) -> str:
    """Return a MAC address as the six sub-identifiers controllers index AP rows by."""
    return ".".join(str(int(part, 16)) for part in mac.split(":"))


def _hex(mac: str) -> str:
    # pass_persist's "octet" type: hex digits, for the MacAddress columns
    return " ".join(mac.split(":")).lower()


def unifi(radios: Sequence[SimRadio], ssids: Sequence[str] = ("CityWiFi", "Staff")) -> Oids:
    """A UniFi AP: a unifiRadioTable row per radio, a unifiVapTable row per SSID and radio.

    VAPs are numbered SSID by SSID (every radio's first SSID, then every radio's second), so one
    radio's VAP rows are not adjacent. A radio's clients are spread over its SSIDs (the first
    gets the rest of an uneven split); its VAPs are up when it is.
    """
    oids: Oids = {}
    for radio in radios:
        row = radio.index
        oids[f"{UNIFI_RADIO}.1.{row}"] = ["integer", row]
        oids[f"{UNIFI_RADIO}.2.{row}"] = ["string", f"wifi{radio.index}"]
        oids[f"{UNIFI_RADIO}.3.{row}"] = ["string", _UNIFI_CODE[radio.band]]
        oids[f"{UNIFI_RADIO}.6.{row}"] = ["integer", int(radio.util_pct)]
    vap = 0
    for n, essid in enumerate(ssids):
        for radio in radios:
            vap += 1
            share = radio.clients // len(ssids)
            clients = radio.clients - share * (len(ssids) - 1) if n == 0 else share
            oids[f"{UNIFI_VAP}.4.{vap}"] = ["integer", radio.channel]
            oids[f"{UNIFI_VAP}.6.{vap}"] = ["string", essid]
            oids[f"{UNIFI_VAP}.8.{vap}"] = ["integer", clients]
            oids[f"{UNIFI_VAP}.9.{vap}"] = ["string", _UNIFI_CODE[radio.band]]
            oids[f"{UNIFI_VAP}.22.{vap}"] = ["integer", 1 if radio.up else 2]
    return oids


def cisco_wlc(aps: Sequence[ControllerAp]) -> Oids:
    """A Cisco WLC: bsnAPTable by MAC, and per radio slot bsnAPIfTable and its load table.

    APs that left the controller (``joined`` false) are not listed, as on a real controller.
    """
    oids: Oids = {}
    for ap in aps:
        if not ap.joined:
            continue
        mac = mac_index(ap.mac)
        oids[f"{BSN_AP}.1.{mac}"] = ["octet", _hex(ap.mac)]
        oids[f"{BSN_AP}.3.{mac}"] = ["string", ap.name]
        oids[f"{BSN_AP}.6.{mac}"] = ["integer", 1]  # bsnAPOperationStatus associated(1)
        for radio in ap.radios:
            row = f"{mac}.{radio.index}"
            oids[f"{BSN_AP_IF}.1.{row}"] = ["integer", radio.index]
            oids[f"{BSN_AP_IF}.2.{row}"] = ["integer", _CISCO_TYPE[radio.band]]
            oids[f"{BSN_AP_IF}.4.{row}"] = ["integer", radio.channel]
            oids[f"{BSN_AP_IF}.12.{row}"] = ["integer", 2 if radio.up else 1]
            oids[f"{BSN_AP_IF}.15.{row}"] = ["counter", radio.clients]
            oids[f"{BSN_LOAD}.3.{row}"] = ["integer", int(radio.util_pct)]
            oids[f"{BSN_LOAD}.4.{row}"] = ["integer", radio.clients]
    return oids


def aruba(aps: Sequence[ControllerAp]) -> Oids:
    """An Aruba controller: wlsxWlanAPTable by MAC, wlsxWlanRadioTable by MAC and radio number.

    The radio table has no status: a radio that is up has active BSSIDs (two, one per SSID), one
    that is down (or an air monitor) has none. APs that left the controller are not listed.
    """
    oids: Oids = {}
    for ap in aps:
        if not ap.joined:
            continue
        mac = mac_index(ap.mac)
        oids[f"{ARUBA_AP}.1.{mac}"] = ["octet", _hex(ap.mac)]
        oids[f"{ARUBA_AP}.3.{mac}"] = ["string", ap.name]
        for radio in ap.radios:
            row = f"{mac}.{radio.index}"
            oids[f"{ARUBA_RADIO}.1.{row}"] = ["integer", radio.index]
            oids[f"{ARUBA_RADIO}.2.{row}"] = ["integer", _ARUBA_TYPE[radio.band]]
            oids[f"{ARUBA_RADIO}.3.{row}"] = ["integer", radio.channel]
            oids[f"{ARUBA_RADIO}.6.{row}"] = ["integer", int(radio.util_pct)]
            oids[f"{ARUBA_RADIO}.7.{row}"] = ["integer", radio.clients]
            oids[f"{ARUBA_RADIO}.9.{row}"] = ["integer", 2 if radio.up else 0]
    return oids


def generic(radios: Sequence[SimRadio], first_if_index: int) -> tuple[list[dict[str, Any]], Oids]:
    """An AP with only standard MIBs: radios as ieee80211 interfaces ``wlan<index>``, numbered from
    ``first_if_index``, and their channels in IEEE802dot11-MIB (2.4 GHz in the DSSS table, 5 and
    6 GHz in the OFDM table). Returns interface rows (the agents' state format) and OIDs."""
    interfaces: list[dict[str, Any]] = []
    oids: Oids = {}
    for n, radio in enumerate(radios):
        if_index = first_if_index + n
        name = f"wlan{radio.index}"
        interfaces.append(
            {
                "index": if_index,
                "name": name,
                "descr": name,
                "type": 71,
                "speed_mbps": 1200 if radio.band == "2.4GHz" else 2400,
                "admin": 1,
                "oper": 1 if radio.up else 2,
                "hc": True,
            }
        )
        table = DOT11_DSSS_CHANNEL if radio.band == "2.4GHz" else DOT11_OFDM_CHANNEL
        oids[f"{table}.{if_index}"] = ["integer", radio.channel]
    return interfaces, oids
