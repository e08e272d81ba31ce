"""ICMP probe against a test host in a namespace of our own: answers, then loses its link."""

from __future__ import annotations

from netwatch.model import Target
from netwatch.probes.ping import PingConfig, PingProbe
from tests.servers.netns import NetnsHost


async def test_host_that_stops_answering_is_down_with_full_loss(test_host: NetnsHost) -> None:
    """Up with replies while the link is up; down with reason timeout and 100 % loss once cut."""
    probe = PingProbe(
        Target("park-sw", "park", "switch", test_host.address), PingConfig(count=3, spacing=0.05, wait=0.3)
    )
    first = await probe.check()
    assert first.up, first.detail
    assert first.samples[0].fields["received"] >= 2  # the first echo may wait for ARP

    test_host.link(up=False)
    cut = await probe.check()
    assert not cut.up
    assert cut.reason == "timeout"
    fields = cut.samples[0].fields
    assert fields == {"up": 0, "sent": 3, "received": 0, "loss_pct": 100.0}

    test_host.link(up=True)
    # The veth needs a moment for carrier and neighbour resolution after coming back up.
    for _ in range(10):
        back = await probe.check()
        if back.up:
            break
    assert back.up, back.detail
