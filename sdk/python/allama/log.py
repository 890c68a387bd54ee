"""Structured logging into the step's log.

``log.info("looked up", ip=ip, score=87)``: keyword arguments become fields
(values that are not strings are written as JSON). The grant caps the volume
per step; past the cap lines are dropped and counted by the host.
"""

from __future__ import annotations

import json as _json
from typing import Any

from wit_world.imports import log as _wit


def _write(level: _wit.Level, message: str, fields: dict) -> None:
    pairs = [
        (str(k), v if isinstance(v, str) else _json.dumps(v, default=str))
        for k, v in fields.items()
    ]
    _wit.write(level, str(message), pairs)


def trace(message: str, **fields: Any) -> None:
    """Very detailed diagnostics."""
    _write(_wit.Level.TRACE, message, fields)


def debug(message: str, **fields: Any) -> None:
    """Diagnostics."""
    _write(_wit.Level.DEBUG, message, fields)


def info(message: str, **fields: Any) -> None:
    """Normal progress."""
    _write(_wit.Level.INFO, message, fields)


def warn(message: str, **fields: Any) -> None:
    """Something unexpected but handled."""
    _write(_wit.Level.WARN, message, fields)


warning = warn


def error(message: str, **fields: Any) -> None:
    """A failure."""
    _write(_wit.Level.ERROR, message, fields)
