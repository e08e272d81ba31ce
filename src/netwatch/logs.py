"""Logging set-up: structlog for netwatch, stdlib loggers (aiohttp, pysnmp) routed through it.

JSON lines when stdout is not a terminal (journald), a readable console format when it is.
Events are stable snake_case names; keys carry units (``duration_s``, ``rtt_ms``).
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(
    level: str = "info", fmt: Literal["auto", "json", "console"] = "auto", stream: TextIO | None = None
) -> None:
    """Configure structlog and the stdlib root logger once per process (again on reload).

    ``stream``: where the lines go (default stderr; ``netwatch demo`` keeps the terminal for its view).
    """
    out = sys.stderr if stream is None else stream
    json_out = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json_out else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info if json_out else structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # Library records (asyncio, aiohttp) carry exc_info too: render it as text in JSON.
            foreign_pre_chain=[*shared, structlog.processors.format_exc_info] if json_out else shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # Libraries are chatty at debug; netwatch's own debug is what an operator asked for.
    for noisy in ("pysnmp", "pyasn1", "asyncio", "aiohttp.access", "urllib3", "influxdb_client"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
