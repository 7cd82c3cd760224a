"""Logging: structlog, JSON lines on stdout for journald, or readable lines for a terminal."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(json_lines: bool = False, level: str = "info") -> None:
    """Set up structlog once per process: ``json_lines`` for services, console otherwise.

    Everything goes to stderr for console output and stdout for JSON (journald captures both).
    """
    renderer: structlog.types.Processor
    if json_lines:
        renderer = structlog.processors.JSONRenderer()
        stream = sys.stdout
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        stream = sys.stderr
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
