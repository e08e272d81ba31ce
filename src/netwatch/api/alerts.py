"""The alert endpoints: open incidents and silences, in the spirit of Alertmanager's API v2.

=======  ===========================  ===================================================
GET      ``/api/v1/alerts``           open incidents (``?unreachable=true`` adds those
                                      behind a down parent, which are otherwise only in
                                      their root cause's impact; ``?pending=true`` adds
                                      what is pending or flapping unannounced;
                                      ``?filter=site=x``, repeatable, keeps those whose
                                      labels match)
GET      ``/api/v1/silences``         silences: active, pending, expired in the last 5 days
                                      (``?state=active``, repeatable, keeps those states)
GET      ``/api/v1/silences/{id}``    one silence
POST     ``/api/v1/silences``         create one (token): ``{matchers, starts_at?, ends_at |
                                      duration, created_by, comment}`` -> 201 ``{id, silence}``
DELETE   ``/api/v1/silences/{id}``    expire one now (token) -> 200 ``{id, silence}``
=======  ===========================  ===================================================

Access: reads are open to clients on a loopback address (the default ``api.listen`` is
loopback), and need ``Authorization: Bearer <token>`` from anywhere else; writes always need
it. The token is read from ``api.token_file``; without one, writes are refused with 403 and
remote reads too. Tokens are compared in constant time and never logged or echoed. A reverse
proxy on the same host makes every client look local: put its own authentication in front.
Errors are JSON: ``{"error": "...", "problems": [...]}`` (400 lists every problem).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import structlog
from aiohttp import web
from pydantic import SecretStr

from netwatch.alerting.engine import AlertStatus
from netwatch.alerting.model import Impact
from netwatch.alerting.service import OpenIncident
from netwatch.alerting.silences import (
    Matcher,
    Silence,
    SilenceInvalid,
    Silences,
    SilenceSpec,
    matches_all,
    parse_silence,
    rfc3339,
)

log = structlog.get_logger(__name__)

_NO_STORE = {"Cache-Control": "no-store"}
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
_STATE_ORDER = {"firing": 0, "flapping": 1, "pending": 2}
_SILENCE_STATES = ("active", "pending", "expired")
#: Bodies larger than this are refused (413) before they are read: a silence is a few hundred bytes.
MAX_BODY_BYTES = 64 * 1024


class AlertsSource(Protocol):
    """What the alert endpoints read and change (:class:`netwatch.alerting.service.AlertService`)."""

    @property
    def silences(self) -> Silences: ...

    def incidents(self) -> list[OpenIncident]:
        """Open incidents with what holds them."""
        ...

    def unopened(self) -> list[AlertStatus]:
        """What the engine tracks that is no open incident (pending, flapping unannounced)."""
        ...

    def add_silence(self, spec: SilenceSpec) -> Silence: ...

    def expire_silence(self, silence_id: str) -> Silence | None: ...


class Access:
    """Who may read and write: loopback reads are open, everything else needs the bearer token."""

    def __init__(self, token: SecretStr | None) -> None:
        # Only a digest is kept: comparing digests takes the same time whatever the lengths.
        self._digest = None if token is None else hashlib.sha256(token.get_secret_value().encode()).digest()

    @property
    def has_token(self) -> bool:
        return self._digest is not None

    def _token_ok(self, request: web.Request) -> bool:
        if self._digest is None:
            return False
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return False
        given = hashlib.sha256(value.strip().encode("utf-8", "surrogateescape")).digest()
        return hmac.compare_digest(given, self._digest)

    def refuse_read(self, request: web.Request) -> web.Response | None:
        """Return the refusal for a read, or ``None`` when it may go ahead."""
        if is_loopback(_peer(request)) or self._token_ok(request):
            return None
        if self._digest is None:
            return _refuse(
                request,
                403,
                "the alert endpoints answer other hosts only with a token; set api.token_file in the config "
                "and restart netwatch, or ask from the host itself",
            )
        return _refuse(request, 401, "missing or wrong bearer token (Authorization: Bearer <api.token_file>)")

    def refuse_write(self, request: web.Request) -> web.Response | None:
        """Return the refusal for a write, or ``None`` when it may go ahead."""
        if self._digest is None:
            return _refuse(
                request,
                403,
                "creating or expiring silences needs an API token: set api.token_file in the config "
                "and restart netwatch",
            )
        if self._token_ok(request):
            return None
        return _refuse(request, 401, "missing or wrong bearer token (Authorization: Bearer <api.token_file>)")


def _peer(request: web.Request) -> str | None:
    # The socket's peer, not request.remote: nothing a client sends can make it look local.
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return str(peer[0]) if isinstance(peer, tuple | list) and peer else None


def is_loopback(address: str | None) -> bool:
    """Return whether an address is a loopback address (``127.0.0.0/8``, ``::1``, ``::ffff:127.x``)."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _refuse(request: web.Request, status: int, message: str) -> web.Response:
    log.warning(
        "api_request_refused",
        method=request.method,
        path=request.path,
        peer=_peer(request),
        status=status,
        token_sent="Authorization" in request.headers,
    )
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="netwatch"'
    return web.json_response({"error": message}, status=status, headers=headers)


def _error(status: int, message: str, problems: Iterable[str] = ()) -> web.Response:
    body: dict[str, object] = {"error": message}
    problems = list(problems)
    if problems:
        body["problems"] = problems
    return web.json_response(body, status=status, headers=_NO_STORE)


def _ok(body: dict[str, object], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers={**_NO_STORE, **(headers or {})})


def _impact_json(impact: Impact) -> dict[str, object]:
    return {
        "count": impact.count,
        "devices": list(impact.devices),
        "by_site": dict(impact.by_site),
        "by_kind": dict(impact.by_kind),
    }


def incident_json(item: OpenIncident) -> dict[str, object]:
    """One open incident as the API shows it."""
    i = item.incident
    return {
        "id": i.id,
        "state": item.state,
        "rule": i.rule,
        "entity": i.entity,
        "severity": i.severity,
        "summary": i.summary,
        "since": rfc3339(i.started_ns),
        "value": i.value,
        "labels": dict(i.labels),
        "impact": _impact_json(i.impact),
        "held": item.held or None,
        "silenced_by": list(item.silenced_by),
        "notified": list(item.notified),
    }


def status_json(status: AlertStatus) -> dict[str, object]:
    """A pending (or unannounced flapping) (rule, entity) in the same shape, with no incident id."""
    return {
        "id": None,
        "state": "flapping" if status.flapping else status.state,
        "rule": status.rule,
        "entity": status.entity,
        "severity": status.severity,
        "summary": status.summary,
        "since": None if status.started_ns is None else rfc3339(status.started_ns),
        "value": status.value,
        "labels": dict(status.labels),
        "impact": _impact_json(Impact()),
        "held": None,
        "silenced_by": [],
        "notified": [],
    }


def _sort_key(doc: dict[str, object]) -> tuple[int, int, str, str, str]:
    return (
        _STATE_ORDER.get(str(doc["state"]), 3),
        _SEVERITY_ORDER.get(str(doc["severity"]), 3),
        str(doc["since"] or ""),
        str(doc["rule"]),
        str(doc["entity"]),
    )


def _bool(value: str) -> bool | None:
    return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(value.lower())


@dataclass(frozen=True, slots=True)
class AlertsApi:
    """The alert endpoints of one daemon."""

    source: AlertsSource
    access: Access
    max_silence_s: float
    instance: Callable[[], str]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/alerts", self.alerts)
        app.router.add_get("/api/v1/silences", self.silences)
        app.router.add_post("/api/v1/silences", self.create_silence)
        app.router.add_get("/api/v1/silences/{id}", self.silence)
        app.router.add_delete("/api/v1/silences/{id}", self.expire_silence)

    async def alerts(self, request: web.Request) -> web.Response:
        """Open incidents, worst and oldest first; with ``pending=true`` what may become one."""
        # Casualties behind a down parent are left out by default: a core switch with 500
        # devices behind it is one line whose impact names them, as it is one page.
        refused = self.access.refuse_read(request)
        if refused is not None:
            return refused
        problems = []
        unknown = sorted(set(request.query) - {"pending", "unreachable", "filter"})
        if unknown:
            problems.append(f"unknown parameter(s) {', '.join(unknown)}; known: pending, unreachable, filter")
        pending = _bool(request.query.get("pending", "false"))
        if pending is None:
            problems.append("pending: true or false")
        unreachable = _bool(request.query.get("unreachable", "false"))
        if unreachable is None:
            problems.append("unreachable: true or false")
        matchers = []
        for text in request.query.getall("filter", []):
            try:
                matchers.append(Matcher.parse(text))
            except ValueError as exc:
                problems.append(f"filter: {exc}")
        if problems:
            return _error(400, "bad query", problems)
        docs = [incident_json(i) for i in self.source.incidents() if unreachable or i.held != "unreachable"]
        if pending:
            docs += [status_json(s) for s in self.source.unopened()]
        if matchers:
            docs = [d for d in docs if matches_all(matchers, _labels_of(d))]
        docs.sort(key=_sort_key)
        return _ok({"instance": self.instance(), "alerts": docs})

    def _silence_json(self, silence: Silence, now: int, incidents: list[OpenIncident]) -> dict[str, object]:
        doc = silence.to_json(now)
        doc["silencing"] = sorted(i.incident.id for i in incidents if silence.id in i.silenced_by)
        return doc

    async def silences(self, request: web.Request) -> web.Response:
        """Every kept silence: active, then pending, then expired."""
        refused = self.access.refuse_read(request)
        if refused is not None:
            return refused
        problems = []
        unknown = sorted(set(request.query) - {"state"})
        if unknown:
            problems.append(f"unknown parameter(s) {', '.join(unknown)}; known: state")
        states = set(request.query.getall("state", [])) or set(_SILENCE_STATES)
        if states - set(_SILENCE_STATES):
            problems.append(f"state: one of {', '.join(_SILENCE_STATES)}")
        if problems:
            return _error(400, "bad query", problems)
        now = self.source.silences.now()
        incidents = self.source.incidents()
        docs = [self._silence_json(s, now, incidents) for s in self.source.silences.all(now) if s.state(now) in states]
        return _ok({"instance": self.instance(), "silences": docs})

    async def silence(self, request: web.Request) -> web.Response:
        refused = self.access.refuse_read(request)
        if refused is not None:
            return refused
        found = self.source.silences.get(request.match_info["id"])
        if found is None:
            return _error(404, "no such silence (unknown, or expired more than 5 days ago)")
        return _ok(self._silence_json(found, self.source.silences.now(), self.source.incidents()))

    async def create_silence(self, request: web.Request) -> web.Response:
        """Create a silence from a JSON body; 400 lists every problem with it."""
        refused = self.access.refuse_write(request)
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.read())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, "invalid silence", [f"the body is not JSON: {exc}"])
        try:
            spec = parse_silence(body, now=self.source.silences.now(), max_duration_s=self.max_silence_s)
            silence = self.source.add_silence(spec)
        except SilenceInvalid as exc:
            return _error(400, "invalid silence", exc.problems)
        now = self.source.silences.now()
        doc = self._silence_json(silence, now, self.source.incidents())
        return _ok({"id": silence.id, "silence": doc}, 201, {"Location": f"/api/v1/silences/{silence.id}"})

    async def expire_silence(self, request: web.Request) -> web.Response:
        """Expire a silence now; what it held and still fires is sent at once."""
        refused = self.access.refuse_write(request)
        if refused is not None:
            return refused
        silence = self.source.expire_silence(request.match_info["id"])
        if silence is None:
            return _error(404, "no such silence (unknown, or expired more than 5 days ago)")
        doc = self._silence_json(silence, self.source.silences.now(), self.source.incidents())
        return _ok({"id": silence.id, "silence": doc})


def _labels_of(doc: dict[str, object]) -> dict[str, str]:
    labels = doc.get("labels")
    out = {"entity": str(doc["entity"])}
    if isinstance(labels, dict):
        out.update((str(k), str(v)) for k, v in labels.items())
    return out


__all__ = ["MAX_BODY_BYTES", "Access", "AlertsApi", "AlertsSource", "incident_json", "is_loopback", "status_json"]
