"""RTSP probe against a small asyncio responder on loopback, for what a real server will not do."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from netwatch.config import ConfigError, load_config
from netwatch.contract import CONTRACT
from netwatch.model import Outcome, Target
from netwatch.probes.httpauth import parse_challenges
from netwatch.probes.rtsp import RtspConfig, RtspProbe, parse_sdp
from tests.servers.common import free_port

TARGET = Target("cam-1", "yard", "camera", "127.0.0.1")

VIDEO_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=cam\r\nt=0 0\r\n"
    "m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
)
AUDIO_SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=mic\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

Answer = bytes | Callable[[str, dict[str, str]], bytes] | None  # None: read the request, never answer


def reply(status: str, headers: dict[str, str] | None = None, body: str = "") -> bytes:
    lines = [f"RTSP/1.0 {status}", "CSeq: 1", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if body:
        lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


OK = reply("200 OK", {"Public": "OPTIONS, DESCRIBE"})
SDP_OK = reply("200 OK", {"Content-Type": "application/sdp"}, VIDEO_SDP)


@dataclass
class Responder:
    """A loopback RTSP server answering each method from a script; records requests and connections."""

    script: dict[str, Answer]
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    close_after: set[str] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                first, *rest = head.decode().split("\r\n")
                method = first.split(" ")[0]
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in rest if line)}
                self.requests.append((method, headers))
                answer = self.script.get(method, reply("501 Not Implemented"))
                if answer is None:
                    await asyncio.sleep(3600)
                    return
                writer.write(answer(method, headers) if callable(answer) else answer)
                await writer.drain()
                if method in self.close_after:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    def url(self, path: str = "/stream1") -> str:
        return f"rtsp://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def responder() -> AsyncIterator[Callable[..., Any]]:
    servers: list[asyncio.Server] = []

    async def start(script: dict[str, Answer], **kwargs: Any) -> Responder:
        r = Responder(script, **kwargs)
        server = await asyncio.start_server(r.handle, "127.0.0.1", 0)
        r.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return r

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def probe(url: str, **settings: Any) -> RtspProbe:
    return RtspProbe(TARGET, RtspConfig.model_validate({"url": url, "timeout": 1.0} | settings))


def fields(outcome: Outcome) -> dict[str, Any]:
    (sample,) = outcome.samples
    assert sample.measurement == "rtsp"
    assert sample.tags == {"device": "cam-1", "site": "yard", "reason": outcome.reason}
    assert set(sample.fields) <= set(CONTRACT["rtsp"][1])
    return dict(sample.fields)


def creds(tmp_path: Path, user: str = "viewer", password: str = 'pa:ss w"rd') -> dict[str, str]:
    (tmp_path / "u").write_text(user)
    (tmp_path / "p").write_text(password + "\n")
    return {"username_file": str(tmp_path / "u"), "password_file": str(tmp_path / "p")}


# -- outcomes -----------------------------------------------------------------------------------


async def test_video_track_is_up_and_names_codec(responder: Callable[..., Any]) -> None:
    """An SDP with audio and H.264 video: up, video=1, codec in the detail, OPTIONS before DESCRIBE."""
    r = await responder({"OPTIONS": OK, "DESCRIBE": SDP_OK})
    outcome = await probe(r.url()).check()
    assert outcome.up, outcome.detail
    assert outcome.detail == "video H264/90000"
    assert fields(outcome) | {"latency_ms": 0} == {"up": 1, "status_code": 200, "video": 1, "latency_ms": 0}
    assert [m for m, _ in r.requests] == ["OPTIONS", "DESCRIBE"]
    assert r.requests[1][1]["accept"] == "application/sdp"
    assert r.connections == 1


async def test_audio_only_sdp_is_no_video(responder: Callable[..., Any]) -> None:
    """A stream whose SDP offers no video track is down (bad_content) with video=0."""
    r = await responder({"OPTIONS": OK, "DESCRIBE": reply("200 OK", {"Content-Type": "application/sdp"}, AUDIO_SDP)})
    outcome = await probe(r.url()).check()
    assert not outcome.up
    assert outcome.reason == "bad_content"
    assert "no video track (media: audio)" in outcome.detail
    assert fields(outcome)["video"] == 0


async def test_hang_after_options_is_timeout_naming_describe(responder: Callable[..., Any]) -> None:
    """A server that answers OPTIONS and never DESCRIBE times out within the probe's timeout, saying where."""
    r = await responder({"OPTIONS": OK, "DESCRIBE": None})
    started = time.monotonic()
    outcome = await probe(r.url(), timeout=0.5).check()
    assert 0.45 < time.monotonic() - started < 1.5
    assert outcome.reason == "timeout"
    assert outcome.detail == "no answer to DESCRIBE within 0.5s (OPTIONS answered)"
    assert fields(outcome) == {"up": 0, "status_code": 200}


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", id="http"),
        pytest.param(b"SSH-2.0-OpenSSH_9.2\r\n", id="ssh-banner"),
        pytest.param(b"\x16\x03\x01\x00\x05hello" * 1000, id="binary-no-newline"),
        pytest.param(b"RTSP/1.0 200 OK\r\nCSeq 1\r\n\r\n", id="header-without-colon"),
        pytest.param(b"RTSP/1.0 200 OK\r\nContent-Length: 99999999\r\n\r\n", id="huge-body"),
        pytest.param(b"RTSP/1.0 200 OK\r\n" + b"X-Pad: aaaaaaaaaaaaaaaaaaaa\r\n" * 2000, id="endless-headers"),
    ],
)
async def test_garbage_is_protocol(responder: Callable[..., Any], answer: bytes) -> None:
    """Something that does not speak RTSP (or not within bounds) is reason protocol, quickly."""
    r = await responder({"OPTIONS": answer})
    started = time.monotonic()
    outcome = await probe(r.url()).check()
    assert time.monotonic() - started < 0.5
    assert not outcome.up
    assert outcome.reason == "protocol", outcome.detail
    assert fields(outcome)["up"] == 0


async def test_describe_200_without_sdp_is_protocol(responder: Callable[..., Any]) -> None:
    """DESCRIBE answered 200 with an HTML page is protocol, not a stream without video."""
    html = reply("200 OK", {"Content-Type": "text/html"}, "<html>login</html>")
    r = await responder({"OPTIONS": OK, "DESCRIBE": html})
    outcome = await probe(r.url()).check()
    assert outcome.reason == "protocol"
    assert "text/html" in outcome.detail


async def test_closed_without_answer_is_protocol(responder: Callable[..., Any]) -> None:
    """A peer that accepts and closes without a word is a protocol failure, not a hang."""
    r = await responder({"OPTIONS": b""}, close_after={"OPTIONS"})
    outcome = await probe(r.url()).check()
    assert outcome.reason == "protocol"
    assert "without answering OPTIONS" in outcome.detail


async def test_nothing_listening_is_refused() -> None:
    """A closed port is reason refused, with neither status nor latency."""
    outcome = await probe(f"rtsp://127.0.0.1:{free_port()}/x").check()
    assert outcome.reason == "refused"
    assert fields(outcome) == {"up": 0}


@pytest.mark.parametrize(("status", "reason"), [("404 Not Found", "bad_status"), ("503 Busy", "bad_status")])
async def test_describe_error_status(responder: Callable[..., Any], status: str, reason: str) -> None:
    """DESCRIBE answered with an error status is bad_status with that status code."""
    r = await responder({"OPTIONS": OK, "DESCRIBE": reply(status)})
    outcome = await probe(r.url()).check()
    assert outcome.reason == reason
    assert fields(outcome)["status_code"] == int(status[:3])


# -- authentication ------------------------------------------------------------------------------


def digest_server(user: str, password: str, *, qop: bool, stale_first: bool = False) -> Callable[..., bytes]:
    """Answer DESCRIBE like a camera with Digest auth, checking the response independently of netwatch."""
    seen: list[str] = []

    def answer(method: str, headers: dict[str, str]) -> bytes:
        nonce = f"n{len(seen)}"
        challenge = f'Digest realm="cam", nonce="{nonce}"' + (', qop="auth", opaque="op"' if qop else "")
        auth = headers.get("authorization")
        if auth is None:
            seen.append("challenge")
            return reply("401 Unauthorized", {"WWW-Authenticate": challenge})
        (got,) = parse_challenges([auth])
        p = got.params
        if stale_first and "stale" not in seen:
            seen.append("stale")
            return reply("401 Unauthorized", {"WWW-Authenticate": challenge + ", stale=true"})
        ha1 = hashlib.md5(f"{user}:cam:{password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"{method}:{p['uri']}".encode()).hexdigest()
        if qop:
            assert p["opaque"] == "op"
            expected = hashlib.md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:auth:{ha2}".encode()).hexdigest()
        else:
            expected = hashlib.md5(f"{ha1}:{p['nonce']}:{ha2}".encode()).hexdigest()
        if p["username"] != user or p["response"] != expected:
            return reply("401 Unauthorized", {"WWW-Authenticate": challenge})
        return SDP_OK if method == "DESCRIBE" else OK

    return answer


@pytest.mark.parametrize("qop", [True, False], ids=["rfc7616-qop", "rfc2069"])
async def test_digest_challenge_answered_once(responder: Callable[..., Any], tmp_path: Path, qop: bool) -> None:
    """A Digest challenge is answered with the files' credentials; the camera's own check accepts it."""
    r = await responder({"OPTIONS": OK, "DESCRIBE": digest_server("viewer", 'pa:ss w"rd', qop=qop)})
    outcome = await probe(r.url(), **creds(tmp_path)).check()
    assert outcome.up, outcome.detail
    assert [m for m, _ in r.requests] == ["OPTIONS", "DESCRIBE", "DESCRIBE"]
    assert 'uri="' + r.url() + '"' in r.requests[2][1]["authorization"]
    assert "pa:ss" not in r.requests[2][1]["authorization"]


async def test_options_challenge_then_describe_reuses_answer(responder: Callable[..., Any], tmp_path: Path) -> None:
    """A camera that challenges OPTIONS already gets credentials on DESCRIBE without a second challenge."""
    server = digest_server("viewer", 'pa:ss w"rd', qop=True)
    r = await responder({"OPTIONS": server, "DESCRIBE": server})
    outcome = await probe(r.url(), **creds(tmp_path)).check()
    assert outcome.up, outcome.detail
    assert [m for m, _ in r.requests] == ["OPTIONS", "OPTIONS", "DESCRIBE"]
    assert "nc=00000002" in r.requests[2][1]["authorization"]


async def test_stale_nonce_is_answered_again(responder: Callable[..., Any], tmp_path: Path) -> None:
    """A 401 with stale=true after credentials means a new nonce, not wrong credentials."""
    r = await responder({"OPTIONS": OK, "DESCRIBE": digest_server("viewer", 'pa:ss w"rd', qop=True, stale_first=True)})
    outcome = await probe(r.url(), **creds(tmp_path)).check()
    assert outcome.up, outcome.detail


async def test_wrong_password_is_auth_and_secret_never_shown(responder: Callable[..., Any], tmp_path: Path) -> None:
    """Refused credentials are reason auth; neither the outcome nor the sample holds the password."""
    r = await responder({"OPTIONS": OK, "DESCRIBE": digest_server("viewer", "right", qop=True)})
    outcome = await probe(r.url(), **creds(tmp_path, password="Wr0ng-Secret")).check()
    assert outcome.reason == "auth"
    assert "credentials refused" in outcome.detail
    assert "Wr0ng-Secret" not in repr(outcome)


async def test_basic_only_challenge_with_auth_digest_sends_nothing(
    responder: Callable[..., Any], tmp_path: Path
) -> None:
    """auth: digest never answers a Basic challenge, so the password does not cross the wire in clear."""
    r = await responder({"OPTIONS": OK, "DESCRIBE": reply("401 Unauthorized", {"WWW-Authenticate": 'Basic realm="c"'})})
    outcome = await probe(r.url(), auth="digest", **creds(tmp_path)).check()
    assert outcome.reason == "auth"
    assert "offers Basic" in outcome.detail
    assert [m for m, _ in r.requests] == ["OPTIONS", "DESCRIBE"]


async def test_server_closing_after_401_gets_a_new_connection(responder: Callable[..., Any], tmp_path: Path) -> None:
    """A camera that closes the connection after its challenge is asked again on a fresh one."""
    r = await responder(
        {"OPTIONS": OK, "DESCRIBE": digest_server("viewer", 'pa:ss w"rd', qop=True)}, close_after={"DESCRIBE"}
    )
    outcome = await probe(r.url(), **creds(tmp_path)).check()
    assert outcome.up, outcome.detail
    assert r.connections == 2


# -- SDP and config ------------------------------------------------------------------------------


def test_sdp_static_payload_type_names_codec() -> None:
    """An m=video line with static payload type 26 and no rtpmap is JPEG video."""
    medias = parse_sdp("v=0\nm=video 0 RTP/AVP 26\n")
    assert medias is not None
    assert [(m.kind, m.encoding) for m in medias] == [("video", "JPEG/90000")]
    assert parse_sdp("<html></html>") is None


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("rtsp://admin:hunter2@{address}/stream1", "must not hold credentials (user:password@)"),
        ("rtsp://admin@{address}/stream1", "must not hold credentials"),
        ("rtsp://{address}/stream1?user=admin&password=hunter2", "query parameter 'user'"),
        ("http://{address}/stream1", "must start with rtsp://"),
        ("rtsp://{host}/stream1", "unknown placeholder {host}"),
        ("rtsp:///stream1", "no host"),
        ("rtsp://{address}:99999/s", "not a valid URL"),
    ],
)
def test_bad_url_refused_at_load(url: str, fragment: str) -> None:
    """URLs with credentials or without a host are refused at load, and the message never repeats the URL."""
    with pytest.raises(ValidationError) as info:
        RtspConfig.model_validate({"url": url})
    (error,) = info.value.errors(include_url=False)
    assert fragment in error["msg"]
    assert "hunter2" not in error["msg"]


def test_config_file_with_credentials_in_url_names_the_key(tmp_path: Path) -> None:
    """netwatch check-config reports the camera's rtsp.url line and the fix, not the password."""
    cfg = tmp_path / "netwatch.yaml"
    cfg.write_text(
        "sites: [{id: yard, name: Yard}]\n"
        "devices:\n"
        "  - {id: cam-1, site: yard, kind: camera, address: 10.0.0.5, checks: [rtsp],\n"
        '     rtsp: {url: "rtsp://admin:hunter2@{address}/s"}}\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    text = str(info.value)
    assert "devices[0].rtsp.url" in text
    assert "username_file" in text
    assert "hunter2" not in text


def test_layered_url_template_and_missing_url(tmp_path: Path) -> None:
    """A URL template in defaults.kinds.camera reaches every camera; a camera checking rtsp without any is an error."""
    cfg = tmp_path / "netwatch.yaml"
    base = (
        "sites: [{id: yard, name: Yard}]\n"
        "defaults:\n"
        "  kinds:\n"
        "    camera: {checks: [rtsp]%s}\n"
        "devices:\n"
        "  - {id: cam-1, site: yard, kind: camera, address: 'fd00::5'}\n"
    )
    cfg.write_text(base % ', rtsp: {url: "rtsp://{address}:8554/live"}')
    (check,) = load_config(cfg).inventory.devices["cam-1"].checks
    assert check.config.url == "rtsp://{address}:8554/live"
    built = RtspProbe(load_config(cfg).inventory.devices["cam-1"].target, check.config)
    assert built._url == "rtsp://[fd00::5]:8554/live"

    cfg.write_text(base % "")
    with pytest.raises(ConfigError, match=r"rtsp needs url"):
        load_config(cfg)
