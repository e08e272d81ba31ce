"""Alerting across restarts and receiver outages, through the real daemon (`netwatch run`).

A router served by the real snmpd + lab agent (tests/servers/snmpd.py) is polled every second;
a fault is one of its ports set oper-down in the agent's state file, which fires the built-in
``interface_down`` rule. Notifications go to the PagerDuty Events API v2 contract server
(tests/servers/saas.py), which keeps alerts by ``dedup_key`` and counts the incidents a sender
opened, and to a real Prometheus Alertmanager.

Each scenario runs once (a module fixture) and records what the receivers saw at each stage;
the tests below assert on those records, so one expensive run backs several small claims.

* Restart while firing: SIGTERM and start again with the fault still there. Nothing is resolved,
  PagerDuty opens no second incident, Alertmanager keeps the alert active; once the fault clears,
  one resolve.
* SIGKILL between a transition and its delivery: PagerDuty answers 500, the trigger waits in the
  outbox, the daemon is killed; after a restart with PagerDuty back, the trigger arrives once,
  with the dedup_key the failed attempts carried.
* Receiver down for 20 s (connection refused) while a port goes down, comes back and another goes
  down: once it is back, each transition arrives exactly once, in order.

The outbox's backoff (1 s doubling, at most 300 s, equal jitter) is not configurable from the
config file, so the outage scenario waits for it as it is: a 20 s outage is followed by up to
~32 s of backoff.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers.alertmanager import AlertmanagerServer
from tests.servers.common import require_binary
from tests.servers.saas import PagerDutyServer, WebhookServer
from tests.servers.snmpd import SnmpServer

NETWATCH = str(Path(sys.executable).parent / "netwatch")
DEVICE = "core-ch"
PORTS = ("xe-0/0/1", "xe-0/0/2", "ge-0/0/3")
#: Polls a port must be seen up before it may fire (interface_down requires ok first), with slack.
WARM_UP_S = 3.0


# -- the daemon -------------------------------------------------------------------------------------


@dataclass
class Daemon:
    """One `netwatch run` process at a time on one config and state_dir, logging JSON to a file."""

    config: Path
    log: Path
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0

    async def start(self) -> None:
        """Start it and wait until it logs that it listens (its signal handlers are in place)."""
        before = len(self.events("api_listening"))
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                NETWATCH, "run", "-c", str(self.config), stdout=asyncio.subprocess.DEVNULL, stderr=out
            )
        self.starts += 1
        deadline = time.monotonic() + 20
        while len(self.events("api_listening")) == before:
            if self.proc.returncode is not None:
                raise AssertionError(f"netwatch exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"netwatch did not start within 20 s:\n{self.tail()}")
            await asyncio.sleep(0.05)

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the process to exit; return its exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), 15)
        self.proc = None
        return code

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None

    def events(self, name: str) -> list[dict[str, Any]]:
        """Return the log events called ``name``, over every run so far."""
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and doc.get("event") == name:
                out.append(doc)
        return out

    def notices(self, *ports: str) -> list[dict[str, Any]]:
        """Return the ``alert_notify`` events (what the service enqueued) about these ports of the router."""
        return [e for e in self.events("alert_notify") if any(f"{DEVICE} port {p} " in e["summary"] for p in ports)]

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


def write_config(workdir: Path, agent: SnmpServer, pd: PagerDutyServer, am: AlertmanagerServer | None) -> Path:
    """A one-router config polling every second, with PagerDuty (and Alertmanager) on one route."""
    state = workdir / "state"
    (workdir / "pd.key").write_text(pd.add_routing_key() + "\n")
    receivers = [f'{{name: oncall, kind: pagerduty, routing_key_file: pd.key, url: "{pd.url}"}}']
    if am is not None:
        # endsAt 10 s ahead, re-sent every second: a restart gap of a few seconds is not a resolve.
        receivers.append(
            f'{{name: am, kind: alertmanager, url: "{am.url}", resend_interval: 1s, valid_for_resends: 10}}'
        )
    names = ", ".join(["oncall"] + (["am"] if am is not None else []))
    path = workdir / "netwatch.yaml"
    path.write_text(
        f"""
instance: restart-test
state_dir: {state}
api: {{listen: "127.0.0.1:0"}}
log: {{format: json, level: info}}
defaults:
  interval: 1s
  timeout: 900ms
  snmp: {{community_file: {agent.community_file}, port: {agent.port}, timeout: 500ms, retries: 0}}
sites: [{{id: hq, name: City Hall}}]
devices:
  - {{id: {DEVICE}, site: hq, kind: router, address: 127.0.0.1, checks: [snmp], ports: [{", ".join(PORTS)}]}}
receivers:
{"".join(f"  - {r}{chr(10)}" for r in receivers)}routes:
  - {{receivers: [{names}], group_wait: 1s}}
"""
    )
    return path


# -- what the receivers saw -------------------------------------------------------------------------


def entity(port: str) -> str:
    return f"{DEVICE}:{port}"


def trigger_keys(pd: PagerDutyServer, port: str, *, accepted_only: bool = False) -> list[str]:
    """Return the dedup_keys of triggers for interface_down on ``port``, per request (accepted or not)."""
    keys = []
    for req in pd.requests:
        if accepted_only and req.status != 202:
            continue
        try:
            doc = req.json()
        except ValueError:
            continue
        details = doc.get("payload", {}).get("custom_details", {})
        if (
            doc.get("event_action") == "trigger"
            and details.get("rule") == "interface_down"
            and details.get("entity") == entity(port)
        ):
            keys.append(doc["dedup_key"])
    return keys


def accepted(pd: PagerDutyServer, dedup_key: str) -> list[str]:
    """Return the actions PagerDuty accepted (202) for one dedup_key, in order."""
    return [e["event_action"] for e in pd.events if e.get("dedup_key") == dedup_key]


def am_statuses(hook: WebhookServer, incident: str) -> list[str]:
    """Return the statuses Alertmanager sent its webhook for one incident, in order."""
    return [
        a["status"]
        for body in hook.bodies()
        for a in body["alerts"]
        if a["labels"].get("netwatch_incident") == incident
    ]


def am_state(am: AlertmanagerServer, incident: str) -> str | None:
    """Return Alertmanager's state of the alert for an incident (API v2), or None if it has none."""
    states = [a["status"]["state"] for a in am.alerts() if a["labels"].get("netwatch_incident") == incident]
    return states[0] if states else None


async def eventually(check: Callable[[], bool], within: float) -> bool:
    """Wait until ``check()`` holds or ``within`` seconds pass; return whether it held."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def outbox_rows(state_dir: Path) -> list[tuple[str, str]]:
    """Return the (receiver, incident) rows waiting in the daemon's outbox (read-only)."""
    db = sqlite3.connect(f"file:{state_dir / 'outbox.db'}?mode=ro", uri=True)
    try:
        return [(str(r), str(i)) for r, i in db.execute("SELECT receiver, incident FROM outbox ORDER BY seq")]
    finally:
        db.close()


# -- scenario a: restart while firing ---------------------------------------------------------------


@dataclass
class RestartRun:
    incident: str | None = None
    am_active_before: str | None = None
    #: Right before the fault clears, after the restart and a few seconds of the fault persisting.
    pd_actions_during: list[str] = field(default_factory=list)
    incidents_opened_during: int = 0
    am_state_during: str | None = None
    am_hook_during: list[str] = field(default_factory=list)
    notify_events_second_run: list[dict[str, Any]] = field(default_factory=list)
    term_exit: int | None = None
    #: After the fault cleared (and a wait long enough for a resolve and a wrong second one).
    pd_actions_after: list[str] = field(default_factory=list)
    incidents_opened_after: int = 0
    am_state_after: str | None = None
    am_hook_after: list[str] = field(default_factory=list)


async def _restart_while_firing(workdir: Path, agent: SnmpServer, am: AlertmanagerServer) -> RestartRun:
    run = RestartRun()
    port = "xe-0/0/1"
    async with PagerDutyServer() as pd, WebhookServer(port=am.hook_port) as hook:
        daemon = Daemon(write_config(workdir, agent, pd, am), workdir / "netwatch.log")
        try:
            await daemon.start()
            await asyncio.sleep(WARM_UP_S)
            agent.set_interface(port, oper=2)
            if not await eventually(lambda: bool(trigger_keys(pd, port, accepted_only=True)), 15):
                return run
            run.incident = trigger_keys(pd, port)[0]
            inc = run.incident
            await eventually(lambda: am_state(am, inc) == "active" and am_statuses(hook, inc) == ["firing"], 10)
            run.am_active_before = am_state(am, inc)

            run.term_exit = await daemon.stop(signal.SIGTERM)
            notified_before = len(daemon.notices(port))
            await daemon.start()
            await asyncio.sleep(5.0)  # the fault persists: 5 polls, 5 Alertmanager re-sends
            run.pd_actions_during = accepted(pd, inc)
            run.incidents_opened_during = pd.incidents_opened
            run.am_state_during = am_state(am, inc)
            run.am_hook_during = am_statuses(hook, inc)
            run.notify_events_second_run = daemon.notices(port)[notified_before:]

            agent.set_interface(port, oper=1)
            # Two clear polls resolve it (clear_checks 2); Alertmanager's webhook follows group_interval 2 s.
            await eventually(lambda: "resolve" in accepted(pd, inc) and am_statuses(hook, inc)[-1:] == ["resolved"], 10)
            await asyncio.sleep(2.0)  # room for a wrong second resolve
            run.pd_actions_after = accepted(pd, inc)
            run.incidents_opened_after = pd.incidents_opened
            run.am_state_after = am_state(am, inc)
            run.am_hook_after = am_statuses(hook, inc)
        finally:
            await daemon.close()
    return run


@pytest.fixture(scope="module")
def restart_run(snmpd_server: SnmpServer, tmp_path_factory: pytest.TempPathFactory) -> RestartRun:
    snmpd_server.reset()
    workdir = tmp_path_factory.mktemp("restart")
    (workdir / "am").mkdir()
    am = AlertmanagerServer(require_binary("prometheus-alertmanager", "prometheus-alertmanager"), workdir / "am")
    am.start()
    try:
        return asyncio.run(_restart_while_firing(workdir, snmpd_server, am))
    finally:
        am.stop()
        snmpd_server.reset()


def test_restart_while_firing_neither_resolves_nor_opens_a_second_incident(restart_run: RestartRun) -> None:
    """SIGTERM and a new start while the port stays down: PagerDuty saw one trigger and nothing else.

    The restarted daemon finds the incident firing in its saved state, so the port, still down,
    is no new transition; with repeat_interval at its 4 h default nothing is re-sent to PagerDuty.
    """
    assert restart_run.incident is not None, "no trigger reached PagerDuty"
    assert restart_run.term_exit == 0
    assert restart_run.pd_actions_during == ["trigger"]
    assert restart_run.incidents_opened_during == 1
    assert restart_run.notify_events_second_run == []


def test_restart_while_firing_keeps_the_alertmanager_alert_active(restart_run: RestartRun) -> None:
    """Alertmanager (API v2) shows the alert active before, during and after the restart gap, and
    its webhook heard 'firing' once and no 'resolved' (the re-sends keep endsAt ahead)."""
    assert restart_run.am_active_before == "active"
    assert restart_run.am_state_during == "active"
    assert restart_run.am_hook_during == ["firing"]


def test_fault_clearing_after_a_restart_sends_one_resolve(restart_run: RestartRun) -> None:
    """Once the port is back, PagerDuty gets exactly one resolve for the same dedup_key and
    Alertmanager resolves the alert (its webhook hears 'resolved' once)."""
    assert restart_run.pd_actions_after == ["trigger", "resolve"]
    assert restart_run.incidents_opened_after == 1
    assert restart_run.am_state_after is None or restart_run.am_state_after != "active"
    assert restart_run.am_hook_after == ["firing", "resolved"]


# -- scenario b: SIGKILL between a transition and its delivery --------------------------------------


@dataclass
class KillRun:
    failed_attempt_keys: list[str] = field(default_factory=list)
    outbox_before_kill: list[tuple[str, str]] = field(default_factory=list)
    kill_exit: int | None = None
    accepted_trigger_keys: list[str] = field(default_factory=list)
    incidents_opened: int = 0
    actions: list[str] = field(default_factory=list)
    outbox_after: list[tuple[str, str]] = field(default_factory=list)


async def _sigkill_before_delivery(workdir: Path, agent: SnmpServer) -> KillRun:
    run = KillRun()
    port = "xe-0/0/2"
    async with PagerDutyServer() as pd:
        pd.fail_next, pd.fail_status = 10**6, 500  # PagerDuty is failing: every attempt gets a 500
        daemon = Daemon(write_config(workdir, agent, pd, None), workdir / "netwatch.log")
        try:
            await daemon.start()
            await asyncio.sleep(WARM_UP_S)
            agent.set_interface(port, oper=2)
            await eventually(lambda: len(trigger_keys(pd, port)) >= 2, 15)  # a first attempt and a retry
            run.failed_attempt_keys = trigger_keys(pd, port)
            run.outbox_before_kill = outbox_rows(workdir / "state")
            run.kill_exit = await daemon.stop(signal.SIGKILL)

            pd.fail_next = 0  # PagerDuty is back
            await daemon.start()
            await eventually(lambda: bool(trigger_keys(pd, port, accepted_only=True)), 15)
            await asyncio.sleep(3.0)  # room for a duplicate
            run.accepted_trigger_keys = trigger_keys(pd, port, accepted_only=True)
            run.incidents_opened = pd.incidents_opened
            if run.accepted_trigger_keys:
                run.actions = accepted(pd, run.accepted_trigger_keys[0])
            await daemon.stop()
            run.outbox_after = outbox_rows(workdir / "state")
        finally:
            await daemon.close()
    return run


@pytest.fixture(scope="module")
def kill_run(snmpd_server: SnmpServer, tmp_path_factory: pytest.TempPathFactory) -> KillRun:
    snmpd_server.reset()
    try:
        return asyncio.run(_sigkill_before_delivery(tmp_path_factory.mktemp("sigkill"), snmpd_server))
    finally:
        snmpd_server.reset()


def test_sigkill_before_delivery_keeps_the_trigger_in_the_outbox(kill_run: KillRun) -> None:
    """While PagerDuty answers 500 the trigger is retried with one dedup_key and waits on disk."""
    assert len(kill_run.failed_attempt_keys) >= 2, "PagerDuty saw no retried trigger"
    assert len(set(kill_run.failed_attempt_keys)) == 1
    assert ("oncall", kill_run.failed_attempt_keys[0]) in kill_run.outbox_before_kill
    assert kill_run.kill_exit == -signal.SIGKILL


def test_sigkill_before_delivery_delivers_the_trigger_once_after_restart(kill_run: KillRun) -> None:
    """After the restart the queued trigger is accepted exactly once, with the dedup_key of the
    failed attempts, opening one incident; nothing is left in the outbox."""
    assert kill_run.accepted_trigger_keys == kill_run.failed_attempt_keys[:1]
    assert kill_run.actions == ["trigger"]
    assert kill_run.incidents_opened == 1
    assert kill_run.outbox_after == []


# -- scenario c: receiver down for a while ----------------------------------------------------------

OUTAGE_S = 20.0


@dataclass
class OutageRun:
    enqueued: list[tuple[str, str]] = field(default_factory=list)  # (what, incident) as the daemon logged
    refused_during_outage: bool = False
    sequence: list[tuple[str, str]] = field(default_factory=list)  # (action, dedup_key) as PagerDuty accepted
    incidents_opened: int = 0
    delivered_after_return_s: float | None = None


async def _receiver_outage(workdir: Path, agent: SnmpServer) -> OutageRun:
    run = OutageRun()
    first, second = "xe-0/0/1", "ge-0/0/3"
    async with PagerDutyServer() as pd:
        daemon = Daemon(write_config(workdir, agent, pd, None), workdir / "netwatch.log")

        def notified() -> list[tuple[str, str]]:
            return [(e["what"], e["incident"]) for e in daemon.notices(first, second)]

        try:
            await daemon.start()
            await asyncio.sleep(WARM_UP_S)
            await pd.stop()  # connection refused from now on
            down_at = time.monotonic()
            agent.set_interface(first, oper=2)
            await eventually(lambda: len(notified()) == 1, 10)
            agent.set_interface(first, oper=1)
            await eventually(lambda: len(notified()) == 2, 10)
            agent.set_interface(second, oper=2)
            await eventually(lambda: len(notified()) == 3, 10)
            run.enqueued = notified()
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
            run.refused_during_outage = not pd.requests

            await pd.start()  # same port
            back_at = time.monotonic()
            # The outbox may be in a backoff step of up to 32 s by now.
            if await eventually(lambda: len(pd.events) >= 3, 40):
                run.delivered_after_return_s = round(time.monotonic() - back_at, 1)
            await asyncio.sleep(2.0)  # room for duplicates
            ours = {incident for _, incident in run.enqueued}
            run.sequence = [(e["event_action"], e["dedup_key"]) for e in pd.events if e.get("dedup_key") in ours]
            run.incidents_opened = pd.incidents_opened
        finally:
            await daemon.close()
    return run


@pytest.fixture(scope="module")
def outage_run(snmpd_server: SnmpServer, tmp_path_factory: pytest.TempPathFactory) -> OutageRun:
    snmpd_server.reset()
    try:
        return asyncio.run(_receiver_outage(tmp_path_factory.mktemp("outage"), snmpd_server))
    finally:
        snmpd_server.reset()


def test_receiver_down_delivers_each_transition_once_in_order(outage_run: OutageRun) -> None:
    """Port A down, A up, port B down while PagerDuty refuses connections for 20 s: once it is
    back, it accepts trigger A, resolve A, trigger B, each once, in that order: two incidents."""
    enqueued = outage_run.enqueued
    assert [what for what, _ in enqueued] == ["firing", "resolved", "firing"], enqueued
    first, second = enqueued[0][1], enqueued[2][1]
    assert enqueued[1][1] == first
    assert first != second
    assert outage_run.refused_during_outage
    assert outage_run.delivered_after_return_s is not None, "not delivered within 40 s of the receiver's return"
    assert outage_run.sequence == [("trigger", first), ("resolve", first), ("trigger", second)]
    assert outage_run.incidents_opened == 2
