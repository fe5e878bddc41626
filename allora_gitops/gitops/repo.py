"""Talk to a GitOps repository: fetch, build a commit from a tree of files, push with retry.

Why no working tree: a repository with thousands of deployments has tens of
thousands of files, and checking them out for every publish would make a
publish cost grow with the repository. Instead each remote has one **bare
cache** under the state directory, fetched shallowly (depth 1), and a change is
built with git plumbing on a private index file (``read-tree`` the tip,
``update-index`` the changed paths, ``write-tree``, ``commit-tree``), then
pushed by commit id. Nothing is ever checked out, so there is nothing to leave
dirty after a failure, and many processes can share one cache: fetches (the
only writes to refs and to the ``shallow`` file) happen under a file lock,
object writes are atomic in git itself, and every process has its own index.

A rejected push (someone else pushed first) is answered the way a careful human
would: fetch the new tip, apply the same change on it again, push again — a
bounded number of times. When the change is already there (same tree), no
commit is made: publishing twice is a no-op.

GitPython is imported inside functions only, so ``--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Union
from urllib.parse import urlsplit, urlunsplit

from allora_gitops import constants as C
from allora_gitops.errors import GitOpsError

ZERO_SHA = "0" * 40
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


# --- remotes -------------------------------------------------------------------


def redact_url(url: str) -> str:
    """Drop any user:password@ from a URL, so it can be printed or stored."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.scheme and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, "***@" + host, parts.path, parts.query, parts.fragment))
    return url


_CREDENTIALS_IN_TEXT = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s'\"]+@")


def redact_text(text: str) -> str:
    """Redact ``scheme://user:password@`` anywhere in free text (git's messages quote URLs)."""
    return _CREDENTIALS_IN_TEXT.sub(r"\1***@", text)


_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")  # git@github.com:org/repo.git


@dataclass(frozen=True)
class Remote:
    """Where a GitOps repository lives: a URL, or a path on this machine (bare or not)."""

    url: str  # what git is given (local paths as absolute file:// URLs)
    display: str  # what may be printed or recorded: no credentials
    local_path: Path | None = None

    @property
    def key(self) -> str:
        """A stable, filesystem-safe name for this remote's cache directory."""
        tail = re.sub(r"[^A-Za-z0-9._-]+", "-", self.display.rstrip("/").rsplit("/", 1)[-1])[:40] or "repo"
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        return f"{tail}-{digest}"


def parse_remote(url_or_path: str | os.PathLike) -> Remote:
    text = str(url_or_path).strip()
    if not text:
        raise GitOpsError("no repository given: pass --repo URL or a path")
    if "://" in text and not text.startswith("file://"):
        return Remote(url=text, display=redact_url(text))
    if _SCP_LIKE.match(text):
        return Remote(url=text, display=text)
    path = Path(text[len("file://"):] if text.startswith("file://") else text).expanduser().resolve()
    return Remote(url=path.as_uri(), display=str(path), local_path=path)


# --- running git -----------------------------------------------------------------


@dataclass(frozen=True)
class GitResult:
    status: int
    out: str
    err: str
    raw: bytes = b""


def _git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        "GIT_TERMINAL_PROMPT": "0",  # never wait for a password on a terminal
        "GIT_ASKPASS": "",
        "LC_ALL": "C",  # error messages we parse are in English
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    env.update(extra or {})
    return env


class GitDir:
    """One git directory (bare), driven through GitPython's command runner."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def run(
        self, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None, check: bool = True, raw: bool = False
    ) -> GitResult:
        from git.cmd import Git

        runner = Git(str(self.path))
        with contextlib.ExitStack() as stack:
            istream = None
            if stdin is not None:
                istream = stack.enter_context(tempfile.TemporaryFile())
                istream.write(stdin)
                istream.seek(0)
            status, out, err = runner.execute(
                ["git", "--git-dir", str(self.path), *args],
                istream=istream,
                env=_git_env(env),
                with_extended_output=True,
                with_exceptions=False,
                strip_newline_in_stdout=False,
                stdout_as_string=not raw,
            )
        if isinstance(err, bytes):
            err = err.decode("utf-8", "replace")
        if raw:
            result = GitResult(status, "", err or "", out or b"")
        else:
            result = GitResult(status, out or "", err or "")
        if check and status != 0:
            raise GitOpsError(f"git {args[0]} failed: {_last_lines(result.err)}")
        return result

    def exists(self, spec: str) -> bool:
        return self.run("cat-file", "-e", spec, check=False).status == 0

    def rev_parse(self, spec: str) -> str | None:
        r = self.run("rev-parse", "--verify", "--quiet", spec, check=False)
        return r.out.strip() or None if r.status == 0 else None

    def read_text(self, commit: str, path: str) -> str | None:
        r = self.run("cat-file", "blob", f"{commit}:{path}", check=False)
        return r.out if r.status == 0 else None

    def read_many(self, commit: str, paths: list[str]) -> dict[str, str]:
        """Read many files of one commit in one git process (``cat-file --batch``); missing ones are left out."""
        return self._batch([f"{commit}:{p}" for p in paths], paths)

    def read_blobs(self, blobs: dict[str, str]) -> dict[str, str]:
        """``{path: blob id}`` → ``{path: text}``. By id, git need not walk a large tree again for every path."""
        paths = list(blobs)
        return self._batch([blobs[p] for p in paths], paths)

    def _batch(self, specs: list[str], keys: list[str]) -> dict[str, str]:
        if not specs:
            return {}
        data = self.run("cat-file", "--batch", stdin="".join(f"{s}\n" for s in specs).encode(), raw=True).raw
        out: dict[str, str] = {}
        pos = 0
        for key in keys:
            nl = data.index(b"\n", pos)
            header = data[pos:nl].decode()
            pos = nl + 1
            if header.endswith(" missing") or header.endswith(" ambiguous"):
                continue
            size = int(header.rsplit(" ", 1)[1])
            out[key] = data[pos : pos + size].decode()
            pos += size + 1
        return out

    def list_entries(self, commit: str, prefix: str = "") -> dict[str, str]:
        """``{path: blob id}`` of the files under ``prefix`` at ``commit``."""
        args = ["ls-tree", "-r", "-z", commit]
        if prefix:
            args += ["--", prefix.rstrip("/") + "/"]
        r = self.run(*args, check=False)
        if r.status != 0:
            return {}
        entries = {}
        for item in r.out.split("\0"):
            meta, _, path = item.partition("\t")
            if path and meta.endswith(tuple("0123456789abcdef")) and " blob " in meta:
                entries[path] = meta.rsplit(" ", 1)[1]
        return entries

    def list_files(self, commit: str, prefix: str = "") -> list[str]:
        args = ["ls-tree", "-r", "--name-only", "-z", commit]
        if prefix:
            args += ["--", prefix.rstrip("/") + "/"]
        r = self.run(*args, check=False)
        if r.status != 0:
            return []
        return [p for p in r.out.split("\0") if p]


def _last_lines(text: str, n: int = 3) -> str:
    lines = [redact_text(l.strip()) for l in text.strip().splitlines() if l.strip()]
    lines = [l for l in lines if not l.startswith("hint:")]
    return " / ".join(lines[-n:]) if lines else "no message"


# --- the cache of one remote -------------------------------------------------------


def cache_root() -> Path:
    from allora_gitops.state import state_home

    return state_home() / C.REPO_CACHE_DIR


class RepoCache:
    """The bare, shallow cache of one remote. Shared by every process that talks to that remote."""

    def __init__(self, remote: Remote, root: Path | None = None):
        self.remote = remote
        self.root = Path(root) if root else cache_root()
        self.path = self.root / remote.key
        self.git = GitDir(self.path)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise ref and shallow-file updates between processes (objects need no lock)."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.root / f"{self.remote.key}.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def ensure(self) -> None:
        if (self.path / "HEAD").exists():
            return
        with self.lock():
            if not (self.path / "HEAD").exists():
                self._create()

    def _create(self) -> None:
        """Create the bare cache (caller holds the lock); built aside and renamed, so it appears whole."""
        from git import Repo

        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.remote.key}.", dir=self.root))
        Repo.init(str(tmp), bare=True)
        g = GitDir(tmp)
        g.run("config", "gc.auto", "0")  # another process may be using objects that look unreachable
        g.run("config", "core.logAllRefUpdates", "false")
        os.rename(tmp, self.path)

    def _fetch(self, branch: str) -> GitResult:
        return self.git.run(
            "fetch", "--depth=1", "--no-tags", "--quiet", self.remote.url,
            f"+refs/heads/{branch}:refs/remotes/origin/{branch}",
            check=False,
        )  # fmt: skip

    def _clear_stale_locks(self) -> None:
        """Under our lock nobody else fetches into the cache: any ``*.lock`` left there is from a killed process."""
        for lock in [*self.path.glob("*.lock"), *(self.path / "refs").rglob("*.lock")]:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()

    def remote_heads(self, *branches: str) -> dict[str, str]:
        """Tips of the given branches on the remote (missing branches are left out). One round trip."""
        self.ensure()
        refs = [f"refs/heads/{b}" for b in branches]
        r = self.git.run("ls-remote", "--heads", self.remote.url, *refs, check=False)
        if r.status != 0:
            raise GitOpsError(f"cannot reach the GitOps repository {self.remote.display}: {_last_lines(r.err)}")
        heads: dict[str, str] = {}
        for line in r.out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref.startswith("refs/heads/"):
                heads[ref[len("refs/heads/"):]] = sha
        return heads

    def fetch(self, branch: str, expected: str | None = None) -> str:
        """Make the remote's ``branch`` tip available locally (depth 1); return its commit id."""
        self.ensure()
        if expected and self.git.exists(f"{expected}^{{commit}}"):
            return expected
        with self.lock():
            self._clear_stale_locks()
            r = self._fetch(branch)
            if r.status != 0 and "couldn't find remote ref" not in r.err:
                # The remote answered ls-remote a moment ago, so a failing fetch most likely means a cache
                # broken by a process killed mid-fetch (or a disk problem). It is only a cache: start again, once.
                import shutil

                shutil.rmtree(self.path, ignore_errors=True)
                self._create()
                r = self._fetch(branch)
            if r.status != 0:
                if "couldn't find remote ref" in r.err:
                    raise GitOpsError(f"branch {branch!r} does not exist in {self.remote.display}")
                raise GitOpsError(f"cannot fetch {branch!r} from {self.remote.display}: {_last_lines(r.err)}")
            sha = self.git.rev_parse(f"refs/remotes/origin/{branch}")
        if not sha:
            raise GitOpsError(f"fetched {branch!r} from {self.remote.display} but found no commit")
        return sha


# --- changes ---------------------------------------------------------------------


@dataclass
class TreeChange:
    """What a command wants the repository to look like: files to write, directories to clear."""

    files: dict[str, str] = field(default_factory=dict)  # repo-relative path → text
    # Directories whose every file not in ``files`` is removed (a re-rendered deployment drops stale files).
    replace_dirs: tuple[str, ...] = ()
    delete_dirs: tuple[str, ...] = ()  # removed entirely
    delete_files: tuple[str, ...] = ()


class Snapshot:
    """Read-only view of one commit, handed to change builders so they can look at the current state."""

    def __init__(self, git: GitDir, commit: str | None):
        self.git = git
        self.commit = commit

    def read(self, path: str) -> str | None:
        return None if self.commit is None else self.git.read_text(self.commit, path)

    def read_many(self, paths: list[str]) -> dict[str, str]:
        return {} if self.commit is None else self.git.read_many(self.commit, paths)

    def files(self, prefix: str = "") -> list[str]:
        return [] if self.commit is None else self.git.list_files(self.commit, prefix)

    def entries(self, prefix: str = "") -> dict[str, str]:
        return {} if self.commit is None else self.git.list_entries(self.commit, prefix)

    def read_blobs(self, blobs: dict[str, str]) -> dict[str, str]:
        return self.git.read_blobs(blobs)


ChangeBuilder = Union[TreeChange, Callable[[Snapshot], TreeChange]]


@dataclass
class Persisted:
    """The outcome of :func:`persist`."""

    remote: str  # display form, no credentials
    branch: str
    base_branch: str
    base: str  # the commit the change was applied on
    commit: str  # the branch tip that holds the change (new commit, or the existing tip when unchanged)
    created: bool  # a new commit was pushed
    changed: list[tuple[str, str]]  # (status letter A/M/D, path)
    attempts: int = 1
    branch_existed: bool = False
    diff: str = ""  # unified file diff (dry runs)
    pushed: bool = False


def _commit_env() -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": C.COMMIT_AUTHOR_NAME,
        "GIT_AUTHOR_EMAIL": C.COMMIT_AUTHOR_EMAIL,
        "GIT_COMMITTER_NAME": C.COMMIT_AUTHOR_NAME,
        "GIT_COMMITTER_EMAIL": C.COMMIT_AUTHOR_EMAIL,
    }


def build_tree(git: GitDir, base: str | None, change: TreeChange) -> str:
    """Write ``change`` applied on ``base``'s tree into the object database; return the new tree id.

    Only the directories on the way to a changed path are read (``ls-tree`` of one directory each)
    and written again (tree objects computed here, stored with one ``hash-object``): the cost follows
    the size of those directories, not of the repository — no index of every file is built.
    """
    tree = _TreeEditor(git, base)
    for d in change.delete_dirs:
        tree.remove(d)
    for d in change.replace_dirs:  # "every file not in files is removed" = drop the directory, then write the files
        tree.remove(d)
    for f in change.delete_files:
        tree.remove(f)
    if change.files:
        names = sorted(change.files)
        with tempfile.TemporaryDirectory(prefix="allora-blobs-", dir=git.path) as tmp:
            blob_paths = []
            for i, name in enumerate(names):
                bp = Path(tmp) / str(i)
                bp.write_bytes(change.files[name].encode())
                blob_paths.append(str(bp))
            shas = git.run("hash-object", "-w", "--no-filters", "--stdin-paths", stdin=("\n".join(blob_paths) + "\n").encode()).out.split()
        for name, sha in zip(names, shas):
            tree.put(name, "100644", sha)
    return tree.write()


_TREE_MODE = "40000"


class _TreeEditor:
    """A tree being edited: directories are loaded from git when first entered and written back bottom-up."""

    def __init__(self, git: GitDir, base: str | None):
        self.git = git
        self.base = base
        # a loaded directory: name → (mode, sha) for untouched entries, or a nested dict for loaded subdirectories
        self.root: dict = self._load("") if base else {}

    def _load(self, path: str) -> dict:
        spec = f"{self.base}^{{tree}}" if not path else f"{self.base}:{path}"
        r = self.git.run("ls-tree", "-z", spec, check=False)
        entries: dict = {}
        if r.status != 0:
            return entries
        for item in r.out.split("\0"):
            meta, _, name = item.partition("\t")
            if name:
                mode, _kind, sha = meta.split(" ")
                entries[name] = (_TREE_MODE if mode == "040000" else mode, sha)
        return entries

    def _enter(self, parts: list[str], create: bool) -> dict | None:
        node, path = self.root, ""
        for part in parts:
            path = f"{path}/{part}" if path else part
            child = node.get(part)
            if isinstance(child, tuple):
                if child[0] != _TREE_MODE:
                    if not create:
                        return None
                    child = {}  # a file where a directory must go: replaced, as the index would
                else:
                    child = self._load(path) if self.base else {}
                node[part] = child
            elif child is None:
                if not create:
                    return None
                child = node[part] = {}
            node = child
        return node

    def put(self, path: str, mode: str, sha: str) -> None:
        *dirs, name = path.strip("/").split("/")
        node = self._enter(dirs, create=True)
        node[name] = (mode, sha)

    def remove(self, path: str) -> None:
        *dirs, name = path.strip("/").split("/")
        node = self._enter(dirs, create=False)
        if node is not None:
            node.pop(name, None)

    def write(self) -> str:
        objects: list[bytes] = []
        sha = self._write(self.root, objects)
        if objects:
            with tempfile.TemporaryDirectory(prefix="allora-trees-", dir=self.git.path) as tmp:
                paths = []
                for i, data in enumerate(objects):
                    p = Path(tmp) / str(i)
                    p.write_bytes(data)
                    paths.append(str(p))
                written = self.git.run("hash-object", "-w", "-t", "tree", "--stdin-paths", stdin=("\n".join(paths) + "\n").encode()).out.split()
            if written[-1] != sha:  # git must agree with the ids computed here
                raise GitOpsError(f"internal error: tree {written[-1]} written, {sha} expected")
        return sha

    def _write(self, node: dict, objects: list[bytes]) -> str:
        import hashlib as _hashlib

        entries = []
        for name, child in node.items():
            if isinstance(child, dict):
                sub = self._write(child, objects)
                if sub == EMPTY_TREE:
                    continue  # git has no empty directories
                entries.append((name, _TREE_MODE, sub))
            else:
                entries.append((name, child[0], child[1]))
        # git orders entries by name, a directory's name compared as if it ended with "/"
        entries.sort(key=lambda e: (e[0] + "/" if e[1] == _TREE_MODE else e[0]).encode())
        body = b"".join(f"{mode} {name}".encode() + b"\0" + bytes.fromhex(sha) for name, mode, sha in entries)
        data = b"tree %d\0" % len(body) + body
        sha = _hashlib.sha1(data).hexdigest()
        if sha != EMPTY_TREE:
            objects.append(body)
        return sha


def _tree_of(git: GitDir, commit: str | None) -> str:
    return git.run("rev-parse", f"{commit}^{{tree}}").out.strip() if commit else EMPTY_TREE


def changed_paths(git: GitDir, old_tree: str, new_tree: str) -> list[tuple[str, str]]:
    r = git.run("diff-tree", "-r", "--no-renames", "--name-status", "-z", old_tree, new_tree)
    parts = [p for p in r.out.split("\0") if p]
    return [(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]


def file_diff(git: GitDir, old_tree: str, new_tree: str) -> str:
    return git.run("diff", "--no-color", "--no-renames", old_tree, new_tree).out


@dataclass(frozen=True)
class RepositorySettings:
    """The defaults a repository's marker (``.allora-gitops.yaml``) sets for publish, promote and rollback."""

    monitoring: bool = True  # render a PodMonitor and a PrometheusRule per deployment
    low_balance_threshold: Optional[int] = None  # AlloraLowWalletBalance below this many uallo (None: the platform default)
    monitoring_namespace: Optional[str] = None  # where Prometheus runs (None: the platform default, ``monitoring``)
    # images.require_digest: networks whose overlays `verify` requires pinned by digest on the base branch
    require_digest: tuple[str, ...] = ("mainnet",)
    sandbox_wallet_secret: str = "allora-sandbox-wallet"  # sandbox.wallet_secret: the platform's testnet wallet, never a user's
    sandbox_commit: str = "review"  # sandbox.commit: review (a sandbox/… branch) or direct (the base branch)
    sandbox_max_per_user: int = 2  # sandbox.max_per_user: running sandboxes per owner


SANDBOX_COMMIT_MODES = ("review", "direct")


def repository_settings(git: GitDir, commit: str) -> RepositorySettings:
    """The settings in the repository marker at ``commit``; see :func:`parse_repository_settings`."""
    return parse_repository_settings(git.run("show", f"{commit}:{C.REPO_MARKER_FILE}").out)


def parse_repository_settings(text: str) -> RepositorySettings:
    """The settings in a marker's text; a key that is absent keeps its default (older repositories).

    Raises GitOpsError naming the file (and line, for bad YAML) when the marker is not a YAML mapping,
    ``monitoring`` is not a boolean, ``low_balance_threshold_uallo`` is not a non-negative integer,
    ``monitoring_namespace`` is not a string (its form is checked with the other deployment settings),
    or an ``images:`` / ``sandbox:`` key has the wrong shape.
    """
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise GitOpsError(f"{C.REPO_MARKER_FILE}{where}: not valid YAML") from None
    if not isinstance(doc, dict):
        raise GitOpsError(f"{C.REPO_MARKER_FILE}: not a YAML mapping")
    monitoring = doc.get("monitoring", True)
    if not isinstance(monitoring, bool):
        raise GitOpsError(f"{C.REPO_MARKER_FILE}: monitoring must be true or false, not {monitoring!r}")
    threshold = doc.get("low_balance_threshold_uallo")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0):
        raise GitOpsError(f"{C.REPO_MARKER_FILE}: low_balance_threshold_uallo must be a whole number of uallo >= 0, not {threshold!r}")
    namespace = doc.get("monitoring_namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise GitOpsError(f"{C.REPO_MARKER_FILE}: monitoring_namespace must be a namespace name, not {namespace!r}")
    return RepositorySettings(
        monitoring=monitoring, low_balance_threshold=threshold, monitoring_namespace=namespace, **_pinning_and_sandbox(doc)
    )


def _pinning_and_sandbox(doc: dict) -> dict:
    where = C.REPO_MARKER_FILE
    sections = {}
    for key in ("images", "sandbox"):
        value = doc.get(key) or {}
        if not isinstance(value, dict):
            raise GitOpsError(f"{where}: {key} must be a mapping")
        sections[key] = value
    images, sandbox = sections["images"], sections["sandbox"]
    defaults = RepositorySettings()
    require = images.get("require_digest", list(defaults.require_digest))
    if not isinstance(require, list) or not all(isinstance(n, str) for n in require):
        raise GitOpsError(f"{where}: images.require_digest must be a list of network names")
    wallet = sandbox.get("wallet_secret", defaults.sandbox_wallet_secret)
    if not isinstance(wallet, str) or not wallet:
        raise GitOpsError(f"{where}: sandbox.wallet_secret must be the name of a Secret")
    commit = sandbox.get("commit", defaults.sandbox_commit)
    if commit not in SANDBOX_COMMIT_MODES:
        raise GitOpsError(f"{where}: sandbox.commit must be one of {', '.join(SANDBOX_COMMIT_MODES)}, not {commit!r}")
    limit = sandbox.get("max_per_user", defaults.sandbox_max_per_user)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise GitOpsError(f"{where}: sandbox.max_per_user must be a whole number of at least 1, not {limit!r}")
    return {"require_digest": tuple(require), "sandbox_wallet_secret": wallet, "sandbox_commit": commit, "sandbox_max_per_user": limit}


def require_marker(git: GitDir, commit: str, remote: Remote, branch: str) -> None:
    if not git.exists(f"{commit}:{C.REPO_MARKER_FILE}"):
        raise GitOpsError(
            f"{remote.display} (branch {branch}) is not a GitOps repository initialised by allora-gitops: "
            f"{C.REPO_MARKER_FILE} is missing; create one with `allora-gitops repo init`"
        )


_RETRYABLE_REMOTE = ("failed to update ref", "cannot lock ref", "incorrect old value", "unable to lock", "failed to lock")


def _push(git: GitDir, remote: Remote, commit: str, branch: str) -> tuple[bool, str]:
    """Push ``commit`` to ``branch``. Returns (ok, why-not); raises on errors a retry cannot fix.

    ``why-not`` is ``"up to date"`` on success when the branch already was at ``commit``: commits are
    deterministic (fixed author, message, parent, tree), so an identical publish a moment earlier made the same one.
    """
    r = git.run("push", "--porcelain", remote.url, f"{commit}:refs/heads/{branch}", check=False)
    if r.status == 0:
        up_to_date = any(line.startswith("=\t") for line in r.out.splitlines())
        return True, "up to date" if up_to_date else ""
    text = r.out + "\n" + r.err
    if "[rejected]" in text or "non-fast-forward" in text or "fetch first" in text:
        return False, "rejected: the branch moved"
    if "[remote rejected]" in text:
        if any(s in text for s in _RETRYABLE_REMOTE):
            return False, "the remote could not lock the branch"
        remote_lines = [redact_text(l[len("remote:"):].strip()) for l in r.err.splitlines() if l.startswith("remote:")]
        remote_lines = [l for l in remote_lines if l]
        reason = re.search(r"\[remote rejected\] \(([^)]*)\)", text)
        why = reason.group(1) if reason else "refused"
        detail = f" ({' / '.join(remote_lines[-3:])})" if remote_lines else ""
        raise GitOpsError(f"{remote.display} refused the push to {branch}: {why}{detail}")
    raise GitOpsError(f"cannot push to {remote.display}: {_last_lines(r.err)}")


def persist(
    remote: Remote,
    change: ChangeBuilder,
    *,
    branch: str,
    message: str,
    base_branch: str = C.DEFAULT_BRANCH,
    check_marker: bool = True,
    dry_run: bool = False,
    attempts: int = C.PUSH_ATTEMPTS,
    cache: RepoCache | None = None,
    on_step: Callable[[str], None] | None = None,
    heads: dict[str, str] | None = None,
) -> Persisted:
    """Apply ``change`` on ``branch`` (created from ``base_branch`` when missing), commit and push.

    ``change`` may be a function of a :class:`Snapshot` of the tip: it is called
    again after every rejected push, so the change is always computed on what is
    really there. No commit when the tree would not change.
    """
    cache = cache or RepoCache(remote)
    say = on_step or (lambda _msg: None)
    last_reason = ""
    known = heads  # tips seen a moment ago (check_repository): if they moved since, the push is refused and we retry
    for attempt in range(1, max(1, attempts) + 1):
        heads = known if (attempt == 1 and known is not None) else cache.remote_heads(*dict.fromkeys([branch, base_branch]))
        existed = branch in heads
        source = branch if existed else base_branch
        if source not in heads:
            raise GitOpsError(f"{remote.display} has no branch {base_branch!r}; initialise it with `allora-gitops repo init`")
        tip = cache.fetch(source, heads[source])
        if check_marker:
            require_marker(cache.git, tip, remote, source)
        if attempt == 1:
            say(f"fetched {remote.display} {source} at {tip[:12]}")
        spec = change(Snapshot(cache.git, tip)) if callable(change) else change
        old_tree = _tree_of(cache.git, tip)
        new_tree = build_tree(cache.git, tip, spec)
        changed = changed_paths(cache.git, old_tree, new_tree)
        result = Persisted(
            remote=remote.display, branch=branch, base_branch=base_branch, base=tip, commit=tip,
            created=False, changed=changed, attempts=attempt, branch_existed=existed,
        )  # fmt: skip
        if dry_run:
            result.diff = file_diff(cache.git, old_tree, new_tree)
            return result
        if new_tree == old_tree:
            return result
        commit = cache.git.run("commit-tree", new_tree, "-p", tip, env=_commit_env(), stdin=message.encode()).out.strip()
        ok, last_reason = _push(cache.git, remote, commit, branch)
        if ok:
            result.commit, result.pushed = commit, True
            result.created = last_reason != "up to date"
            return result
        say(f"push {attempt} {last_reason}; fetching the new tip and applying the change again")
        time.sleep(min(2.0, 0.05 * attempt) * (0.5 + random.random()))
    raise GitOpsError(f"gave up pushing to {branch} on {remote.display} after {attempts} attempts ({last_reason})")


def read_ref(remote: Remote, ref: str, cache: RepoCache | None = None) -> tuple[GitDir, str]:
    """A commit of ``remote`` to read from: a local repository is read in place; a URL is fetched into the cache.

    ``ref`` is a branch name on a remote; on a local repository anything ``git rev-parse`` understands.
    """
    if remote.local_path is not None:
        from git import InvalidGitRepositoryError, NoSuchPathError, Repo

        try:
            repo = Repo(str(remote.local_path))
        except (InvalidGitRepositoryError, NoSuchPathError):
            raise GitOpsError(f"{remote.display} is not a git repository") from None
        git = GitDir(Path(repo.git_dir))
        for candidate in (ref, f"refs/heads/{ref}", f"refs/remotes/origin/{ref}", f"origin/{ref}"):
            sha = git.rev_parse(f"{candidate}^{{commit}}")
            if sha:
                return git, sha
        raise GitOpsError(f"{remote.display} has no branch or commit {ref!r}")
    cache = cache or RepoCache(remote)
    heads = cache.remote_heads(ref)
    if ref not in heads:
        raise GitOpsError(f"{remote.display} has no branch {ref!r}")
    return cache.git, cache.fetch(ref, heads[ref])


def check_repository(
    remote: Remote,
    base_branch: str = C.DEFAULT_BRANCH,
    branch: str | None = None,
    cache: RepoCache | None = None,
    *,
    every_branch: bool = False,
) -> dict[str, str]:
    """Fail early — before anything is uploaded or recorded — unless ``remote`` is reachable and ours.

    Returns the tips of ``base_branch`` and ``branch`` (every branch with ``every_branch``, for a
    caller that does not know its branch yet), fetched into the cache, so that :func:`persist` can
    start from them without asking the remote again.
    """
    cache = cache or RepoCache(remote)
    heads = cache.remote_heads() if every_branch else cache.remote_heads(*dict.fromkeys([branch or base_branch, base_branch]))
    if base_branch not in heads:
        raise GitOpsError(f"{remote.display} has no branch {base_branch!r}; initialise it with `allora-gitops repo init`")
    tip = cache.fetch(base_branch, heads[base_branch])
    require_marker(cache.git, tip, remote, base_branch)
    if branch and branch in heads and branch != base_branch:
        cache.fetch(branch, heads[branch])
    return heads
