"""The InfluxDB data contract as data: measurement -> tag keys and field types.

This is what Grafana dashboards, scripts and the SLA reports build on (design.md, "Data
contract"). The line-protocol encoder coerces known fields to their declared type, because
InfluxDB rejects a whole batch when a field's type flips (an ``int`` 0 sent where a float was
written before). Tests check every probe against this table.
"""

from __future__ import annotations

from typing import Final, Literal

FieldType = Literal["int", "float", "str"]

_F: Final = "float"
_I: Final = "int"
_S: Final = "str"

#: measurement -> (allowed tag keys, field name -> type)
CONTRACT: Final[dict[str, tuple[frozenset[str], dict[str, FieldType]]]] = {
    "ping": (
        frozenset({"device", "site", "kind"}),
        {
            "up": _I,
            "rtt_min_ms": _F,
            "rtt_avg_ms": _F,
            "rtt_max_ms": _F,
            "jitter_ms": _F,
            "loss_pct": _F,
            "sent": _I,
            "received": _I,
        },
    ),
    "interface": (
        frozenset({"device", "site", "port", "link", "lessee"}),
        {
            "oper_up": _I,
            "admin_up": _I,
            "speed_bps": _I,
            "in_bps": _F,
            "out_bps": _F,
            "in_util_pct": _F,
            "out_util_pct": _F,
            "in_errors_ps": _F,
            "out_errors_ps": _F,
            "in_discards_ps": _F,
            "out_discards_ps": _F,
        },
    ),
    "optics": (
        frozenset({"device", "site", "port", "link"}),
        {"rx_dbm": _F, "tx_dbm": _F, "temp_c": _F, "bias_ma": _F},
    ),
    "system": (frozenset({"device", "site", "kind"}), {"uptime_s": _I, "rebooted": _I}),
    "device": (
        frozenset({"device", "site", "kind"}),
        {"up": _I, "state": _S, "reason": _S},
    ),
    "link": (
        frozenset({"link", "lessee", "site_a", "site_b"}),
        {"up": _I, "state": _S},
    ),
    # One AP (the wifi check): clients on all radios, the busiest up radio's channel utilisation.
    "wifi": (
        frozenset({"device", "site"}),
        {"clients": _I, "channel_util_pct": _F, "radios_up": _I, "radios_down": _I},
    ),
    # One radio of an AP: a band's clients and load (2.4 GHz fills up first in a busy park).
    "wifi_radio": (
        frozenset({"device", "site", "radio", "band"}),
        {"up": _I, "clients": _I, "channel_util_pct": _F, "channel": _I},
    ),
    "http": (
        frozenset({"device", "site", "check", "reason"}),
        {
            "up": _I,
            "status_code": _I,
            "latency_ms": _F,
            "cert_days_left": _F,
            "body_match": _I,
            # the redirect chain and where the time went (summed over its hops, as blackbox does)
            "redirects": _I,
            "body_bytes": _I,
            "dns_ms": _F,
            "connect_ms": _F,
            "processing_ms": _F,
            "transfer_ms": _F,
        },
    ),
    # A site's public WiFi as users see it: the portal works and at least one AP is up.
    "wifi_service": (
        frozenset({"site"}),
        {"up": _I, "state": _S, "aps_up": _I, "aps_total": _I, "portal_up": _I},
    ),
    "rtsp": (
        frozenset({"device", "site", "reason"}),
        {"up": _I, "status_code": _I, "latency_ms": _F, "video": _I},
    ),
    "snapshot": (frozenset({"device", "site", "reason"}), {"up": _I, "latency_ms": _F, "bytes": _I}),
    # An access panel each heartbeat cadence (MQTT ingest): online, heartbeat age, malformed
    # payloads so far (cumulative) and alarm events since the previous report (see panel_alarm).
    "panel": (
        frozenset({"device", "site"}),
        {"online": _I, "heartbeat_age_s": _F, "malformed": _I, "alarms": _I},
    ),
    # One event a panel sent; alarm = 1 when the event is one of mqtt.alarm_events.
    "panel_event": (frozenset({"device", "site", "event", "door"}), {"count": _I, "detail": _S, "alarm": _I}),
    # TCP port check: connect latency; reason as in http (ok, refused, timeout, bad_content ...).
    "tcp": (frozenset({"device", "site", "port", "reason"}), {"up": _I, "connect_ms": _F}),
    # One SNMP trap a known device sent (linkDown, linkUp, coldStart, warmStart or a configured
    # enterprise trap's name), shaped like panel_event: an event, not a state. The state follows
    # from the poll the trap triggers; this says when and why it was triggered. ``port`` only on
    # link traps (the port's name from the trap, else "ifIndex N"); varbind text goes in detail.
    "trap": (frozenset({"device", "site", "trap", "port"}), {"count": _I, "detail": _S}),
    "alert": (
        frozenset({"rule", "entity", "site", "severity"}),
        {"state": _S, "value": _F, "incident": _S, "summary": _S, "held": _S},
    ),
    "netwatch": (
        frozenset({"instance", "component"}),
        {
            # scheduler
            "checks_run": _I,
            "checks_failed": _I,
            "checks_skipped": _I,
            "checks_in_flight": _I,
            "poll_lag_p50_ms": _F,
            "poll_lag_p99_ms": _F,
            "poll_lag_max_ms": _F,
            # sink
            "points_collected": _I,
            "points_written": _I,
            "points_dropped": _I,
            "points_rejected": _I,
            "buffer_points": _I,
            "batches_written": _I,
            "batch_points_avg": _F,
            "write_latency_ms": _F,
            "write_errors": _I,
            # outbox (alert notifications)
            "outbox_depth": _I,
            "outbox_queued": _I,
            "outbox_delivered": _I,
            "outbox_retried": _I,
            "outbox_dropped": _I,
            "outbox_rejected": _I,
            # MQTT ingest (access panels); counters cumulative
            "broker_connected": _I,
            "mqtt_messages": _I,
            "mqtt_heartbeats": _I,
            "mqtt_events": _I,
            "mqtt_malformed": _I,
            "mqtt_unknown_topic": _I,
            "mqtt_reconnects": _I,
            # state publisher (mqtt.publish): retained state topics acknowledged, failed publishes
            "publish_connected": _I,
            "mqtt_published": _I,
            "mqtt_publish_failed": _I,
            # trap receiver: datagrams in, traps accepted, and why the rest were ignored
            "traps_received": _I,
            "traps_accepted": _I,
            "traps_unknown_sender": _I,
            "traps_bad_community": _I,
            "traps_bad_credentials": _I,
            "traps_malformed": _I,
            "traps_ignored": _I,
            "traps_polls": _I,
        },
    ),
}


def field_type(measurement: str, field: str) -> FieldType | None:
    """Return the declared type of a field, or None if the contract does not name it."""
    entry = CONTRACT.get(measurement)
    if entry is None:
        return None
    return entry[1].get(field)
