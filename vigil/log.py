"""Structured logging: stable snake_case event names with bound key/values."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from vigil.config import LogConfig


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
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get(name: str) -> Any:
    return structlog.get_logger(component=name)
