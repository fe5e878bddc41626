"""The heartbeat file the liveness probe (``--healthcheck``) reads."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Callable, Optional

from allora_runtime.contract import DEFAULT_HEARTBEAT_FILE, DEFAULT_HEARTBEAT_MAX_AGE, EXIT_OK, EXIT_UNHEALTHY
from allora_runtime.errors import ConfigError
from allora_runtime.log import LOG
from allora_runtime.settings import _env, _number

def touch_heartbeat(path: str) -> bool:
    try:
        with open(path, "a", encoding="utf-8"):
            pass
        os.utime(path, None)
        return True
    except OSError:
        return False


async def heartbeat_loop(path: str, interval: float, on_beat: Optional[Callable[[], None]] = None) -> None:
    """Every ``interval`` s: touch ``path`` (if any) and call ``on_beat`` (the heartbeat gauge)."""
    warned = False
    while True:
        if path and not touch_heartbeat(path) and not warned:
            LOG.emit("heartbeat_failed", level="warning", file=path)
            warned = True
        if on_beat is not None:
            on_beat()
        await asyncio.sleep(interval)


def healthcheck(env: dict[str, str]) -> int:
    path = _env(env, "ALLORA_HEARTBEAT_FILE") or DEFAULT_HEARTBEAT_FILE
    try:
        max_age = _number(_env(env, "ALLORA_HEARTBEAT_MAX_AGE") or DEFAULT_HEARTBEAT_MAX_AGE, "ALLORA_HEARTBEAT_MAX_AGE")
    except ConfigError as exc:
        sys.stderr.write(f"unhealthy: {exc}\n")
        return EXIT_UNHEALTHY
    try:
        age = time.time() - os.stat(path).st_mtime
    except OSError:
        sys.stderr.write(f"unhealthy: no heartbeat file {path}\n")
        return EXIT_UNHEALTHY
    if age > max_age:
        sys.stderr.write(f"unhealthy: heartbeat is {age:.0f} s old (max {max_age:g} s)\n")
        return EXIT_UNHEALTHY
    return EXIT_OK



class StartupHeartbeat:
    """Keeps the heartbeat fresh from a thread while the model imports, for at most ``limit`` seconds.

    The event loop's heartbeat cannot run before the import returns, and a model that
    loads for minutes would otherwise look dead to the liveness probe. Past ``limit``
    (``ALLORA_STARTUP_LIMIT``) the file is left to go stale, so an import that hangs
    still ends in a restart, ``ALLORA_HEARTBEAT_MAX_AGE`` seconds later.
    """

    def __init__(self, path: str, interval: float, limit: float):
        import threading

        self.path = path
        self.interval = interval
        self.limit = limit
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="allora-startup-heartbeat", daemon=True)

    def start(self) -> "StartupHeartbeat":
        touch_heartbeat(self.path)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()

    def _beat(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._done.wait(min(self.interval, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                LOG.emit("startup_limit_reached", level="warning", limit_s=self.limit, heartbeat_file=self.path)
                return
            touch_heartbeat(self.path)
