"""Image builders behind one interface: ``buildah`` (daemonless, the default) and ``docker``.

Both are driven through ``sh``; their output streams line by line to a log sink (the
terminal, by default) and is watched for the Dockerfile step being run, so a failure
names the step and its line in the Dockerfile.
"""

from __future__ import annotations

import os
import re
import sys
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from allora_gitops.errors import ImageBuildError

LogSink = Callable[[str], None]
BUILDERS = ("buildah", "docker")


def terminal_log(line: str) -> None:
    sys.stderr.write(line if line.endswith("\n") else line + "\n")
    sys.stderr.flush()


# --- image references -----------------------------------------------------------

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def qualify_reference(ref: str) -> str:
    """``python:3.11-slim`` → ``docker.io/library/python:3.11-slim``, as docker reads short names.

    buildah would otherwise consult the machine's short-name aliases (or refuse without a TTY).
    """
    ref = ref.strip()
    name, _, _ = ref.partition("@")
    first, slash, _ = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return ref
    if not slash:
        return f"docker.io/library/{ref}"
    return f"docker.io/{ref}"


def check_reference(ref: str, what: str) -> str:
    """Reject references a builder would fail on late (empty, spaces, upper case repository, bad digest)."""
    if not ref or any(c.isspace() for c in ref):
        raise ImageBuildError(f"{what} {ref!r} is not an image reference")
    name, at, digest = ref.partition("@")
    if at and not _DIGEST.match(digest):
        raise ImageBuildError(f"{what} {ref!r}: a pinned reference ends with @sha256:<64 hex digits>")
    repo = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    if repo != repo.lower():
        raise ImageBuildError(f"{what} {ref!r}: repository names must be lowercase")
    return ref


def split_tag(ref: str) -> tuple[str, Optional[str]]:
    """``repo:tag`` → (``repo``, ``tag``); a digest reference has no tag."""
    name = ref.partition("@")[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = name.rsplit(":", 1)
        return repo, tag
    return name, None


# --- following the build's steps ------------------------------------------------------


@dataclass(frozen=True)
class DockerfileStep:
    line: int  # 1-based line of the instruction in the Dockerfile
    stage: int  # 1-based stage number
    index: int  # 1-based step number within the stage (FROM is 1)
    text: str  # the instruction, continuation lines joined


def parse_dockerfile_steps(text: str) -> list[DockerfileStep]:
    """Instructions grouped by stage, as builders number them (ARGs before the first FROM are not steps)."""
    steps: list[DockerfileStep] = []
    stage, index = 0, 0
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending:
            if not line or line.startswith("#"):
                continue
            start = number
        elif line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        instruction = " ".join(p for p in pending if p)
        pending = []
        keyword = instruction.split(None, 1)[0].upper()
        if keyword == "FROM":
            stage, index = stage + 1, 0
        if stage == 0:
            continue
        index += 1
        steps.append(DockerfileStep(start, stage, index, instruction))
    return steps


_BUILDAH_STEP = re.compile(r"^(?:\[(\d+)/\d+\] )?STEP (\d+)(?:/\d+)?: (.*)$")
_BUILDKIT_STEP = re.compile(r"^#(\d+) \[(?:([\w.-]+) )?(\d+)/\d+\] (.*)$")
_BUILDKIT_ERROR = re.compile(r"^#(\d+) ERROR")
_LEGACY_STEP = re.compile(r"^Step (\d+)/\d+ : (.*)$")


@dataclass
class StepTracker:
    """Watches builder output; knows which Dockerfile step ran last (or failed, for BuildKit)."""

    steps: list[DockerfileStep]
    stage_names: dict[str, int] = field(default_factory=dict)
    current: Optional[DockerfileStep] = None
    current_text: str = ""
    failed: Optional[DockerfileStep] = None
    _buildkit: dict[str, tuple[Optional[DockerfileStep], str]] = field(default_factory=dict)
    _legacy_count: int = 0

    @classmethod
    def for_dockerfile(cls, text: str) -> "StepTracker":
        steps = parse_dockerfile_steps(text)
        names = {}
        for step in steps:
            if step.index == 1:
                words = step.text.split()
                if len(words) >= 4 and words[-2].upper() == "AS":
                    names[words[-1].lower()] = step.stage
        return cls(steps=steps, stage_names=names)

    def _find(self, stage: int, index: int) -> Optional[DockerfileStep]:
        for step in self.steps:
            if step.stage == stage and step.index == index:
                return step
        return None

    def feed(self, line: str) -> None:
        line = line.rstrip("\n")
        if m := _BUILDAH_STEP.match(line):
            stage = int(m.group(1) or 1)
            self.current = self._find(stage, int(m.group(2)))
            self.current_text = m.group(3)
        elif m := _BUILDKIT_STEP.match(line):
            name = m.group(2)
            stage = self.stage_names.get(name.lower(), 0) if name else 1
            if name and not stage and name.startswith("stage-") and name[6:].isdigit():
                stage = int(name[6:]) + 1
            step = self._find(stage, int(m.group(3))) if stage else None
            self._buildkit[m.group(1)] = (step, m.group(4))
            self.current, self.current_text = step, m.group(4)
        elif m := _BUILDKIT_ERROR.match(line):
            step, text = self._buildkit.get(m.group(1), (None, ""))
            self.failed = step
            if step is None and text:
                self.current_text = text
        elif m := _LEGACY_STEP.match(line):
            self._legacy_count += 1
            self.current_text = m.group(2)
            self.current = self.steps[self._legacy_count - 1] if self._legacy_count <= len(self.steps) else None

    def describe_failure(self, dockerfile_name: str = "Dockerfile") -> str:
        step = self.failed or self.current
        if step is not None:
            return f"{dockerfile_name}:{step.line}: {step.text}"
        if self.current_text:
            return self.current_text
        return "before the first Dockerfile step"


# --- builders ------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildRequest:
    context: Path
    dockerfile: Path
    tags: tuple[str, ...]
    build_args: dict[str, str]
    secrets: dict[str, Path]  # id → file
    layers: bool = True


class Builder(ABC):
    """One container image tool. Methods raise ImageBuildError with the tool's own last words."""

    name: str

    def __init__(self, log: LogSink = terminal_log):
        self.log = log

    @abstractmethod
    def unavailable_reason(self) -> Optional[str]:
        """None when the tool can build here; else why not (not installed, no daemon…)."""

    @abstractmethod
    def image_id(self, ref: str) -> Optional[str]:
        """The local image's ID, or None when the local storage has no such image."""

    @abstractmethod
    def pull(self, ref: str) -> None: ...

    @abstractmethod
    def build(self, request: BuildRequest) -> str:
        """Build and tag; return the image ID."""

    @abstractmethod
    def push(self, ref: str) -> Optional[str]:
        """Push ``ref`` to its registry; return the pushed manifest digest when the tool says it."""

    @abstractmethod
    def export_oci_archive(self, ref: str, dest: Path) -> None: ...

    @abstractmethod
    def remove_image(self, ref: str) -> None: ...

    # -- shared plumbing

    def _command(self):
        import sh

        try:
            return sh.Command(self.name)
        except sh.CommandNotFound:
            raise ImageBuildError(f"{self.name} is not installed (or not on PATH)") from None

    def _build_with(self, head: list[str], request: BuildRequest) -> str:
        """Run ``head`` + the flags both tools spell alike (file, iidfile, build args, secrets, tags,
        context); return the image ID from the iidfile, or raise with the failing Dockerfile step."""
        iidfile = request.context.parent / f".{request.context.name}.iid"
        args = [*head, "--file", str(request.dockerfile), "--iidfile", str(iidfile)]
        for key, value in request.build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        for sid, src in request.secrets.items():
            args += ["--secret", f"id={sid},src={src}"]
        for tag in request.tags:
            args += ["--tag", tag]
        args.append(str(request.context))
        tracker = StepTracker.for_dockerfile(request.dockerfile.read_text(encoding="utf-8"))
        code, tail = self._run_streaming(*args, tracker=tracker)
        if code != 0:
            raise ImageBuildError(
                f"the image build failed at {tracker.describe_failure(request.dockerfile.name)}",
                _problems(tail),
            )
        try:
            return iidfile.read_text().strip()
        finally:
            iidfile.unlink(missing_ok=True)

    def _run_quiet(self, *args: str, env: Optional[dict[str, str]] = None) -> tuple[int, str, str]:
        import sh

        cmd = self._command()
        try:
            proc = cmd(*args, _env=env or self._env(), _ok_code=list(range(256)), _return_cmd=True, _in=None)
        except sh.CommandNotFound:
            raise ImageBuildError(f"{self.name} is not installed (or not on PATH)") from None
        return proc.exit_code, _text(proc.stdout), _text(proc.stderr)

    def _run_streaming(self, *args: str, tracker: Optional[StepTracker] = None) -> tuple[int, list[str]]:
        """Run with output streamed to the log; return (exit code, last lines)."""
        import sh

        tail: deque[str] = deque(maxlen=40)

        def on_line(line: str) -> None:
            tail.append(line.rstrip("\n"))
            if tracker is not None:
                tracker.feed(line)
            self.log(line)

        cmd = self._command()
        try:
            proc = cmd(
                *args,
                _env=self._env(),
                _out=on_line,
                _err=on_line,
                _ok_code=list(range(256)),
                _return_cmd=True,
                _in=None,
                _bg=False,
            )
        except sh.CommandNotFound:
            raise ImageBuildError(f"{self.name} is not installed (or not on PATH)") from None
        return proc.exit_code, list(tail)

    def _env(self) -> dict[str, str]:
        return dict(os.environ)


def _text(data) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""


def _last_error(lines: list[str]) -> str:
    """The tool's own explanation: the last line that says error, else the last non-empty line."""
    for line in reversed(lines):
        low = line.lower()
        if "error" in low or "failed" in low:
            return line.strip()
    for line in reversed(lines):
        if line.strip():
            return line.strip()
    return "no output"


class BuildahBuilder(Builder):
    """buildah without a daemon: vfs storage and chroot isolation work unprivileged and in containers.

    ``STORAGE_DRIVER`` and ``BUILDAH_ISOLATION`` in the environment override those defaults.
    """

    name = "buildah"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("STORAGE_DRIVER", "vfs")
        env.setdefault("BUILDAH_ISOLATION", "chroot")
        return env

    def _global(self) -> list[str]:
        return ["--storage-driver", self._env()["STORAGE_DRIVER"]]

    def unavailable_reason(self) -> Optional[str]:
        import shutil

        if shutil.which("buildah") is None:
            return "buildah is not installed (Debian/Ubuntu: apt-get install buildah)"
        code, _, err = self._run_quiet(*self._global(), "version")
        if code != 0:
            return f"buildah does not run here: {_last_error(err.splitlines())}"
        return None

    def image_id(self, ref: str) -> Optional[str]:
        code, out, _ = self._run_quiet(*self._global(), "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref)
        return out.strip() or None if code == 0 else None

    def pull(self, ref: str) -> None:
        code, tail = self._run_streaming(*self._global(), "pull", ref)
        if code != 0:
            raise ImageBuildError(f"cannot pull {ref}: {_last_error(tail)}")

    def build(self, request: BuildRequest) -> str:
        # docker format: the OCI image config has no HEALTHCHECK, and the Dockerfile declares one.
        args = [*self._global(), "bud", "--isolation", self._env()["BUILDAH_ISOLATION"], "--pull=false", "--format", "docker"]
        if request.layers:
            args.append("--layers")
        return self._build_with(args, request)

    def push(self, ref: str) -> Optional[str]:
        digest_file = Path(os.environ.get("TMPDIR", "/tmp")) / f".allora-push-{os.getpid()}.digest"
        from allora_gitops.image.registry import tls_verify_args

        push = ["push", *tls_verify_args(ref), "--digestfile", str(digest_file), ref, f"docker://{ref}"]
        code, tail = self._run_streaming(*self._global(), *push)
        try:
            if code != 0:
                raise ImageBuildError(f"cannot push {ref}: {_last_error(tail)}")
            return digest_file.read_text().strip() if digest_file.exists() else None
        finally:
            digest_file.unlink(missing_ok=True)

    def export_oci_archive(self, ref: str, dest: Path) -> None:
        code, tail = self._run_streaming(*self._global(), "push", "--quiet", ref, f"oci-archive:{dest}:{ref}")
        if code != 0:
            raise ImageBuildError(f"cannot write {dest}: {_last_error(tail)}")

    def remove_image(self, ref: str) -> None:
        self._run_quiet(*self._global(), "rmi", ref)


class DockerBuilder(Builder):
    """``docker build`` with BuildKit (needed for ``RUN --mount=type=secret``); needs a running daemon."""

    name = "docker"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DOCKER_BUILDKIT"] = "1"
        return env

    def unavailable_reason(self) -> Optional[str]:
        import shutil

        if shutil.which("docker") is None:
            return "docker is not installed"
        code, _, err = self._run_quiet("version", "--format", "{{.Server.Version}}")
        if code != 0:
            return f"docker cannot reach a daemon: {_last_error(err.splitlines())}"
        return None

    def image_id(self, ref: str) -> Optional[str]:
        code, out, _ = self._run_quiet("image", "inspect", "--format", "{{.Id}}", ref)
        return out.strip() or None if code == 0 else None

    def pull(self, ref: str) -> None:
        code, tail = self._run_streaming("pull", ref)
        if code != 0:
            raise ImageBuildError(f"cannot pull {ref}: {_last_error(tail)}")

    def build(self, request: BuildRequest) -> str:
        return self._build_with(["build", "--progress=plain", "--pull=false"], request)

    def push(self, ref: str) -> Optional[str]:
        code, tail = self._run_streaming("push", ref)
        if code != 0:
            raise ImageBuildError(f"cannot push {ref}: {_last_error(tail)}")
        for line in reversed(tail):
            if m := re.search(r"digest: (sha256:[0-9a-f]{64})", line):
                return m.group(1)
        return None

    def export_oci_archive(self, ref: str, dest: Path) -> None:
        # Docker 25+ writes the OCI image layout (index.json, blobs/) in `docker save` archives.
        code, tail = self._run_streaming("save", "--output", str(dest), ref)
        if code != 0:
            raise ImageBuildError(f"cannot write {dest}: {_last_error(tail)}")

    def remove_image(self, ref: str) -> None:
        self._run_quiet("image", "rm", ref)


def _problems(tail: list[str]):
    """The builder's own last words, as one more line under the error."""
    from allora_gitops.errors import Problem

    reason = _last_error(tail)
    reason = re.sub(r"^(level=)?(error|Error|ERROR):?\s*", "", reason)
    return [Problem(f"{reason}")] if reason and reason != "no output" else []


def select_builder(choice: str = "auto", log: LogSink = terminal_log) -> Builder:
    """``buildah``, ``docker``, or ``auto`` (buildah when it runs here, else docker with a daemon)."""
    classes = {"buildah": BuildahBuilder, "docker": DockerBuilder}
    if choice not in (*classes, "auto"):
        raise ImageBuildError(f"unknown builder {choice!r}; use buildah, docker or auto")
    names = list(classes) if choice == "auto" else [choice]
    reasons = []
    for name in names:
        builder = classes[name](log)
        reason = builder.unavailable_reason()
        if reason is None:
            return builder
        reasons.append(reason)
    hint = "install buildah (no daemon needed) or start a docker daemon"
    raise ImageBuildError(f"no image builder can run here: {'; '.join(reasons)}; {hint}")
