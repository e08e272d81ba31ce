"""The aiohttp session HTTP checks share: a new visitor's connections, timed, certificates kept.

Three things a check needs are session-wide settings in aiohttp, which is why HTTP checks do not
use the camera probes' session (:mod:`netwatch.probes.httpsession`):

* ``force_close`` and no DNS cache: every request opens a new connection, resolving and
  handshaking as a visitor arriving at the park would, so each check measures (and can fail) that.
* trace hooks: the phases of each request (name resolution, connecting with TLS, waiting for the
  response) are added to the :class:`Timing` a check passes as ``trace_request_ctx``; the phase a
  check is in also names where it was stuck when it times out.
* :class:`CertResponse` keeps the server's certificate: aiohttp releases (and, with
  ``force_close``, closes) the connection as soon as a body-less answer such as a redirect is
  read, before the caller could ask the transport for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import aiohttp

from netwatch import __version__
from netwatch.probes.base import ProbeResources

_SESSION_KEY = "http"


class CertResponse(aiohttp.ClientResponse):
    """A response that keeps its server's certificate (DER), read as the response starts."""

    peer_cert: bytes | None = None

    async def start(self, connection: aiohttp.connector.Connection) -> aiohttp.ClientResponse:
        transport = connection.transport
        obj = transport.get_extra_info("ssl_object") if transport is not None else None
        if obj is not None:
            self.peer_cert = obj.getpeercert(binary_form=True)
        return await super().start(connection)


@dataclass
class Timing:
    """Where a check is and how long each phase took, summed over the hops (blackbox's phases)."""

    phase: str = "connecting"
    where: str = ""
    dns_s: float = 0.0
    connect_s: float = 0.0  # TCP and TLS handshake: aiohttp does both in one step
    processing_s: float = 0.0  # request sent -> response headers received
    transfer_s: float = 0.0  # reading the final body
    marks: dict[str, float] = field(default_factory=dict)

    def close(self) -> None:
        """Book the phase a failure cut short (a refused handshake, a server that never answered)."""
        now = time.perf_counter()
        if "connect" in self.marks:
            self.connect_s += now - self.marks.pop("connect") - self.marks.get("hop_dns", 0.0)
        if "sent" in self.marks:
            self.processing_s += now - self.marks.pop("sent")


def _timing(ctx: SimpleNamespace) -> Timing | None:
    timing = ctx.trace_request_ctx
    return timing if isinstance(timing, Timing) else None


async def _on_connection_create_start(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
    if (t := _timing(ctx)) is not None:
        t.phase = "connecting"
        t.marks.update(connect=time.perf_counter(), hop_dns=0.0)


async def _on_dns_start(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
    if (t := _timing(ctx)) is not None:
        t.phase = "resolving the host name"
        t.marks["dns"] = time.perf_counter()


async def _on_dns_end(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
    if (t := _timing(ctx)) is not None and "dns" in t.marks:
        spent = time.perf_counter() - t.marks.pop("dns")
        t.dns_s += spent
        t.marks["hop_dns"] = t.marks.get("hop_dns", 0.0) + spent
        t.phase = "connecting"


async def _on_connection_create_end(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
    if (t := _timing(ctx)) is not None and "connect" in t.marks:
        # Name resolution happens inside connection creation; it is its own phase.
        t.connect_s += time.perf_counter() - t.marks.pop("connect") - t.marks.get("hop_dns", 0.0)
        t.phase = "sending the request"


async def _on_headers_sent(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
    if (t := _timing(ctx)) is not None:
        t.phase = "waiting for the response"
        t.marks["sent"] = time.perf_counter()


async def _on_request_end(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
    if (t := _timing(ctx)) is not None and "sent" in t.marks:
        t.processing_s += time.perf_counter() - t.marks.pop("sent")
        t.phase = "reading the response"


def new_session(*, resolver: aiohttp.abc.AbstractResolver | None = None) -> aiohttp.ClientSession:
    """Return a session set up for checks (tests pass their own ``resolver`` to stay on loopback)."""
    trace = aiohttp.TraceConfig()
    trace.on_connection_create_start.append(_on_connection_create_start)
    trace.on_connection_create_end.append(_on_connection_create_end)
    trace.on_dns_resolvehost_start.append(_on_dns_start)
    trace.on_dns_resolvehost_end.append(_on_dns_end)
    trace.on_request_headers_sent.append(_on_headers_sent)
    trace.on_request_end.append(_on_request_end)
    # force_close: a new connection (and TLS handshake) per request, as a new visitor makes.
    # limit=0: the scheduler already bounds checks in flight; a pool limit would only queue them.
    connector = aiohttp.TCPConnector(force_close=True, limit=0, use_dns_cache=False, resolver=resolver)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),  # each check keeps its own jar (see HttpProbe.check)
        response_class=CertResponse,
        trace_configs=[trace],
        timeout=aiohttp.ClientTimeout(total=None),  # the check's own deadline bounds it
        headers={"User-Agent": f"netwatch/{__version__}"},
    )


def shared_session(resources: ProbeResources) -> aiohttp.ClientSession:
    """Return the session every HTTP check shares, created on first use and closed with ``resources``."""
    session = resources.shared.get(_SESSION_KEY)
    if not isinstance(session, aiohttp.ClientSession) or session.closed:
        session = new_session()
        resources.shared[_SESSION_KEY] = session
        resources.closers.append(session.close)
    return session
