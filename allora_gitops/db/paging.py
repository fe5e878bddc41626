"""Keyset (seek) paging of deployments and releases: the SQL, the filters and the opaque cursor.

A page is read with ``WHERE (sort key) > (the last row's key) ORDER BY key LIMIT n+1``, never ``OFFSET``: a page
costs the same at the start and at the end of ten thousand rows, and rows added between two requests neither
repeat nor vanish from the pages still to come (a row sorting before the cursor is simply not on them).

The cursor is the last row's key, as ``base64url(JSON)`` without padding: opaque to callers (they pass back what
they were given), readable by us. A cursor that does not decode, or names another kind of list, is a
``UsageError`` that says so (the API answers 400, the CLI exits 2).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Optional

from allora_gitops.errors import UsageError

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
DEPLOYMENT_STATES = ("live", "waiting", "retired")  # the `state` filter (see deployment_page_sql)


def encode_cursor(kind: str, key: list[Any]) -> str:
    """``kind`` (``d``: deployments by name; ``r``: releases by time) and the last row's sort key → the cursor."""
    raw = json.dumps([kind, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, arity: int) -> list[Any]:
    """The sort key in ``cursor``; ``UsageError`` naming the cursor's problem (never its bytes) when it is not one
    this list gave out."""
    why = "it is not a cursor this list gave out: pass the `next` value of the previous page unchanged"
    if not cursor or len(cursor) > 1000:
        raise UsageError(f"invalid cursor: {why}")
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise UsageError(f"invalid cursor: {why}") from None
    if not isinstance(value, list) or len(value) != arity + 1 or value[0] != kind or not all(isinstance(v, str) for v in value[1:]):
        raise UsageError(f"invalid cursor: {why}")
    return value[1:]


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"invalid limit {limit}: between 1 and {MAX_LIMIT}")
    return limit


@dataclass(frozen=True)
class DeploymentFilter:
    """What a deployments page shows. ``visible_to``: a platform user's id, whose names (``bundle_owners``, the rule
    of ``Accounts.may_see``) are the only ones shown; None shows every deployment (an admin, the CLI).
    ``state``: ``live`` (its live release runs), ``waiting`` (a change waits for review), ``retired`` (neither);
    None: live or waiting (``live_deployments``), or every one with ``include_retired``."""

    owner: Optional[str] = None
    network: Optional[str] = None
    state: Optional[str] = None
    name_prefix: Optional[str] = None
    name: Optional[str] = None
    visible_to: Optional[str] = None
    include_retired: bool = False
    kind: str = "deployment"

    def __post_init__(self):
        if self.state is not None and self.state not in DEPLOYMENT_STATES:
            raise UsageError(f"invalid state {self.state!r}: one of {', '.join(DEPLOYMENT_STATES)}")


# a change waiting for review; and the live release running (its definition is live_deployments', migration 0008)
_WAITING = "EXISTS (SELECT 1 FROM releases r WHERE r.deployment_id = d.id AND r.status IN ('pending', 'committed'))"
_RUNNING = """EXISTS (SELECT 1 FROM releases r WHERE r.deployment_id = d.id
                      AND (r.id = d.live_release_id OR d.live_release_id IS NULL)
                      AND r.action <> 'retire' AND r.status IN ('merged', 'synced', 'retiring'))"""


def deployment_page_sql(f: DeploymentFilter, after: Optional[list[str]], limit: int) -> tuple[str, list[Any]]:
    """One statement for one page: deployments by (name, network), filtered and made visible in SQL, ``limit + 1``
    rows (the extra one says whether a next page exists). Reads ``live_deployments`` (0008) for the default view
    so live has one definition; ``live``/``waiting`` split it by its two halves."""
    source = "deployments" if (f.include_retired or f.state == "retired") else "live_deployments"
    where, params = ["d.kind = %s"], [f.kind]
    for column, value in (("d.owner", f.owner), ("d.network", f.network), ("d.name", f.name)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if f.name_prefix:
        where.append("starts_with(d.name, %s)")
        params.append(f.name_prefix)
    if f.visible_to is not None:  # past the cursor, the owners' scan starts at the cursor too (else a merge join reads from "a")
        where.append("EXISTS (SELECT 1 FROM bundle_owners o WHERE o.name = d.name AND o.user_id = %s::uuid"
                     + (" AND o.name >= %s)" if after is not None else ")"))
        params += [f.visible_to] + ([after[0]] if after is not None else [])
    if f.state == "live":
        where.append(_RUNNING)
    elif f.state == "waiting":
        where.append(_WAITING)
    elif f.state == "retired":
        where.append("NOT EXISTS (SELECT 1 FROM live_deployments l WHERE l.id = d.id)")
    if after is not None:
        where.append("(d.name, d.network) > (%s, %s)")
        params.extend(after)
    sql = (f"SELECT d.id::text, d.name, d.network, d.kind, d.owner, d.live_release_id::text, d.created_at, d.updated_at "
           f"FROM {source} d WHERE {' AND '.join(where)} ORDER BY d.name, d.network LIMIT %s")  # fmt: skip
    return sql, [*params, limit + 1]
