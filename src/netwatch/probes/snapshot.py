"""Camera snapshot check (measurement ``snapshot``): GET a still picture and make sure it is one.

A camera whose stream server answers can still serve no picture: the image pipeline hangs, the
web server answers with an HTML error page and status 200, or the picture arrives cut short. So
the body must be a JPEG or PNG by its magic bytes *and* complete (JPEG up to its end-of-image
marker, PNG up to IEND with every chunk's CRC), within the size bounds.

Outcome reasons (the closed set of :mod:`netwatch.model`): ``ok``; ``timeout``; ``refused``;
``dns``; ``unreachable``; ``auth`` (401 without credentials configured or again after them, 403,
or a challenge ``auth:`` may not answer); ``bad_status`` (any other non-200); ``bad_content``
(not an image, e.g. an HTML page served with 200; a truncated or corrupt image; outside
``min_bytes``/``max_bytes``); ``protocol`` (TLS failure or a broken HTTP answer).
"""

from __future__ import annotations

import asyncio
import errno
import ssl
import time
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Literal

import aiohttp
from pydantic import BeforeValidator, Field
from yarl import URL

from netwatch.configbase import CaFile, Duration, SecretFile, Strict, reveal
from netwatch.model import FieldValue, Outcome, Reason, Sample, Target, now_ns
from netwatch.probes.base import Probe, ProbeResources
from netwatch.probes.httpauth import AuthMode, Credentials, choose, describe, parse_challenges, unanswerable
from netwatch.probes.httpsession import http_session
from netwatch.probes.images import ImageInfo, inspect_image
from netwatch.probes.urltemplate import check_template, fill, for_logs

_CHUNK = 65536


def _snapshot_url(value: object) -> str:
    return check_template(value, ("http", "https"))


SnapshotUrl = Annotated[str, BeforeValidator(_snapshot_url)]


class SnapshotConfig(Strict):
    """How to fetch a camera's snapshot. Keys are optional so they can be layered
    (``defaults.snapshot`` -> ``defaults.kinds.camera.snapshot`` -> the device); :meth:`problems`
    checks the merged result."""

    url: SnapshotUrl | None = Field(
        default=None,
        description="snapshot URL, {address} = the device's address, e.g. http://{address}/snapshot.jpg; "
        "no credentials in it",
    )
    username_file: SecretFile | None = Field(default=None, description="file holding the HTTP user name")
    password_file: SecretFile | None = Field(default=None, description="file holding the HTTP password")
    # Digest by default: Basic over plain RTSP/HTTP hands the password to anyone on the camera VLAN.
    auth: AuthMode = Field(
        default="digest",
        description="digest: never send the password in clear; auto: Digest, else Basic; basic: Basic only",
    )
    tls: Literal["verify", "insecure"] = Field(default="verify", description="insecure: skip certificate checks")
    ca_file: CaFile | None = Field(default=None, description="CA bundle to verify the camera with")
    min_bytes: int = Field(default=0, ge=0, description="a smaller picture is bad_content (a blank frame, say)")
    max_bytes: int = Field(default=10_000_000, ge=1, le=200_000_000, description="stop reading beyond this")
    timeout: Duration = Field(default=5.0, gt=0, description="longest the whole exchange may take")

    def budget_s(self) -> float:
        """Return how long one check may take (it must fit in the check's timeout)."""
        return self.timeout

    def budget_text(self) -> str:
        return f"snapshot timeout {self.timeout:g}s"

    def problems(self) -> list[str]:
        """Return what this (merged) config lacks or contradicts."""
        issues = []
        if self.url is None:
            issues.append("snapshot needs url (e.g. http://{address}/snapshot.jpg)")
        if (self.username_file is None) != (self.password_file is None):
            issues.append("snapshot needs both username_file and password_file, or neither")
        if self.min_bytes > self.max_bytes:
            issues.append(f"snapshot min_bytes {self.min_bytes} is above max_bytes {self.max_bytes}")
        return issues


@dataclass(frozen=True, slots=True)
class _Answer:
    """What one GET got: status, where it ended up, its challenges, and the body (200 only)."""

    status: int
    reason: str
    url: URL
    challenges: list[str]
    content_type: str
    body: bytes
    problem: str | None = None  # the body could not be read whole: why


@cache
def _tls_context(ca_file: str | None) -> ssl.SSLContext | bool:
    """Return how to verify cameras: the system's CAs (True), or one context per CA bundle for all of them."""
    return True if ca_file is None else ssl.create_default_context(cafile=ca_file)


class SnapshotProbe:
    """GET the snapshot (answering one auth challenge) and check that the body is a complete picture."""

    def __init__(self, target: Target, cfg: SnapshotConfig, resources: ProbeResources) -> None:
        assert cfg.url is not None  # the inventory refuses a merged config without one
        self._cfg = cfg
        self._resources = resources
        self._url = URL(fill(cfg.url, target.address), encoded=False)
        self._shown = for_logs(str(self._url))
        self._tags = {"device": target.device, "site": target.site}
        user, password = reveal(cfg.username_file), reveal(cfg.password_file)
        self._creds = Credentials(user, password) if user is not None and password is not None else None
        self._ssl: ssl.SSLContext | bool = False if cfg.tls == "insecure" else _tls_context(cfg.ca_file)

    async def check(self) -> Outcome:
        ts = now_ns()
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._cfg.timeout):
                return await self._exchange(ts, started)
        except TimeoutError:
            return self._result(False, "timeout", f"no picture within {self._cfg.timeout:g}s", ts, None)
        except aiohttp.ClientConnectorDNSError as exc:
            return self._result(False, "dns", f"cannot resolve {self._url.host!r}: {exc.os_error}", ts, None)
        except aiohttp.ClientConnectorCertificateError as exc:
            detail = f"TLS certificate not trusted: {exc.certificate_error}"
            return self._result(False, "protocol", detail, ts, None)
        except aiohttp.ClientSSLError as exc:
            return self._result(False, "protocol", f"TLS failed: {exc}", ts, None)
        except aiohttp.ClientConnectorError as exc:
            code = exc.os_error.errno
            if code == errno.ECONNREFUSED:
                detail = f"{self._url.host}:{self._url.port} refused the connection"
                return self._result(False, "refused", detail, ts, None)
            unreachable = code in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN)
            detail = f"cannot connect: {exc.os_error.strerror or type(exc.os_error).__name__}"
            return self._result(False, "unreachable" if unreachable else "error", detail, ts, None)
        except aiohttp.TooManyRedirects:
            return self._result(False, "bad_status", "too many redirects", ts, started)
        except (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientResponseError,
            aiohttp.ClientPayloadError,
            aiohttp.ClientOSError,  # reset in the middle of the answer
        ) as exc:
            detail = f"broken HTTP answer ({type(exc).__name__})"
            return self._result(False, "protocol", detail, ts, started)
        except aiohttp.ClientError as exc:
            return self._result(False, "error", f"{type(exc).__name__}: {exc}", ts, None)

    async def _exchange(self, ts: int, started: float) -> Outcome:
        answer = await self._get(self._url, {})
        if answer.status == 401:
            challenges = parse_challenges(answer.challenges)
            if self._creds is None:
                detail = f"needs credentials ({describe(challenges)}): set username_file and password_file"
                return self._result(False, "auth", detail, ts, started)
            if answer.url.origin() != self._url.origin():
                # The camera's credentials are for the camera, not for wherever a redirect leads.
                detail = f"{answer.url.host} asked for credentials after a redirect; they go only to {self._url.host}"
                return self._result(False, "auth", detail, ts, started)
            chosen = choose(challenges, self._creds, self._cfg.auth)
            if chosen is None:
                detail = unanswerable(challenges, self._cfg.auth)
                return self._result(False, "auth", detail, ts, started)
            # Answer at the URL that challenged (after any redirect), with its path as the digest uri.
            header = chosen.header("GET", answer.url.raw_path_qs)
            answer = await self._get(answer.url, {"Authorization": header})
            if answer.status == 401:
                return self._result(False, "auth", f"credentials refused ({chosen.scheme})", ts, started)
        if answer.status == 403:
            return self._result(False, "auth", f"403 {answer.reason}", ts, started)
        if answer.status != 200:
            detail = f"{self._shown} answered {answer.status} {answer.reason}"
            return self._result(False, "bad_status", detail, ts, started)
        size = len(answer.body)
        if answer.problem is not None:
            return self._result(False, "bad_content", answer.problem, ts, started, size=size)
        found = inspect_image(answer.body)
        if not isinstance(found, ImageInfo):
            what = "not an image" if found.kind == "not_image" else f"{found.kind} image"
            detail = f"{what}: {found.detail} ({answer.content_type or 'no Content-Type'}, {size} bytes)"
            return self._result(False, "bad_content", detail, ts, started, size=size)
        if size < self._cfg.min_bytes:
            detail = f"{found} of only {size} bytes (min_bytes {self._cfg.min_bytes})"
            return self._result(False, "bad_content", detail, ts, started, size=size)
        return self._result(True, "ok", f"{found}, {size} bytes", ts, started, size=size)

    async def _get(self, url: URL, headers: dict[str, str]) -> _Answer:
        session = http_session(self._resources)
        async with session.get(url, headers=headers, ssl=self._ssl, allow_redirects=True, max_redirects=5) as resp:
            challenges = resp.headers.getall("WWW-Authenticate", [])
            content_type = resp.headers.get("Content-Type", "")
            if resp.status != 200:
                return _Answer(resp.status, resp.reason or "", resp.url, challenges, content_type, b"")
            limit = self._cfg.max_bytes
            if resp.content_length is not None and resp.content_length > limit:
                problem = f"picture of {resp.content_length} bytes is above max_bytes {limit}"
                return _Answer(200, resp.reason or "", resp.url, challenges, content_type, b"", problem)
            body = bytearray()
            try:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    body += chunk
                    if len(body) > limit:
                        problem = f"picture is above max_bytes {limit}"
                        return _Answer(200, resp.reason or "", resp.url, challenges, content_type, bytes(body), problem)
            except aiohttp.ClientPayloadError:
                # The connection ended before Content-Length (or the last chunk): a cut-off picture.
                expected = f" of {resp.content_length}" if resp.content_length is not None else ""
                problem = f"truncated image: the connection closed after {len(body)}{expected} bytes"
                return _Answer(200, resp.reason or "", resp.url, challenges, content_type, bytes(body), problem)
            return _Answer(200, resp.reason or "", resp.url, challenges, content_type, bytes(body))

    def _result(
        self, up: bool, reason: Reason, detail: str, ts: int, started: float | None, *, size: int | None = None
    ) -> Outcome:
        fields: dict[str, FieldValue] = {"up": int(up)}
        if started is not None:
            fields["latency_ms"] = round((time.monotonic() - started) * 1000.0, 3)
        if size is not None:
            fields["bytes"] = size
        sample = Sample("snapshot", {**self._tags, "reason": reason}, fields, ts)
        return Outcome(up=up, reason=reason, detail=detail, samples=(sample,))


def build(target: Target, cfg: SnapshotConfig, resources: ProbeResources) -> Probe:
    """Build a snapshot probe for one camera."""
    return SnapshotProbe(target, cfg, resources)
