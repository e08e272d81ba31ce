"""Make lab addresses stop answering anything, ICMP included, as a cut fibre does.

Every 127.0.0.0/8 address answers ping through the kernel's ``local 127.0.0.0/8`` route, so a
dark device needs the kernel's help. Preferred: an nftables table of the lab's own with a set of
dark addresses, dropped in the ``input`` hook: packets leave, are never delivered, and pings and
SNMP requests time out exactly as across a cut span. Where ``nft`` is missing, a ``blackhole``
route per address in the local table does the job for ICMP, but the kernel then refuses UDP and
TCP sends to it at once (EINVAL) rather than letting them time out. Both need root
(CAP_NET_ADMIN); without it the lab still silences SNMP, HTTP, RTSP and MQTT itself, and says
that ICMP keeps answering. Everything is removed at stop, and at start after a crash.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import zlib
from collections.abc import Iterable
from typing import Literal

import structlog

log = structlog.get_logger(__name__)

Backend = Literal["nft", "route", "none"]


class Blackholes:
    """The addresses of one lab network that are dark now."""

    def __init__(self, network: ipaddress.IPv4Network) -> None:
        self._network = network
        root = os.geteuid() == 0
        self._nft = shutil.which("nft") if root else None
        self._ip = shutil.which("ip") if root else None
        self.backend: Backend = "nft" if self._nft else "route" if self._ip else "none"
        # One table per lab network, so two labs (or a test and a lab) never touch each other's.
        self.table = f"netwatch_lab_{zlib.crc32(str(network).encode()):08x}"
        self._dark: set[str] = set()
        self._ready = False

    @property
    def available(self) -> bool:
        return self.backend != "none"

    def set(self, dark: Iterable[str]) -> None:
        """Make exactly ``dark`` (addresses in the lab network) unreachable; the rest answer again."""
        want = {a for a in dark if ipaddress.IPv4Address(a) in self._network}
        if self.backend == "none" or want == self._dark:
            return
        add, remove = sorted(want - self._dark), sorted(self._dark - want)
        if self.backend == "nft":
            ok = self._ensure_table() and self._nft_run(
                ([f"add element inet {self.table} dark {{ {', '.join(add)} }}"] if add else [])
                + ([f"delete element inet {self.table} dark {{ {', '.join(remove)} }}"] if remove else [])
            )
        else:
            ok = self._ip_batch(
                [f"route add blackhole {a}/32 table local" for a in add]
                + [f"route del blackhole {a}/32 table local" for a in remove]
            )
        if ok:
            self._dark = want

    def clear_stale(self) -> int:
        """Remove what an earlier run of this lab left behind; return how many addresses were dark."""
        if self.backend == "nft":
            shown = self._run([self._nft or "nft", "-j", "list", "set", "inet", self.table, "dark"])
            count = shown.stdout.count('"elem"') if shown.returncode == 0 else 0
            if shown.returncode == 0:
                self._nft_run([f"delete table inet {self.table}"])
            self._ready = False
            return count
        if self.backend == "route" and self._ip is not None:
            shown = self._run([self._ip, "-4", "route", "show", "table", "local", "type", "blackhole"])
            stale = []
            for line in shown.stdout.splitlines():
                words = [w for w in line.split() if w != "blackhole"]
                try:
                    if words and ipaddress.IPv4Network(words[0], strict=False).subnet_of(self._network):
                        stale.append(words[0])
                except ValueError:
                    continue
            self._ip_batch([f"route del blackhole {t} table local" for t in stale])
            return len(stale)
        return 0

    def close(self) -> None:
        """Everything answers again; the lab's table is gone."""
        if self.backend == "nft":
            if self._ready:
                self._nft_run([f"delete table inet {self.table}"])
            self._ready = False
            self._dark = set()
        else:
            self.set(())

    def _ensure_table(self) -> bool:
        if self._ready:
            return True
        # Priority -10: before any filter a host may have, so the lab's drop is not overridden.
        self._ready = self._nft_run(
            [
                f"add table inet {self.table}",
                f"add set inet {self.table} dark {{ type ipv4_addr; }}",
                f"add chain inet {self.table} input {{ type filter hook input priority -10; policy accept; }}",
                f"add rule inet {self.table} input ip daddr @dark drop",
            ]
        )
        return self._ready

    def _nft_run(self, commands: list[str]) -> bool:
        if not commands:
            return True
        done = self._run([self._nft or "nft", "-f", "-"], "\n".join(commands) + "\n")
        if done.returncode != 0:
            log.warning("lab_nft_failed", error=done.stderr.strip()[:300], commands=len(commands))
        return done.returncode == 0

    def _ip_batch(self, commands: list[str]) -> bool:
        if not commands or self._ip is None:
            return True
        done = self._run([self._ip, "-force", "-batch", "-"], "\n".join(commands) + "\n")
        if done.returncode != 0:
            log.warning("lab_blackhole_failed", error=done.stderr.strip()[:300], commands=len(commands))
        return done.returncode == 0

    @staticmethod
    def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
