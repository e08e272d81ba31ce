"""The alert engine: state machines per (rule, entity), flapping, absence, and state across restarts."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netwatch.alerting.engine import AlertEngine, Transition
from netwatch.alerting.model import incident_id
from netwatch.alerting.rules import Rule, RuleConfig, effective_rules
from netwatch.alerting.store import AlertStore, EntityState
from netwatch.model import Sample

S = 1_000_000_000
NOTICES = ("firing", "resolved", "flapping", "flapping_stopped")

ERRORS: dict[str, Any] = {"measurement": "interface", "field": "in_errors_ps", "op": ">", "threshold": 10}


def make(name: str = "errors", /, **data: Any) -> Rule:
    return Rule.build(RuleConfig.model_validate({"name": name, **data}))


def builtin(name: str, **override: Any) -> Rule:
    rules = effective_rules([RuleConfig.model_validate({"name": name, **override})] if override else [])
    return next(r for r in rules if r.name == name)


def iface(t_s: float, *, device: str = "sw1", port: str = "p1", **fields: float) -> Sample:
    return Sample(
        "interface",
        {"device": device, "site": "park", "port": port},
        fields,
        round(t_s * S),
    )


def dev(t_s: float, up: int, *, device: str = "sw1", kind: str = "switch") -> Sample:
    state = "up" if up else "down"
    return Sample(
        "device",
        {"device": device, "site": "park", "kind": kind},
        {"up": up, "state": state, "reason": "ok" if up else "timeout"},
        round(t_s * S),
    )


class Run:
    """An engine and every transition it produced, for terse tests."""

    def __init__(self, rules: Sequence[Rule], store: AlertStore | None = None, **kw: Any) -> None:
        kw.setdefault("clock", lambda: 0)
        self.engine = AlertEngine(rules, store, **kw)
        self.log: list[Transition] = []

    def feed(self, *samples: Sample) -> list[Transition]:
        out = self.engine.observe_many(samples)
        self.log.extend(out)
        return out

    def tick(self, t_s: float) -> list[Transition]:
        out = self.engine.tick(round(t_s * S))
        self.log.extend(out)
        return out

    def tos(self) -> list[str]:
        return [t.to for t in self.log]

    def notices(self) -> list[str]:
        return [t.to for t in self.log if t.to in NOTICES]


# -- for / pending -------------------------------------------------------------------------------


def test_pending_then_firing_after_for() -> None:
    """Condition true: pending at once, firing when `for` has passed (on the tick, between polls)."""
    run = Run([make(**ERRORS, **{"for": "60s"})])
    assert [t.to for t in run.feed(iface(0, in_errors_ps=20))] == ["pending"]
    run.feed(iface(30, in_errors_ps=20))
    assert run.tick(59) == []
    fired = run.tick(60)
    assert [t.to for t in fired] == ["firing"]
    assert fired[0].started_ns == 0
    assert fired[0].at_ns == 60 * S
    assert fired[0].incident_id == incident_id("errors", "sw1:p1", 0)


def test_pending_that_goes_false_returns_to_ok_silently() -> None:
    """A blip shorter than `for` produces a pending and nothing more."""
    run = Run([make(**ERRORS, **{"for": "60s"})])
    run.feed(iface(0, in_errors_ps=20), iface(30, in_errors_ps=20), iface(59, in_errors_ps=0))
    run.tick(120)
    assert run.tos() == ["pending"]
    assert run.engine.status() == []


@settings(max_examples=200, deadline=None)
@given(
    interval=st.sampled_from([10, 30]),
    for_polls=st.integers(1, 30),
    extra=st.floats(0, 0.99),
    lead=st.integers(0, 40),
    bad_polls=st.data(),
    tail=st.integers(1, 40),
    tick_at=st.floats(0, 0.99),
    bad=st.floats(10.01, 1e6),
    good=st.floats(0, 5),
    clear=st.sampled_from([None, 5.0]),
)
def test_no_notification_for_an_outage_shorter_than_for(
    interval: int,
    for_polls: int,
    extra: float,
    lead: int,
    bad_polls: st.DataObject,
    tail: int,
    tick_at: float,
    bad: float,
    good: float,
    clear: float | None,
) -> None:
    """An outage (first bad poll to first good poll) no longer than `for` notifies nobody."""
    for_s = interval * (for_polls + extra)
    k = bad_polls.draw(st.integers(1, for_polls))
    run = Run([make(**ERRORS, clear=clear, **{"for": for_s})])
    values = [good] * lead + [bad] * k + [good] * tail
    for i, v in enumerate(values):
        run.feed(iface(i * interval, in_errors_ps=v))
        run.tick((i + tick_at) * interval)
    assert run.notices() == []


# -- flapping ------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    for_s=st.sampled_from([0, 5, 10, 20, 30, 120]),
    keep=st.sampled_from([0, 10, 30, 600]),
    start_bad=st.booleans(),
    lead=st.integers(0, 30),
    tick_at=st.floats(0, 0.99),
    clear=st.sampled_from([None, 5.0]),
)
def test_toggling_every_poll_for_an_hour_notifies_at_most_twice(
    for_s: int, keep: int, start_bad: bool, lead: int, tick_at: float, clear: float | None
) -> None:
    """An hour of 10 s polls flipping every poll: at most two notices, and a clean close after."""
    run = Run([make(**ERRORS, clear=clear, keep_firing_for=keep, **{"for": for_s})])
    t = 0
    for _ in range(lead):
        run.feed(iface(t, in_errors_ps=0))
        run.tick(t + tick_at * 10)
        t += 10
    for i in range(360):
        run.feed(iface(t, in_errors_ps=50 if (i % 2 == 0) == start_bad else 0))
        run.tick(t + tick_at * 10)
        t += 10
    assert len(run.notices()) <= 2, run.notices()
    for _ in range(120):  # then 20 quiet minutes
        run.feed(iface(t, in_errors_ps=0))
        run.tick(t + tick_at * 10)
        t += 10
    assert run.notices() in (
        [],
        ["flapping", "flapping_stopped"],
        ["firing", "resolved"],
        ["firing", "flapping", "flapping_stopped", "resolved"],
    )
    # Whatever was opened is closed under the same incident id.
    opened = {t.incident_id for t in run.log if t.to in ("firing", "flapping")}
    closed = {t.incident_id for t in run.log if t.to in ("resolved", "flapping_stopped")}
    assert opened == closed
    assert run.engine.status() == []


def test_device_toggling_gives_firing_then_one_flapping_notice() -> None:
    """device_down (for 0) fires on the first bad poll, then one flapping notice; settling bad
    gives flapping_stopped and firing again under the incident announced first."""
    run = Run([builtin("device_down")])
    t = 0
    for i in range(40):
        run.feed(dev(t, i % 2))
        t += 10
    assert run.notices() == ["firing", "flapping"]
    first = run.log[0]
    for _ in range(40):
        run.feed(dev(t, 0))
        t += 10
    assert run.notices() == ["firing", "flapping", "flapping_stopped", "firing"]
    assert {tr.incident_id for tr in run.log} == {first.incident_id}
    assert run.log[-1].summary == "sw1 is down (park)"


def test_flapping_without_an_announced_incident_has_its_own_id() -> None:
    """A rule with `for` never fires while toggling; its flapping notices share one incident id."""
    run = Run([make(**ERRORS, **{"for": "30s"})])
    for i in range(40):
        run.feed(iface(i * 10, in_errors_ps=50 * (i % 2)))
    for i in range(40, 80):
        run.feed(iface(i * 10, in_errors_ps=0))
    assert run.notices() == ["flapping", "flapping_stopped"]
    flapping, stopped = (t for t in run.log if t.to in NOTICES)
    assert flapping.incident_id == stopped.incident_id
    assert flapping.started_ns == flapping.at_ns


# -- hysteresis, clear checks, keep_firing_for ---------------------------------------------------------


def test_hysteresis_value_between_threshold_and_clear_does_not_resolve() -> None:
    """optics_rx_low: below -24 fires; wandering between -24 and -22 stays firing; -21 resolves."""
    run = Run([builtin("optics_rx_low", **{"for": 0})])

    def optics(t: float, rx: float) -> Sample:
        return Sample("optics", {"device": "sw1", "site": "park", "port": "p1"}, {"rx_dbm": rx}, round(t * S))

    run.feed(optics(0, -23), optics(10, -25))
    assert run.notices() == ["firing"]
    for i, rx in enumerate([-23.9, -22.5, -23, -22.01, -24.5, -22.1] * 5):
        run.feed(optics(20 + 10 * i, rx))
    assert run.notices() == ["firing"]
    run.feed(optics(400, -21), optics(410, -21.5))
    assert run.notices() == ["firing", "resolved"]
    assert run.log[-1].value == -21.5
    # The resolve says what the incident was, not "-21.5 dBm is below -24 dBm".
    assert run.log[-1].summary == run.log[0].summary == ("sw1 port p1: optical receive power -25 dBm is below -24 dBm")


def test_one_clear_check_does_not_resolve_two_do() -> None:
    """A firing alert needs two clear checks in a row (clear_checks: 2) to resolve."""
    run = Run([make(**ERRORS)])
    run.feed(iface(0, in_errors_ps=50), iface(10, in_errors_ps=0), iface(20, in_errors_ps=50))
    assert run.notices() == ["firing"]
    run.feed(iface(30, in_errors_ps=0), iface(40, in_errors_ps=0))
    assert run.notices() == ["firing", "resolved"]
    assert run.log[-1].at_ns == 40 * S

    once = Run([make(**ERRORS, clear_checks=1)])
    once.feed(iface(0, in_errors_ps=50), iface(10, in_errors_ps=0))
    assert once.notices() == ["firing", "resolved"]


def test_keep_firing_for() -> None:
    """device_rebooted: rebooted=1 once, then 0: stays firing 10 minutes after it cleared."""
    run = Run([builtin("device_rebooted")])

    def system(t: float, rebooted: int) -> Sample:
        tags = {"device": "sw1", "site": "park", "kind": "switch"}
        return Sample("system", tags, {"uptime_s": int(t), "rebooted": rebooted}, round(t * S))

    run.feed(system(0, 1))
    for i in range(1, 30):
        run.feed(system(i * 10, 0))
        run.tick(i * 10 + 1)
    assert run.notices() == ["firing"]
    # Cleared at 10 s; 600 s later it resolves, on the tick.
    run.tick(609)
    assert run.notices() == ["firing"]
    resolved = run.tick(610)
    assert [t.to for t in resolved] == ["resolved"]
    assert resolved[0].started_ns == 0
    assert resolved[0].severity == "info"


def test_breach_within_keep_firing_for_continues_the_same_incident() -> None:
    """Back over the threshold before keep_firing_for ran out: no new firing, same incident."""
    run = Run([make(**ERRORS, keep_firing_for="5m")])
    run.feed(*(iface(t, in_errors_ps=v) for t, v in [(0, 50), (10, 0), (20, 0), (200, 50), (210, 0), (220, 0)]))
    run.tick(509)  # cleared again at 210: resolves 5 minutes after that
    assert run.notices() == ["firing"]
    resolved = run.tick(510)
    assert [t.to for t in resolved] == ["resolved"]
    assert resolved[0].incident_id == run.log[0].incident_id


# -- require_ok_first --------------------------------------------------------------------------------


def test_interface_that_was_never_up_does_not_fire() -> None:
    """interface_down: an unused port (never oper-up) is quiet; a port that was up and goes down fires."""
    run = Run([builtin("interface_down")])
    for i in range(10):
        run.feed(iface(i * 10, port="unused", oper_up=0))
    assert run.log == []
    run.feed(iface(100, port="uplink", oper_up=1), iface(110, port="uplink", oper_up=0))
    assert run.notices() == ["firing"]
    assert run.log[0].entity == "sw1:uplink"
    assert run.log[0].summary == "sw1 port uplink is down"
    # The unused port comes up once; from then on its going down is news.
    run.feed(iface(120, port="unused", oper_up=1), iface(130, port="unused", oper_up=0))
    assert [t.entity for t in run.log if t.to == "firing"] == ["sw1:uplink", "sw1:unused"]


def test_port_an_operator_shuts_is_not_a_fault() -> None:
    """interface_down ignores admin-down ports: shutting a port is quiet, shutting one that is
    alerting ends its alert, and a shut port that never came up is still 'never ok' when enabled."""
    run = Run([builtin("interface_down")])
    run.feed(iface(0, port="uplink", oper_up=1, admin_up=1))
    run.feed(iface(10, port="uplink", oper_up=0, admin_up=0), iface(20, port="uplink", oper_up=0, admin_up=0))
    assert run.log == []
    # A cut while enabled pages; the operator then shuts the port: resolved after clear_checks.
    run.feed(iface(30, port="uplink", oper_up=0, admin_up=1))
    run.feed(iface(40, port="uplink", oper_up=0, admin_up=0), iface(50, port="uplink", oper_up=0, admin_up=0))
    assert run.notices() == ["firing", "resolved"]
    # A spare port, shut and dark since we started, is enabled without a cable yet: not news.
    run.feed(iface(60, port="spare", oper_up=0, admin_up=0), iface(70, port="spare", oper_up=0, admin_up=1))
    assert run.notices() == ["firing", "resolved"]
    # An agent without ifAdminStatus still gets its ports watched.
    run.feed(iface(80, port="old", oper_up=1), iface(90, port="old", oper_up=0))
    assert run.notices() == ["firing", "resolved", "firing"]


def own(t_s: float, **fields: float) -> Sample:
    return Sample("netwatch", {"instance": "nms1", "component": "sink"}, fields, round(t_s * S))


def test_dropped_points_raise_one_self_alert_per_episode() -> None:
    """points_dropped reads the growth of a cumulative counter: a run of drops is one critical
    incident saying how many were lost; it resolves once drops stop for keep_firing_for."""
    run = Run([builtin("points_dropped")])
    run.feed(own(0, points_dropped=0), own(30, points_dropped=0))
    assert run.log == []
    run.feed(own(60, points_dropped=1200), own(90, points_dropped=5000), own(120, points_dropped=9000))
    assert run.notices() == ["firing"]
    assert run.log[-1].severity == "critical"
    assert "lost 1200 measurements" in run.log[-1].summary
    for i in range(5, 40):  # drops stopped: the counter stays, growth is 0
        run.feed(own(i * 30, points_dropped=9000))
    assert run.notices() == ["firing", "resolved"]
    assert run.log[-1].at_ns >= round((120 + 15 * 60) * S)  # keep_firing_for 15m after the last drop


def test_delta_baseline_and_counter_restart() -> None:
    """The first sample is only a baseline (a high counter is not news); a counter that went
    down restarted from zero and its new value is the growth."""
    run = Run([builtin("points_dropped", keep_firing_for=None)])
    run.feed(own(0, points_dropped=500))
    assert run.log == []
    run.feed(own(30, points_dropped=500), own(60, points_dropped=500))
    assert run.log == []
    run.feed(own(90, points_dropped=7))  # restarted, and lost 7 since
    assert run.notices() == ["firing"]
    assert run.log[-1].value == 7


def test_delta_baseline_survives_the_state_machine_being_forgotten() -> None:
    """A quiet entity's state machine is forgotten, but not its counter's baseline: an old total
    is never mistaken for new growth."""
    run = Run([builtin("notifications_dropped")])
    run.feed(*(own(i * 30, outbox_dropped=3) for i in range(20)))
    assert run.log == []
    run.feed(own(600, outbox_dropped=4))
    assert run.notices() == ["firing"]
    assert run.log[-1].value == 1


# -- absence -----------------------------------------------------------------------------------------


def test_absence_fires_after_n_intervals_and_resolves_when_data_returns() -> None:
    """device_silent: no device sample for 3 intervals (30 s each) fires; the next sample resolves."""
    run = Run([builtin("device_silent")], interval=lambda tags: 30.0)
    for i in range(5):
        run.feed(dev(i * 30, 1))
    last = 120
    run.tick(last + 89)
    assert run.log == []
    fired = run.tick(last + 90)
    assert [t.to for t in fired] == ["firing"]
    assert fired[0].started_ns == (last + 90) * S
    assert fired[0].value == 90
    assert fired[0].summary == "sw1: no data for 90 s (park)"
    run.tick(last + 300)
    assert run.notices() == ["firing"]
    back = run.feed(dev(last + 310, 1))
    assert [t.to for t in back] == ["resolved"]
    assert back[0].incident_id == fired[0].incident_id
    assert back[0].value == 310


def test_absence_learns_the_interval_when_not_told() -> None:
    """Without an interval callback, the longest recent gap between samples stands in for it."""
    run = Run([builtin("device_silent")])
    for t in (0, 20, 30, 50, 60):  # two checks: gaps of 20 and 10 s
        run.feed(dev(t, 1))
    run.tick(60 + 59)
    assert run.log == []
    assert [t.to for t in run.tick(60 + 60)] == ["firing"]


def test_absence_counts_from_engine_start_after_a_restart() -> None:
    """A netwatch restart is not every device going silent: silence counts from the engine's start."""
    with tempfile.TemporaryDirectory() as tmp:
        store = AlertStore(Path(tmp) / "alerts.db")
        first = Run([builtin("device_silent")], store, interval=lambda tags: 30.0)
        first.feed(dev(0, 1), dev(30, 1))
        first.engine.flush()
        second = Run([builtin("device_silent")], store, interval=lambda tags: 30.0, clock=lambda: 3600 * S)
        assert second.tick(3600) == []
        assert second.tick(3600 + 89) == []
        assert [t.to for t in second.tick(3600 + 90)] == ["firing"]
        store.close()


def test_absence_with_for() -> None:
    """An absence rule with `for` is pending first, firing `for` later."""
    rule = builtin("device_silent", **{"for": "60s"})
    run = Run([rule], interval=lambda tags: 10.0)
    run.feed(dev(0, 1), dev(10, 1))
    assert [t.to for t in run.tick(40)] == ["pending"]
    assert [t.to for t in run.tick(99)] == []
    assert [t.to for t in run.tick(100)] == ["firing"]


# -- scope, labels, summaries ------------------------------------------------------------------------


def test_scope_filters_entities_and_kind_comes_from_the_inventory() -> None:
    """A rule scoped to routers sees a router's interfaces (kind looked up) and not a switch's."""
    rule = make(**ERRORS, scope={"kinds": ["router"], "sites": ["park"]})
    kinds = {"core": "router", "sw1": "switch"}
    run = Run([rule], device_kind=kinds.get)
    run.feed(iface(0, device="sw1", in_errors_ps=50), iface(0, device="core", in_errors_ps=50))
    assert [(t.entity, t.to) for t in run.log] == [("core:p1", "firing")]
    assert run.log[0].labels["kind"] == "router"
    other_site = Sample("interface", {"device": "core", "site": "yard", "port": "p2"}, {"in_errors_ps": 50}, 0)
    assert run.feed(other_site) == []


def test_span_down_labels_and_summary() -> None:
    """span_down carries the lessee, both sites, rule and severity as labels."""
    run = Run([builtin("span_down")])
    tags = {"link": "span-ch-vp", "lessee": "univ", "site_a": "city-hall", "site_b": "villa-parke"}
    out = run.feed(Sample("link", tags, {"up": 0, "state": "down"}, 5 * S))
    assert len(out) == 1
    tr = out[0]
    assert (tr.rule, tr.entity, tr.to, tr.severity, tr.value) == ("span_down", "span-ch-vp", "firing", "critical", 0)
    assert tr.labels == {**tags, "rule": "span_down", "severity": "critical"}
    assert tr.summary == "span span-ch-vp is down"
    assert (tr.started_ns, tr.at_ns) == (5 * S, 5 * S)


def test_samples_of_other_measurements_and_missing_fields_are_ignored() -> None:
    """No state is made for samples no rule is about."""
    run = Run([make(**ERRORS)])
    run.feed(dev(0, 0), iface(0, out_errors_ps=99))
    assert run.log == []
    assert run.engine.status() == []


def test_status_lists_what_is_not_quiet() -> None:
    """status() shows pending and firing alerts with summary and labels, for the CLI and API."""
    run = Run([make(**ERRORS, **{"for": "1m"}), builtin("device_down")])
    run.feed(iface(0, in_errors_ps=20), dev(0, 0, device="cam-1", kind="camera"))
    status = {(s.rule, s.entity): s for s in run.engine.status()}
    assert status[("errors", "sw1:p1")].state == "pending"
    assert status[("device_down", "cam-1")].state == "firing"
    assert status[("device_down", "cam-1")].summary == "cam-1 is down (park)"
    assert status[("device_down", "cam-1")].labels["kind"] == "camera"


def test_quiet_entities_are_forgotten() -> None:
    """After 21 quiet checks an entity's state machine is dropped (memory and store stay bounded)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = AlertStore(Path(tmp) / "alerts.db")
        run = Run([make(**ERRORS)], store)
        run.feed(iface(0, in_errors_ps=50))
        assert len(store.load()) == 1
        for i in range(1, 30):
            run.feed(iface(i * 10, in_errors_ps=0))
        assert run.notices() == ["firing", "resolved"]
        assert store.load() == []
        store.close()


# -- restarts ----------------------------------------------------------------------------------------


def test_restart_while_firing_no_duplicate_no_false_resolve() -> None:
    """A new engine on the same store: still firing, no second firing, the resolve has the same id."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alerts.db"
        store = AlertStore(path)
        first = Run([builtin("device_down")], store)
        first.feed(dev(0, 0), dev(10, 0))
        store.close()
        store = AlertStore(path)
        second = Run([builtin("device_down")], store)
        second.tick(15)
        second.feed(dev(20, 0), dev(30, 0))
        assert second.log == []
        assert [s.state for s in second.engine.status()] == ["firing"]
        second.feed(dev(40, 1), dev(50, 1))
        assert [t.to for t in second.log] == ["resolved"]
        assert second.log[0].incident_id == first.log[0].incident_id
        store.close()


def test_pending_timer_continues_after_restart() -> None:
    """Pending since t=0 with for 5m: after a restart at 2m it fires at 5m, not at 7m."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alerts.db"
        rules = [builtin("interface_errors")]
        store = AlertStore(path)
        first = Run(rules, store)
        first.feed(*(iface(t, in_errors_ps=20) for t in range(0, 130, 10)))
        store.close()
        store = AlertStore(path)
        second = Run(rules, store)
        second.feed(*(iface(t, in_errors_ps=20) for t in range(130, 300, 10)))
        assert second.tick(299) == []
        fired = second.tick(300)
        assert [t.to for t in fired] == ["firing"]
        assert fired[0].started_ns == 0
        store.close()


def test_rule_removed_while_stopped_resolves_its_incident() -> None:
    """A firing rule gone from the config after a restart: its incident is resolved on the first tick."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alerts.db"
        store = AlertStore(path)
        first = Run([builtin("device_down")], store)
        first.feed(dev(0, 0))
        second = Run([make(**ERRORS)], store)
        out = second.tick(100)
        assert [(t.rule, t.to, t.severity) for t in out] == [("device_down", "resolved", "critical")]
        assert out[0].incident_id == first.log[0].incident_id
        assert out[0].labels["rule"] == "device_down"
        assert store.load() == []
        store.close()


def test_apply_keeps_state_of_rules_that_stay_and_retires_the_rest() -> None:
    """A reload that changes a threshold keeps firing alerts; dropping a rule, or scoping an entity
    out, resolves them."""
    run = Run([builtin("device_down"), make(**ERRORS)])
    run.feed(dev(0, 0), iface(0, in_errors_ps=50))
    out = run.engine.apply([builtin("device_down"), make(**{**ERRORS, "threshold": 100})], now_ns=50 * S)
    assert out == []
    out = run.engine.apply([make(**ERRORS)], now_ns=60 * S)
    assert [(t.rule, t.to, t.at_ns) for t in out] == [("device_down", "resolved", 60 * S)]
    assert [s.rule for s in run.engine.status()] == ["errors"]
    out = run.engine.apply([make(**ERRORS, scope={"devices": ["core"]})], now_ns=70 * S)
    assert [(t.rule, t.entity, t.to) for t in out] == [("errors", "sw1:p1", "resolved")]
    assert run.engine.status() == []


def test_prune_forgets_removed_devices() -> None:
    """A device removed from the inventory neither stays firing nor goes 'silent' later."""
    run = Run([builtin("device_down"), builtin("device_silent")], interval=lambda tags: 10.0)
    run.feed(dev(0, 0, device="old"), dev(0, 1, device="kept"))
    out = run.engine.prune(lambda tags: tags.get("device") != "old", now_ns=5 * S)
    assert [(t.rule, t.entity, t.to) for t in out] == [("device_down", "old", "resolved")]
    assert [(t.rule, t.entity) for t in run.tick(100)] == [("device_silent", "kept")]


def test_damaged_store_is_moved_aside() -> None:
    """An unreadable database does not stop the daemon: it is renamed and a new one started."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alerts.db"
        path.write_bytes(b"this is not a database" * 100)
        store = AlertStore(path)
        assert store.load() == []
        assert any(p.name.startswith("alerts.db.corrupt-") for p in Path(tmp).iterdir())
        store.save([EntityState("r", "e", state="firing", started_ns=1, announced_ns=1)])
        assert store.load()[0].state == "firing"
        store.close()
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_store_round_trip() -> None:
    """Every field of a state survives save and load."""
    state = EntityState(
        "optics_rx_low",
        "sw1:p1",
        state="firing",
        active=False,
        started_ns=5,
        clear_since_ns=9,
        clear_count=1,
        value=-23.5,
        last_seen_ns=10,
        seen_ok=True,
        history="0" * 19 + "10",
        flapping=True,
        flap_started_ns=5,
        announced_ns=5,
        tags={"device": "sw1", "port": "p1"},
        gaps_ns=[10, 20],
        severity="critical",
        summary="x",
    )
    with AlertStore(":memory:") as store:
        store.save([state])
        assert store.load() == [state]
        store.delete([state.key])
        assert store.load() == []


# A random series over two ports and two rules, with ticks and restarts; restarting the engine
# anywhere in it (a crash: nothing flushed, a new store connection) must not change a transition.
Event = tuple[str, int, str, float, int, bool]
events = st.lists(
    st.tuples(
        st.sampled_from(["sample", "sample", "sample", "tick"]),
        st.integers(1, 30),
        st.sampled_from(["p1", "p2"]),
        st.sampled_from([0.0, 3.0, 7.0, 12.0, 50.0]),
        st.sampled_from([0, 1]),
        st.sampled_from([False, False, False, True]),  # restart before this event
    ),
    min_size=1,
    max_size=120,
)


def _replay(series: Sequence[Event], engine_for: Callable[[bool], AlertEngine]) -> list[Transition]:
    out: list[Transition] = []
    t = 0
    for kind, dt, port, errors, up, restart in series:
        engine = engine_for(restart)
        t += dt * S
        if kind == "sample":
            fields = {"in_errors_ps": errors, "oper_up": up}
            out += engine.observe(Sample("interface", {"device": "sw1", "port": port}, fields, t))
        else:
            out += engine.tick(t)
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    series=events,
    for_s=st.sampled_from([0, 20, 60]),
    keep=st.sampled_from([0, 30]),
    clear=st.sampled_from([None, 5.0]),
    clear_checks=st.sampled_from([1, 2]),
)
def test_transitions_identical_across_a_restart(
    series: list[Event], for_s: int, keep: int, clear: float | None, clear_checks: int
) -> None:
    """Restarting anywhere (a new engine on the same store, nothing flushed) changes no transition."""
    rules = [
        make(**ERRORS, clear=clear, keep_firing_for=keep, clear_checks=clear_checks, **{"for": for_s}),
        builtin("interface_down"),
    ]
    reference = AlertEngine(rules, None, clock=lambda: 0)
    expected = _replay(series, lambda restart: reference)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alerts.db"
        stores = [AlertStore(path)]
        current = [AlertEngine(rules, stores[0], clock=lambda: 0)]

        def engine_for(restart: bool) -> AlertEngine:
            if restart:
                stores[-1].close()  # the old process is gone without a flush
                stores.append(AlertStore(path))
                current[0] = AlertEngine(rules, stores[-1], clock=lambda: 0)
            return current[0]

        got = _replay(series, engine_for)
        final = current[0].status()
        stores[-1].close()
    assert got == expected
    assert final == reference.status()
