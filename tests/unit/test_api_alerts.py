"""Alert API: /api/v1/alerts and /api/v1/silences served by a real aiohttp server on loopback,
over a real alert service (engine, topology, silences)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from pydantic import SecretStr

from netwatch.alerting.engine import AlertEngine
from netwatch.alerting.maintenance import MaintenanceCalendar
from netwatch.alerting.model import Notification
from netwatch.alerting.routing import RouteConfig, Router
from netwatch.alerting.rules import RuleConfig, effective_rules
from netwatch.alerting.service import AlertService
from netwatch.alerting.topology import Topology
from netwatch.api import ApiConfig, serve_api
from netwatch.api.alerts import is_loopback
from netwatch.config import load_config
from netwatch.model import Sample, now_ns
from tests.unit.test_api_health import FakeSource

TOKEN = "s3cret-token-value-0123456789"
CITY = """
sites: [{id: hq, name: City Hall}, {id: park, name: Villa Parke, kind: park}]
devices:
  - {id: sw-vp, site: park, kind: switch, address: 127.0.0.2, checks: [ping]}
  - {id: cam-vp, site: park, kind: camera, address: 127.0.0.3, checks: [ping], parents: [sw-vp]}
  - {id: ap-vp, site: park, kind: wifi_ap, address: 127.0.0.4, checks: [ping], parents: [sw-vp]}
  - {id: ups-hq, site: hq, kind: server, address: 127.0.0.5, checks: [ping]}
"""


@dataclass
class Api:
    url: str
    http: aiohttp.ClientSession
    svc: AlertService
    inventory: Any
    sent: list[Notification] = field(default_factory=list)

    async def call(
        self, method: str, path: str, *, token: str | None = None, body: object = None, raw: bytes | None = None
    ) -> tuple[int, dict[str, Any], Mapping[str, str]]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with self.http.request(method, self.url + path, headers=headers, data=data) as resp:
            text = await resp.text()
            try:
                doc = json.loads(text)
            except json.JSONDecodeError:
                doc = {"text": text}
            return resp.status, doc, resp.headers

    def fail(self, *devices: str, polls: int = 1) -> None:
        """Report the devices down (the rest up) ``polls`` times, then tick past group_wait."""
        for _ in range(polls):
            t = now_ns()
            samples = []
            for d in self.inventory.devices.values():
                up = d.id not in devices
                samples.append(Sample("device", d.target.base_tags(), {"up": int(up), "state": "x", "reason": "ok"}, t))
            self.svc.observe(samples)
        self.svc.tick()


def build_service(
    tmp_path: Path, sent: list[Notification], *, pending_for: str | None = None
) -> tuple[AlertService, Any]:
    (tmp_path / "c.yaml").write_text(CITY)
    inventory = load_config(tmp_path / "c.yaml").inventory
    topology = Topology.from_inventory(inventory)
    user = [RuleConfig.model_validate({"name": "device_down", "for": pending_for})] if pending_for else []
    svc = AlertService(
        engine=AlertEngine(effective_rules(user)),
        topology=topology,
        calendar=MaintenanceCalendar([], topology),
        router=Router([RouteConfig.model_validate({"receivers": ["noc"], "group_wait": 0})]),
        enqueue=lambda n: sent.append(n) or True,
        emit=lambda samples: None,
        site_names={s.id: s.name for s in inventory.sites.values()},
    )
    return svc, inventory


@pytest.fixture
async def api(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    """The API with a token configured (``@pytest.mark.parametrize('api', [{'token': None}], indirect=True)``
    for none)."""
    opts: dict[str, Any] = getattr(request, "param", {})
    token = opts.get("token", TOKEN)
    sent: list[Notification] = []
    svc, inventory = build_service(tmp_path, sent, pending_for=opts.get("pending_for"))
    cfg = ApiConfig(listen="127.0.0.1:0", token_file=None if token is None else SecretStr(token))
    async with serve_api(cfg, FakeSource(), alerts=svc) as server, aiohttp.ClientSession() as http:
        assert server.url is not None
        yield Api(server.url, http, svc, inventory, sent)


def silence_body(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "matchers": [{"label": "site", "op": "=", "value": "park"}],
        "duration": "1h",
        "created_by": "ana",
        "comment": "splicing the park lateral",
    }
    body.update(over)
    return body


# -- reads ------------------------------------------------------------------------------------


async def test_alerts_lists_open_incidents_with_impact_open_on_loopback(api: Api) -> None:
    """No token needed from loopback: the switch's incident with its impact, held state and labels."""
    api.fail("sw-vp", "cam-vp", "ap-vp")
    status, doc, headers = await api.call("GET", "/api/v1/alerts")
    assert status == 200, doc
    assert headers["Cache-Control"] == "no-store"
    assert doc["instance"] == "noc-test"
    [alert] = doc["alerts"]
    assert alert["id"].startswith("nw-")
    assert (alert["state"], alert["rule"], alert["entity"], alert["severity"]) == (
        "firing",
        "device_down",
        "sw-vp",
        "critical",
    )
    assert alert["impact"]["count"] == 2
    assert sorted(alert["impact"]["devices"]) == ["ap-vp", "cam-vp"]
    assert alert["impact"]["by_site"] == {"park": 2}
    assert "2 devices unreachable behind it: 2 at Villa Parke" in alert["summary"]
    assert alert["labels"]["site"] == "park"
    assert alert["held"] is None
    assert alert["notified"] == ["noc"]
    assert alert["since"].endswith("Z")
    _, doc, _ = await api.call("GET", "/api/v1/alerts?unreachable=true")
    held = {a["entity"]: a["held"] for a in doc["alerts"]}
    assert held == {"sw-vp": None, "cam-vp": "unreachable", "ap-vp": "unreachable"}


async def test_filter_and_unknown_parameters(api: Api) -> None:
    """filter= keeps matching alerts (labels and entity); bad filters and unknown parameters are 400."""
    api.fail("sw-vp", "ups-hq")
    _, doc, _ = await api.call("GET", "/api/v1/alerts?filter=site=hq")
    assert [a["entity"] for a in doc["alerts"]] == ["ups-hq"]
    _, doc, _ = await api.call("GET", "/api/v1/alerts?filter=entity=~sw-.*&filter=severity=critical")
    assert [a["entity"] for a in doc["alerts"]] == ["sw-vp"]
    status, doc, _ = await api.call("GET", "/api/v1/alerts?filter=site&pendng=1&pending=maybe&unreachable=2")
    assert status == 400
    assert len(doc["problems"]) == 4, doc


@pytest.mark.parametrize("api", [{"pending_for": "10m"}], indirect=True)
async def test_pending_alerts_only_when_asked(api: Api) -> None:
    """A rule's `for` not yet over: not an incident, listed with pending=true (without an id)."""
    api.fail("ups-hq")
    _, doc, _ = await api.call("GET", "/api/v1/alerts")
    assert doc["alerts"] == []
    _, doc, _ = await api.call("GET", "/api/v1/alerts?pending=true")
    assert [(a["state"], a["entity"], a["id"]) for a in doc["alerts"]] == [("pending", "ups-hq", None)]


# -- writes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("api", [{"token": None}], indirect=True)
async def test_without_a_token_file_writes_are_refused_and_say_how_to_enable_them(api: Api) -> None:
    """No api.token_file: POST and DELETE are 403 naming the setting; reads still work on loopback."""
    status, doc, _ = await api.call("POST", "/api/v1/silences", token="anything", body=silence_body())
    assert status == 403
    assert "api.token_file" in doc["error"]
    status, _, _ = await api.call("DELETE", "/api/v1/silences/some-id", token="anything")
    assert status == 403
    status, _, _ = await api.call("GET", "/api/v1/silences")
    assert status == 200


async def test_writes_need_the_bearer_token(api: Api) -> None:
    """No header or a wrong token is 401 with WWW-Authenticate; nothing is created."""
    for token in (None, "wrong", TOKEN + "x", ""):
        status, doc, headers = await api.call("POST", "/api/v1/silences", token=token, body=silence_body())
        assert status == 401, (token, doc)
        assert headers["WWW-Authenticate"].startswith("Bearer")
    async with api.http.post(
        api.url + "/api/v1/silences", headers={"Authorization": f"Basic {TOKEN}"}, json=silence_body()
    ) as resp:
        assert resp.status == 401
    assert api.svc.silences.all() == []


async def test_silence_holds_and_delete_releases(api: Api) -> None:
    """POST creates a silence that holds a new matching incident; DELETE expires it and the page goes out."""
    status, doc, headers = await api.call("POST", "/api/v1/silences", token=TOKEN, body=silence_body())
    assert status == 201, doc
    silence_id = doc["id"]
    assert headers["Location"] == f"/api/v1/silences/{silence_id}"
    assert doc["silence"]["state"] == "active"
    api.fail("sw-vp")
    assert api.sent == []
    _, doc, _ = await api.call("GET", "/api/v1/alerts")
    [alert] = doc["alerts"]
    assert (alert["held"], alert["silenced_by"], alert["notified"]) == ("silenced", [silence_id], [])
    _, doc, _ = await api.call("GET", "/api/v1/silences")
    assert [(s["id"], s["silencing"]) for s in doc["silences"]] == [(silence_id, [alert["id"]])]
    assert doc["silences"][0]["matchers"] == [{"label": "site", "op": "=", "value": "park"}]
    status, doc, _ = await api.call("DELETE", f"/api/v1/silences/{silence_id}", token=TOKEN)
    assert status == 200
    assert doc["silence"]["state"] == "expired"
    assert [(n.event, n.incident.entity) for n in api.sent] == [("firing", "sw-vp")]
    _, doc, _ = await api.call("GET", f"/api/v1/silences/{silence_id}")
    assert doc["state"] == "expired"
    _, doc, _ = await api.call("GET", "/api/v1/silences?state=active")
    assert doc["silences"] == []


async def test_bad_silence_lists_every_problem(api: Api) -> None:
    """400 with each problem: bad regex, end before start, missing comment, unknown field."""
    body = {
        "matchers": [{"label": "rule", "op": "=~", "value": "device_("}],
        "starts_at": "2099-01-01T10:00:00Z",
        "ends_at": "2099-01-01T09:00:00Z",
        "created_by": "ana",
        "ttl": 5,
    }
    status, doc, _ = await api.call("POST", "/api/v1/silences", token=TOKEN, body=body)
    assert status == 400
    assert doc["error"] == "invalid silence"
    assert len(doc["problems"]) == 4, doc["problems"]
    status, doc, _ = await api.call("POST", "/api/v1/silences", token=TOKEN, body=silence_body(duration="30d"))
    assert status == 400
    assert "api.silence_max_duration" in doc["problems"][0]
    status, doc, _ = await api.call("POST", "/api/v1/silences", token=TOKEN, raw=b"{not json")
    assert status == 400
    assert "not JSON" in doc["problems"][0]
    status, _, _ = await api.call("POST", "/api/v1/silences", token=TOKEN, raw=b"x" * 70_000)
    assert status == 413
    assert api.svc.silences.all() == []


async def test_unknown_paths_and_methods(api: Api) -> None:
    """Unknown silence 404 (GET and DELETE); a method a path does not serve is 405; an unknown path 404."""
    assert (await api.call("GET", "/api/v1/silences/nope"))[0] == 404
    assert (await api.call("DELETE", "/api/v1/silences/nope", token=TOKEN))[0] == 404
    assert (await api.call("PUT", "/api/v1/silences", token=TOKEN))[0] == 405
    assert (await api.call("POST", "/api/v1/alerts", token=TOKEN))[0] == 405
    assert (await api.call("GET", "/api/v1/nothing"))[0] == 404
    assert (await api.call("GET", "/healthz"))[0] == 200


async def test_token_is_never_logged_or_echoed(api: Api) -> None:
    """Refused and accepted requests log no token and no response carries it."""
    bodies = []
    with structlog.testing.capture_logs() as logs:
        for token in (TOKEN + "-wrong", TOKEN):
            bodies.append(await api.call("POST", "/api/v1/silences", token=token, body=silence_body()))
            bodies.append(await api.call("DELETE", "/api/v1/silences/nope", token=token))
    assert any(e["event"] == "api_request_refused" for e in logs)
    assert any(e["event"] == "silence_created" for e in logs)
    assert TOKEN not in repr(logs)
    assert TOKEN not in repr(bodies)


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("192.0.2.2", False),
        ("fe80::1%eth0", False),
        (None, False),
        ("", False),
    ],
)
def test_loopback_addresses(address: str | None, local: bool) -> None:
    """Only loopback peers (IPv4, IPv6 and IPv4-mapped) read without a token."""
    assert is_loopback(address) is local
