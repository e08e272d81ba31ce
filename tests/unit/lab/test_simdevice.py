"""The simulated devices' values over time: traffic, wraps, faults, optics, radios.

Everything is read through the device's MIB view at explicit wall times, as the agent would
answer a request then, so a history of faults is replayed exactly.
"""

from __future__ import annotations

import itertools

import pytest

from netwatch.lab import apmib, ber
from netwatch.lab.simdevice import ControllerAp, SimDevice, SimInterface, SimOptics, SimRadio

T0 = 1_800_000_000.0  # an arbitrary wall time: values depend on it only through the model
BOOT = T0 - 86_400.0
SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)


def if_oid(column: int, index: int) -> ber.Oid:
    return (1, 3, 6, 1, 2, 1, 2, 2, 1, column, index)


def ifx_oid(column: int, index: int) -> ber.Oid:
    return (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, column, index)


def sensor_oid(column: int, index: int) -> ber.Oid:
    return (1, 3, 6, 1, 2, 1, 99, 1, 1, 1, column, index)


def router(device_id: str = "core-ch", **values: float) -> SimDevice:
    uplink = SimInterface(
        1,
        "xe-0/0/1",
        10_000,
        in_bps=values.get("in_bps", 1e9),
        out_bps=2e8,
        error_rate=values.get("error_rate", 0.0),
        optics=SimOptics(rx_dbm=-3.1, tx_dbm=-1.9, temp_c=31.5, bias_ma=6.2),
    )
    access = SimInterface(2, "ge-0/0/2", 1000, in_bps=5e6, out_bps=1e6)
    return SimDevice(device_id, "router", "127.20.0.5", interfaces=[uplink, access], booted_at=BOOT, now=T0)


def read(device: SimDevice, oid: ber.Oid, at: float) -> ber.Payload:
    found = device.view().lookup(oid, at)
    assert found is not None, f"{oid} is not served"
    return found[1]


def number(device: SimDevice, oid: ber.Oid, at: float) -> int:
    value = read(device, oid, at)
    assert isinstance(value, int)
    return value


def in_bps(device: SimDevice, start: float, end: float, index: int = 1) -> float:
    """The inbound rate a poller computes from ifHCInOctets read at ``start`` and ``end``."""
    return (number(device, ifx_oid(6, index), end) - number(device, ifx_oid(6, index), start)) * 8 / (end - start)


def test_traffic_swells_around_the_mean_rate() -> None:
    """A 1 Gb/s port measured a minute at a time reads between 0.8 and 1.2 Gb/s, not the same
    every minute; over an hour it averages the mean; over seconds it is the model's rate then."""
    device = router()
    minutes = [in_bps(device, T0 + 60 * m, T0 + 60 * (m + 1)) for m in range(60)]
    assert all(0.8e9 <= r <= 1.2e9 for r in minutes)
    assert max(minutes) - min(minutes) > 0.1e9
    assert sum(minutes) / len(minutes) == pytest.approx(1e9, rel=0.01)
    iface = device.interface("xe-0/0/1")
    assert in_bps(device, T0 + 100, T0 + 101.5) == pytest.approx(iface.in_bps_at(T0 + 100.75), rel=0.001)


def test_two_runs_of_a_lab_agree_and_devices_differ() -> None:
    """The same device id reads the same counters at the same time; another id does not."""
    oid = ifx_oid(6, 1)
    assert number(router(), oid, T0 + 10) == number(router(), oid, T0 + 10)
    assert number(router(), oid, T0 + 10) != number(router("core-pd"), oid, T0 + 10)


def test_counter32_wraps_where_counter64_goes_on() -> None:
    """ifInOctets is ifHCInOctets modulo 2^32: at 1 Gb/s it wraps within a minute, as a real one does."""
    device = router()
    values = [(number(device, if_oid(10, 1), T0 + s), number(device, ifx_oid(6, 1), T0 + s)) for s in range(0, 61, 5)]
    assert all(c32 == c64 % 2**32 for c32, c64 in values)
    assert any(b[0] < a[0] for a, b in itertools.pairwise(values)), "the 32-bit counter wrapped"
    assert all(b[1] > a[1] for a, b in itertools.pairwise(values))
    assert read(device, if_oid(10, 1), T0) != read(device, ifx_oid(6, 1), T0)


def test_port_down_stops_its_counters_and_stamps_if_last_change() -> None:
    device = router()
    device.set_port("xe-0/0/1", False, at=T0 + 10)
    assert read(device, if_oid(8, 1), T0 + 20) == 2
    assert read(device, if_oid(7, 1), T0 + 20) == 1, "admin stays up"
    assert read(device, if_oid(9, 1), T0 + 20) == device.uptime_ticks(T0 + 10)
    frozen = number(device, ifx_oid(6, 1), T0 + 10)
    assert number(device, ifx_oid(6, 1), T0 + 50) == frozen
    assert device.interface("xe-0/0/1").in_bps_at(T0 + 50) == 0.0
    device.set_port("xe-0/0/1", True, at=T0 + 60)
    assert read(device, if_oid(8, 1), T0 + 61) == 1
    assert number(device, ifx_oid(6, 1), T0 + 60) == frozen, "counters carry on from where they stopped"
    assert in_bps(device, T0 + 60, T0 + 120) == pytest.approx(1e9, rel=0.2)
    assert in_bps(device, T0, T0 + 60, index=2) > 0, "the other port carried on throughout"


def test_errors_accrue_at_their_rate() -> None:
    device = router(error_rate=5.0)
    assert number(device, if_oid(14, 1), T0 + 100) - number(device, if_oid(14, 1), T0) == 500
    assert number(device, if_oid(20, 1), T0 + 100) == 0


def test_set_traffic_changes_the_rate_not_the_counter() -> None:
    device = router()
    before = number(device, ifx_oid(6, 1), T0 + 30)
    device.set_traffic("xe-0/0/1", in_bps=8e9, at=T0 + 30)
    assert number(device, ifx_oid(6, 1), T0 + 30) == before
    assert in_bps(device, T0 + 30, T0 + 90) == pytest.approx(8e9, rel=0.2)


def test_reboot_restarts_uptime_and_counters() -> None:
    """After a reload: sysUpTime counts from the reboot, counters from zero, no discontinuity
    recorded (the agent restarted too) and ifLastChange 0; a port that was down stays down."""
    device = router()
    device.set_port("ge-0/0/2", False, at=T0)
    assert number(device, SYS_UPTIME, T0 + 100) == 86_500 * 100
    device.reboot(at=T0 + 100)
    assert number(device, SYS_UPTIME, T0 + 105) == 500
    assert 0 < number(device, ifx_oid(6, 1), T0 + 105) <= 1.2e9 / 8 * 5
    assert number(device, if_oid(14, 1), T0 + 105) == 0
    assert read(device, ifx_oid(19, 1), T0 + 105) == 0
    assert read(device, if_oid(9, 2), T0 + 105) == 0
    assert read(device, if_oid(8, 2), T0 + 105) == 2
    assert number(device, ifx_oid(6, 2), T0 + 105) == 0


def test_optics_drift_fall_to_no_light_and_come_back() -> None:
    """Rx power (ENTITY-SENSOR-MIB, tenths of dBm) falls as a degrade fault says, bottoms out at
    -40 dBm, reads -40 on a cut (loss of light) and returns on restore; Tx is untouched."""
    device = router()
    rx, tx = sensor_oid(4, 1005), sensor_oid(4, 1004)  # transceiver(): port entity + 5 is Rx, + 4 Tx
    assert read(device, rx, T0) == -31
    device.degrade_optics("xe-0/0/1", 2.0, at=T0 + 100)
    assert read(device, rx, T0 + 160) == -51
    assert read(device, rx, T0 + 250) == -81
    device.degrade_optics("xe-0/0/1", 0.5, at=T0 + 250)  # a slower fade from where it is
    assert read(device, rx, T0 + 370) == -91
    assert read(device, rx, T0 + 100_000) == -400
    assert read(device, tx, T0 + 370) == -19
    device.restore_optics("xe-0/0/1", at=T0 + 400)
    assert read(device, rx, T0 + 500) == -31
    device.set_port("xe-0/0/1", False, los=True, at=T0 + 600)
    assert read(device, rx, T0 + 601) == -400
    device.set_port("xe-0/0/1", True, at=T0 + 700)
    assert read(device, rx, T0 + 701) == -31


def test_unifi_radio_down_serves_no_one() -> None:
    """A UniFi radio taken down: its SSIDs (VAPs) say down and carry no clients; the other radio's do."""
    radios = [SimRadio(0, "2.4GHz", 6, clients=9, util_pct=35), SimRadio(1, "5GHz", 36, clients=14, util_pct=60)]
    device = SimDevice("ap-vp-1", "wifi_ap", "127.20.0.7", radios=radios, ap_profile="unifi", now=T0)
    vap = tuple(int(p) for p in apmib.UNIFI_VAP.split("."))

    def vaps(column: int) -> dict[int, ber.Payload]:
        # VAPs 1 and 2 are the two radios' first SSID, 3 and 4 their second
        return {n: read(device, (*vap, column, n), T0) for n in range(1, 5)}

    assert vaps(8) == {1: 5, 2: 7, 3: 4, 4: 7}
    device.set_radio(1, False)
    assert vaps(22) == {1: 1, 2: 2, 3: 1, 4: 2}
    assert vaps(8) == {1: 5, 2: 0, 3: 4, 4: 0}


def test_ap_leaving_a_controller_drops_out_of_its_table() -> None:
    aps = [
        ControllerAp("ap-cp-1", "00:3a:7d:00:00:01", [SimRadio(0, "2.4GHz", 1, 3)]),
        ControllerAp("ap-cp-2", "00:3a:7d:00:00:02", [SimRadio(0, "2.4GHz", 6, 4)]),
    ]
    device = SimDevice("wlc-ch", "wlc", "127.20.0.8", ap_profile="cisco-wlc", controller_aps=aps, now=T0)
    name = (*(int(p) for p in apmib.BSN_AP.split(".")), 3)
    assert read(device, (*name, 0, 58, 125, 0, 0, 2), T0) == b"ap-cp-2"
    device.set_ap_joined("ap-cp-2", False)
    assert device.view().lookup((*name, 0, 58, 125, 0, 0, 2), T0) is None
    assert read(device, (*name, 0, 58, 125, 0, 0, 1), T0) == b"ap-cp-1"


def test_generic_ap_radios_are_ieee80211_interfaces() -> None:
    """Radios of a generic AP follow its own interfaces as ifType 71, oper down when the radio is."""
    radios = [SimRadio(0, "2.4GHz", 11), SimRadio(1, "5GHz", 149)]
    device = SimDevice(
        "ap-jr-1", "wifi_ap", "127.20.0.9", interfaces=[SimInterface(1, "eth0")], radios=radios, ap_profile="generic"
    )
    assert [read(device, if_oid(3, i), T0) for i in (1, 2, 3)] == [6, 71, 71]
    assert read(device, ifx_oid(1, 3), T0) == b"wlan1"
    assert read(device, (1, 2, 840, 10036, 4, 11, 1, 1, 3), T0) == 149
    device.set_radio(1, False)
    assert read(device, if_oid(8, 3), T0) == 2


def test_missing_objects_and_instances_are_told_apart() -> None:
    """noSuchInstance for an object the device has (another ifIndex, sysUpTime without .0), else noSuchObject."""
    view = router().view()
    no_instance = ber.encode_value(ber.NO_SUCH_INSTANCE, None)
    no_object = ber.encode_value(ber.NO_SUCH_OBJECT, None)
    assert view.missing(ifx_oid(6, 99)) == no_instance
    assert view.missing(SYS_UPTIME[:-1]) == no_instance
    assert view.missing((1, 3, 6, 1, 2, 1, 1, 9, 0)) == no_object
    assert view.missing((1, 3, 6, 1, 4, 1, 9, 9, 1, 0)) == no_object


def test_same_shaped_devices_share_one_layout() -> None:
    """A thousand identical switches hold one copy of the OIDs and their encodings."""
    assert router("a").view().layout is router("b").view().layout


def test_link_trap_names_the_port() -> None:
    device = router()
    uptime, trap_oid, varbinds = device.trap("linkDown", "ge-0/0/2", at=T0)
    assert uptime == 86_400 * 100
    assert trap_oid == (1, 3, 6, 1, 6, 3, 1, 1, 5, 3)
    assert varbinds == [
        (if_oid(1, 2), (ber.INTEGER, 2)),
        (if_oid(7, 2), (ber.INTEGER, 1)),
        (if_oid(8, 2), (ber.INTEGER, 2)),
        (ifx_oid(1, 2), (ber.OCTET_STRING, b"ge-0/0/2")),
    ]
    assert device.trap("coldStart", at=T0)[2] == []
    with pytest.raises(KeyError, match="has no interface 'xe-9/9/9'"):
        device.trap("linkUp", "xe-9/9/9")


def test_a_device_with_two_ports_of_one_index_is_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        SimDevice("x", "switch", "127.20.0.10", interfaces=[SimInterface(1, "a"), SimInterface(1, "b")])
