"""HTTP(S) checks, captive portals first: the redirect chain, status, content, phases, certificates.

One check fetches a URL as a new visitor would: a fresh cookie jar and a fresh connection per
check (no keep-alive, no TLS session reuse, no DNS cache, so every check pays and measures what
a visitor pays), redirects followed by hand so each hop is seen (counted, its certificate read,
a loop or a jump to a scheme outside ``redirect_schemes`` caught), then the final status and up to
``max_body_bytes`` of the final body judged. It writes the ``http`` measurement (tags device, site,
check, reason) on success and on failure alike, so a dashboard sees why.

Two check names use this module: ``http`` for any page, and ``portal`` for a park's captive
portal, whose result also decides the park's public WiFi state (:mod:`netwatch.parkwifi`).

Secrets (``password_file``, ``header_files``) go only to the origin of the configured URL, never
to a host a redirect leads to, and URLs are logged without their query string (portals put
session ids and client MAC addresses there).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import re
import ssl
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Final, Literal

import aiohttp
import structlog
from pydantic import BeforeValidator, Field, HttpUrl, field_validator
from yarl import URL

from netwatch.configbase import CaFile, Duration, SecretFile, Strict, reveal
from netwatch.model import FieldValue, Outcome, Reason, Sample, Target, now_ns
from netwatch.probes.base import Probe, ProbeResources
from netwatch.probes.certs import CertInfo, fetch_unverified, matches_host, parse_der
from netwatch.probes.httpclient import CertResponse, Timing, shared_session

log = structlog.get_logger(__name__)

_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
#: Header names that carry credentials: they belong in ``header_files``, not in the config.
_SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})
#: Query keys that look like credentials (a URL is logged, so it must not hold one).
_SECRET_QUERY = re.compile(r"(^|[_-])(pass(word|wd)?|token|secret|api[_-]?key|apikey|access[_-]?key|auth)$", re.I)
_STATUS_CLASS = re.compile(r"^[1-5]xx$")


def _status(value: object) -> object:
    if isinstance(value, str):
        text = value.strip().lower()
        if _STATUS_CLASS.match(text):
            return text
        if text.isdigit():
            value = int(text)
        else:
            raise ValueError(f"{value!r} is neither a status code (200) nor a class (2xx)")
    if isinstance(value, int) and not isinstance(value, bool):
        if not 100 <= value <= 599:
            raise ValueError(f"{value} is not an HTTP status code (100-599)")
        return value
    raise ValueError("a status is a code (200) or a class (2xx)")


def _listify(value: object) -> object:
    return [value] if isinstance(value, int | str) else value


StatusSpec = Annotated[int | str, BeforeValidator(_status)]
Scheme = Literal["http", "https"]


def _default_status() -> list[int | str]:
    return [200]


def _default_schemes() -> list[Scheme]:
    return ["http", "https"]


class HttpConfig(Strict):
    """How to fetch a page and what it must look like. Every key is optional so that it can be
    layered (``defaults.http`` -> ``defaults.kinds.<kind>.http`` -> the device); what the merged
    result lacks is reported by :meth:`problems`."""

    url: HttpUrl | None = Field(default=None, description="the page to fetch (http:// or https://)")
    method: Literal["GET", "HEAD"] = "GET"
    expect_status: Annotated[list[StatusSpec], BeforeValidator(_listify)] = Field(
        default_factory=_default_status, description="status codes (200) or classes (2xx) of the final response"
    )
    expect_body: str | None = Field(default=None, description="text the final body must contain")
    expect_body_regex: str | None = Field(default=None, description="regular expression the final body must match")
    max_body_bytes: int = Field(default=256 * 1024, ge=1, le=16 * 1024 * 1024, description="read at most this much")
    max_redirects: int = Field(default=10, ge=0, le=50, description="redirects to follow; 0 = judge the first answer")
    redirect_schemes: list[Scheme] = Field(
        default_factory=_default_schemes, min_length=1, description="schemes a redirect may lead to"
    )
    tls: Literal["verify", "insecure"] = "verify"
    ca_file: CaFile | None = Field(default=None, description="trust only this CA bundle (PEM) instead of the system's")
    username: str | None = Field(default=None, description="basic auth user (sent to the URL's own host only)")
    password_file: SecretFile | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers (not secrets)")
    header_files: dict[str, SecretFile] = Field(
        default_factory=dict,
        description="request headers whose values are read from files (sent to the URL's host only)",
    )
    timeout: Duration = Field(default=5.0, gt=0, description="the whole check: every hop and the body")

    @field_validator("url")
    @classmethod
    def _no_secrets_in_url(cls, url: HttpUrl | None) -> HttpUrl | None:
        # URLs are logged and shown by the CLI; credentials come from files.
        if url is None:
            return None
        if url.username or url.password:
            raise ValueError("no user:password in the URL; use username and password_file")
        if url.host is not None and ("{" in url.host or "}" in url.host):
            # Only rtsp and snapshot fill in {address}: a portal or web page is reached by the
            # name its visitors use, which need not be the device's address.
            raise ValueError("the http and portal checks take the full URL visitors use; {address} is not filled in")
        for key, _ in url.query_params():
            if _SECRET_QUERY.search(key):
                raise ValueError(f"no credentials in the URL's query ({key}=...); use header_files")
        return url

    @field_validator("expect_body_regex")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return pattern

    @field_validator("headers")
    @classmethod
    def _no_secret_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if name.lower() in _SECRET_HEADERS:
                raise ValueError(f"header {name!r} carries credentials: put it under header_files")
        return headers

    def budget_s(self) -> float:
        """Return how long one check may take (it must fit in the check timeout)."""
        return self.timeout

    def budget_text(self) -> str:
        return f"timeout {self.timeout:g}s"

    def problems(self) -> list[str]:
        """Return what this (merged) config lacks or gets wrong."""
        issues: list[str] = []
        if self.url is None:
            issues.append("an http check needs url")
        if self.method == "HEAD" and (self.expect_body is not None or self.expect_body_regex is not None):
            issues.append("a HEAD request has no body to match: use method GET with expect_body")
        if (self.username is None) != (self.password_file is None):
            issues.append("username and password_file go together")
        if self.password_file is not None and self.url is not None and self.url.scheme != "https":
            issues.append("basic auth over plain http sends the password in clear: use an https url")
        if self.tls == "insecure" and self.ca_file is not None:
            issues.append("ca_file has no effect with tls: insecure")
        return issues


@cache
def _system_context() -> ssl.SSLContext:
    # Loading the system CA store takes milliseconds; every verifying check without ca_file shares one.
    return ssl.create_default_context()


def _ssl_for(cfg: HttpConfig) -> ssl.SSLContext | Literal[False]:
    if cfg.tls == "insecure":
        return False
    if cfg.ca_file is not None:
        return ssl.create_default_context(cafile=cfg.ca_file)
    return _system_context()


# -- one check -------------------------------------------------------------------------------------


def shown(url: URL) -> str:
    """Return a URL as it may be logged: no credentials, query or fragment."""
    port = "" if url.is_default_port() else f":{url.port}"
    host = f"[{url.host}]" if url.host and ":" in url.host else url.host or ""
    return f"{url.scheme}://{host}{port}{url.raw_path}"


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return url.scheme, (url.host or "").lower(), url.port


class _Failed(Exception):
    """A finding that ends the check; :meth:`HttpProbe.check` turns it into an Outcome."""

    def __init__(self, reason: Reason, detail: str, *, cert_rejected: bool = False) -> None:
        super().__init__(detail)
        self.reason: Reason = reason
        self.detail = detail
        #: Verification refused the certificate: worth a second look at it (expiry, names).
        self.cert_rejected = cert_rejected


@dataclass
class _Run:
    """What one check learned so far: it is written even when the check fails half-way."""

    timing: Timing = field(default_factory=Timing)
    redirects: int = 0
    status: int | None = None
    cert_days_left: float | None = None
    body_bytes: int | None = None
    body_match: bool | None = None
    final: URL | None = None

    def cert(self, info: CertInfo | None) -> None:
        # The soonest expiry of any hop: the chain breaks at the first certificate that expires.
        if info is not None:
            days = info.days_left()
            self.cert_days_left = days if self.cert_days_left is None else min(self.cert_days_left, days)


class HttpProbe:
    """Fetch one URL through its redirects and judge the final answer."""

    def __init__(self, target: Target, cfg: HttpConfig, resources: ProbeResources, *, check: str = "http") -> None:
        assert cfg.url is not None  # checked at load (HttpConfig.problems)
        self._target = target
        self._cfg = cfg
        self._resources = resources
        self._url = URL(str(cfg.url), encoded=True)
        self._ssl = _ssl_for(cfg)
        self._regex = re.compile(cfg.expect_body_regex) if cfg.expect_body_regex is not None else None
        self._tags = {"device": target.device, "site": target.site, "check": check}
        self._secret_headers = {name: reveal(value) or "" for name, value in cfg.header_files.items()}
        if cfg.username is not None and cfg.password_file is not None:
            pair = f"{cfg.username}:{reveal(cfg.password_file)}".encode()  # RFC 7617: UTF-8
            self._secret_headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")

    def _expected(self, status: int) -> bool:
        return any(status == s if isinstance(s, int) else str(status)[0] == s[0] for s in self._cfg.expect_status)

    async def check(self) -> Outcome:
        ts = now_ns()
        run = _Run()
        started = time.perf_counter()
        reason: Reason = "ok"
        detail = ""
        rejected: URL | None = None
        try:
            async with asyncio.timeout(self._cfg.timeout):
                detail = await self._walk(run)
        except _Failed as failed:
            reason, detail = failed.reason, failed.detail
            rejected = run.final if failed.cert_rejected else None
        except TimeoutError:
            where = f" from {run.timing.where}" if run.timing.where else ""
            reason = "timeout"
            detail = f"no result within {self._cfg.timeout:g}s: still {run.timing.phase}{where}"
        run.timing.close()
        latency_ms = (time.perf_counter() - started) * 1000.0
        if rejected is not None:
            # Within what is left of the budget, and never at the cost of the verdict.
            left = self._cfg.timeout - latency_ms / 1000.0
            if left > 0:
                try:
                    async with asyncio.timeout(left):
                        detail += await self._diagnose_tls(run, rejected)
                except TimeoutError:
                    pass
        up = reason == "ok"
        sample = Sample("http", {**self._tags, "reason": reason}, self._fields(run, up, latency_ms), ts)
        return Outcome(up=up, reason=reason, detail=detail, samples=(sample,))

    def _fields(self, run: _Run, up: bool, latency_ms: float) -> dict[str, FieldValue]:
        t = run.timing
        fields: dict[str, FieldValue] = {
            "up": int(up),
            "latency_ms": round(latency_ms, 3),
            "redirects": run.redirects,
            "dns_ms": round(t.dns_s * 1000.0, 3),
            "connect_ms": round(t.connect_s * 1000.0, 3),
            "processing_ms": round(t.processing_s * 1000.0, 3),
            "transfer_ms": round(t.transfer_s * 1000.0, 3),
        }
        if run.status is not None:
            fields["status_code"] = run.status
        if run.cert_days_left is not None:
            fields["cert_days_left"] = round(run.cert_days_left, 3)
        if run.body_bytes is not None:
            fields["body_bytes"] = run.body_bytes
        if run.body_match is not None:
            fields["body_match"] = int(run.body_match)
        return fields

    async def _walk(self, run: _Run) -> str:
        """Follow the redirect chain and judge the last answer; raise _Failed for what is wrong."""
        cfg = self._cfg
        session = shared_session(self._resources)
        # A fresh jar per check: a portal that sets a cookie and redirects expects it back, and
        # one check's cookies must never reach another check.
        jar = aiohttp.CookieJar(unsafe=True)  # unsafe: allow cookies from IP-address hosts
        url = self._url
        chain = [url]
        while True:
            run.final = url
            run.timing.where = shown(url)
            own = _origin(url) == _origin(self._url)
            headers = {**cfg.headers, **(self._secret_headers if own else {})}
            try:
                async with session.request(
                    cfg.method,
                    url,
                    headers=headers,
                    cookies=jar.filter_cookies(url),
                    allow_redirects=False,
                    ssl=self._ssl,
                    trace_request_ctx=run.timing,
                ) as resp:
                    if url.scheme == "https" and isinstance(resp, CertResponse) and resp.peer_cert:
                        run.cert(parse_der(resp.peer_cert))
                    jar.update_cookies(resp.cookies, resp.url)
                    location = resp.headers.get("Location")
                    run.status = resp.status
                    if resp.status in _REDIRECTS and location is not None and cfg.max_redirects > 0:
                        url = self._next_hop(run, chain, url, resp.status, location)
                        chain.append(url)
                        continue
                    if cfg.method == "GET":
                        body, truncated = await self._read_body(resp, run)
                        text = body.decode(_charset(resp), errors="replace")
                    else:
                        text, truncated = "", False
            except aiohttp.ClientConnectorCertificateError as exc:
                raise _Failed("tls", _cert_detail(exc, url), cert_rejected=True) from None
            except aiohttp.ClientError as exc:
                raise _Failed(*self._classify(exc, url)) from None
            except OSError as exc:  # raised by the socket layer outside aiohttp's wrappers
                raise _Failed(*_os_reason(exc, url)) from None
            return self._judge(run, url, text, truncated)

    def _next_hop(self, run: _Run, chain: list[URL], url: URL, status: int, location: str) -> URL:
        try:
            # The fragment never reaches the server: a#x and a#y are the same request.
            target = url.join(URL(location)).with_fragment(None)
        except (ValueError, TypeError):
            raise _Failed("redirects", f"{status} from {shown(url)} to an unparseable Location") from None
        if target.scheme not in self._cfg.redirect_schemes:
            allowed = ", ".join(self._cfg.redirect_schemes)
            # Only http(s) URLs are shown: anything else may be a data: or javascript: blob.
            where = shown(target) if target.scheme in ("http", "https") else "a URL"
            raise _Failed(
                "redirects",
                f"{shown(url)} redirects to {where} with scheme {target.scheme!r}, which is not allowed "
                f"(allowed: {allowed})",
            )
        if target in chain:
            loop = [*chain[chain.index(target) :], target]
            raise _Failed("redirects", "redirect loop: " + " -> ".join(shown(u) for u in loop))
        if run.redirects >= self._cfg.max_redirects:
            raise _Failed(
                "redirects",
                f"more than {self._cfg.max_redirects} redirects (the last from {shown(url)} to {shown(target)})",
            )
        run.redirects += 1
        return target

    async def _read_body(self, resp: aiohttp.ClientResponse, run: _Run) -> tuple[bytes, bool]:
        """Read at most max_body_bytes; the rest is left unread (the connection is closed after)."""
        limit = self._cfg.max_body_bytes
        started = time.perf_counter()
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = await resp.content.read(limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        truncated = size >= limit and not resp.content.at_eof()
        run.timing.transfer_s += time.perf_counter() - started
        run.body_bytes = size
        return b"".join(chunks), truncated

    def _judge(self, run: _Run, url: URL, text: str, truncated: bool) -> str:
        cfg = self._cfg
        status = run.status
        assert status is not None
        checks: list[bool] = []
        missing = ""
        if cfg.expect_body is not None:
            checks.append(cfg.expect_body in text)
            if not checks[-1]:
                missing = f"does not contain {cfg.expect_body!r}"
        if self._regex is not None:
            checks.append(self._regex.search(text) is not None)
            if not checks[-1] and not missing:
                missing = f"does not match /{self._regex.pattern}/"
        if checks:
            run.body_match = all(checks)
        via = f" after {run.redirects} redirect{'s' if run.redirects != 1 else ''}" if run.redirects else ""
        if not self._expected(status):
            wanted = ", ".join(str(s) for s in cfg.expect_status)
            raise _Failed("bad_status", f"{status} from {shown(url)}{via}; expected {wanted}")
        if run.body_match is False:
            read = f"the first {run.body_bytes} bytes of " if truncated else ""
            raise _Failed("bad_content", f"{read}the body of {shown(url)}{via} {missing}")
        return f"{status} from {shown(url)}{via}"

    def _classify(self, exc: aiohttp.ClientError, url: URL) -> tuple[Reason, str]:
        """Turn a client error into a reason and a detail that holds no header or secret."""
        hostport = f"{url.host}:{url.port}"
        if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
            error = exc.os_error
            message = getattr(error, "reason", None) or getattr(error, "strerror", None) or type(error).__name__
            return "tls", f"TLS handshake with {hostport} failed: {message}"
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return "dns", f"cannot resolve {url.host!r}"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return _os_reason(exc.os_error, url)
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return "protocol", f"{hostport} closed the connection without an HTTP response"
        if isinstance(exc, aiohttp.ClientResponseError):
            # Not str(exc): its text includes the request headers, credentials among them.
            return "protocol", f"{hostport} did not answer in HTTP: {_short(exc.message)}"
        if isinstance(exc, aiohttp.ClientPayloadError):
            return "protocol", f"the body from {shown(url)} is broken: {_short(str(exc))}"
        if isinstance(exc, aiohttp.ClientOSError):
            return _os_reason(exc, url)
        return "error", f"{type(exc).__name__} fetching {shown(url)}"

    async def _diagnose_tls(self, run: _Run, url: URL) -> str:
        """Read the certificate that failed verification, for its expiry and names."""
        if url.host is None or url.port is None:
            return ""
        info = await fetch_unverified(url.host, url.port)
        if info is None:
            return ""
        run.cert(info)
        days = info.days_left()
        notes = []
        if days < 0:
            notes.append(f"expired {-days:.1f} days ago")
        if not matches_host(info, url.host):
            notes.append(f"issued for {info.names_text()}")
        return f" ({'; '.join(notes)})" if notes else ""


#: OpenSSL verify codes that mean "issued by a CA you do not trust" (self-signed, unknown issuer).
_UNTRUSTED_CODES: Final = frozenset({18, 19, 20, 21})


def _cert_detail(exc: aiohttp.ClientConnectorCertificateError, url: URL) -> str:
    error = exc.certificate_error
    message = getattr(error, "verify_message", None) or getattr(error, "reason", None) or type(error).__name__
    hint = ""
    if getattr(error, "verify_code", None) in _UNTRUSTED_CODES:
        hint = " (a private CA? set ca_file to the CA that issued it)"
    return f"certificate of {url.host}:{url.port} not accepted: {message}{hint}"


def _os_reason(exc: OSError, url: URL) -> tuple[Reason, str]:
    hostport = f"{url.host}:{url.port}"
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return "refused", f"connection refused by {hostport}"
    if isinstance(exc, ConnectionResetError) or exc.errno in (errno.ECONNRESET, errno.EPIPE):
        return "protocol", f"{hostport} reset the connection"
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN):
        return "unreachable", f"{hostport}: {exc.strerror}"
    return "error", f"{hostport}: {exc.strerror or type(exc).__name__}"


def _charset(resp: aiohttp.ClientResponse) -> str:
    charset = resp.charset or "utf-8"
    try:
        "".encode(charset)
    except LookupError:
        return "utf-8"
    return charset


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _warn_insecure(target: Target, cfg: HttpConfig, check: str) -> None:
    if cfg.tls == "insecure":
        assert cfg.url is not None
        log.warning(
            "http_tls_insecure",
            device=target.device,
            check=check,
            url=shown(URL(str(cfg.url), encoded=True)),
            why="tls: insecure accepts any certificate, so a spoofed portal passes; prefer ca_file",
        )


def _build(target: Target, cfg: HttpConfig, resources: ProbeResources, check: str) -> Probe:
    issues = cfg.problems()
    if issues:
        # The config loader reports these with file and line; reaching here is a bug.
        raise ValueError(f"{target.device}: incomplete {check} settings: {'; '.join(issues)}")
    _warn_insecure(target, cfg, check)
    return HttpProbe(target, cfg, resources, check=check)


def build(target: Target, cfg: HttpConfig, resources: ProbeResources) -> Probe:
    """Build an ``http`` check for one device (the aiohttp session is shared through ``resources``)."""
    return _build(target, cfg, resources, "http")


def build_portal(target: Target, cfg: HttpConfig, resources: ProbeResources) -> Probe:
    """Build a ``portal`` check: an http check whose result also decides its park's WiFi state."""
    return _build(target, cfg, resources, "portal")


__all__ = ["HttpConfig", "HttpProbe", "build", "build_portal", "shown"]
