"""Structured logging: stable snake_case event names with bound key/values."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO, cast

import structlog

from vigil.config import LogConfig


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write.

    Binding the stream object at configure time breaks when it is later replaced and closed (test
    runners, daemonisation): every log call would then raise, including inside NATS reconnect
    callbacks, where an exception silently ends reconnection.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(cfg: LogConfig, stream: Any = None) -> None:
    level = getattr(logging, cfg.level.upper())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if cfg.format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream or cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=False,
    )


def get(name: str) -> Any:
    return structlog.get_logger(component=name)
