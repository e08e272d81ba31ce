"""A test host in a network namespace of our own, reached over a veth pair.

The namespace and its veth are created by the fixture and removed afterwards; the addresses are
a /30 of the test's own, so no traffic leaves this machine.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.servers.common import require_binary


@dataclass(frozen=True)
class NetnsHost:
    namespace: str
    host_if: str
    peer_if: str
    local: str
    address: str

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", "-n", self.namespace, *args], check=True, capture_output=True)

    def link(self, up: bool) -> None:
        """Cut or restore the test host's side of the wire."""
        self.ip("link", "set", self.peer_if, "up" if up else "down")


def _sh(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True)


@pytest.fixture
def test_host() -> Iterator[NetnsHost]:
    """A namespace with one address that answers ping until the test cuts its link."""
    require_binary("ip", "iproute2")
    if os.geteuid() != 0:
        pytest.fail("network namespace tests need root (CI runs as root)", pytrace=False)
    tag = f"{os.getpid() % 100000}"
    host = NetnsHost(f"nwt{tag}", f"nwh{tag}", f"nwp{tag}", "10.203.77.1", "10.203.77.2")
    _sh("ip", "netns", "add", host.namespace)
    try:
        _sh("ip", "link", "add", host.host_if, "type", "veth", "peer", "name", host.peer_if)
        _sh("ip", "link", "set", host.peer_if, "netns", host.namespace)
        _sh("ip", "addr", "add", f"{host.local}/30", "dev", host.host_if)
        _sh("ip", "link", "set", host.host_if, "up")
        host.ip("addr", "add", f"{host.address}/30", "dev", host.peer_if)
        host.ip("link", "set", "lo", "up")
        host.ip("link", "set", host.peer_if, "up")
        yield host
    finally:
        subprocess.run(["ip", "link", "del", host.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)
