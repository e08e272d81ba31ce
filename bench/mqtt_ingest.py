"""Access-panel events ingested per second on one core, payload parsing included.

Two cases, each ``--events`` messages (about 90 % events over ``--panels`` panels, 9 % heartbeats,
1 % malformed payloads):

* ``parse``: :class:`netwatch.ingest.panels.PanelBook` alone, fed the messages in a loop: topic
  routing, JSON parsing, mapping and the samples it emits (collected, not written). CPU time of
  this process.
* ``mosquitto QoS 1``: the real :class:`netwatch.ingest.mqtt.MqttIngest` subscribed to a real
  mosquitto on loopback, while an aiomqtt publisher in another process (the other core)
  publishes the messages with QoS 1. Wall time from the first message to the last one ingested, and the
  ingest process's CPU time per message, which is the figure for "one core".

Results are printed as JSON; ``--record`` appends rows to BENCHMARKS.md ("MQTT ingest").

    .venv/bin/python bench/mqtt_ingest.py [--events 20000] [--panels 200] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from record import append_rows

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers.mosquitto import _server  # noqa: E402

from netwatch import logs  # noqa: E402
from netwatch.ingest.mqtt import MqttIngest  # noqa: E402
from netwatch.ingest.mqttconfig import MqttConfig  # noqa: E402
from netwatch.ingest.panels import PanelBook, PanelSpec  # noqa: E402
from netwatch.model import Sample  # noqa: E402

EVENTS = ("door_forced", "door_held_open", "tamper", "power_failure", "on_battery")


PUBLISHER = """
import asyncio, json, sys
import aiomqtt

async def main():
    msgs = json.loads(open(sys.argv[2]).read())
    async with aiomqtt.Client("127.0.0.1", int(sys.argv[1]), max_inflight_messages=100) as c:
        for i in range(0, len(msgs), 100):
            await asyncio.gather(*(c.publish(t, p.encode("latin-1"), qos=1) for t, p in msgs[i : i + 100]))

asyncio.run(main())
"""


def messages(n: int, panels: int, seed: int = 5) -> list[tuple[str, bytes]]:
    """Return ``n`` (topic, payload) pairs as panels at community centres would send them."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        device = f"door-{rng.randrange(panels)}"
        roll = rng.random()
        if roll < 0.09:
            out.append((f"panels/{device}/heartbeat", b'{"seq": %d}' % i))
        elif roll < 0.10:
            out.append((f"panels/{device}/event", b"\x00garbage"))
        else:
            body = {"event": rng.choice(EVENTS), "door": f"d{rng.randrange(4)}", "detail": f"badge reader {i}"}
            out.append((f"panels/{device}/event", json.dumps(body).encode()))
    return out


def specs(panels: int) -> list[PanelSpec]:
    return [PanelSpec(f"door-{i}", "centre", every=30.0, missed=3) for i in range(panels)]


def bench_parse(msgs: list[tuple[str, bytes]], panels: int, repeat: int) -> dict[str, Any]:
    cfg = MqttConfig(host="unused")
    rates = []
    for _ in range(repeat):
        sink: list[Sample] = []
        book = PanelBook(cfg, sink.extend)
        book.set_panels(cfg, specs(panels))
        book.connected()
        start = time.process_time()
        for topic, payload in msgs:
            book.handle(topic, payload)
        rates.append(len(msgs) / (time.process_time() - start))
    rates.sort()
    return {"case": "parse", "messages": len(msgs), "msgs_per_cpu_s": round(rates[len(rates) // 2])}


async def until(cond: Callable[[], bool], limit_s: float) -> None:
    """Poll ``cond`` every 5 ms for up to ``limit_s`` (the ingest has no event to wait on)."""
    deadline = time.perf_counter() + limit_s
    while not cond() and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)


async def bench_broker(msgs: list[tuple[str, bytes]], panels: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = _server(Path(tmp) / "mq")
        server.start()
        try:
            sink: list[Sample] = []
            cfg = MqttConfig(host="127.0.0.1", port=server.port)
            ingest = MqttIngest(cfg, specs(panels), sink.extend, instance="bench")
            task = asyncio.create_task(ingest.run())
            await until(lambda: ingest.book.stats.connected, 10)
            # The publisher is another process (the other core): aiomqtt, QoS 1, 100 in flight.
            feed = Path(tmp) / "msgs.json"
            feed.write_text(json.dumps([[t, p.decode("latin-1")] for t, p in msgs]))
            cpu0, wall0 = time.process_time(), time.perf_counter()
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", PUBLISHER, str(server.port), str(feed))
            await until(lambda: ingest.book.stats.messages >= len(msgs), 120)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            await proc.wait()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            server.stop()
    got = ingest.book.stats.messages
    return {
        "case": "mosquitto QoS 1",
        "messages": len(msgs),
        "received": got,
        "malformed": ingest.book.stats.malformed,
        "msgs_per_s_wall": round(got / wall),
        "msgs_per_cpu_s": round(got / cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--panels", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    logs.configure("error", "console")  # one malformed-payload line per panel would swamp the JSON
    msgs = messages(args.events, args.panels)
    results = [bench_parse(msgs, args.panels, args.repeat), asyncio.run(bench_broker(msgs, args.panels))]
    print(json.dumps({"results": results}, indent=2))
    if args.record:
        day = dt.date.today().isoformat()
        append_rows(
            ROOT / "BENCHMARKS.md",
            "## MQTT ingest",
            "Access-panel messages ingested per CPU second of the netwatch process (one core), JSON payload "
            "parsing included (bench/mqtt_ingest.py: 90 % events, 9 % heartbeats, 1 % malformed).",
            "| date | case | messages | msgs per CPU s | msgs/s wall |",
            "|---|---|---:|---:|---:|",
            [
                f"| {day} | {r['case']} | {r['messages']} | {r['msgs_per_cpu_s']} | {r.get('msgs_per_s_wall', '')} |"
                for r in results
            ],
        )


if __name__ == "__main__":
    main()
