"""``/metrics``: the ``netwatch`` measurement's counters in Prometheus exposition format.

Each field of the ``netwatch`` measurement becomes ``netwatch_<field>``: counters (monotonic since
start) are exposed as Prometheus counters, so they read ``netwatch_<field>_total``; levels (in
flight, buffered, averages, latencies, lags) are gauges and keep the field's name. Every series
carries the ``instance`` label. The collector lives on its own ``CollectorRegistry``, so nothing
registered globally by a library leaks in, and it reads the :class:`HealthSource` on each scrape.

The scheduler and the sink are always there. The other components that write ``netwatch``
samples (the alert outbox, the MQTT ingest, the trap receiver, the MQTT state publisher) appear
only when the source names them (:class:`ComponentsSource`), so a daemon without ``mqtt:`` has
no ``netwatch_broker_connected`` rather than a misleading 0. Open incidents (by severity and by
what holds their notifications) and active silences are read from the alert service the API
already serves ``/api/v1/alerts`` from.

Prometheus renames a scraped ``instance`` label to ``exported_instance`` unless the scrape job
sets ``honor_labels: true``; the label is kept because it is the same tag as in InfluxDB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal, TypeVar, get_args

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from netwatch.alerting.model import Severity
from netwatch.alerting.service import Held
from netwatch.api.alerts import AlertsSource
from netwatch.api.health import Checks, ComponentsSource

log = structlog.get_logger(__name__)

T = TypeVar("T")

Kind = Literal["counter", "gauge"]

#: Fields of ``Sink.stats()`` (``netwatch.sink.influx.STATS_KEYS``): kind and help text.
SINK_METRICS: dict[str, tuple[Kind, str]] = {
    "points_collected": ("counter", "Points handed to the sink since start."),
    "points_written": ("counter", "Points InfluxDB accepted since start."),
    "points_dropped": ("counter", "Points dropped (spool cap, full disk, encoding errors) since start."),
    "points_rejected": ("counter", "Points InfluxDB rejected as invalid (quarantined) since start."),
    "buffer_points": ("gauge", "Points waiting to be written."),
    "batches_written": ("counter", "Write requests InfluxDB accepted since start."),
    "batch_points_avg": ("gauge", "Average points per accepted write request."),
    "write_latency_ms": ("gauge", "Duration of the last accepted write request, in ms."),
    "write_errors": ("counter", "Failed write requests since start."),
}

#: Fields of the other components, by their ``component`` tag: kind and help text. A field not
#: listed here is not exposed (a test checks every component's fields are classified).
COMPONENT_METRICS: dict[str, dict[str, tuple[Kind, str]]] = {
    # netwatch.alerting.outbox.STATS_KEYS: totals over all receivers.
    "outbox": {
        "outbox_depth": ("gauge", "Alert notifications waiting to be delivered."),
        "outbox_queued": ("counter", "Alert notifications queued for a receiver since start."),
        "outbox_delivered": ("counter", "Alert notifications a receiver accepted since start."),
        "outbox_retried": ("counter", "Failed delivery attempts that are retried, since start."),
        "outbox_dropped": ("counter", "Alert notifications given up on (rejected or expired) since start."),
        "outbox_rejected": ("counter", "Alert notifications a receiver refused (4xx, refused login) since start."),
    },
    # netwatch.ingest.panels.IngestStats.fields()
    "mqtt": {
        "broker_connected": ("gauge", "1 while the MQTT ingest is connected to the broker."),
        "mqtt_messages": ("counter", "MQTT messages the ingest received since start."),
        "mqtt_heartbeats": ("counter", "Access panel heartbeats received since start."),
        "mqtt_events": ("counter", "Access panel events received since start."),
        "mqtt_malformed": ("counter", "Access panel messages that could not be read, since start."),
        "mqtt_unknown_topic": ("counter", "MQTT messages on a topic no configured panel uses, since start."),
        "mqtt_reconnects": ("counter", "Reconnects to the MQTT broker after losing it, since start."),
    },
    # netwatch.ingest.traps.TrapReceiver.stats()
    "traps": {
        "traps_received": ("counter", "Datagrams the SNMP trap receiver got since start."),
        "traps_accepted": ("counter", "Traps accepted from known devices since start."),
        "traps_unknown_sender": ("counter", "Traps from an address the inventory does not list, since start."),
        "traps_bad_community": ("counter", "Traps with a community that is not configured, since start."),
        "traps_bad_credentials": ("counter", "SNMPv3 traps with wrong or too weak credentials, since start."),
        "traps_malformed": ("counter", "Datagrams that were not readable traps, since start."),
        "traps_ignored": ("counter", "Traps of a type not configured, since start."),
        "traps_polls": ("counter", "Checks started at once because of a trap, since start."),
    },
    # netwatch.publish.mqttstate.PublishStats.fields()
    "publish": {
        "publish_connected": ("gauge", "1 while the MQTT state publisher is connected to the broker."),
        "mqtt_published": ("counter", "State messages published to MQTT since start."),
        "mqtt_publish_failed": ("counter", "State messages that failed to publish, since start."),
    },
}

SEVERITIES: tuple[Severity, ...] = get_args(Severity)
#: What holds an incident's notifications; "none" when nothing does (the empty ``Held``).
HELD_LABELS: tuple[str, ...] = tuple(h or "none" for h in get_args(Held))


class NetwatchCollector(Collector):
    """Collect the daemon's health as metric families on every scrape; nothing is cached."""

    def __init__(self, checks: Checks, alerts: AlertsSource | None = None) -> None:
        self._checks = checks
        self._alerts = alerts
        #: Parts whose last read failed, so a persistent failure is logged once, not every scrape.
        self._failing: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        """Yield one family per counter or level; a value the source lacks yields no family."""
        source = self._checks.source
        instance = source.instance

        def counter(name: str, doc: str, value: float) -> Metric:
            family = CounterMetricFamily(f"netwatch_{name}", doc, labels=["instance"])
            family.add_metric([instance], float(value))
            return family

        def gauge(name: str, doc: str, value: float) -> Metric:
            family = GaugeMetricFamily(f"netwatch_{name}", doc, labels=["instance"])
            family.add_metric([instance], float(value))
            return family

        yield gauge("up", "1 while netwatch answers.", 1)

        sched = source.scheduler_stats()
        yield counter("checks_run", "Checks run since start.", sched.checks_run)
        yield counter("checks_failed", "Checks whose outcome was down since start.", sched.checks_failed)
        yield counter("checks_skipped", "Ticks skipped because the check was still running.", sched.checks_skipped)
        yield gauge("checks_in_flight", "Checks running now.", sched.checks_in_flight)
        if sched.poll_lag is not None:
            lag = sched.poll_lag
            yield gauge("poll_lag_p50_ms", "Median poll lag over a recent window, in ms.", lag.p50_ms)
            yield gauge("poll_lag_p99_ms", "99th percentile poll lag over a recent window, in ms.", lag.p99_ms)
            yield gauge("poll_lag_max_ms", "Worst poll lag over a recent window, in ms.", lag.max_ms)
        yield gauge("heartbeat_age_s", "Seconds since the scheduler loop last woke.", source.heartbeat_age_s())
        yield gauge("loop_lag_ms", "Event-loop lag at the last measurement, in ms.", self._checks.loop_lag.latest_ms)

        stats = source.sink_stats()
        for key, (kind, doc) in SINK_METRICS.items():
            if key in stats:
                yield (counter if kind == "counter" else gauge)(key, doc, stats[key])

        yield gauge("spool_recovered", "1 once the spool of the last run has been recovered.", source.spool_recovered())
        yield gauge("backlog_points", "Points waiting for InfluxDB (spool and buffer).", source.backlog_points())
        age = source.last_write_age_s()
        if age is not None:
            yield gauge("last_write_age_s", "Seconds since InfluxDB last accepted a write.", age)
        yield gauge("ready", "1 while /readyz passes.", self._checks.readiness().ok)

        devices = source.device_counts()
        family = GaugeMetricFamily("netwatch_devices", "Devices by state (down: not up).", labels=["instance", "state"])
        family.add_metric([instance, "up"], float(devices.up))
        family.add_metric([instance, "down"], float(devices.down))
        yield family

        if isinstance(source, ComponentsSource):
            for component, read in source.components.items():
                fields = self._read(component, read)
                for key, (kind, doc) in COMPONENT_METRICS.get(component, {}).items():
                    if fields is not None and key in fields:
                        yield (counter if kind == "counter" else gauge)(key, doc, fields[key])

        if self._alerts is not None:
            yield from self._alert_families(self._alerts, instance)

    def _read(self, part: str, read: Callable[[], T]) -> T | None:
        """Read one part's values; a failure costs that part's families, not the whole scrape."""
        try:
            value = read()
        except Exception as exc:
            if part not in self._failing:
                self._failing.add(part)
                log.warning("metrics_read_failed", part=part, error=f"{type(exc).__name__}: {exc}"[:200])
            return None
        self._failing.discard(part)
        return value

    def _alert_families(self, alerts: AlertsSource, instance: str) -> Iterator[Metric]:
        def read() -> tuple[dict[tuple[str, str], int], int]:
            # Every (severity, held) pair is set, zeros included: "no critical incident" is a 0 a
            # rule can compare, not a missing series.
            open_: dict[tuple[str, str], int] = {(sev, held): 0 for sev in SEVERITIES for held in HELD_LABELS}
            for item in alerts.incidents():
                key = (item.incident.severity, item.held or "none")
                open_[key] = open_.get(key, 0) + 1
            return open_, len(alerts.silences.active())

        got = self._read("alerts", read)
        if got is None:
            return
        open_, silences = got
        family = GaugeMetricFamily(
            "netwatch_incidents_open",
            "Open incidents (firing or flapping) by severity, and by what holds their notifications: none, "
            "silenced, maintenance, or unreachable (behind a down parent, so part of that one's impact).",
            labels=["instance", "severity", "held"],
        )
        for (severity, held), count in open_.items():
            family.add_metric([instance, severity, held], float(count))
        yield family
        active = GaugeMetricFamily("netwatch_silences_active", "Silences in force now.", labels=["instance"])
        active.add_metric([instance], float(silences))
        yield active


def registry_for(checks: Checks, alerts: AlertsSource | None = None) -> CollectorRegistry:
    """Return a fresh registry holding only the netwatch collector (not the process-global one).

    With ``alerts``, open incidents and active silences are exposed too.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NetwatchCollector(checks, alerts))
    return registry


__all__ = ["COMPONENT_METRICS", "HELD_LABELS", "SEVERITIES", "SINK_METRICS", "NetwatchCollector", "registry_for"]
