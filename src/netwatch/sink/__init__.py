"""Where samples go: line protocol, buffering, InfluxDB."""

from netwatch.sink.buffer import Batch, LineBuffer, MemoryBuffer
from netwatch.sink.influx import STATS_KEYS, InfluxConfig, InfluxSink, Sink, SpoolOnlySink, open_sink
from netwatch.sink.lineproto import EncodeStats, LineEncoder

__all__ = [
    "STATS_KEYS",
    "Batch",
    "EncodeStats",
    "InfluxConfig",
    "InfluxSink",
    "LineBuffer",
    "LineEncoder",
    "MemoryBuffer",
    "Sink",
    "SpoolOnlySink",
    "open_sink",
]
