"""TCP port check (measurement ``tcp``): connect latency, optionally a request and an expected banner.

The fallback for an access panel without MQTT (is its controller port open?) and for any service
that speaks TCP. Reasons: ok, refused (RST), timeout (no answer to the SYN, or no banner in
time), unreachable (no route), dns, bad_content (the banner does not match), protocol (the peer
closed before sending what was expected).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time

from pydantic import Field, field_validator

from netwatch.configbase import Duration, Strict
from netwatch.model import Outcome, Reason, Sample, Target, now_ns
from netwatch.probes.base import Probe, ProbeResources


class TcpConfig(Strict):
    """Which port to open, what to send and what the answer must contain."""

    port: int | None = Field(default=None, ge=1, le=65535, description="required when the check is used")
    connect_timeout: Duration = Field(default=3.0, gt=0, description="longest wait for the connection")
    send: str | None = Field(default=None, description="text sent after connecting (\\r\\n escapes allowed)")
    expect: str | None = Field(default=None, description="regular expression the first bytes read must match")
    read_timeout: Duration = Field(default=3.0, gt=0, description="longest wait for the expected answer")
    read_bytes: int = Field(default=4096, ge=1, le=65536, description="how much of the answer is searched")

    @field_validator("expect")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"expect is not a valid regular expression: {exc}") from None
        return value

    def problems(self) -> list[str]:
        """Return what this (merged) config lacks."""
        return [] if self.port is not None else ["tcp needs port (e.g. tcp: {port: 4070})"]

    def budget_s(self) -> float:
        """Return how long one check may take (it must fit in the check's timeout)."""
        exchange = self.read_timeout if self.send is not None or self.expect is not None else 0.0
        return self.connect_timeout + exchange

    def budget_text(self) -> str:
        return f"connect_timeout {self.connect_timeout:g}s + read_timeout {self.read_timeout:g}s"


class TcpProbe:
    """Open one connection, optionally exchange a line, close."""

    def __init__(self, target: Target, cfg: TcpConfig) -> None:
        self._target = target
        self._cfg = cfg
        self._expect = re.compile(cfg.expect.encode()) if cfg.expect else None
        self._send = cfg.send.encode().decode("unicode_escape").encode("latin-1") if cfg.send else None
        self._tags = {"device": target.device, "site": target.site, "port": str(cfg.port)}

    def _down(self, reason: Reason, detail: str, ts: int, extra: dict[str, float] | None = None) -> Outcome:
        fields: dict[str, int | float] = {"up": 0, **(extra or {})}
        sample = Sample("tcp", {**self._tags, "reason": reason}, fields, ts)
        return Outcome(up=False, reason=reason, detail=detail, samples=(sample,))

    async def check(self) -> Outcome:
        cfg = self._cfg
        ts = now_ns()
        if cfg.port is None:
            return self._down("error", "no tcp.port configured", ts)
        where = f"{self._target.address}:{cfg.port}"
        start = time.perf_counter()
        try:
            async with asyncio.timeout(cfg.connect_timeout):
                reader, writer = await asyncio.open_connection(self._target.address, cfg.port)
        except TimeoutError:
            return self._down("timeout", f"no answer from {where} within {cfg.connect_timeout:g}s", ts)
        except ConnectionRefusedError:
            return self._down("refused", f"{where} refused the connection", ts)
        except socket.gaierror as exc:
            return self._down("dns", f"cannot resolve {self._target.address!r}: {exc.strerror}", ts)
        except OSError as exc:
            return self._down("unreachable", f"{where}: {exc.strerror or exc}", ts)
        connect_ms = (time.perf_counter() - start) * 1000.0
        try:
            outcome = await self._converse(reader, writer, where, ts, connect_ms)
        finally:
            writer.close()
            # a peer that never finishes the close must not hold the check
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
        return outcome

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, where: str, ts: int, connect_ms: float
    ) -> Outcome:
        cfg = self._cfg
        fields: dict[str, float] = {"connect_ms": round(connect_ms, 3)}
        if self._send is None and self._expect is None:
            return self._ok(ts, fields)
        try:
            async with asyncio.timeout(cfg.read_timeout):
                if self._send is not None:
                    writer.write(self._send)
                    await writer.drain()
                data = await self._read_answer(reader)
        except TimeoutError:
            return self._down("timeout", f"{where} did not answer within {cfg.read_timeout:g}s", ts, fields)
        except OSError as exc:
            return self._down("protocol", f"{where}: {type(exc).__name__} during the exchange", ts, fields)
        if self._expect is not None and not self._expect.search(data):
            if len(data) < cfg.read_bytes and reader.at_eof():
                return self._down("protocol", f"{where} closed before answering as expected", ts, fields)
            return self._down("bad_content", f"{where} answered without a match for expect", ts, fields)
        return self._ok(ts, fields)

    async def _read_answer(self, reader: asyncio.StreamReader) -> bytes:
        """Read until ``expect`` matches, the peer closes or ``read_bytes`` arrived."""
        data = b""
        if self._expect is None:
            return data
        while not self._expect.search(data) and len(data) < self._cfg.read_bytes:
            chunk = await reader.read(self._cfg.read_bytes - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def _ok(self, ts: int, fields: dict[str, float]) -> Outcome:
        sample = Sample("tcp", {**self._tags, "reason": "ok"}, {"up": 1, **fields}, ts)
        return Outcome(up=True, reason="ok", samples=(sample,))


def build(target: Target, cfg: TcpConfig, resources: ProbeResources) -> Probe:
    """Build a TCP port probe for one device."""
    return TcpProbe(target, cfg)
