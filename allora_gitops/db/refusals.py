"""A database refusal in the product's words: which field broke which rule, never a table or constraint name.

The schema's CHECK, UNIQUE, NOT NULL and FOREIGN KEY constraints are the records' last line of defence;
the request models ask the same rules first. When a refusal still gets through, what the client (or the
CLI user) reads is ``version: a semantic version (1.2.3, …) of at most 64 characters`` — not
``new row for relation "model_bundles" violates check constraint "model_bundles_version_format"``,
which tells an attacker the schema and a user nothing they can act on.

``describe_refusal(exc)`` answers for SQLSTATE classes 22 (data exception) and 23 (integrity constraint
violation) and the trigger-raised ``check_violation`` of a status change; None for anything else (a lost
connection, a timeout: the platform's problem, not the input's). Constraints without an entry in
``CONSTRAINT_WORDS`` (a migration added later) are described from their name's parts — the table's noun, the
column and the rule suffix (``_format``, ``_positive``, ``_key``…) — so no refusal ever quotes an identifier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

# table → what the product calls one row of it
TABLE_NOUNS = {
    "model_bundles": "bundle",
    "deployments": "deployment",
    "releases": "release",
    "submission_results": "result",
    "platform_users": "user",
    "api_tokens": "token",
    "bundle_owners": "bundle name",
    "wallet_assignments": "wallet assignment",
    "schema_migrations": "migration",
}

_SEMVER = "a semantic version (1.2.3, 1.2.3-rc.1, 1.2.3+build) of at most 64 characters"
_SECRETISH = "looks like a wallet key or mnemonic"
# constraint → (field, what it must be). The field is the request's (model.yaml's, the API's) name for it.
CONSTRAINT_WORDS: dict[str, tuple[str, str]] = {
    "model_bundles_name_format": ("name", "lower-case letters, digits and '-' (at most 53), starting and ending alphanumeric"),
    "model_bundles_version_format": ("version", _SEMVER),
    "model_bundles_name_version_key": ("version", "this name and version were already uploaded with other content; publish a new version"),
    "model_bundles_python_version_format": ("python", "a Python version 3.N"),
    "model_bundles_manifest_matches": ("model.yaml", f"does not match the bundle's name and version, or {_SECRETISH}"),
    "model_bundles_published_by_text": ("published_by", f"1 to 200 characters that do not look like a wallet key or mnemonic"),
    "model_bundles_archive_url_format": ("store", "the object store's address must name the archive's digest and carry no credentials"),
    "deployments_network_format": ("network", "lower-case letters, digits and '-' (at most 63)"),
    "deployments_topic_id_positive": ("topic_id", "a topic id greater than 0"),
    "deployments_fee_tier_valid": ("fee_tier", "one of ECO, STANDARD, PRIORITY"),
    "deployments_wallet_secret_kind_valid": ("wallet_secret_kind", "Secret or ExternalSecret"),
    "deployments_wallet_secret_name_format": ("wallet_secret", f"a Secret name (lower-case letters, digits, '-', '.', at most 253) that never {_SECRETISH}"),
    "deployments_repo_branch_format": (
        "version",
        "makes a review branch name git refuses (no '..', '//', leading or trailing '/', or trailing '.lock'; at most 255)",
    ),
    "deployments_retire_branch_format": ("version", "makes a branch name git refuses"),
    "deployments_container_image_format": ("image", "an image reference (lower-case, at most 512 characters, optionally @sha256:…)"),
    "deployments_owner_format": ("owner", "letters, digits, '.', '_', '@', '-' (at most 63)"),
    "deployments_polling_interval_positive": ("polling_interval", "a number of seconds greater than 0"),
    "deployments_status_transition": ("status", "this change of a deployment's status is not allowed"),
    "platform_users_name_format": ("user", "lower-case letters, digits, '-', '.', '_' (at most 63), starting and ending alphanumeric"),
    "platform_users_name_key": ("user", "a user with this name exists"),
    "platform_users_limits_positive": ("limits", "live deployments at least 0, the upload limit at least 1 MB"),
    "bundle_owners_pkey": ("name", "the bundle name is taken"),
    "bundle_owners_name_format": ("name", "lower-case letters, digits and '-' (at most 53), starting and ending alphanumeric"),
    "wallet_assignments_name_format": (
        "wallet Secret name",
        f"lower-case letters, digits, '-', '.' (at most 253); this one {_SECRETISH}, not the name of the Secret that holds one",
    ),
}

# constraints our own triggers raise with a message in product words (and no identifier): field → keep the message
OWN_WORDS = {"deployments_status_transition": "status"}  # "illegal deployment status change retired -> pending"

# the rule a constraint's name ends in → what it means, for constraints without words of their own
_SUFFIX_WORDS = (
    ("_not_null", "is required"),
    ("_nonnegative", "must not be negative"),
    ("_positive", "must be greater than 0"),
    ("_format", "is not in the allowed format"),
    ("_valid", "is not one of the allowed values"),
    ("_text", f"is too long, or {_SECRETISH}"),
    ("_fkey", "refers to something that does not exist"),
    ("_pkey", "exists already"),
    ("_key", "exists already"),
    ("_check", "is not allowed"),
)
# SQLSTATE of a data exception (class 22) → words; the server's own message may echo the value
_DATA_WORDS = {
    "22001": "a value is too long",
    "22003": "a number is out of range",
    "22007": "a date or time is malformed",
    "22008": "a date or time is out of range",
    "22021": "a text holds a NUL byte or bytes that are not UTF-8",
    "22P02": "a value is malformed",
    "22P05": "a text holds a character the database cannot store",
}


@dataclass(frozen=True)
class Refusal:
    """One refused value: ``conflict`` for a uniqueness violation (409), else an invalid value (422)."""

    message: str
    field: Optional[str] = None
    conflict: bool = False

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def describe_refusal(exc: BaseException) -> Optional[Refusal]:
    """The product's words for a psycopg error that refuses input; None when the error is not about input."""
    diag = getattr(exc, "diag", None)
    sqlstate = getattr(exc, "sqlstate", None) or getattr(diag, "sqlstate", None) or ""
    if not sqlstate and type(exc).__name__ == "DataError":  # psycopg's own refusal before sending (a NUL in text)
        first = (str(exc).strip().splitlines() or ["a value cannot be stored"])[0]
        return Refusal(_DATA_WORDS["22021"] if "NUL" in first else "a value cannot be stored")
    if not (sqlstate.startswith("22") or sqlstate.startswith("23")):
        return None
    if sqlstate.startswith("22"):
        return Refusal(_DATA_WORDS.get(sqlstate, "a value is malformed or out of range"))
    constraint = getattr(diag, "constraint_name", None)
    if constraint in OWN_WORDS and getattr(diag, "message_primary", None):
        return Refusal(diag.message_primary, OWN_WORDS[constraint], conflict=True)  # the record's state, not the input
    return constraint_refusal(
        getattr(diag, "table_name", None), getattr(diag, "constraint_name", None), getattr(diag, "column_name", None), sqlstate
    )


def constraint_refusal(table: Optional[str], constraint: Optional[str], column: Optional[str], sqlstate: str = "23514") -> Refusal:
    """Words for a violation of ``constraint`` on ``table`` (either may be unknown) with SQLSTATE ``sqlstate``."""
    conflict = sqlstate == "23505"  # unique_violation
    if constraint in CONSTRAINT_WORDS:
        field, message = CONSTRAINT_WORDS[constraint]
        return Refusal(message, field, conflict)
    noun = TABLE_NOUNS.get(table or "", "record")
    rest = constraint or ""
    if table and rest.startswith(table + "_"):
        rest = rest[len(table) + 1 :]
    elif rest:  # a name that does not start with its table's: keep no part that could be an identifier
        rest = re.sub(r"^(?:%s)_" % "|".join(map(re.escape, sorted(TABLE_NOUNS, key=len, reverse=True))), "", rest)
    if sqlstate == "23502" and column:
        return Refusal("is required", column.replace("_", " "), conflict)
    for suffix, words in _SUFFIX_WORDS:
        if rest.endswith(suffix):
            field = rest[: -len(suffix)].replace("_", " ") or noun
            return Refusal(words, f"{noun} {field}" if field != noun else noun, conflict)
    if conflict:
        return Refusal(f"such a {noun} exists already", None, True)
    rule = rest.replace("_", " ").strip()
    return Refusal(f"the {noun} breaks the rule '{rule}'" if rule else f"the {noun} was refused", None, conflict)


def schema_identifiers(conn) -> set[str]:
    """Every table and constraint name of the connected database's public schema (for tests and audits)."""
    rows = conn.execute(
        """SELECT tablename FROM pg_tables WHERE schemaname = 'public'
           UNION SELECT conname FROM pg_constraint WHERE connamespace = 'public'::regnamespace"""
    ).fetchall()
    return {r[0] for r in rows}
