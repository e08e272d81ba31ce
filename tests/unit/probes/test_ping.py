"""ICMP probe against loopback: real echo requests, real replies."""

from __future__ import annotations

import pytest

from netwatch.contract import CONTRACT
from netwatch.model import Target
from netwatch.probes.ping import PingConfig, PingProbe


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
async def test_loopback_answers_with_rtt_stats(address: str) -> None:
    """A host that answers is up with min <= avg <= max, zero loss and contract field types."""
    probe = PingProbe(Target("lo", "hq", "server", address), PingConfig(count=3, spacing=0.01, wait=0.5))
    outcome = await probe.check()
    assert outcome.up
    assert outcome.reason == "ok"
    (sample,) = outcome.samples
    f = sample.fields
    assert sample.measurement == "ping"
    assert dict(sample.tags) == {"device": "lo", "site": "hq", "kind": "server"}
    assert f["sent"] == 3
    assert f["received"] == 3
    assert f["loss_pct"] == 0.0
    assert 0 < f["rtt_min_ms"] <= f["rtt_avg_ms"] <= f["rtt_max_ms"] < 500
    assert f["jitter_ms"] >= 0
    assert set(f) <= set(CONTRACT["ping"][1])
