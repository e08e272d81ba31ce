"""Loopback stand-ins for the services netwatch notifies, enforcing their documented contracts.

Each is an aiohttp app on ``127.0.0.1`` that records what it received, answers the way the real
service does (status codes, error strings, rate limits) and can be stopped and started again on
the same port, so a test can take a receiver "down" and bring it back:

* :class:`WebhookServer`: a generic endpoint that deduplicates on ``webhook-id`` like a careful
  consumer; it does not check signatures (the tests do, independently of netwatch's code).
* :class:`SlackServer`: incoming webhooks. JSON with ``text`` and/or Block Kit ``blocks`` within
  Block Kit's limits; one message per second per webhook, else ``429`` with ``Retry-After``;
  ``400 invalid_payload`` / ``invalid_blocks`` / ``no_text``, ``403 action_prohibited``,
  ``404 channel_not_found`` / ``no_service``, ``410 channel_is_archived``; ``200 ok``.
* :class:`TeamsServer`: connector incoming webhooks (``200 1``) and Workflows URLs (``202``).
  A MessageCard or a message with an Adaptive Card attachment, at most 28 KB; past the connector
  limits (4/s, 60/30 s, 100/h, 150/2 h, 1800/day, scalable for tests) it answers **200** with
  ``Microsoft Teams endpoint returned HTTP error 429`` in the body, as connectors do.
* :class:`PagerDutyServer`: Events API v2 ``/v2/enqueue``: routing key, event shape, 202/400/429,
  and alerts kept by ``dedup_key`` so a test can count the incidents a sender opened.
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

# -- common -----------------------------------------------------------------------------------------


@dataclass
class Received:
    """One request as the server saw it, and what it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int = 0
    answer: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


class Loopback:
    """An aiohttp app on a loopback port that survives :meth:`stop` / :meth:`start` cycles."""

    def __init__(self) -> None:
        self.app = web.Application(client_max_size=4 * 1024 * 1024)
        self.port = 0
        self.requests: list[Received] = []
        #: Answer the next N requests with this status (e.g. 503) before the real handling.
        self.fail_next = 0
        self.fail_status = 503
        self.fail_headers: dict[str, str] = {}
        #: When set to an unset Event, a request is processed but not answered until the event is
        #: set: the window in which a sender crashes after the receiver acted but before it heard so.
        self.hold: asyncio.Event | None = None
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on the port used before (or a free one the first time)."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening: clients now get connection refused."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _record(self, request: web.Request) -> tuple[Received, web.Response | None]:
        """Record a request; apply holds and injected failures (returned as the response)."""
        got = Received(request.path, dict(request.headers), await request.read(), time.monotonic())
        self.requests.append(got)
        self.arrived.set()
        if self.fail_next > 0:
            self.fail_next -= 1
            return got, self._answer(got, self.fail_status, "injected failure", headers=self.fail_headers)
        return got, None

    async def _held(self) -> None:
        if self.hold is not None:
            await self.hold.wait()

    @staticmethod
    def _answer(
        got: Received, status: int, text: str, *, headers: dict[str, str] | None = None, json_body: object = None
    ) -> web.Response:
        got.status, got.answer = status, text if json_body is None else json.dumps(json_body)
        if json_body is not None:
            return web.json_response(json_body, status=status, headers=headers)
        return web.Response(status=status, text=text, headers=headers)


# -- generic webhook --------------------------------------------------------------------------------


class WebhookServer(Loopback):
    """``POST /hook``: records requests; processes each ``webhook-id`` once (a duplicate is a 200)."""

    def __init__(self, *, port: int = 0) -> None:
        super().__init__()
        self.port = port
        self.processed: dict[str, Received] = {}
        self.duplicates = 0
        self.app.router.add_post("/hook", self._hook)

    @property
    def url(self) -> str:
        return f"{self.base_url}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        got, failed = await self._record(request)
        if failed is not None:
            return failed
        # Senders without a webhook-id (Alertmanager's own webhook) count every request.
        msg_id = request.headers.get("webhook-id") or f"#{len(self.requests)}"
        if msg_id in self.processed:
            self.duplicates += 1
        else:
            self.processed[msg_id] = got
        await self._held()
        return self._answer(got, 200, "ok")

    def bodies(self) -> list[Any]:
        """Return the JSON bodies processed, in order of arrival (duplicates once)."""
        return [r.json() for r in self.processed.values()]


# -- Slack ------------------------------------------------------------------------------------------

_SLACK_BLOCK_TYPES = frozenset({"header", "section", "context", "divider", "actions", "image", "rich_text"})


def _slack_text_obj(obj: object, *, limit: int, plain_only: bool = False) -> bool:
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or not obj["text"]:
        return False
    kinds = {"plain_text"} if plain_only else {"plain_text", "mrkdwn"}
    return obj.get("type") in kinds and len(obj["text"]) <= limit


def slack_blocks_valid(blocks: object) -> bool:
    """Check Block Kit's rules for the blocks netwatch uses (and reject unknown shapes)."""
    if not isinstance(blocks, list) or not 0 < len(blocks) <= 50:
        return False
    for block in blocks:
        if not isinstance(block, dict) or block.get("type") not in _SLACK_BLOCK_TYPES:
            return False
        kind = block["type"]
        if kind == "header" and not _slack_text_obj(block.get("text"), limit=150, plain_only=True):
            return False
        if kind == "section":
            text, fields = block.get("text"), block.get("fields")
            if text is None and fields is None:
                return False
            if text is not None and not _slack_text_obj(text, limit=3000):
                return False
            if fields is not None and (
                not isinstance(fields, list)
                or not 0 < len(fields) <= 10
                or not all(_slack_text_obj(f, limit=2000) for f in fields)
            ):
                return False
        if kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 0 < len(elements) <= 10:
                return False
            if not all(_slack_text_obj(e, limit=3000) for e in elements):
                return False
    return True


@dataclass
class SlackHook:
    """One incoming webhook and its channel's state."""

    channel: str
    state: str = "ok"  # ok | archived | not_found | prohibited
    last_accepted: float = -1e9
    messages: list[Any] = field(default_factory=list)


class SlackServer(Loopback):
    """``POST /services/T…/B…/<token>``: Slack's incoming-webhook contract and 1 msg/s limit."""

    def __init__(self, *, min_interval_s: float = 1.0, retry_after_s: int = 1) -> None:
        super().__init__()
        self.min_interval_s = min_interval_s
        self.retry_after_s = retry_after_s
        self.hooks: dict[str, SlackHook] = {}
        self.rate_limited = 0
        self.app.router.add_post("/services/{team}/{bot}/{token}", self._post)

    def add_hook(self, channel: str, *, state: str = "ok") -> str:
        """Create a webhook for a channel and return its (secret) URL."""
        token = f"tok{len(self.hooks):04d}secretXYZ"
        self.hooks[token] = SlackHook(channel, state)
        return f"{self.base_url}/services/T0NETWATCH/B0NETWATCH/{token}"

    async def _post(self, request: web.Request) -> web.Response:
        got, failed = await self._record(request)
        if failed is not None:
            return failed
        hook = self.hooks.get(request.match_info["token"])
        if hook is None:
            return self._answer(got, 404, "no_service")
        if not request.content_type.startswith("application/json"):
            return self._answer(got, 400, "invalid_payload")
        try:
            doc = json.loads(got.body)
        except ValueError:
            return self._answer(got, 400, "invalid_payload")
        if not isinstance(doc, dict):
            return self._answer(got, 400, "invalid_payload")
        text, blocks = doc.get("text"), doc.get("blocks")
        if not (isinstance(text, str) and text) and blocks is None:
            return self._answer(got, 400, "no_text")
        if blocks is not None and not slack_blocks_valid(blocks):
            return self._answer(got, 400, "invalid_blocks")
        if hook.state == "archived":
            return self._answer(got, 410, "channel_is_archived")
        if hook.state == "not_found":
            return self._answer(got, 404, "channel_not_found")
        if hook.state == "prohibited":
            return self._answer(got, 403, "action_prohibited")
        now = time.monotonic()
        if now - hook.last_accepted < self.min_interval_s:
            self.rate_limited += 1
            return self._answer(got, 429, "rate_limited", headers={"Retry-After": str(self.retry_after_s)})
        hook.last_accepted = now
        hook.messages.append(doc)
        return self._answer(got, 200, "ok")


# -- Microsoft Teams --------------------------------------------------------------------------------

#: Documented connector limits: (window seconds, requests allowed in it).
TEAMS_LIMITS: tuple[tuple[float, int], ...] = ((1, 4), (30, 60), (3600, 100), (7200, 150), (86400, 1800))
TEAMS_THROTTLED = (
    "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with "
    "ContextId tcid=0,server=msgapi-production-loopback,cv=netwatch-test.0.."
)
_HEX_COLOUR = re.compile(r"^#?[0-9A-Fa-f]{6}$")


def teams_card_valid(doc: object, *, adaptive_only: bool) -> bool:
    """Check a Teams webhook body: a MessageCard, or a message with Adaptive Card attachments."""
    if not isinstance(doc, dict):
        return False
    if doc.get("@type") == "MessageCard":
        if adaptive_only:
            return False
        if doc.get("@context") not in ("https://schema.org/extensions", "http://schema.org/extensions"):
            return False
        if not (doc.get("summary") or doc.get("text")):
            return False
        colour = doc.get("themeColor")
        if colour is not None and not (isinstance(colour, str) and _HEX_COLOUR.match(colour)):
            return False
        sections = doc.get("sections", [])
        return isinstance(sections, list) and all(isinstance(s, dict) for s in sections)
    if doc.get("type") != "message":
        return False
    attachments = doc.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return False
    for att in attachments:
        if not isinstance(att, dict) or att.get("contentType") != "application/vnd.microsoft.card.adaptive":
            return False
        card = att.get("content")
        if not isinstance(card, dict) or card.get("type") != "AdaptiveCard" or not isinstance(card.get("version"), str):
            return False
        body = card.get("body")
        if not isinstance(body, list) or not all(isinstance(e, dict) and isinstance(e.get("type"), str) for e in body):
            return False
    return True


class TeamsServer(Loopback):
    """``POST /webhookb2/<id>`` (connector: ``200 1``) and ``POST /workflows/<id>`` (``202``)."""

    MAX_BYTES = 28 * 1024

    def __init__(self, *, limits: tuple[tuple[float, int], ...] = TEAMS_LIMITS) -> None:
        super().__init__()
        self.limits = limits
        self.throttled = 0
        self.cards: list[Any] = []
        self._accepted: dict[str, collections.deque[float]] = {}
        self.app.router.add_post("/webhookb2/{hook}", self._connector)
        self.app.router.add_post("/workflows/{hook}", self._workflow)

    def connector_url(self, hook: str = "c0ffee") -> str:
        return f"{self.base_url}/webhookb2/{hook}"

    def workflow_url(self, hook: str = "f10w") -> str:
        return f"{self.base_url}/workflows/{hook}"

    def _over_limit(self, hook: str, now: float) -> bool:
        seen = self._accepted.setdefault(hook, collections.deque())
        longest = max(w for w, _ in self.limits)
        while seen and now - seen[0] >= longest:
            seen.popleft()
        return any(sum(1 for t in seen if now - t < window) >= count for window, count in self.limits)

    async def _handle(self, request: web.Request, *, workflow: bool) -> web.Response:
        got, failed = await self._record(request)
        if failed is not None:
            return failed
        if len(got.body) > self.MAX_BYTES:
            return self._answer(got, 413, "Request Entity too large")
        try:
            doc = json.loads(got.body)
        except ValueError:
            return self._answer(got, 400, "Bad payload received by generic incoming webhook.")
        if not teams_card_valid(doc, adaptive_only=workflow):
            return self._answer(got, 400, "Bad payload received by generic incoming webhook.")
        hook = request.match_info["hook"]
        now = time.monotonic()
        if self._over_limit(hook, now):
            self.throttled += 1
            # Connectors report throttling inside a 200, not as a 429 status.
            return self._answer(got, 200, TEAMS_THROTTLED)
        self._accepted[hook].append(now)
        self.cards.append(doc)
        return self._answer(got, 202, "") if workflow else self._answer(got, 200, "1")

    async def _connector(self, request: web.Request) -> web.Response:
        return await self._handle(request, workflow=False)

    async def _workflow(self, request: web.Request) -> web.Response:
        return await self._handle(request, workflow=True)


# -- PagerDuty --------------------------------------------------------------------------------------

_PD_SEVERITIES = frozenset({"critical", "error", "warning", "info"})
_PD_ACTIONS = frozenset({"trigger", "acknowledge", "resolve"})


@dataclass
class PdAlert:
    """An alert PagerDuty keeps per dedup_key: open until resolved; a trigger after that opens a new one."""

    dedup_key: str
    status: str = "triggered"
    triggers: int = 0
    summary: str = ""


class PagerDutyServer(Loopback):
    """``POST /v2/enqueue``: the Events API v2 contract, throttling, and alert de-duplication."""

    def __init__(self, *, max_per_window: int = 120, window_s: float = 60.0) -> None:
        super().__init__()
        self.routing_keys: set[str] = set()
        self.max_per_window = max_per_window
        self.window_s = window_s
        self.alerts: dict[str, PdAlert] = {}
        self.incidents_opened = 0
        self.events: list[Any] = []
        self._recent: dict[str, collections.deque[float]] = {}
        self.app.router.add_post("/v2/enqueue", self._enqueue)

    @property
    def url(self) -> str:
        return f"{self.base_url}/v2/enqueue"

    def add_routing_key(self) -> str:
        key = f"R{len(self.routing_keys):031x}"
        self.routing_keys.add(key)
        return key

    def _invalid(self, got: Received, *errors: str) -> web.Response:
        body = {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)}
        return self._answer(got, 400, "", json_body=body)

    async def _enqueue(self, request: web.Request) -> web.Response:
        got, failed = await self._record(request)
        if failed is not None:
            return failed
        try:
            doc = json.loads(got.body)
        except ValueError:
            return self._invalid(got, "Malformed JSON")
        if not isinstance(doc, dict):
            return self._invalid(got, "Event object must be a JSON object")
        key = doc.get("routing_key")
        if not isinstance(key, str) or len(key) != 32 or key not in self.routing_keys:
            return self._invalid(got, "Invalid routing key")
        action = doc.get("event_action")
        if action not in _PD_ACTIONS:
            return self._invalid(got, "'event_action' is invalid")
        dedup = doc.get("dedup_key")
        if dedup is not None and (not isinstance(dedup, str) or not dedup or len(dedup) > 255):
            return self._invalid(got, "'dedup_key' is invalid")
        if action != "trigger" and dedup is None:
            return self._invalid(got, "'dedup_key' is required for acknowledge and resolve")
        summary = ""
        if action == "trigger":
            payload = doc.get("payload")
            if not isinstance(payload, dict):
                return self._invalid(got, "'payload' is missing")
            summary = payload.get("summary")
            if not isinstance(summary, str) or not summary or len(summary) > 1024:
                return self._invalid(got, "'payload.summary' is invalid")
            if not isinstance(payload.get("source"), str) or not payload["source"]:
                return self._invalid(got, "'payload.source' is invalid")
            if payload.get("severity") not in _PD_SEVERITIES:
                return self._invalid(got, "'payload.severity' is invalid")
            details = payload.get("custom_details")
            if details is not None and not isinstance(details, dict):
                return self._invalid(got, "'payload.custom_details' must be an object")
        now = time.monotonic()
        recent = self._recent.setdefault(key, collections.deque())
        while recent and now - recent[0] >= self.window_s:
            recent.popleft()
        if len(recent) >= self.max_per_window:
            body = {"status": "throttle event", "message": "Requests for this service are arriving too quickly."}
            return self._answer(got, 429, "", json_body=body)
        recent.append(now)
        self.events.append(doc)
        dedup_key = dedup if isinstance(dedup, str) else f"generated-{len(self.events)}"
        open_alert = self.alerts.get(dedup_key)
        if action == "trigger":
            if open_alert is None or open_alert.status == "resolved":
                open_alert = self.alerts[dedup_key] = PdAlert(dedup_key, summary=summary)
                self.incidents_opened += 1
            open_alert.triggers += 1
        elif open_alert is not None and open_alert.status != "resolved":
            open_alert.status = "resolved" if action == "resolve" else "acknowledged"
        body = {"status": "success", "message": "Event processed", "dedup_key": dedup_key}
        await self._held()
        return self._answer(got, 202, "", json_body=body)
