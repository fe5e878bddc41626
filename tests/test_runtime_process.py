"""The runtime as a container process: PID 1 and signals, orphans, file-descriptor output, probes, metrics.

Each test runs the packed runtime (bootstrap.pyz) as a real process; the PID-namespace
tests put it (or dumb-init, the image's init) at PID 1 with ``unshare --user --pid --fork``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from allora_gitops.runtime import render_runtime_archive, runtime_source_dir
from tests.fixtures.runtime import (
    BOOTSTRAP,
    BOOTSTRAP_PYTHON,
    EXIT_OK,
    RunningBootstrap,
    bootstrap_env,
    free_port,
    make_bundle,
    parse_events,
    run_bootstrap,
)

SLOW_IMPORT = """
import time

time.sleep({seconds})


def run(nonce: int) -> float:
    return 1.0
"""

# Every window leaves an orphan: sh starts `sleep` in the background and exits at once.
ORPHANS = """
import os
import subprocess
import time


def zombies() -> int:
    count = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    state = fh.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            count += state == "Z"
    return count


def run(nonce: int) -> float:
    subprocess.run(["sh", "-c", "sleep 0.01 &"], check=True)
    if nonce == 200:
        time.sleep(0.2)  # the last orphan has exited; its parent had the time to reap it
        return float(zombies())
    return 0.0
"""


def pid_namespace(*command: str) -> list[str]:
    """``command`` as PID 1 of a new PID namespace (and a user namespace, so no root is needed), with its own /proc."""
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed for the PID 1 tests"
    return [unshare, "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child", *command]


def namespace_init(unshare_pid: int, timeout: float = 10) -> int:
    """The host PID of the process unshare forked (PID 1 inside the namespace)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
        except OSError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("unshare started no child")


def dumb_init() -> str:
    found = shutil.which("dumb-init", path=str(Path(sys.executable).parent)) or shutil.which("dumb-init")
    assert found, "dumb-init (the image's init, a test dependency) is not installed"
    return found


def test_the_runtime_package_imports_nothing_from_allora_gitops_and_packs_the_same_bytes():
    import ast

    for path in runtime_source_dir().glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "allora_gitops" for n in names), f"{path.name} imports {names}"
    # Deterministic: file times do not reach the archive, so equal sources give equal bytes.
    first = render_runtime_archive()
    os.utime(runtime_source_dir() / "contract.py", None)
    assert render_runtime_archive() == first
    assert BOOTSTRAP.read_bytes() == first


def test_sigterm_while_the_model_imports_stops_pid_1_at_once_with_exit_0(tmp_path):
    bundle = make_bundle(tmp_path / "b", SLOW_IMPORT.format(seconds=15))
    proc = subprocess.Popen(
        pid_namespace(BOOTSTRAP_PYTHON, str(BOOTSTRAP), "--bundle-root", str(bundle), "--dry-run", "--interval", "1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=bootstrap_env(),
    )
    try:
        init = namespace_init(proc.pid)
        time.sleep(2)  # the import sleeps for 15 s: well inside it
        sent = time.monotonic()
        os.kill(init, signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = parse_events(out)
    assert proc.returncode == EXIT_OK, (out, err)
    assert took < 2.0, took
    start = next(e for e in events if e["event"] == "start")
    assert start["pid"] == 1  # it really was PID 1, where an unhandled SIGTERM is dropped
    assert [e["event"] for e in events if e["event"] in ("importing", "imported", "prediction", "stopping")] == ["importing", "stopping"]
    assert next(e for e in events if e["event"] == "stopping")["phase"] == "startup"


def test_sigterm_while_the_import_is_blocked_writing_to_a_full_stdout_pipe_still_exits_0(tmp_path):
    # A slow log reader: the pipe fills while the model prints at import, and the signal
    # handler's own line would be a reentrant write on the same stream.
    bundle = make_bundle(tmp_path / "b", """
        for shard in range(20000):
            print("loading shard", shard, "x" * 100)

        def run(nonce: int) -> float:
            return 1.0
        """)
    proc = subprocess.Popen(
        [BOOTSTRAP_PYTHON, str(BOOTSTRAP), "--bundle-root", str(bundle), "--dry-run", "--nonce", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=bootstrap_env(),
    )
    try:
        deadline = time.monotonic() + 5  # 64 KiB fill in well under that
        while time.monotonic() < deadline:  # nobody reads: wait until the runtime is stuck writing
            if "pipe_w" in Path(f"/proc/{proc.pid}/wchan").read_text():
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = parse_events(out)  # every line is still JSON
    assert proc.returncode == EXIT_OK, (err, [e for e in events if e["event"] != "print"])
    assert not [e for e in events if e["event"] in ("imported", "prediction", "import_error")]


def _zombies_after_200_windows(tmp_path: Path, *init: str) -> tuple[float, list[dict]]:
    bundle = make_bundle(tmp_path / "b", ORPHANS)
    command = [*init, BOOTSTRAP_PYTHON, str(BOOTSTRAP), "--bundle-root", str(bundle), "--dry-run",
               "--start-nonce", "1", "--count", "200", "--interval", "0.005"]
    proc = subprocess.run(pid_namespace(*command), capture_output=True, text=True, env=bootstrap_env(), timeout=120)
    events = parse_events(proc.stdout)
    assert proc.returncode == EXIT_OK, (proc.stdout[-2000:], proc.stderr)
    predictions = [e for e in events if e["event"] == "prediction"]
    assert len(predictions) == 200
    return predictions[-1]["value"], events


def test_orphans_are_reaped_under_the_images_init(tmp_path):
    zombies, _ = _zombies_after_200_windows(tmp_path, dumb_init(), "--")
    assert zombies <= 1


def test_without_an_init_the_orphans_pile_up_and_the_runtime_says_so(tmp_path):
    """The control for the test above: it can fail. The runtime alone at PID 1 reaps nothing, and warns."""
    zombies, events = _zombies_after_200_windows(tmp_path)
    assert zombies > 100
    assert any(e["event"] == "no_init" and "dumb-init" in e["message"] for e in events)


def test_output_below_sys_stdout_becomes_json_print_events_with_secrets_scrubbed(tmp_path):
    secret = "sk-live-0123456789abcdef"
    bundle = make_bundle(
        tmp_path / "b",
        """
        import os
        import subprocess
        import sys

        def run(nonce: int) -> float:
            subprocess.run(["echo", "from a child process"], check=True)
            subprocess.run(["sh", "-c", "echo key=$KEY"], check=True, env={"KEY": os.environ["PASS_ON"], "PATH": os.environ["PATH"]})
            os.write(1, b"straight to fd 1\\nsecond line, no newline")
            os.write(1, b" ... ended\\n")
            sys.__stdout__.write("via sys.__stdout__\\n")
            sys.__stdout__.flush()
            print("a plain print")
            return 1.0
        """,
    )
    result = run_bootstrap(bundle, "--dry-run", "--nonce", "1", env=bootstrap_env(ALLORA_API_KEY=secret, PASS_ON=secret))
    assert result.code == EXIT_OK, (result.out, result.err)  # run_bootstrap already checked: every line is JSON
    printed = sorted(e["message"] for e in result.of("print"))
    assert printed == sorted([
        "from a child process", "key=[redacted]", "straight to fd 1", "second line, no newline ... ended",
        "via sys.__stdout__", "a plain print",
    ])
    assert secret not in result.out


def test_stderr_becomes_json_print_events_with_secrets_scrubbed(tmp_path):
    # stderr is where tracebacks, warnings and a child's complaints go: it reaches the pod log too
    secret = "sk-live-fedcba9876543210"
    bundle = make_bundle(
        tmp_path / "b",
        """
        import os
        import subprocess
        import sys
        import warnings

        def run(nonce: int) -> float:
            sys.stderr.write("connecting with " + os.environ["PASS_ON"] + "\\n")
            subprocess.run(["sh", "-c", "echo child says $KEY >&2"], check=True, env={"KEY": os.environ["PASS_ON"], "PATH": os.environ["PATH"]})
            os.write(2, b"native code complains\\n")
            warnings.warn("deprecated thing")
            return 1.0
        """,
    )
    result = run_bootstrap(bundle, "--dry-run", "--nonce", "1", env=bootstrap_env(ALLORA_API_KEY=secret, PASS_ON=secret))
    assert result.code == EXIT_OK, (result.out, result.err)
    errs = [e for e in result.of("print") if e.get("stream") == "stderr"]
    messages = [e["message"] for e in errs]
    assert "connecting with [redacted]" in messages
    assert "child says [redacted]" in messages
    assert "native code complains" in messages
    assert any("UserWarning: deprecated thing" in m for m in messages), messages
    assert {e["level"] for e in errs} == {"warning"}
    assert secret not in result.out and secret not in result.err
    assert result.err == ""  # nothing bypasses the log


def test_a_native_crash_report_still_reaches_the_real_stderr(tmp_path):
    # faulthandler cannot go through the pipe (its reader dies with the process): it writes to the real stderr
    bundle = make_bundle(
        tmp_path / "b",
        """
        import ctypes

        def run(nonce: int) -> float:
            ctypes.string_at(0)
            return 1.0
        """,
    )
    result = run_bootstrap(bundle, "--dry-run", "--nonce", "1")
    assert result.code == -signal.SIGSEGV
    assert "Fatal Python error: Segmentation fault" in result.err


def test_secrets_are_scrubbed_in_the_forms_code_prints_them(tmp_path):
    # A mnemonic mounted with irregular spacing is the same wallet; code that handles it
    # prints its words single-spaced. A key with a quote is escaped by the JSON encoding.
    mnemonic = "abandon  abandon\tabandon abandon abandon abandon abandon abandon abandon abandon abandon about\n"
    api_key = 'sk-"quoted"-0123456789'
    bundle = make_bundle(
        tmp_path / "b",
        """
        import os

        def run(nonce: int) -> float:
            print("words:", " ".join(os.environ["PASS_MNEMONIC"].split()))
            print("key:", os.environ["PASS_KEY"])
            return 1.0
        """,
    )
    env = bootstrap_env(ALLORA_MNEMONIC=mnemonic, ALLORA_API_KEY=api_key, PASS_MNEMONIC=mnemonic, PASS_KEY=api_key)
    result = run_bootstrap(bundle, "--dry-run", "--nonce", "1", env=env)
    assert result.code == EXIT_OK, (result.out, result.err)
    assert sorted(e["message"] for e in result.of("print")) == ["key: [redacted]", "words: [redacted]"]
    assert "abandon" not in result.out and "quoted" not in result.out


def test_prometheus_multiproc_dir_pointing_nowhere_is_ignored_with_a_warning(tmp_path):
    bundle = make_bundle(tmp_path / "b", """
        import os

        def run(nonce: int) -> float:
            return 0.0 if os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None else 1.0
        """)
    port = free_port()
    env = bootstrap_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "hidden-by-a-volume"), ALLORA_METRICS_PORT=str(port),
                        ALLORA_METRICS_ADDRESS="127.0.0.1")
    running = RunningBootstrap(bundle, "--dry-run", "--interval", "0.2", env=env)
    try:
        running.wait_for(lambda events: sum(e["event"] == "prediction" for e in events) >= 2)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        code, _ = running.stop(signal.SIGTERM)
    finally:
        running.kill()
    assert code == EXIT_OK
    assert "allora_predictions_total 2.0" in body or "allora_predictions_total 3.0" in body
    warning = next(e for e in running.events if e["event"] == "multiprocess_metrics_ignored")
    assert warning["level"] == "warning" and warning["variable"] == "PROMETHEUS_MULTIPROC_DIR"
    assert [e["value"] for e in running.events if e["event"] == "prediction"][:2] == [0.0, 0.0]  # the model does not see it


@pytest.mark.slow
def test_the_liveness_probe_passes_throughout_a_20_second_import(tmp_path):
    bundle = make_bundle(tmp_path / "b", SLOW_IMPORT.format(seconds=20))
    heartbeat = tmp_path / "heartbeat"
    env = bootstrap_env(ALLORA_HEARTBEAT_FILE=str(heartbeat), ALLORA_HEARTBEAT_MAX_AGE="10")
    running = RunningBootstrap(bundle, "--dry-run", "--interval", "60", env=env)
    probes = []
    try:
        running.wait_for(lambda events: any(e["event"] == "importing" for e in events))
        while running.count("imported") == 0:
            probe = subprocess.run([BOOTSTRAP_PYTHON, str(BOOTSTRAP), "--healthcheck"], capture_output=True, text=True, env=env)
            probes.append((probe.returncode, probe.stderr.strip()))
            time.sleep(1)
        code, _ = running.stop(signal.SIGTERM)
    finally:
        running.kill()
    assert code == EXIT_OK
    assert len(probes) >= 15  # the probe really ran throughout the import
    assert [p for p in probes if p[0] != 0] == []


@pytest.mark.slow
def test_an_import_that_outlasts_the_startup_limit_lets_the_heartbeat_go_stale(tmp_path):
    bundle = make_bundle(tmp_path / "b", SLOW_IMPORT.format(seconds=8))
    heartbeat = tmp_path / "heartbeat"
    env = bootstrap_env(ALLORA_HEARTBEAT_FILE=str(heartbeat), ALLORA_HEARTBEAT_MAX_AGE="2", ALLORA_STARTUP_LIMIT="1")
    running = RunningBootstrap(bundle, "--dry-run", "--interval", "60", env=env)
    try:
        running.wait_for(lambda events: any(e["event"] == "startup_limit_reached" for e in events))
        time.sleep(3)
        probe = subprocess.run([BOOTSTRAP_PYTHON, str(BOOTSTRAP), "--healthcheck"], capture_output=True, text=True, env=env)
    finally:
        running.kill()
    assert probe.returncode == 1 and "heartbeat is" in probe.stderr


def test_a_line_a_signal_handler_logs_during_a_write_comes_whole_after_it_instead_of_deadlocking():
    """The SDK's SIGTERM handler logs; Python runs it on the main thread, possibly inside our own write, under
    our lock. That once hung the process until SIGKILL. Now the handler's line is written after the interrupted one."""
    import io
    import json

    from allora_runtime.log import JsonLog

    class Stream(io.StringIO):
        def write(self, text):
            first = not self.getvalue()
            written = super().write(text[: len(text) // 2])
            if first:
                os.kill(os.getpid(), signal.SIGUSR1)  # the handler runs here, mid-line, with the lock held
            return written + super().write(text[len(text) // 2 :])

    log = JsonLog(Stream())

    def alarm(signum, frame):
        raise TimeoutError("the handler's emit waited on the lock its own thread holds")

    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: log.emit("log", message="Received signal 15"))
    previous_alarm = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 5)
    try:
        log.emit("submission", nonce=1188)
        log.emit("stopped", exit_code=0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGUSR1, previous)
        signal.signal(signal.SIGALRM, previous_alarm)
    lines = [json.loads(line) for line in log.stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["submission", "log", "stopped"]
