"""The daemon's lifecycle: start order, reloads, shutdown.

``run()`` sees two events instead of signals, so tests can drive it (the CLI owns the signals).
The sink opens before the probes and closes after them, as Telegraf starts outputs before
inputs and flushes them last; a reload swaps probes and inventory, not the sink or the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import aiohttp
import structlog

from netwatch import logs
from netwatch.alerting.engine import AlertEngine
from netwatch.alerting.maintenance import MaintenanceCalendar
from netwatch.alerting.model import incident_id
from netwatch.alerting.outbox import Outbox
from netwatch.alerting.receivers import build_sender
from netwatch.alerting.routing import RouteConfig, Router
from netwatch.alerting.rules import effective_rules
from netwatch.alerting.service import AlertService
from netwatch.alerting.silences import Silences
from netwatch.alerting.store import AlertStore
from netwatch.alerting.topology import Topology
from netwatch.api import ApiListenError, DeviceCounts, LagSnapshot, SchedulerSnapshot, StatsReader, serve_api
from netwatch.api.alerts import incident_json
from netwatch.api.state import plant_state, status_extras
from netwatch.config import Config, ConfigError, Loaded, load_config
from netwatch.ingest.traps import TrapListenError, TrapReceiver, port_lookup
from netwatch.inventory import Inventory
from netwatch.model import Observation, Sample, now_ns
from netwatch.notify import Notifier, feed_watchdog
from netwatch.parkwifi import wifi_sites
from netwatch.probes import REGISTRY, Probe, ProbeResources
from netwatch.scheduler import Job, Scheduler
from netwatch.sink.influx import Sink, open_sink, url_for_logs
from netwatch.sink.spool import SqliteSpool
from netwatch.state import StateTracker

log = structlog.get_logger(__name__)


ProbeCache = dict[tuple[str, str], tuple[object, Probe]]


def build_jobs(inventory: Inventory, resources: ProbeResources, cache: ProbeCache) -> list[Job]:
    """Build one job per (device, check), reusing the probe of a check whose settings are unchanged.

    Reuse matters for SNMP: a probe holds the previous counters, so a reload that rebuilt it
    would leave a one-interval hole in every rate. ``cache`` is updated in place.
    """
    fresh: ProbeCache = {}
    jobs = []
    for device in inventory.devices.values():
        for spec in device.checks:
            key = (device.id, spec.name)
            identity = (spec.config, device.target)
            prior = cache.get(key)
            if prior is not None and prior[0] == identity:
                probe = prior[1]
            else:
                probe = REGISTRY[spec.name].build(device.target, spec.config, resources)
            fresh[key] = (identity, probe)
            jobs.append(Job(device.id, spec.name, probe, spec.interval, spec.timeout))
    cache.clear()
    cache.update(fresh)
    return jobs


class Pipeline:
    """Where observations go: samples to the sink and the alert rules, outcomes to the state tracker."""

    def __init__(self, loaded: Loaded, sink: Sink, alerts: AlertService | None = None) -> None:
        self.sink = sink
        self.alerts = alerts
        #: While a check's result is taken in: what the state tracker emits joins its samples.
        self._batch: list[Sample] | None = None
        self.tracker = StateTracker(
            loaded.inventory, self.emit, override=alerts.device_override if alerts else lambda device: None
        )
        if alerts is not None:
            alerts.explain_site = self.tracker.wifi_override
        #: Others that read every sample as it is emitted (the MQTT state publisher).
        self.taps: list[Callable[[list[Sample]], None]] = []

    def emit(self, samples: list[Sample]) -> None:
        if self._batch is not None:
            self._batch.extend(samples)
            return
        self.sink.submit(samples)
        if self.alerts is not None:
            self.alerts.observe(samples)
        for tap in self.taps:
            tap(samples)

    def observe(self, obs: Observation) -> None:
        """Take a check's result: its samples and the device and span state they lead to, as one batch.

        One batch, so that the alert rules judge a port that went down together with the span it
        ends (the span's state comes from the tracker): given separately, with group_wait 0 the
        port's page went out before the span's state arrived to explain it.
        """
        self._batch = list(obs.outcome.samples)
        try:
            self.tracker.observe(obs)
        finally:
            batch, self._batch = self._batch, None
        self.emit(batch)


async def _report_health(
    current: Callable[[], Config],
    scheduler: Scheduler,
    sink: Sink,
    emit: Callable[[list[Sample]], None],
    outbox: Outbox | None = None,
) -> None:
    """Write netwatch's own health (measurement ``netwatch``) every ``scheduler.stats_interval``.

    The samples go through ``emit`` like any probe's, so alert rules see them too (the built-in
    self-alerts on dropped points and rejected notifications read these counters).
    """
    first = True
    while True:
        # The first report goes out at start: Grafana sees the daemon at once, and rules that
        # read these counters' growth (delta) get their baseline of zero.
        if not first:
            await asyncio.sleep(current().scheduler.stats_interval)
        first = False
        instance = current().instance
        ts = now_ns()
        sched = {
            "checks_run": scheduler.stats.checks_run,
            "checks_failed": scheduler.stats.checks_failed,
            "checks_skipped": scheduler.stats.checks_skipped,
            "checks_in_flight": scheduler.in_flight,
            **scheduler.lag_summary(),
        }
        samples = [
            Sample("netwatch", {"instance": instance, "component": "scheduler"}, sched, ts),
            Sample("netwatch", {"instance": instance, "component": "sink"}, dict(sink.stats()), ts),
        ]
        if outbox is not None:
            samples.append(Sample("netwatch", {"instance": instance, "component": "outbox"}, dict(outbox.stats()), ts))
        emit(samples)


async def _first_set(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


def reload_or_keep(path: Path, current: Loaded) -> Loaded:
    """Load the config again; on any error log every issue and keep the running config."""
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        log.error(
            "config_reload_failed",
            file=str(path),
            errors=[str(i) for i in exc.issues],
            action="keeping the running config",
        )
        return current
    log.info("config_reloaded", file=str(path), devices=len(loaded.inventory.devices))
    return loaded


async def run(
    path: Path,
    stop: asyncio.Event,
    reload: asyncio.Event,
    *,
    loaded: Loaded | None = None,
    configure_logs: Callable[[str, Literal["auto", "json", "console"]], None] = logs.configure,
) -> None:
    """Run the daemon until ``stop`` is set; reload the config whenever ``reload`` is set.

    One scheduler runs for the whole life of the process: a reload swaps its jobs (unchanged
    checks keep their phase, their run in flight and their probe's state), and a reload that
    fails touches nothing at all. ``configure_logs`` is called with the config's log settings at
    start and after each reload (tests pass a no-op to keep capturing logs).
    """
    if loaded is None:
        loaded = load_config(path)
    running: Loaded = loaded
    cfg = running.config
    configure_logs(cfg.log.level, cfg.log.format)
    log.info(
        "netwatch_starting",
        file=str(path),
        instance=cfg.instance,
        devices=len(running.inventory.devices),
        links=len(running.inventory.links),
        influxdb=url_for_logs(cfg.influxdb.url) if cfg.influxdb else None,
    )
    resources = ProbeResources()
    spool = open_spool(cfg)
    quarantine = cfg.state_dir / "quarantine"
    async with (
        open_sink(cfg.influxdb, instance=cfg.instance, buffer=spool, quarantine_dir=quarantine) as sink,
        contextlib.AsyncExitStack() as alerting_stack,
    ):
        alerts, outbox = await open_alerting(running, sink, alerting_stack)
        pipeline = Pipeline(running, sink, alerts)
        probes: ProbeCache = {}
        scheduler = Scheduler(
            build_jobs(running.inventory, resources, probes),
            pipeline.observe,
            max_in_flight=cfg.scheduler.max_in_flight,
        )
        health = DaemonHealth(lambda: running.config, scheduler, sink, pipeline)
        if outbox is not None:
            health.components["outbox"] = outbox.stats
        # Imported here so aiomqtt is only loaded when mqtt: is configured.
        from netwatch.ingest.mqtt import open_ingest, reload_ingest
        from netwatch.publish.mqttstate import open_publisher, reload_publisher

        panels = open_ingest(running, pipeline.emit)
        publisher = open_publisher(running, alerts.incidents if alerts else None, pipeline.emit)
        if panels is not None:
            health.components["mqtt"] = panels.stats
        if publisher is not None:
            pipeline.taps.append(publisher.observe)
            health.components["publish"] = publisher.stats.fields
        notifier = Notifier()
        traps: TrapReceiver | None = None
        try:
            if cfg.traps is not None:
                traps = TrapReceiver(
                    cfg.traps,
                    running.inventory,
                    emit=pipeline.emit,
                    poll_now=scheduler.poll_now,
                    instance=cfg.instance,
                    port_name=port_lookup(probes),
                )
                traps.open()
                health.components["traps"] = traps.stats

            def state() -> dict[str, Any]:
                incidents = [incident_json(i) for i in alerts.incidents()]
                extras = status_extras(
                    incidents,
                    alerts.maintenance_now(),
                    sink.last_write_age_s(),
                    influxdb=running.config.influxdb is not None,
                )
                return plant_state(running.inventory, pipeline.tracker.seen) | extras

            async with serve_api(cfg.api, health, alerts=alerts, state=state) as api, asyncio.TaskGroup() as tg:
                if api.url:
                    log.info("api_listening", url=api.url)
                tasks = [
                    tg.create_task(scheduler.run(), name="scheduler"),
                    tg.create_task(
                        _report_health(lambda: running.config, scheduler, sink, pipeline.emit, outbox), name="health"
                    ),
                ]
                if panels is not None:
                    tasks.append(tg.create_task(panels.run(), name="mqtt"))
                if publisher is not None:
                    tasks.append(tg.create_task(publisher.run(), name="mqtt-publish"))
                # READY=1 once the spool is recovered (above) and the scheduler has ticked.
                await scheduler.ticked.wait()
                notifier.ready(_status_line(health))
                tasks += [
                    tg.create_task(_tick_alerts(alerts), name="alerts"),
                    tg.create_task(feed_watchdog(notifier, lambda: scheduler.heartbeat), name="watchdog"),
                    tg.create_task(_report_status(notifier, health, lambda: running.config), name="status"),
                ]
                if traps is not None:
                    tasks.append(tg.create_task(traps.report(lambda: running.config.scheduler.stats_interval)))
                while True:
                    await _first_set(stop, reload)
                    if stop.is_set():
                        break
                    reload.clear()
                    notifier.reloading("reloading the config")
                    new = reload_or_keep(path, running)
                    if new is running:
                        notifier.ready(_status_line(health))
                        continue
                    _warn_restart_needed(running.config, new.config)
                    running = new
                    configure_logs(new.config.log.level, new.config.log.format)
                    pipeline.tracker.apply(new.inventory)
                    await reload_alerting(alerts, outbox, new)
                    scheduler.resize(new.config.scheduler.max_in_flight)
                    reload_ingest(panels, new)
                    reload_publisher(publisher, new)
                    scheduler.replace(build_jobs(new.inventory, resources, probes))
                    if traps is not None:
                        traps.apply(new.inventory)
                    notifier.ready(_status_line(health))
                notifier.stopping("stopping: flushing to InfluxDB")
                for task in tasks:
                    task.cancel()
        except (ApiListenError, TrapListenError) as exc:
            raise StartupError(str(exc)) from exc
        finally:
            if traps is not None:
                traps.close()
            with contextlib.suppress(Exception):
                await resources.aclose()
            log.info("netwatch_stopping", instance=running.config.instance)


class DaemonHealth:
    """What the health API reads: counts, ages and flags, never config or secrets."""

    def __init__(self, current: Callable[[], Config], scheduler: Scheduler, sink: Sink, pipeline: Pipeline) -> None:
        self._current = current
        self._scheduler = scheduler
        self._sink = sink
        self._pipeline = pipeline
        #: The other components that write ``netwatch`` samples, by their ``component`` tag, for
        #: /metrics; only those configured, added as run() opens them.
        self.components: dict[str, StatsReader] = {}

    @property
    def instance(self) -> str:
        return self._current().instance

    def scheduler_stats(self) -> SchedulerSnapshot:
        stats = self._scheduler.stats
        return SchedulerSnapshot(
            checks_run=stats.checks_run,
            checks_failed=stats.checks_failed,
            checks_skipped=stats.checks_skipped,
            checks_in_flight=self._scheduler.in_flight,
            poll_lag=LagSnapshot.from_lags(self._scheduler.recent_lags()),
        )

    def heartbeat_age_s(self) -> float:
        beat = self._scheduler.heartbeat
        return 0.0 if beat == 0.0 else asyncio.get_running_loop().time() - beat

    def sink_stats(self) -> Mapping[str, int | float]:
        return self._sink.stats()

    def spool_recovered(self) -> bool:
        return True  # the spool is opened (and recovered) before the API starts

    def last_write_age_s(self) -> float | None:
        return self._sink.last_write_age_s()

    def backlog_points(self) -> int:
        return int(self._sink.stats()["buffer_points"])

    @property
    def device_total(self) -> int:
        return self._pipeline.tracker.device_total

    def device_counts(self) -> DeviceCounts:
        up, down = self._pipeline.tracker.device_counts()
        return DeviceCounts(up=up, down=down)


async def open_alerting(
    loaded: Loaded, sink: Sink, stack: contextlib.AsyncExitStack
) -> tuple[AlertService, Outbox | None]:
    """Open the alert state and silences (``alerts.db``) and, with receivers, the durable outbox (``outbox.db``).

    Both live under ``state_dir`` and close with ``stack``, after the scheduler and before the sink.
    """
    cfg, inventory = loaded.config, loaded.inventory
    store = AlertStore(cfg.state_dir / "alerts.db")
    stack.callback(store.close)
    engine = AlertEngine(
        effective_rules(cfg.alerts), store, interval=inventory.poll_interval, device_kind=inventory.device_kind
    )
    stack.callback(engine.flush)
    outbox: Outbox | None = None
    if cfg.receivers:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        outbox = await stack.enter_async_context(
            Outbox(cfg.state_dir / "outbox.db", session=session, senders=[build_sender(r) for r in cfg.receivers])
        )
        firing = {incident_id(s.rule, s.entity, s.announced_ns) for s in engine.status() if s.announced_ns}
        outbox.keep_firing(firing)
    topology = Topology.from_inventory(inventory)
    service = AlertService(
        engine=engine,
        topology=topology,
        calendar=MaintenanceCalendar(cfg.maintenance, topology),
        router=Router(_routes(cfg)),
        enqueue=outbox.enqueue if outbox is not None else None,
        emit=sink.submit,
        site_names={s.id: s.name for s in inventory.sites.values()},
        silences=Silences(store),
        notices=store,
    )
    return service, outbox


def _routes(cfg: Config) -> list[RouteConfig]:
    """The config's routes; with receivers but no routes, everything goes to every receiver."""
    if cfg.routes or not cfg.receivers:
        return list(cfg.routes)
    return [RouteConfig(receivers=[r.name for r in cfg.receivers])]


async def reload_alerting(alerts: AlertService, outbox: Outbox | None, loaded: Loaded) -> None:
    """Apply a reloaded config's rules, topology, maintenance, routes and receivers."""
    cfg, inventory = loaded.config, loaded.inventory
    now = now_ns()
    alerts.engine.use_lookups(interval=inventory.poll_interval, device_kind=inventory.device_kind)
    retired = alerts.engine.apply(effective_rules(cfg.alerts), now)
    wifi = frozenset(wifi_sites(inventory))
    retired += alerts.engine.prune(lambda tags: _still_there(tags, inventory, wifi), now)
    topology = Topology.from_inventory(inventory)
    alerts.apply(
        topology=topology, calendar=MaintenanceCalendar(cfg.maintenance, topology), router=Router(_routes(cfg))
    )
    alerts.retire(retired, now)
    if outbox is not None:
        await outbox.set_senders([build_sender(r) for r in cfg.receivers])
    elif cfg.receivers:
        log.warning("config_needs_restart", keys=["receivers"], why="receivers were added; the outbox opens at start")


def _still_there(tags: Mapping[str, str], inventory: Inventory, wifi: frozenset[str]) -> bool:
    """Tell whether the entity a sample's tags name is still in the inventory after a reload.

    A device, a span or a site's public WiFi (``wifi_service``, tagged by site alone), by the most
    specific tag; anything else (netwatch's own health) always is, so a reload does not resolve
    its self-alerts.
    """
    if "device" in tags:
        return tags["device"] in inventory.devices
    if "link" in tags:
        return tags["link"] in inventory.links
    if "site" in tags:
        return tags["site"] in wifi
    return True


async def _tick_alerts(alerts: AlertService) -> None:
    """Advance alert timers (for, group_wait, repeats, absence, maintenance ends) every second."""
    while True:
        await asyncio.sleep(1.0)
        try:
            alerts.tick()
        except Exception:
            log.exception("alert_tick_failed")


def _status_line(health: DaemonHealth) -> str:
    """One line for `systemctl status`: what is polled, what is down, what waits to be written."""
    stats = health.sink_stats()
    sched = health.scheduler_stats()
    counts = health.device_counts()
    age = health.last_write_age_s()
    written = "no write yet" if age is None else f"last write {age:.0f}s ago"
    return (
        f"polling {health.device_total} devices, {counts.up} up, {counts.down} down; {sched.checks_run} checks run; "
        f"{int(stats['buffer_points'])} points waiting, {written}"
    )


async def _report_status(notifier: Notifier, health: DaemonHealth, current: Callable[[], Config]) -> None:
    while True:
        await asyncio.sleep(current().scheduler.stats_interval)
        notifier.status(_status_line(health))


class StartupError(Exception):
    """Something outside the config file keeps the daemon from starting (state_dir, ports)."""


_STATE_LOCKS: list[int] = []


def _lock_state_dir(state_dir: Path) -> None:
    """Hold an exclusive lock on state_dir for the life of the process: two daemons sharing one
    spool would send and delete each other's points."""
    fd = os.open(state_dir / "netwatch.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StartupError(f"another netwatch is running with state_dir {state_dir}") from None
    _STATE_LOCKS.append(fd)  # released by the kernel when the process exits


def open_spool(cfg: Config) -> SqliteSpool:
    """Open (and recover) the spool under ``state_dir``; what it holds is delivered first."""
    path = cfg.state_dir / "spool.db"
    try:
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        _lock_state_dir(cfg.state_dir)
        return SqliteSpool(path, max_bytes=int(cfg.spool.max_bytes))
    except (OSError, sqlite3.Error) as exc:
        raise StartupError(f"cannot open the spool {path}: {exc} (state_dir must be writable)") from exc


def _warn_restart_needed(old: Config, new: Config) -> None:
    """Say which changed settings only take effect after a restart (the sink outlives reloads)."""
    keys = ("influxdb", "state_dir", "spool", "instance", "api", "traps")
    changed = [key for key in keys if getattr(old, key) != getattr(new, key)]
    if changed:
        log.warning("config_needs_restart", keys=changed, why="the sink and its state are kept across reloads")
