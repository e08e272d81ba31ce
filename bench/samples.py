"""Realistic samples for benchmarks: a park AP's ping and a backbone port's interface reading."""

from __future__ import annotations

from netwatch.model import Sample


def ping_sample(i: int, ts: int) -> Sample:
    """The i-th park AP's ping result, as the ping probe writes it."""
    return Sample(
        "ping",
        {"device": f"ap-{i % 500}", "site": f"park-{i % 18}", "kind": "wifi_ap"},
        {
            "up": 1,
            "sent": 3,
            "received": 3,
            "loss_pct": 0.0,
            "rtt_min_ms": 0.4,
            "rtt_avg_ms": 0.52 + i % 7,
            "rtt_max_ms": 0.9 + i % 11,
            "jitter_ms": 0.1,
        },
        ts,
    )


def interface_sample(i: int, ts: int) -> Sample:
    """The i-th backbone port's interface reading, as the SNMP probe writes it."""
    return Sample(
        "interface",
        {"device": f"core-{i % 8}", "site": "city-hall", "port": f"xe-0/0/{i % 48}", "link": f"span-{i % 16}"},
        {
            "oper_up": 1,
            "admin_up": 1,
            "speed_bps": 10_000_000_000,
            "in_bps": 2.3e9 + i,
            "out_bps": 7.1e8 + i,
            "in_util_pct": 23.1,
            "out_util_pct": 7.1,
            "in_errors_ps": 0.0,
            "out_errors_ps": 0.0,
            "in_discards_ps": 0.0,
            "out_discards_ps": 0.0,
        },
        ts,
    )
