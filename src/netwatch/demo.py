"""``netwatch demo``: a simulated city and netwatch watching it, in one terminal.

The lab (:mod:`netwatch.lab.city`) and the daemon run in this one process and event loop; the
daemon gets the config the lab writes, with no InfluxDB unless one is given (points then stay in
its spool, the embedded default), and its logs go to a file so the terminal shows the view. The
view reads what any user can: the daemon's ``/api/v1/state``, ``/api/v1/alerts`` and ``/metrics``.
A scenario breaks something now and then (a park's lateral cut, a camera's stream, a ring port
with a trap) and says what to look for; the lab's control endpoint takes ``netwatch lab fault``
from another terminal meanwhile. Ctrl-C (or ``--duration``) stops both and removes what the lab
set up.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from netwatch import daemon, logs
from netwatch.config import load_config
from netwatch.lab.city import CityLab, FaultRequest
from netwatch.lab.control import serve_control
from netwatch.lab.netconfig import write_config
from netwatch.lab.reach import Plant
from netwatch.lab.spec import Lab, load_lab

_STATE_COLOUR = {
    "up": "32",
    "degraded": "33",
    "down": "31",
    "unreachable": "35",
    "maintenance": "36",
    "unknown": "2",
}
_SEVERITY_COLOUR = {"critical": "31", "warning": "33", "info": "36"}


@dataclass(frozen=True)
class Step:
    """One scenario step: at ``at`` seconds after start, do ``request`` (or clear ``clears``)."""

    at: float
    say: str
    request: FaultRequest | None = None


def scenario(lab: Lab) -> list[Step]:
    """A short story for this lab: a park cut off, a camera failing, a ring port going down by trap."""
    plant = Plant(lab.spec)
    steps: list[Step] = []
    lateral = next((link for link in lab.spec.links if plant.dark([link.id])), None)
    if lateral is not None:
        dark = len(plant.dark([lateral.id]))
        steps += [
            Step(
                40,
                f"cutting {lateral.id}: {dark} devices go dark; expect ONE page, with them behind it",
                FaultRequest("cut", lateral.id),
            ),
            Step(100, f"{lateral.id} spliced: everything behind it comes back, the page resolves", None),
        ]
    camera = next((d for d in lab.spec.devices if d.kind == "camera"), None)
    if camera is not None:
        steps += [
            Step(
                130,
                f"{camera.id}'s stream offers no video: its rtsp check fails, the device is degraded",
                FaultRequest("camera", camera.id, mode="no_video"),
            ),
            Step(170, f"{camera.id} fixed", None),
        ]
    ring = next((link for link in lab.spec.links if not plant.dark([link.id])), None)
    if ring is not None:
        end = f"{ring.a.device}:{ring.a.port}"
        steps += [
            Step(
                190,
                f"{end} goes down and sends linkDown: netwatch polls at once, {ring.id} is down in ~1 s",
                FaultRequest("trap", end),
            ),
            Step(230, f"{end} back up (linkUp)", None),
        ]
    return steps


def parse_metrics(text: str) -> dict[str, float]:
    """Return netwatch's own series from /metrics text (labels dropped)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("netwatch_") and " " in line:
            name, _, value = line.rpartition(" ")
            try:
                found[name.split("{", 1)[0]] = float(value)
            except ValueError:
                continue
    return found


def _paint(text: str, colour: str | None, tty: bool) -> str:
    return f"\x1b[{colour}m{text}\x1b[0m" if tty and colour else text


def render(
    *,
    state: dict[str, Any] | None,
    alerts: list[dict[str, Any]],
    metrics: dict[str, float],
    lab: dict[str, Any],
    note: str,
    elapsed: float,
    width: int = 100,
    height: int = 40,
    tty: bool = True,
) -> list[str]:
    """Return the view's lines: header, sites, open incidents, data written, hints."""
    devices = lab["devices"]
    lines = [
        _paint(f"netwatch demo: a simulated city of {len(devices)} devices on {lab['network']}", "1", tty)
        + f"   {int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}",
    ]
    faults = lab["faults"]
    dark = sum(1 for d in devices if d["dark"])
    if faults:
        lines.append(
            "lab faults: " + "; ".join(f"{f['id']} {f['kind']} {f['target']}" for f in faults) + f" ({dark} dark)"
        )
    else:
        lines.append("lab faults: none")
    if note:
        lines.append(_paint(f">> {note}", "1;33", tty))
    lines.append("")
    if state is None:
        lines.append("waiting for netwatch's API ...")
        return lines
    by_site: dict[str, Counter[str]] = {}
    for d in state["devices"]:
        by_site.setdefault(d["site"], Counter())[d["state"]] += 1
    header = f"{'SITE':<34} {'UP':>4} {'DEGR':>5} {'DOWN':>5} {'UNREACH':>8} {'MAINT':>6}  WIFI"
    lines.append(_paint(header, "1", tty))
    rows = []
    for site in state["sites"]:
        c = by_site.get(site["id"], Counter())
        if not c:
            continue
        bad = c["degraded"] + c["down"] + c["unreachable"] + c["maintenance"] + (site.get("wifi") == "down")
        cells = [
            f"{c['up']:>4}",
            f"{c['degraded']:>5}",
            f"{c['down']:>5}",
            f"{c['unreachable']:>8}",
            f"{c['maintenance']:>6}",
        ]
        colour = "31" if c["down"] else "35" if c["unreachable"] else "33" if bad else None
        wifi = site.get("wifi") or ""
        rows.append((bad, _paint(f"{site['name'][:34]:<34} " + " ".join(cells) + f"  {wifi}", colour, tty)))
    room = max(3, height - 12 - min(len(alerts), 8))
    if len(rows) > room:
        # A big lab: the sites with trouble first, then as many others as fit.
        rows.sort(key=lambda r: -r[0])
        hidden = len(rows) - room
        rows = rows[:room]
        lines += [r for _, r in rows] + [f"... and {hidden} more sites"]
    else:
        lines += [r for _, r in rows]
    totals = Counter(d["state"] for d in state["devices"])
    lines.append(
        "devices: "
        + ", ".join(_paint(f"{totals[s]} {s}", _STATE_COLOUR.get(s), tty) for s in _STATE_COLOUR if totals[s])
    )
    lines.append("")
    lines.append(_paint(f"OPEN INCIDENTS ({len(alerts)})", "1", tty))
    for a in alerts[:8]:
        held = f" [held: {a['held']}]" if a.get("held") else ""
        behind = a.get("impact", {}).get("count", 0)
        impact = f" (+{behind} behind it)" if behind else ""
        text = f"  {a['severity']:<8} {a['rule']:<18} {a['summary'][: max(20, width - 40)]}{impact}{held}"
        lines.append(_paint(text, _SEVERITY_COLOUR.get(a["severity"]), tty))
    if len(alerts) > 8:
        lines.append(f"  ... and {len(alerts) - 8} more (netwatch alerts)")
    if not alerts:
        lines.append("  none")
    lines.append("")
    written = metrics.get("netwatch_points_written_total", 0)
    collected = metrics.get("netwatch_points_collected_total", 0)
    spool = metrics.get("netwatch_buffer_points", 0)
    lines.append(
        f"data: {int(collected):,} points collected, {int(written):,} written to InfluxDB, "
        f"{int(spool):,} in the spool; checks run {int(metrics.get('netwatch_checks_run_total', 0)):,}"
    )
    lines.append(
        _paint("try, in another terminal: netwatch lab fault cut <span> | netwatch lab clear | Ctrl-C stops", "2", tty)
    )
    return [line[: width + 20] if not tty else line for line in lines]


class _Api:
    """The daemon's API as the view reads it."""

    def __init__(self, base: str) -> None:
        self.base = base
        self._session: aiohttp.ClientSession | None = None

    async def get(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, float]]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))
        try:
            async with self._session.get(f"{self.base}/api/v1/state") as r:
                state = await r.json() if r.status == 200 else None
            async with self._session.get(f"{self.base}/api/v1/alerts") as r:
                alerts = (await r.json())["alerts"] if r.status == 200 else []
            async with self._session.get(f"{self.base}/metrics") as r:
                metrics = parse_metrics(await r.text()) if r.status == 200 else {}
        except (aiohttp.ClientError, TimeoutError):
            return None, [], {}
        return state, alerts, metrics

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def run_demo(
    lab_path: Path,
    workdir: Path,
    *,
    duration: float | None = None,
    story: bool = True,
    influxdb: str | None = None,
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
    refresh: float = 1.0,
) -> int:
    """Run the lab and the daemon until ``stop`` (Ctrl-C) or ``duration``; 0 on a clean stop."""
    lab = load_lab(lab_path)
    workdir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before anything runs
    config_path = write_config(lab, workdir / "netwatch.yaml", influxdb=influxdb)
    loaded = load_config(config_path)
    log_file = (workdir / "netwatch.log").open("a", encoding="utf-8")
    logs.configure("info", "json", stream=log_file)

    def daemon_logs(level: str, _fmt: str) -> None:
        logs.configure(level, "json", stream=log_file)

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    tty = out.isatty()
    city = CityLab(lab, workdir / "lab")
    api = _Api(f"http://{lab.spec.lab.api}")
    steps = scenario(lab) if story else []
    started = time.monotonic()
    note = "starting: the first polls take a few seconds"
    active: str | None = None
    daemon_stop, reload = asyncio.Event(), asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        await city.start()
        async with serve_control(city, lab.spec.lab.control):
            task = asyncio.create_task(
                daemon.run(config_path, daemon_stop, reload, loaded=loaded, configure_logs=daemon_logs), name="daemon"
            )
            if tty:
                out.write("\x1b[?25l")  # hide the cursor while the view redraws
            while not stop.is_set():
                elapsed = time.monotonic() - started
                if duration is not None and elapsed >= duration:
                    break
                if task.done():
                    note = f"netwatch stopped: {task.exception() if not task.cancelled() else 'cancelled'}"
                    break
                while steps and elapsed >= steps[0].at:
                    step = steps.pop(0)
                    if step.request is not None:
                        active = (await city.apply(step.request)).id
                    elif active is not None:
                        await city.clear(active)
                        active = None
                    note = step.say
                state, alerts, metrics = await api.get()
                size = shutil.get_terminal_size((100, 40))
                lines = render(
                    state=state,
                    alerts=alerts,
                    metrics=metrics,
                    lab=city.status(),
                    note=note,
                    elapsed=elapsed,
                    width=size.columns,
                    height=size.lines,
                    tty=tty,
                )
                if tty:
                    out.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")
                else:
                    out.write("\n".join(lines) + "\n\n")
                out.flush()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=refresh if tty else max(refresh, 5.0))
    finally:
        if tty:
            out.write("\x1b[?25h")
        daemon_stop.set()
        if task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
        await api.close()
        await city.stop()
        log_file.close()
    failed = task is not None and task.done() and not task.cancelled() and task.exception() is not None
    out.write(f"netwatch demo stopped; logs in {workdir / 'netwatch.log'}, config in {config_path}\n")
    return 1 if failed else 0


def default_workdir() -> Path:
    """Where the demo keeps its config, spool and logs: under the user's cache directory."""
    return Path.home() / ".cache" / "netwatch" / "demo"


__all__ = ["Step", "default_workdir", "parse_metrics", "render", "run_demo", "scenario"]
