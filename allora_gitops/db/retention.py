"""Retention spans: ``30d``-style durations and the results' retention (``--older-than``, else
``$ALLORA_RESULTS_RETENTION``, else 30 days), read by ``results prune``, the partition keeper
(``db/result_partitions.py``) and the logs' retention."""

from __future__ import annotations

import os
import re
from datetime import timedelta

from allora_gitops.constants import DEFAULT_RESULTS_RETENTION, RESULTS_RETENTION_ENV
from allora_gitops.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str, *, what: str = "duration") -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` → timedelta; ``UsageError`` for anything else."""
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"{what} {text!r} is not a positive duration such as 30d, 12h, 90m or 2w")
    return timedelta(**{_DURATION_UNITS[match.group(2)]: int(match.group(1))})


def results_retention(explicit: str | None = None) -> tuple[str, timedelta]:
    """(text, span) of the retention: ``explicit``, else ``$ALLORA_RESULTS_RETENTION``, else 30d."""
    text = explicit or os.environ.get(RESULTS_RETENTION_ENV, "").strip() or DEFAULT_RESULTS_RETENTION
    source = "--older-than" if explicit else (RESULTS_RETENTION_ENV if os.environ.get(RESULTS_RETENTION_ENV, "").strip() else "retention")
    return text, parse_duration(text, what=source)
