"""``netwatch probe``: run one device's checks now and show what would be written.

For commissioning a site: nothing is written anywhere, the same probes and timeouts as the daemon
are used, and the output is a table a person reads (or JSON lines with ``--json``).
"""

from __future__ import annotations

import asyncio
import json
import sys

from netwatch.config import Loaded
from netwatch.inventory import Device
from netwatch.model import Outcome, Sample
from netwatch.probes import REGISTRY, ProbeResources
from netwatch.scheduler import Job, run_check

_COMMON_TAGS = ("device", "site", "kind")


def _fmt_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) >= 0.001 or value == 0 else f"{value:.3e}"
    return str(value)


def format_samples(samples: list[Sample]) -> list[str]:
    """Render samples as aligned rows: measurement, distinguishing tags, fields."""
    rows = []
    for s in samples:
        tags = " ".join(f"{k}={v}" for k, v in sorted(s.tags.items()) if k not in _COMMON_TAGS)
        fields = " ".join(f"{k}={_fmt_value(v)}" for k, v in s.fields.items())
        rows.append((s.measurement, tags, fields))
    if not rows:
        return []
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return [f"  {m:<{w0}}  {t:<{w1}}  {f}" for m, t, f in rows]


async def probe_device(
    loaded: Loaded,
    device_id: str,
    *,
    checks: list[str] | None = None,
    rounds: int = 1,
    spacing: float = 5.0,
    as_json: bool = False,
) -> int:
    """Run the device's checks ``rounds`` times; return 0 if every check passed in the last round."""
    inventory = loaded.inventory
    device = inventory.devices.get(device_id)
    if device is None:
        known = ", ".join(sorted(inventory.devices)[:20])
        print(
            f"netwatch probe: no device {device_id!r} in {loaded.path} (devices: {known} ...)",
            file=sys.stderr,
        )
        return 1
    specs = [c for c in device.checks if not checks or c.name in checks]
    if not specs:
        print(f"netwatch probe: {device_id} has no check named {checks}", file=sys.stderr)
        return 1
    resources = ProbeResources()
    jobs = [
        Job(
            device.id,
            spec.name,
            REGISTRY[spec.name].build(device.target, spec.config, resources),
            spec.interval,
            spec.timeout,
        )
        for spec in specs
    ]
    outcomes: list[Outcome] = []
    try:
        for round_no in range(1, rounds + 1):
            if round_no > 1:
                await asyncio.sleep(spacing)
            loop = asyncio.get_running_loop()
            started = loop.time()
            outcomes = list(await asyncio.gather(*(run_check(job) for job in jobs)))
            elapsed = loop.time() - started
            if as_json:
                for job, outcome in zip(jobs, outcomes, strict=True):
                    print(
                        json.dumps(
                            {
                                "round": round_no,
                                "check": job.check,
                                "up": outcome.up,
                                "reason": outcome.reason,
                                "detail": outcome.detail,
                            }
                        )
                    )
                    for s in outcome.samples:
                        print(
                            json.dumps(
                                {
                                    "round": round_no,
                                    "measurement": s.measurement,
                                    "tags": dict(s.tags),
                                    "fields": dict(s.fields),
                                    "time_ns": s.time_ns,
                                }
                            )
                        )
                continue
            site = inventory.sites.get(device.site)
            print(
                f"{device.id}  {device.kind} at {site.name if site else device.site}, {device.address}"
                + (f"  (round {round_no}/{rounds}, {elapsed:.2f}s)" if rounds > 1 else f"  ({elapsed:.2f}s)")
            )
            for job, outcome in zip(jobs, outcomes, strict=True):
                state = "up  " if outcome.up else "DOWN"
                detail = f"  {outcome.detail}" if outcome.detail else ""
                print(f"  {job.check:<6} {state} {outcome.reason}{detail}")
            samples = [s for o in outcomes for s in o.samples]
            if samples:
                print("  would write:")
                print("\n".join(format_samples(samples)))
            print()
    finally:
        await resources.aclose()
    missing = _unreported_ports(device, jobs, outcomes)
    if missing:
        print(f"{device.id}: no such port(s) on the device: {', '.join(missing)}", file=sys.stderr)
    return 0 if all(o.up for o in outcomes) and not missing else 1


def _unreported_ports(device: Device, jobs: list[Job], outcomes: list[Outcome]) -> list[str]:
    """Return the configured ports a successful port-reporting check did not find (typos, mostly)."""
    seen: set[str] = set()
    reporting = False
    for job, outcome in zip(jobs, outcomes, strict=True):
        if REGISTRY[job.check].reports_ports and outcome.up:
            reporting = True
            seen |= set(outcome.ports_up)
    if not reporting:
        return []
    return [p.name for p in device.target.ports if p.name not in seen]
