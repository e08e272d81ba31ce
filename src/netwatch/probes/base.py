"""The contract between the scheduler and a probe kind.

A probe turns one check of one device into an :class:`~netwatch.model.Outcome`. A device that is
down, slow or answers garbage is a result with a reason, never an exception; the scheduler, not
the probe, enforces the timeout and measures the duration (as blackbox_exporter's handler does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from netwatch.model import Outcome, Target


class Probe(Protocol):
    """One check of one device, built once per config load and called every interval."""

    async def check(self) -> Outcome:
        """Run the check now and return its outcome; never raise for a device failure."""
        ...


@dataclass
class ProbeResources:
    """Long-lived resources the daemon creates once and every probe shares.

    Probe modules put what they need in ``shared`` under their own key (one SnmpEngine, one
    aiohttp session), created lazily on first use and closed by :meth:`aclose`.
    """

    shared: dict[str, Any] = field(default_factory=dict)
    closers: list[Callable[[], Any]] = field(default_factory=list)

    async def aclose(self) -> None:
        """Close everything probes opened, newest first."""
        while self.closers:
            result = self.closers.pop()()
            if hasattr(result, "__await__"):
                await result


class ProbeFactory(Protocol):
    """Builds a probe for one device from that device's merged config for this kind."""

    def __call__(self, target: Target, cfg: Any, resources: ProbeResources) -> Probe: ...
