"""The runtime's exceptions: each carries the exit code and the event name it ends the process with."""

from __future__ import annotations

from typing import Optional

from allora_runtime.contract import (
    EVENT_CONFIG_ERROR,
    EVENT_CONNECTION_ERROR,
    EVENT_IMPORT_ERROR,
    EVENT_RUNTIME_ERROR,
    EXIT_CONFIG,
    EXIT_CONNECTION,
    EXIT_IMPORT,
    EXIT_RUNTIME,
)


class BootstrapError(Exception):
    exit_code = EXIT_RUNTIME
    event = EVENT_RUNTIME_ERROR


class ConfigError(BootstrapError):
    exit_code = EXIT_CONFIG
    event = EVENT_CONFIG_ERROR


class ImportFailure(BootstrapError):
    exit_code = EXIT_IMPORT
    event = EVENT_IMPORT_ERROR


class ConnectionFailure(BootstrapError):
    exit_code = EXIT_CONNECTION
    event = EVENT_CONNECTION_ERROR


class RuntimeFailure(BootstrapError):
    exit_code = EXIT_RUNTIME
    event = EVENT_RUNTIME_ERROR


class PredictionRefused(Exception):
    """Raised to the SDK instead of a bad value, so nothing is submitted (already logged by us).

    ``nonce``: the window it refuses. The SDK hands this very exception back as that window's result
    (``Inferer.submit`` returns what the callback raised), so the runtime reads the window from it.
    """

    def __init__(self, reason: str, message: str, nonce: Optional[int] = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.nonce = nonce
