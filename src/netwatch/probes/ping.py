"""ICMP echo: reachability, round-trip time, jitter and loss (measurement ``ping``)."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Literal

import icmplib
from pydantic import Field

from netwatch.configbase import Duration, Strict
from netwatch.model import Outcome, Sample, Target, now_ns
from netwatch.probes.base import Probe, ProbeResources


class PingConfig(Strict):
    """How to ping a device: ``n`` echo requests ``spacing`` apart, each waited for ``wait``."""

    count: int = Field(default=3, ge=1, le=100, description="echo requests per check")
    spacing: Duration = Field(default=0.2, description="time between two echo requests")
    wait: Duration = Field(default=1.0, description="how long to wait for each reply")
    payload_size: int = Field(default=56, ge=0, le=65000)
    #: ``raw`` needs CAP_NET_RAW; ``datagram`` needs the group in net.ipv4.ping_group_range;
    #: ``auto`` takes datagram sockets where the kernel allows them, raw ones otherwise.
    socket: Literal["auto", "raw", "datagram"] = "auto"

    def budget_s(self) -> float:
        """Return how long one check of a dead host takes: icmplib waits out each reply in turn
        (up to ``wait``) before the ``spacing`` pause and the next request."""
        return self.count * self.wait + (self.count - 1) * self.spacing

    def budget_text(self) -> str:
        return f"{self.count} requests, each waited for up to {self.wait:g}s, {self.spacing:g}s apart"


@cache
def datagram_allowed() -> bool:
    """Tell whether this process may open unprivileged ICMP (datagram) sockets."""
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ping_group_range").read_text().split())
    except (OSError, ValueError):
        return False
    groups = {os.getegid(), *os.getgroups()}
    return any(low <= gid <= high for gid in groups)


class PingProbe:
    """Send ``count`` echo requests and summarise the replies."""

    def __init__(self, target: Target, cfg: PingConfig) -> None:
        self._target = target
        self._cfg = cfg
        if cfg.socket == "auto":
            self._privileged = not datagram_allowed()
        else:
            self._privileged = cfg.socket == "raw"
        self._tags = target.base_tags()

    async def check(self) -> Outcome:
        cfg = self._cfg
        ts = now_ns()
        try:
            host = await icmplib.async_ping(
                self._target.address,
                count=cfg.count,
                interval=cfg.spacing,
                timeout=cfg.wait,
                payload_size=cfg.payload_size,
                privileged=self._privileged,
            )
        except icmplib.NameLookupError:
            return Outcome(up=False, reason="dns", detail=f"cannot resolve {self._target.address!r}")
        except icmplib.SocketPermissionError:
            return Outcome(
                up=False,
                reason="error",
                detail="no permission for ICMP sockets: grant CAP_NET_RAW (raw) or add the group "
                "to net.ipv4.ping_group_range (datagram)",
            )
        except icmplib.SocketAddressError as exc:
            return Outcome(up=False, reason="error", detail=f"bad source address: {exc}")
        except (icmplib.ICMPLibError, OSError) as exc:
            return Outcome(up=False, reason="unreachable", detail=f"{type(exc).__name__}: {exc}")

        up = host.packets_received > 0
        fields: dict[str, int | float] = {
            "up": int(up),
            "sent": host.packets_sent,
            "received": host.packets_received,
            "loss_pct": round(host.packet_loss * 100.0, 3),
        }
        if up:
            fields |= {
                "rtt_min_ms": host.min_rtt,
                "rtt_avg_ms": host.avg_rtt,
                "rtt_max_ms": host.max_rtt,
                "jitter_ms": host.jitter,
            }
        sample = Sample("ping", self._tags, fields, ts)
        if up:
            return Outcome(up=True, reason="ok", samples=(sample,))
        return Outcome(
            up=False,
            reason="timeout",
            detail=f"no reply to {host.packets_sent} echo requests within {cfg.wait:g}s",
            samples=(sample,),
        )


def build(target: Target, cfg: PingConfig, resources: ProbeResources) -> Probe:
    """Build a ping probe for one device."""
    return PingProbe(target, cfg)
