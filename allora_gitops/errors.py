"""One exception hierarchy for the whole project, caught once by the CLI entry points.

Messages must never contain secrets: they are printed as they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


def printable(text: str) -> str:
    """``text`` safe to print on one line: undecodable bytes (file names that are not UTF-8, which Python
    carries as lone surrogates) become ``\\xe9``, and control characters (a newline in a file name) are escaped.
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if 0xDC80 <= ord(ch) <= 0xDCFF:  # os.fsdecode's surrogateescape for byte 0x80-0xff
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ch == " " or ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
    return "".join(out)


@dataclass(frozen=True)
class Problem:
    """One finding about a file: printed as ``file:line:col: severity: message``."""

    message: str
    file: str | None = None
    line: int | None = None  # 1-based
    col: int | None = None  # 1-based
    severity: str = "error"  # "error" | "warning"
    code: str = ""  # short machine-readable rule id, e.g. "schema", "secret"

    def location(self) -> str:
        if not self.file:
            return ""
        parts = [printable(self.file)]
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)

    def __str__(self) -> str:
        where = self.location()
        prefix = f"{where}: " if where else ""
        return f"{prefix}{self.severity}: {printable(self.message)}"

    def to_dict(self) -> dict:
        return {k: printable(v) if isinstance(v, str) else v for k, v in asdict(self).items() if v not in (None, "")}


class AlloraGitopsError(Exception):
    """Base of every error this project raises on purpose. ``exit_code`` is what the CLI returns."""

    exit_code = 1

    def __init__(self, message: str = "", problems: list[Problem] | None = None):
        super().__init__(message)
        self.message = message
        self.problems = list(problems or [])

    def lines(self) -> list[str]:
        """What the CLI prints: one line per problem (the message first when there is one)."""
        out = [f"error: {self.message}"] if self.message else []
        out.extend(str(p) for p in self.problems)
        return out


class StateError(AlloraGitopsError):
    """The local state directory (``$ALLORA_GITOPS_HOME``) cannot be created or written."""


class UsageError(AlloraGitopsError):
    """The command line itself is wrong (exit 2, like click's own usage errors)."""

    exit_code = 2


class ManifestError(AlloraGitopsError):
    """model.yaml cannot be loaded or does not match the schema."""


class BundleError(AlloraGitopsError):
    """A bundle directory or archive is invalid, or cannot be built."""


class ArchiveError(BundleError):
    """A bundle archive is malformed, unsafe or does not match its manifest."""


class RenderError(AlloraGitopsError):
    """Deployment settings or templates cannot produce a valid tree."""


class SettingsError(RenderError):
    """Deployment settings (flags, or publish's request) are invalid: a usage problem, exit 2."""

    exit_code = 2


class StorageError(AlloraGitopsError):
    """The object store refused, lost or corrupted an object."""


class DatabaseError(AlloraGitopsError):
    """The records database is unreachable or refused a change."""


class MigrationError(DatabaseError):
    """A migration failed, or an applied migration was edited."""


class ResultsError(DatabaseError):
    """Reported submission results are malformed (one problem per result, with its line when from a log)."""


class RecordConflict(DatabaseError):
    """A record contradicts one already stored (e.g. same name+version, other sha256)."""


class DatabaseUnavailable(DatabaseError):
    """The records database cannot be reached (refused, timed out): the platform's problem, not the input's.
    The message names the database (host, port, name) for the operator; the API answers without it."""


class RecordRefused(DatabaseError):
    """The database refused a value (a CHECK, NOT NULL or foreign key, or one of PostgreSQL's data exceptions,
    SQLSTATE class 22: a NUL in text, a number out of range): the input's fault, never an outage (the API answers
    422), in the product's words (``db/refusals.py``), never a table or constraint name."""


class GitOpsError(AlloraGitopsError):
    """The GitOps repository is not ours, unreachable, or refused a push."""


class RemoteUnavailable(GitOpsError):
    """The GitOps remote could not be reached, fetched from or pushed to (not a refusal of the change itself):
    the platform's problem, so the API answers 503 rather than 409."""


class ReviewError(GitOpsError):
    """``diff`` could not compare two refs (exit 2: 1 means "they differ")."""

    exit_code = 2


class ImageBuildError(AlloraGitopsError):
    """A container image could not be built, tagged or pushed."""


class VerifyError(AlloraGitopsError):
    """``verify`` could not run (missing tool, not a repository, bad git ref): exit 2, unlike findings (exit 1)."""

    exit_code = 2


class RunError(AlloraGitopsError):
    """A local run could not happen: its environment did not build, or the bundle did not load in it."""

    def __init__(self, message: str = "", problems: list[Problem] | None = None, details: list[str] | None = None):
        super().__init__(message, problems)
        self.details = list(details or [])

    def lines(self) -> list[str]:
        return super().lines() + [f"  {line}" for line in self.details]
