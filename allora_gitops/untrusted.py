"""The one entry for text and values that models and clients send into the records.

Everything a model or a client reports (``POST /api/v1/results``, ``allora-gitops results import``, the runtime's
reporter, later a logs channel) passes through here before it is validated or stored, so each kind of hostile
value is handled once, the same way everywhere:

- **text** (``clean_text``): NUL (PostgreSQL's ``text`` refuses ``\\x00``) and lone surrogates (what
  ``os.fsdecode`` makes of a file name that is not UTF-8; no encoder writes them) become U+FFFD, the Unicode
  replacement character; nothing else is changed. ``clean_json`` does it to every string of a decoded JSON
  document, keys included.
- **sizes** (``bound_text``): free text longer than its bound is cut, and says so at its end
  (``… [12345 more characters]``), so a 1 MB exception message costs a few KB, never the result.
- **names** (``ascii_identifier``): a Python class name may be any Unicode identifier (``DonnéesManquantes``);
  the records keep ASCII ones (``DonneesManquantes``), accents folded, anything else ``_``.
- **times** (``check_time``): an ISO 8601 time with a zone, converted to UTC. One that cannot be represented
  (``9999-12-31T23:30:00-01:00`` overflows on the conversion, ``0001-01-01T00:30:00+01:00`` underflows) is
  refused: ``UntrustedValue``. One more than ``FUTURE_SKEW`` ahead of the receiving clock is **clamped to
  the receive time** and reported as adjusted: the result itself is real (a pod whose clock runs ahead still
  predicted), but stored with a future time it would stay out of every window until that time came. Within
  the margin (ordinary clock skew between a pod and the server) the time is kept as sent.

A refusal is per value: the caller refuses the one result that holds it and keeps the others.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

REPLACEMENT = "\ufffd"
FUTURE_SKEW = timedelta(minutes=5)  # how far ahead of the receiving clock a reported time may be, kept as sent
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # in a Python str, a code point in D800-DFFF is always a lone surrogate
_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_.]")


class UntrustedValue(ValueError):
    """A value that cannot be stored at all (not merely cleaned): its result is refused."""


def clean_text(text: str) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD; the same object when there are none (the usual case)."""
    if (text.isascii() and "\x00" not in text) or _UNSTORABLE.search(text) is None:  # C-speed checks first: the hot path
        return text
    return _UNSTORABLE.sub(REPLACEMENT, text)


def clean_json(value: Any) -> Any:
    """A decoded JSON document with ``clean_text`` applied to every string, keys included; other values as they are."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k) if isinstance(k, str) else k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    return value


def bound_text(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and ``… [N more characters]``, ``limit`` in all."""
    if len(text) <= limit:
        return text
    keep = max(limit - len(f" … [{len(text)} more characters]"), 0)  # N < len(text): the marker fits
    return text[:keep] + f" … [{len(text) - keep} more characters]"


def ascii_identifier(text: str, limit: int = 200) -> str:
    """A class name as the records keep it: accents folded (``é`` → ``e``), any other character not in
    ``[A-Za-z0-9_.]`` made ``_``, a leading digit or dot prefixed with ``_``, at most ``limit`` characters."""
    if text.isascii() and _NOT_IDENTIFIER.search(text) is None and (text[:1].isalpha() or text[:1] == "_"):
        folded = text
    else:
        decomposed = unicodedata.normalize("NFKD", text)
        folded = _NOT_IDENTIFIER.sub("_", "".join(c for c in decomposed if not unicodedata.combining(c)))
        if not folded[:1].isalpha() and folded[:1] != "_":
            folded = "_" + folded
    return folded[:limit]


def check_time(value: Any, *, received_at: datetime, future_skew: timedelta = FUTURE_SKEW) -> tuple[datetime, Optional[str]]:
    """A reported time → (aware UTC datetime, None), or (``received_at``, why) when it was clamped; see the module.

    ``value``: ISO 8601 text with a zone (``…Z`` or ``+01:00``). Raises ``UntrustedValue`` for anything else, and
    for a time that does not exist in UTC (out of range).
    """
    if not isinstance(value, str):
        raise UntrustedValue(f"ts must be an ISO 8601 time with a zone, not {value!r}"[:200])
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UntrustedValue(f"ts must be an ISO 8601 time with a zone, not {value!r}"[:200]) from None
    if parsed.tzinfo is None:
        raise UntrustedValue(f"ts must carry a timezone (e.g. 2026-01-31T12:00:00Z), not {value!r}"[:200])
    try:
        at = parsed.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise UntrustedValue(f"ts {value!r} is out of range: it has no UTC time between years 1 and 9999"[:200]) from None
    if at > received_at + future_skew:
        ahead = at - received_at
        return received_at, (
            f"ts {value} is {_span(ahead)} ahead of the server's clock (more than {_span(future_skew)}); "
            "recorded at the time it was received"
        )
    return at, None


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
