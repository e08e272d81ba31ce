"""The lab's camera streams: a small RTSP responder per camera, with faults on command.

What netwatch's ``rtsp`` check asks is what this answers: OPTIONS, then DESCRIBE, whose SDP
offers an H.264 video track. No media is ever set up or sent, so a city of cameras costs a
listening socket each. Real-server interop is tested against GStreamer's gst-rtsp-server
(tests/servers/rtsp.py); this one exists to be told to break.

* OPTIONS answers 200 to anyone, as cameras do; DESCRIBE asks for credentials when the camera
  has a :class:`~netwatch.lab.challenge.Gate` (401 with a challenge, then 200 for the right
  answer). Cameras' RTSP servers mostly speak RFC 2069 Digest, so give the gate ``qop=False``.
* Every answer echoes the request's CSeq; a request without one is refused with 400.
* Faults: ``no_video`` (an SDP with an audio track only), ``hang`` (OPTIONS is answered, then
  nothing more on that connection), ``not_found`` (DESCRIBE answers 404: the stream is gone),
  ``down`` (connection refused, open connections dropped); ``clear`` ends any fault.
"""

from __future__ import annotations

import asyncio
import ipaddress
import zlib
from dataclasses import dataclass, field
from functools import partial
from typing import Final, Literal, Self, get_args
from urllib.parse import urlsplit

from netwatch.lab.challenge import Gate

RtspFault = Literal["no_video", "hang", "not_found", "down", "clear"]
RTSP_FAULTS: Final[frozenset[str]] = frozenset(get_args(RtspFault))
STREAM_PATH: Final = "/stream1"

#: Longest request line or header line, and all headers of one request: a client's request is a
#: few hundred bytes, and a lab must not be made to buffer whatever a stray client sends.
_MAX_LINE: Final = 4096
_MAX_HEADERS: Final = 16384
_MAX_BODY: Final = 65536
_PUBLIC: Final = "OPTIONS, DESCRIBE"


@dataclass
class _Camera:
    device: str
    address: str
    port: int
    path: str
    gate: Gate | None
    fault: str = "clear"
    server: asyncio.Server | None = None
    #: Open connections and the tasks serving them, closed and awaited when the camera goes down.
    clients: dict[asyncio.StreamWriter, asyncio.Task[None]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    uri: str
    headers: dict[str, str]  # names lower-cased


class _BadRequest(Exception):
    """What arrived is not an RTSP request; the connection is closed."""


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """Read one request (None when the client closed the connection between requests)."""
    line = await reader.readline()
    while line in (b"\r\n", b"\n"):  # RFC 2326 allows empty lines between requests
        line = await reader.readline()
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("RTSP/1."):
        raise _BadRequest(f"not an RTSP request line: {line[:60]!r}")
    headers: dict[str, str] = {}
    size = len(line)
    while True:
        raw = await reader.readline()
        size += len(raw)
        if not raw or size > _MAX_HEADERS:
            raise _BadRequest("headers broke off or are too long")
        text = raw.decode("latin-1").rstrip("\r\n")
        if not text:
            break
        name, sep, value = text.partition(":")
        if not sep:
            raise _BadRequest("a header line without a colon")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length", "0")
    if not length.isdigit() or int(length) > _MAX_BODY:
        raise _BadRequest("bad Content-Length")
    await reader.readexactly(int(length))  # a request body (SET_PARAMETER, say) is read and ignored
    return _Request(parts[0], parts[1], headers)


def _response(
    status: int, phrase: str, cseq: str | None, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    lines = [f"RTSP/1.0 {status} {phrase}"]
    if cseq is not None:
        lines.append(f"CSeq: {cseq}")
    lines.append("Server: netwatch-lab")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def sdp(device: str, address: str, *, video: bool = True) -> str:
    """Return the session description a camera offers: H.264 video, or (``video=False``) audio only."""
    family = "IP6" if ":" in address else "IP4"
    session = zlib.crc32(device.encode())  # stable per camera, as a real one's is per boot
    lines = [
        "v=0",
        f"o=- {session} 1 IN {family} {address}",
        f"s={device}",
        f"c=IN {family} {'::' if family == 'IP6' else '0.0.0.0'}",
        "t=0 0",
        "a=control:*",
        "a=range:npt=0-",
    ]
    if video:
        lines += [
            "m=video 0 RTP/AVP 96",
            "a=rtpmap:96 H264/90000",
            "a=fmtp:96 packetization-mode=1;profile-level-id=42C01F",
            "a=control:trackID=0",
        ]
    else:  # a camera whose video encoder is gone still offers its microphone
        lines += ["m=audio 0 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=control:trackID=1"]
    return "\r\n".join(lines) + "\r\n"


class RtspLab:
    """RTSP responders for cameras on their own addresses, and the faults the lab sets on them.

    Add cameras, then ``start()`` (or ``async with``); ``fault()`` while running; ``stop()``.
    Port 0 picks a free port, which :meth:`url` then names.
    """

    def __init__(self) -> None:
        self._cameras: dict[str, _Camera] = {}
        self._running = False

    def add_camera(
        self, device: str, address: str, port: int, *, path: str = STREAM_PATH, gate: Gate | None = None
    ) -> None:
        """A camera streaming at ``rtsp://address:port{path}``."""
        if self._running:
            raise RuntimeError("add cameras before start()")
        if device in self._cameras:
            raise ValueError(f"{device} is already in the RTSP lab")
        if not path.startswith("/"):
            raise ValueError(f"{device}: a path starts with /")
        self._cameras[device] = _Camera(device, str(ipaddress.ip_address(address)), port, path, gate)

    async def start(self) -> None:
        self._running = True
        try:
            for cam in self._cameras.values():
                await self._listen(cam)
        except BaseException:
            await self.stop()  # an address that cannot be bound must not leave the others listening
            raise

    async def stop(self) -> None:
        self._running = False
        for cam in self._cameras.values():
            await self._close(cam)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _listen(self, cam: _Camera) -> None:
        cam.server = await asyncio.start_server(partial(self._serve, cam), cam.address, cam.port, limit=_MAX_LINE)
        cam.port = cam.server.sockets[0].getsockname()[1]  # port 0: keep the one picked for `clear`

    async def _close(self, cam: _Camera) -> None:
        if cam.server is not None:
            cam.server.close()
            cam.server = None
        for writer in cam.clients:
            writer.close()  # its handler sees EOF and ends, a hung one too
        # Awaited, not left to the loop: Python 3.11 logs a handler cancelled at loop shutdown as an error.
        await asyncio.gather(*cam.clients.values(), return_exceptions=True)
        cam.clients.clear()

    async def fault(self, device: str, fault: RtspFault) -> None:
        """Set a camera's stream fault (``clear`` ends it)."""
        cam = self._camera(device)
        if fault not in RTSP_FAULTS:
            raise ValueError(f"{device}: RTSP faults are {', '.join(sorted(RTSP_FAULTS))}, not {fault!r}")
        if fault == "down":
            await self._close(cam)
        elif cam.server is None and self._running:
            await self._listen(cam)
        cam.fault = fault

    def faults(self) -> dict[str, str]:
        """Return every camera's current stream fault (``clear`` for none)."""
        return {name: cam.fault for name, cam in self._cameras.items()}

    def url(self, device: str) -> str:
        """Return the stream URL a netwatch config names for this camera."""
        cam = self._camera(device)
        host = f"[{cam.address}]" if ":" in cam.address else cam.address
        return f"rtsp://{host}:{cam.port}{cam.path}"

    def _camera(self, device: str) -> _Camera:
        try:
            return self._cameras[device]
        except KeyError:
            raise KeyError(f"{device} is not a camera of the RTSP lab") from None

    # -- one connection -------------------------------------------------------------------------

    async def _serve(self, cam: _Camera, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # asyncio.start_server runs each connection's handler as a task
        cam.clients[writer] = task
        try:
            while (request := await _read_request(reader)) is not None:
                if cam.fault == "hang" and request.method != "OPTIONS":
                    # Accepted and read, never answered: wait for the client (or the lab) to hang up.
                    while await reader.read(_MAX_LINE):
                        pass
                    return
                writer.write(self._answer(cam, request))
                await writer.drain()
        except (_BadRequest, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # garbage or a vanished client: close, as a camera would
        finally:
            cam.clients.pop(writer, None)
            writer.close()

    def _answer(self, cam: _Camera, request: _Request) -> bytes:
        cseq = request.headers.get("cseq")
        if cseq is None:
            return _response(400, "Bad Request", None)
        if request.method == "OPTIONS":
            return _response(200, "OK", cseq, {"Public": _PUBLIC})
        if request.method != "DESCRIBE":
            return _response(501, "Not Implemented", cseq, {"Public": _PUBLIC})
        path = urlsplit(request.uri).path.rstrip("/") or "/"
        if path != cam.path.rstrip("/") or cam.fault == "not_found":
            return _response(404, "Not Found", cseq)
        if cam.gate is not None:
            verdict = cam.gate.check(request.method, request.uri, request.headers.get("authorization"))
            if verdict != "ok":
                challenge = cam.gate.challenge(stale=verdict == "stale")
                return _response(401, "Unauthorized", cseq, {"WWW-Authenticate": challenge})
        body = sdp(cam.device, cam.address, video=cam.fault != "no_video").encode()
        base = request.uri if request.uri.endswith("/") else request.uri + "/"
        return _response(200, "OK", cseq, {"Content-Base": base, "Content-Type": "application/sdp"}, body)
