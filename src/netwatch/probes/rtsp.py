"""RTSP stream check for cameras (measurement ``rtsp``): OPTIONS, then DESCRIBE, then the SDP.

A camera whose web page answers can still have a dead encoder; DESCRIBE is the cheapest request
that the streaming server itself must answer, and its SDP says whether a video track is offered.
No media is set up or played, so a check costs the camera two small requests on one connection.

The client is a few dozen lines of our own on asyncio streams rather than aiortsp: every read is
bounded (status line, headers, body), each step's timeout is ours to name ("no answer to DESCRIBE
after OPTIONS answered"), and garbage is told apart from silence, which aiortsp folds into
exceptions whose message carries the status.

Outcome reasons (the closed set of :mod:`netwatch.model`): ``ok``; ``timeout`` (also a server that
answers OPTIONS and then hangs); ``refused``; ``dns``; ``unreachable``; ``auth`` (401 without
credentials configured, or again after them, or a challenge ``auth:`` may not answer);
``bad_status`` (404 for a path with no stream, and any other non-200; ``status_code`` says which);
``bad_content`` (the SDP offers no video track, ``video=0``); ``protocol`` (the answer is not RTSP,
or DESCRIBE's body is not SDP).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from dataclasses import dataclass, field
from typing import Annotated, Final
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field

from netwatch.configbase import Duration, SecretFile, Strict, reveal
from netwatch.model import FieldValue, Outcome, Reason, Sample, Target, now_ns
from netwatch.probes.base import Probe, ProbeResources
from netwatch.probes.httpauth import (
    Authenticator,
    AuthMode,
    Credentials,
    choose,
    describe,
    parse_challenges,
    unanswerable,
)
from netwatch.probes.urltemplate import check_template, fill, for_logs

#: Longest status or header line, all headers together, and the SDP we accept: a real answer is
#: well under a kilobyte, so anything larger is not a camera talking RTSP.
MAX_LINE: Final = 4096
MAX_HEADERS: Final = 16384
MAX_BODY: Final = 65536
USER_AGENT: Final = "netwatch"
DEFAULT_PORT: Final = 554

#: Static RTP payload types (RFC 3551) a camera may offer without an a=rtpmap line.
_STATIC_VIDEO: Final = {26: "JPEG/90000", 31: "H261/90000", 32: "MPV/90000", 33: "MP2T/90000", 34: "H263/90000"}


def _rtsp_url(value: object) -> str:
    return check_template(value, ("rtsp",))


RtspUrl = Annotated[str, BeforeValidator(_rtsp_url)]


class RtspConfig(Strict):
    """How to check a camera's RTSP stream. Keys are optional so they can be layered
    (``defaults.rtsp`` -> ``defaults.kinds.camera.rtsp`` -> the device); :meth:`problems`
    checks the merged result."""

    url: RtspUrl | None = Field(
        default=None,
        description="stream URL, {address} = the device's address, e.g. rtsp://{address}:554/stream1; "
        "no credentials in it",
    )
    username_file: SecretFile | None = Field(default=None, description="file holding the RTSP user name")
    password_file: SecretFile | None = Field(default=None, description="file holding the RTSP password")
    # Digest by default: Basic over plain RTSP/HTTP hands the password to anyone on the camera VLAN.
    auth: AuthMode = Field(
        default="digest",
        description="digest: never send the password in clear; auto: Digest, else Basic; basic: Basic only",
    )
    timeout: Duration = Field(default=5.0, gt=0, description="longest the whole exchange may take")

    def budget_s(self) -> float:
        """Return how long one check may take (it must fit in the check's timeout)."""
        return self.timeout

    def budget_text(self) -> str:
        return f"rtsp timeout {self.timeout:g}s"

    def problems(self) -> list[str]:
        """Return what this (merged) config lacks."""
        issues = []
        if self.url is None:
            issues.append("rtsp needs url (e.g. rtsp://{address}:554/stream1)")
        if (self.username_file is None) != (self.password_file is None):
            issues.append("rtsp needs both username_file and password_file, or neither")
        return issues


# -- the wire ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Response:
    """One RTSP response: status, headers (names lower-cased, repeats kept) and body."""

    status: int
    phrase: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


class _Failure(Exception):
    """Ends a check early with a reason; internal, never leaves :meth:`RtspProbe.check`."""

    def __init__(self, reason: Reason, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.reason: Reason = reason
        self.detail = detail
        self.status = status


class _Closed(_Failure):
    """The server closed the connection instead of answering (some do after a 401)."""


def _printable(data: bytes, limit: int = 24) -> str:
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in data[:limit])
    return text + ("…" if len(data) > limit else "")


async def read_response(reader: asyncio.StreamReader, method: str) -> Response:
    """Read one response, refusing anything that is not RTSP/1.x or is larger than a camera's answer."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise _Failure("protocol", f"answered {method} with {_printable(exc.partial)!r}, not RTSP") from None
        raise _Closed("protocol", f"closed the connection without answering {method}") from None
    except asyncio.LimitOverrunError:
        raise _Failure("protocol", f"answered {method} with a long line that is not RTSP") from None
    parts = line.rstrip(b"\r\n").split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"RTSP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
        raise _Failure("protocol", f"answered {method} with {_printable(line)!r}, not RTSP")
    status = int(parts[1])
    phrase = parts[2].decode("latin-1").strip() if len(parts) > 2 else ""
    headers: list[tuple[str, str]] = []
    size = len(line)
    while True:
        try:
            raw = await reader.readuntil(b"\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise _Failure("protocol", f"the answer to {method} broke off in its headers", status) from None
        size += len(raw)
        if size > MAX_HEADERS:
            raise _Failure("protocol", f"the answer to {method} has more than {MAX_HEADERS} bytes of headers", status)
        raw = raw.rstrip(b"\r\n")
        if not raw:
            break
        name, sep, value = raw.partition(b":")
        if not sep:
            raise _Failure("protocol", f"the answer to {method} has a malformed header line", status)
        headers.append((name.strip().decode("latin-1").lower(), value.strip().decode("latin-1")))
    length_text = next((v for k, v in headers if k == "content-length"), "0")
    if not length_text.isdigit():
        raise _Failure("protocol", f"the answer to {method} has a bad Content-Length", status)
    length = int(length_text)
    if length > MAX_BODY:
        raise _Failure("protocol", f"the answer to {method} announces {length} bytes (more than {MAX_BODY})", status)
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise _Failure(
            "protocol", f"the answer to {method} broke off after {len(exc.partial)} of {length} bytes", status
        ) from None
    return Response(status, phrase, headers, body)


@dataclass(frozen=True, slots=True)
class Media:
    """One ``m=`` section of an SDP: its type and the encoding of its first format."""

    kind: str
    encoding: str | None


def parse_sdp(text: str) -> list[Media] | None:
    """Return the media an SDP offers, or None if the text is not an SDP session description."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("v="):
        return None
    medias: list[tuple[str, int | None, dict[int, str]]] = []
    for line in lines:
        if line.startswith("m="):
            words = line[2:].split()
            first = int(words[3]) if len(words) > 3 and words[3].isdigit() else None
            medias.append((words[0].lower() if words else "", first, {}))
        elif line.startswith("a=rtpmap:") and medias:
            pt, _, name = line[len("a=rtpmap:") :].partition(" ")
            if pt.isdigit():
                medias[-1][2][int(pt)] = name.strip()
    out = []
    for kind, first, rtpmap in medias:
        encoding: str | None = rtpmap.get(first) if first is not None else None
        if encoding is None and kind == "video" and first is not None:
            encoding = _STATIC_VIDEO.get(first)
        out.append(Media(kind, encoding))
    return out


# -- the probe --------------------------------------------------------------------------------


@dataclass
class _Progress:
    """How far a check got: for the timeout's detail and the sample's status and latency."""

    step: str = "connect"
    answered: list[str] = field(default_factory=list)
    status: int | None = None


class _Connection:
    """One RTSP connection: numbered requests, answered one at a time, reopened if the server closes it."""

    def __init__(self, host: str, port: int, url: str) -> None:
        self._host, self._port, self._url = host, port, url
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._cseq = 0
        self._answered = 0  # responses read on the current connection

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._reader.at_eof():
            self.close()
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port, limit=MAX_LINE)
            self._answered = 0
        return self._reader, self._writer

    async def request(self, method: str, headers: dict[str, str]) -> Response:
        """Send a request and read its response; on a connection the server has since closed, ask again on a new one."""
        try:
            return await self._request(method, headers)
        except (_Closed, ConnectionResetError, BrokenPipeError):
            if self._answered == 0:
                raise  # a fresh connection closed: that is the server's answer
            self.close()
            return await self._request(method, headers)

    async def _request(self, method: str, headers: dict[str, str]) -> Response:
        reader, writer = await self._open()
        self._cseq += 1
        lines = [f"{method} {self._url} RTSP/1.0", f"CSeq: {self._cseq}", f"User-Agent: {USER_AGENT}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        await writer.drain()
        response = await read_response(reader, method)
        self._answered += 1
        if (response.header("connection") or "").lower() == "close":
            self.close()
        return response

    def close(self) -> None:
        if self._writer is not None:
            # No wait_closed(): a peer that never acknowledges must not hold the check open.
            self._writer.close()
        self._reader = self._writer = None


class RtspProbe:
    """OPTIONS then DESCRIBE on one connection, answering an auth challenge once with the configured credentials."""

    def __init__(self, target: Target, cfg: RtspConfig) -> None:
        assert cfg.url is not None  # the inventory refuses a merged config without one
        self._cfg = cfg
        self._url = fill(cfg.url, target.address)
        parts = urlsplit(self._url)
        self._host = parts.hostname or target.address
        self._port = parts.port or DEFAULT_PORT
        self._shown = for_logs(self._url)
        self._tags = {"device": target.device, "site": target.site}
        user, password = reveal(cfg.username_file), reveal(cfg.password_file)
        self._creds = Credentials(user, password) if user is not None and password is not None else None

    async def check(self) -> Outcome:
        ts = now_ns()
        started = time.monotonic()
        progress = _Progress()
        conn = _Connection(self._host, self._port, self._url)
        try:
            async with asyncio.timeout(self._cfg.timeout):
                return await self._exchange(conn, progress, ts, started)
        except _Failure as failure:
            status = failure.status if failure.status is not None else progress.status
            return self._result(False, failure.reason, failure.detail, ts, started, status=status)
        except TimeoutError:
            after = f" ({', '.join(progress.answered)} answered)" if progress.answered else ""
            what = "could not connect" if progress.step == "connect" else f"no answer to {progress.step}"
            detail = f"{what} within {self._cfg.timeout:g}s{after}"
            return self._result(False, "timeout", detail, ts, None, status=progress.status)
        except ConnectionRefusedError:
            return self._result(False, "refused", f"{self._host}:{self._port} refused the connection", ts, None)
        except socket.gaierror as exc:
            return self._result(False, "dns", f"cannot resolve {self._host!r}: {exc.strerror}", ts, None)
        except ConnectionError as exc:  # reset or aborted mid-exchange: something answered, badly
            detail = f"connection lost during {progress.step} ({type(exc).__name__})"
            return self._result(False, "protocol", detail, ts, None, status=progress.status)
        except OSError as exc:
            unreachable = exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN)
            detail = f"{progress.step}: {exc.strerror or type(exc).__name__}"
            return self._result(False, "unreachable" if unreachable else "error", detail, ts, None)
        finally:
            conn.close()

    async def _exchange(self, conn: _Connection, progress: _Progress, ts: int, started: float) -> Outcome:
        authn: list[Authenticator] = []  # the one chosen after a challenge, reused for later requests
        progress.step = "OPTIONS"
        options = await self._ask(conn, "OPTIONS", {}, authn, progress)
        self._expect_ok(options, "OPTIONS")
        progress.step = "DESCRIBE"
        answer = await self._ask(conn, "DESCRIBE", {"Accept": "application/sdp"}, authn, progress)
        self._expect_ok(answer, "DESCRIBE")
        medias = parse_sdp(answer.body.decode("utf-8", errors="replace"))
        if medias is None:
            kind = answer.header("content-type") or "no Content-Type"
            raise _Failure("protocol", f"DESCRIBE answered 200 without an SDP ({kind})", answer.status)
        video = [m for m in medias if m.kind == "video"]
        if not video:
            offered = ", ".join(m.kind for m in medias) or "nothing"
            detail = f"{self._shown} offers no video track (media: {offered})"
            return self._result(False, "bad_content", detail, ts, started, status=answer.status, video=False)
        codec = video[0].encoding or "unknown codec"
        return self._result(True, "ok", f"video {codec}", ts, started, status=answer.status, video=True)

    async def _ask(
        self,
        conn: _Connection,
        method: str,
        headers: dict[str, str],
        authn: list[Authenticator],
        progress: _Progress,
    ) -> Response:
        """Send one request; answer a 401 once with the credentials (again only if the nonce went stale)."""
        if authn:
            headers = headers | {"Authorization": authn[0].header(method, self._url)}
        response = await conn.request(method, headers)
        progress.status = response.status
        for _ in range(2):  # the first challenge, and once more if the camera says our nonce went stale
            if response.status != 401:
                break
            challenges = parse_challenges(response.all("www-authenticate"))
            if self._creds is None:
                detail = f"{method} needs credentials ({describe(challenges)}): set username_file and password_file"
                raise _Failure("auth", detail, 401)
            stale = any(c.params.get("stale", "").lower() == "true" for c in challenges)
            if authn and not stale:
                raise _Failure("auth", f"{method}: credentials refused ({authn[0].scheme})", 401)
            chosen = choose(challenges, self._creds, self._cfg.auth)
            if chosen is None:
                detail = f"{method}: {unanswerable(challenges, self._cfg.auth)}"
                raise _Failure("auth", detail, 401)
            authn[:] = [chosen]
            response = await conn.request(method, headers | {"Authorization": chosen.header(method, self._url)})
            progress.status = response.status
        if response.status == 401:
            raise _Failure("auth", f"{method}: credentials refused ({authn[0].scheme})", 401)
        progress.answered.append(method)
        return response

    def _expect_ok(self, response: Response, method: str) -> None:
        if response.status == 200:
            return
        if response.status == 404:
            raise _Failure("bad_status", f"no stream at {self._shown} (404 {response.phrase})", 404)
        if response.status == 403:
            raise _Failure("auth", f"{method}: 403 {response.phrase}", 403)
        raise _Failure("bad_status", f"{method} answered {response.status} {response.phrase}", response.status)

    def _result(
        self,
        up: bool,
        reason: Reason,
        detail: str,
        ts: int,
        started: float | None,
        *,
        status: int | None = None,
        video: bool | None = None,
    ) -> Outcome:
        fields: dict[str, FieldValue] = {"up": int(up)}
        if status is not None:
            fields["status_code"] = status
        if started is not None:
            fields["latency_ms"] = round((time.monotonic() - started) * 1000.0, 3)
        if video is not None:
            fields["video"] = int(video)
        sample = Sample("rtsp", {**self._tags, "reason": reason}, fields, ts)
        return Outcome(up=up, reason=reason, detail=detail, samples=(sample,))


def build(target: Target, cfg: RtspConfig, resources: ProbeResources) -> Probe:
    """Build an RTSP probe for one camera."""
    return RtspProbe(target, cfg)
