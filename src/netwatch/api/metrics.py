"""``/metrics``: the ``netwatch`` measurement's counters in Prometheus exposition format.

Each field of the ``netwatch`` measurement becomes ``netwatch_<field>``: counters (monotonic since
start) are exposed as Prometheus counters, so they read ``netwatch_<field>_total``; levels (in
flight, buffered, averages, latencies, lags) are gauges and keep the field's name. Every series
carries the ``instance`` label. The collector lives on its own ``CollectorRegistry``, so nothing
registered globally by a library leaks in, and it reads the :class:`HealthSource` on each scrape.

Prometheus renames a scraped ``instance`` label to ``exported_instance`` unless the scrape job
sets ``honor_labels: true``; the label is kept because it is the same tag as in InfluxDB.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from netwatch.api.health import Checks

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


class NetwatchCollector(Collector):
    """Collect the daemon's health as metric families on every scrape; nothing is cached."""

    def __init__(self, checks: Checks) -> None:
        self._checks = checks

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


def registry_for(checks: Checks) -> CollectorRegistry:
    """Return a fresh registry holding only the netwatch collector (not the process-global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NetwatchCollector(checks))
    return registry


__all__ = ["SINK_METRICS", "NetwatchCollector", "registry_for"]
