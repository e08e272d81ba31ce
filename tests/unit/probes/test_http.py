"""HTTP(S) and captive-portal checks against a portal on loopback (plain, TLS, broken in every way)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult

from netwatch.contract import CONTRACT
from netwatch.model import REASONS, Outcome, Sample, Target
from netwatch.probes.base import ProbeResources
from netwatch.probes.http import HttpConfig, build, build_portal
from netwatch.probes.httpclient import new_session
from tests.servers.common import free_port
from tests.servers.pki import TestCA
from tests.servers.portal import WELCOME, PortalServer

TARGET = Target("portal-vp", "villa-parke", "server", "127.0.0.1")


@pytest.fixture
async def portal(tmp_path: Path) -> AsyncIterator[PortalServer]:
    async with PortalServer(tmp_path) as server:
        yield server


@pytest.fixture
async def resources() -> AsyncIterator[ProbeResources]:
    res = ProbeResources()
    yield res
    await res.aclose()


def cfg(url: str, **settings: Any) -> HttpConfig:
    return HttpConfig.model_validate({"url": url, **settings}, context={"base_dir": "/"})


async def run(url: str, resources: ProbeResources, *, portal_check: bool = False, **settings: Any) -> Outcome:
    factory = build_portal if portal_check else build
    return await factory(TARGET, cfg(url, **settings), resources).check()


def sample_of(outcome: Outcome) -> Sample:
    (sample,) = outcome.samples
    assert sample.measurement == "http"
    tags, types = CONTRACT["http"]
    assert set(sample.tags) == tags, "every http sample carries device, site, check and reason"
    assert sample.tags["reason"] == outcome.reason
    assert outcome.reason in REASONS
    for name, value in sample.fields.items():
        expected = {"int": int, "float": float}[types[name]]
        assert type(value) is expected, f"{name}={value!r} is not {types[name]}"
    return sample


async def test_portal_redirect_chain_to_a_matching_page(portal: PortalServer, resources: ProbeResources) -> None:
    """Plain HTTP -> HTTPS -> two portal redirects (one setting the session cookie the login page
    needs) -> the welcome page: up, 3 redirects counted, the certificate's 90 days and the phases."""
    outcome = await run(
        portal.url("/to-https"),
        resources,
        portal_check=True,
        ca_file=str(portal.ca.cert_file),
        expect_body="Welcome to City WiFi",
        expect_body_regex=r"Accept\s+the terms",
    )
    assert outcome.up, outcome.detail
    assert outcome.reason == "ok"
    f = sample_of(outcome).fields
    assert outcome.samples[0].tags["check"] == "portal"
    assert f["up"] == 1
    assert f["status_code"] == 200
    assert f["redirects"] == 3
    assert f["body_match"] == 1
    assert f["body_bytes"] == len(WELCOME)
    assert 89.0 < f["cert_days_left"] <= 90.0
    assert f["connect_ms"] > 0
    assert f["processing_ms"] > 0
    assert f["latency_ms"] >= f["connect_ms"] + f["processing_ms"]
    # The portal's query string (client MAC, AP) is no business of the log.
    assert "mac=" not in outcome.detail


async def test_content_that_does_not_match_is_bad_content(portal: PortalServer, resources: ProbeResources) -> None:
    """A web server's default page where the portal should be: 200, yet down with bad_content."""
    outcome = await run(portal.url("/it-works"), resources, expect_body="Welcome to City WiFi")
    assert not outcome.up
    assert outcome.reason == "bad_content"
    f = sample_of(outcome).fields
    assert f["status_code"] == 200
    assert f["body_match"] == 0
    assert "Welcome to City WiFi" in outcome.detail


async def test_redirect_loop_is_found_at_once(portal: PortalServer, resources: ProbeResources) -> None:
    """A -> B -> A is reported as a loop (reason redirects) after two hops, not after max_redirects."""
    outcome = await run(portal.url("/loop/a"), resources, max_redirects=20)
    assert outcome.reason == "redirects"
    assert "loop" in outcome.detail
    assert "/loop/a -> " in outcome.detail
    f = sample_of(outcome).fields
    assert f["redirects"] == 1
    assert f["status_code"] == 302


async def test_login_page_without_its_cookie_loops(portal: PortalServer, resources: ProbeResources) -> None:
    """Each check starts with an empty cookie jar: straight to the login page, without the cookie
    the welcome step sets, is the loop a browser without cookies sees."""
    first = await run(portal.url("/portal"), resources)
    assert first.up, first.detail  # the jar carries the cookie within one check
    again = await run(portal.url("/portal/login"), resources)
    assert again.reason == "redirects", "the previous check's cookie must not carry over"


async def test_too_many_redirects_and_a_foreign_scheme(portal: PortalServer, resources: ProbeResources) -> None:
    """Twelve redirects with max_redirects 10, or a redirect to ftp://, fail with reason redirects;
    max_redirects 0 judges the first answer itself (a 302 the check may expect)."""
    many = await run(portal.url("/chain/12"), resources, max_redirects=10)
    assert many.reason == "redirects"
    assert "more than 10 redirects" in many.detail
    assert sample_of(many).fields["redirects"] == 10
    assert (await run(portal.url("/chain/10"), resources, max_redirects=10)).up

    ftp = await run(portal.url("/ftp"), resources)
    assert ftp.reason == "redirects"
    assert "scheme 'ftp', which is not allowed" in ftp.detail

    downgrade = await run(portal.url("/to-https"), resources, redirect_schemes=["http"])
    assert downgrade.reason == "redirects"

    first = await run(portal.url("/portal"), resources, max_redirects=0, expect_status=[302])
    assert first.up, first.detail
    assert sample_of(first).fields["redirects"] == 0


async def test_expired_certificate(portal: PortalServer, resources: ProbeResources) -> None:
    """An expired certificate is reason tls, and its days left are written negative (read from a
    second handshake that does not verify), with the expiry in the detail."""
    outcome = await run(portal.url("/portal", port=portal.expired_port), resources, ca_file=str(portal.ca.cert_file))
    assert not outcome.up
    assert outcome.reason == "tls"
    assert "expired" in outcome.detail
    assert -2.1 < sample_of(outcome).fields["cert_days_left"] < -1.9
    assert "status_code" not in outcome.samples[0].fields


async def test_certificate_for_another_host(portal: PortalServer, resources: ProbeResources) -> None:
    """A valid certificate issued for another name is reason tls, naming whom it was issued for."""
    outcome = await run(portal.url("/portal", port=portal.wrong_host_port), resources, ca_file=str(portal.ca.cert_file))
    assert outcome.reason == "tls"
    assert "wrong.example" in outcome.detail
    assert sample_of(outcome).fields["cert_days_left"] > 89


async def test_ca_file_makes_a_private_ca_valid(portal: PortalServer, resources: ProbeResources) -> None:
    """The system store does not know the city's private CA (reason tls); its ca_file does."""
    url = portal.url("/portal", port=portal.https_port)
    without = await run(url, resources)
    assert without.reason == "tls"
    assert "set ca_file" in without.detail
    with_ca = await run(url, resources, ca_file=str(portal.ca.cert_file))
    assert with_ca.up, with_ca.detail


async def test_insecure_accepts_an_expired_certificate_with_a_warning(
    portal: PortalServer, resources: ProbeResources
) -> None:
    """tls: insecure is logged as a warning when the check is built, and then any certificate
    passes (its days left are still written, negative)."""
    with structlog.testing.capture_logs() as logs:
        probe = build(TARGET, cfg(portal.url("/portal", port=portal.expired_port), tls="insecure"), resources)
    assert [e["event"] for e in logs] == ["http_tls_insecure"]
    assert logs[0]["log_level"] == "warning"
    outcome = await probe.check()
    assert outcome.up, outcome.detail
    assert sample_of(outcome).fields["cert_days_left"] < 0


async def test_slow_server_hits_the_timeout(portal: PortalServer, resources: ProbeResources) -> None:
    """A server that does not answer is reason timeout after the check's timeout (not the
    server's 30 s), saying which phase it was stuck in; the latency so far is written."""
    started = time.monotonic()
    outcome = await run(portal.url("/slow"), resources, timeout=0.3)
    assert time.monotonic() - started < 1.0
    assert outcome.reason == "timeout"
    assert "waiting for the response" in outcome.detail
    f = sample_of(outcome).fields
    assert f["latency_ms"] >= 300
    assert f["processing_ms"] >= 250, "the time spent waiting is booked to its phase"


async def test_server_error_is_bad_status(portal: PortalServer, resources: ProbeResources) -> None:
    """A 500 is down with reason bad_status and status_code 500; expect_status classes work."""
    outcome = await run(portal.url("/error"), resources)
    assert outcome.reason == "bad_status"
    assert sample_of(outcome).fields["status_code"] == 500
    assert "500" in outcome.detail
    assert (await run(portal.url("/error"), resources, expect_status=["5xx"])).up


async def test_garbage_and_refused(portal: PortalServer, resources: ProbeResources) -> None:
    """A TCP server answering junk is reason protocol; plain HTTP to a TLS port too; a closed
    port is reason refused. None of them raises."""
    junk = await run(portal.url("/", port=portal.junk_port), resources)
    assert junk.reason == "protocol", junk.detail
    sample_of(junk)
    plain_to_tls = await run(portal.url("/", port=portal.https_port, scheme="http"), resources)
    assert plain_to_tls.reason == "protocol", plain_to_tls.detail
    tls_to_plain = await run(portal.url("/", port=portal.http_port, scheme="https"), resources)
    assert tls_to_plain.reason == "tls", tls_to_plain.detail
    refused = await run(f"http://127.0.0.1:{free_port()}/", resources)
    assert refused.reason == "refused"


async def test_body_is_read_up_to_the_bound(portal: PortalServer, resources: ProbeResources) -> None:
    """Only max_body_bytes of a body are read: a marker past the bound is not found."""
    outcome = await run(portal.url("/big"), resources, expect_body="Welcome", max_body_bytes=64 * 1024)
    assert outcome.reason == "bad_content"
    assert "first 65536 bytes" in outcome.detail
    assert sample_of(outcome).fields["body_bytes"] == 64 * 1024
    assert (await run(portal.url("/big"), resources, expect_body="Welcome", max_body_bytes=2 * 1024 * 1024)).up


async def test_credentials_go_to_the_portal_only(
    portal: PortalServer, resources: ProbeResources, tmp_path: Path
) -> None:
    """Basic auth and secret headers (from files) open the portal's protected page; a redirect to
    another origin does not carry them along; no secret appears in detail, samples or logs."""
    (tmp_path / "password").write_text("s3cret\n")
    (tmp_path / "key").write_text("k3y\n")
    secrets = {
        "username": "netwatch",
        "password_file": str(tmp_path / "password"),
        "header_files": {"X-Portal-Key": str(tmp_path / "key")},
        "ca_file": str(portal.ca.cert_file),
    }
    with structlog.testing.capture_logs() as logs:
        denied = await run(portal.url("/auth", port=portal.https_port), resources, ca_file=str(portal.ca.cert_file))
        allowed = await run(portal.url("/auth", port=portal.https_port), resources, **secrets)
        away = await run(portal.url("/away", port=portal.https_port), resources, **secrets)
    assert denied.reason == "bad_status"
    assert allowed.up, allowed.detail
    assert away.up, away.detail
    (received,) = portal.echoed
    assert "Authorization" not in received
    assert "X-Portal-Key" not in received
    text = repr([denied, allowed, away]) + repr(logs)
    assert "s3cret" not in text
    assert "k3y" not in text


async def test_checks_share_one_session_and_never_raise(resources: ProbeResources) -> None:
    """Every http check of a daemon uses one aiohttp session; closing the resources closes it."""
    probes = [build(TARGET, cfg(f"http://127.0.0.1:{free_port()}/"), resources) for _ in range(3)]
    outcomes = await asyncio.gather(*(p.check() for p in probes))
    assert [o.reason for o in outcomes] == ["refused"] * 3
    (session,) = [v for v in resources.shared.values()]
    await resources.aclose()
    assert session.closed


# -- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"url": "https://user:pw@portal.example/"}, "no user:password in the URL"),
        ({"url": "https://portal.example/?api_key=abc"}, "no credentials in the URL's query"),
        ({"url": "ftp://portal.example/"}, "URL scheme should be 'http' or 'https'"),
        # {address} is a rtsp/snapshot template; here it would be looked up in DNS at every check.
        ({"url": "http://{address}:8080/guest/"}, "{address} is not filled in"),
        ({"expect_body_regex": "(unclosed"}, "not a valid regular expression"),
        ({"expect_status": [700]}, "not an HTTP status code"),
        ({"expect_status": ["2yy"]}, "neither a status code"),
        ({"headers": {"Authorization": "Bearer x"}}, "put it under header_files"),
        ({"redirect_schemes": ["gopher"]}, "'http' or 'https'"),
        ({"password": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_refused_at_load(settings: dict[str, Any], fragment: str) -> None:
    """Each mistake is a config error naming the problem (regexes are compiled at load)."""
    with pytest.raises(ValueError, match="validation error") as info:
        HttpConfig.model_validate(settings)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({}, "needs url"),
        ({"url": "http://p.example/", "method": "HEAD", "expect_body": "x"}, "HEAD request has no body"),
        ({"url": "https://p.example/", "username": "u"}, "username and password_file go together"),
        ({"url": "http://p.example/", "username": "u", "password_file": "pw"}, "sends the password in clear"),
        ({"url": "https://p.example/", "tls": "insecure", "ca_file": "ca.pem"}, "no effect with tls: insecure"),
    ],
)
def test_merged_settings_are_checked(settings: dict[str, Any], fragment: str, tmp_path: Path) -> None:
    """What only the merged layers can tell (a url set somewhere, auth pairs) is a problem to report."""
    (tmp_path / "pw").write_text("x\n")
    # A real bundle: a CA file is loaded at config load to prove it is one.
    (tmp_path / "ca.pem").write_bytes(TestCA(tmp_path / "pki").cert_file.read_bytes())
    merged = HttpConfig.model_validate(settings, context={"base_dir": tmp_path})
    assert any(fragment in p for p in merged.problems())


def test_status_single_value_and_classes() -> None:
    """expect_status takes one code, a list, or classes like 2xx."""
    assert HttpConfig.model_validate({"expect_status": 204}).expect_status == [204]
    assert HttpConfig.model_validate({"expect_status": ["2XX", "302"]}).expect_status == ["2xx", 302]


class LoopbackNames(AbstractResolver):
    """Resolves the names it is given to loopback, slowly enough to be measured; no others."""

    def __init__(self, names: dict[str, str], delay: float = 0.02) -> None:
        self.names = names
        self.delay = delay
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        host = host.rstrip(".")
        self.asked.append(host)
        await asyncio.sleep(self.delay)
        if host not in self.names:
            raise OSError(socket.EAI_NONAME, "Name or service not known")
        address = self.names[host]
        return [ResolveResult(hostname=host, host=address, port=port, family=socket.AF_INET, proto=0, flags=0)]

    async def close(self) -> None:
        pass


async def test_names_are_resolved_and_connected_afresh_every_check(
    portal: PortalServer, resources: ProbeResources
) -> None:
    """A check by host name resolves it every time (no DNS cache) and opens a new connection every
    time (no keep-alive), as a new visitor would: both phases are measured on the second check too.
    The certificate is checked against the name; a name that does not resolve is reason dns."""
    names = LoopbackNames({"portal.city.example": "127.0.0.1"})
    resources.shared["http"] = new_session(resolver=names)
    resources.closers.append(resources.shared["http"].close)
    url = f"https://portal.city.example:{portal.https_port}/portal"
    probe = build(TARGET, cfg(url, ca_file=str(portal.ca.cert_file), expect_body="Welcome"), resources)
    for _ in range(2):
        outcome = await probe.check()
        assert outcome.up, outcome.detail
        f = sample_of(outcome).fields
        assert f["dns_ms"] >= 3 * 20 * 0.9, "each of the three requests resolved the name"
        assert f["connect_ms"] > 0
    assert names.asked == ["portal.city.example"] * 6

    unknown = await build(TARGET, cfg(f"https://nowhere.city.example:{portal.https_port}/"), resources).check()
    assert unknown.reason == "dns"
    assert "nowhere.city.example" in unknown.detail
