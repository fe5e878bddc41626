"""The user's function: import it, check its shape, and check what it returns before the chain sees it."""

from __future__ import annotations

import importlib
import inspect
import math
import os
import sys
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Optional

from allora_runtime.contract import CONTEXT_PARAMETER_NAMES
from allora_runtime.errors import ImportFailure, PredictionRefused
from allora_runtime.settings import Settings

@dataclass
class UserFunction:
    fn: Callable[[Any], Any]
    name: str
    is_async: bool
    wants_context: bool


_USER_ROOT: Optional[str] = None  # the bundle root, once load_user_function has put it on sys.path


def _where(exc: BaseException) -> Optional[str]:
    """file:line of the innermost frame inside the bundle (the user's line, not sklearn/base.py or pickle.py).

    The innermost frame of all when no frame is in the bundle.
    """
    tb = exc.__traceback__
    frame = inside = None
    prefix = os.path.join(_USER_ROOT, "") if _USER_ROOT else None
    while tb is not None:
        frame, tb = tb, tb.tb_next
        if prefix and os.path.abspath(frame.tb_frame.f_code.co_filename).startswith(prefix):
            inside = frame
    frame = inside or frame
    if frame is None:
        return None
    return f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}"


def _wants_context(parameter: inspect.Parameter) -> bool:
    annotation = parameter.annotation
    if isinstance(annotation, str):
        if "RunContext" in annotation:
            return True
    elif getattr(annotation, "__name__", "") == "RunContext":
        return True
    return parameter.name in CONTEXT_PARAMETER_NAMES


def load_user_function(settings: Settings) -> UserFunction:
    """Put the bundle root on sys.path, chdir to the workdir, import module.function and check its shape."""
    global _USER_ROOT
    root = str(settings.bundle_root)
    _USER_ROOT = os.path.abspath(root)
    if root not in sys.path:
        sys.path.insert(0, root)
    os.chdir(settings.bundle_root / settings.workdir)
    target = f"{settings.module}.{settings.function}"
    try:
        module = importlib.import_module(settings.module)
    except ModuleNotFoundError as exc:
        what = "the entrypoint module" if exc.name and settings.module.startswith(exc.name) else "a module it imports"
        raise ImportFailure(f"cannot import {settings.module}: {what} is missing ({exc})") from exc
    except BaseException as exc:  # noqa: BLE001 - user code at import time can raise anything, SystemExit included
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ImportFailure(f"importing {settings.module} raised {type(exc).__name__}: {exc}") from exc
    fn = getattr(module, settings.function, None)
    if fn is None:
        raise ImportFailure(f"{settings.module} has no attribute {settings.function!r} (model.yaml entrypoint.function)")
    if not callable(fn):
        raise ImportFailure(f"{target} is a {type(fn).__name__}, not a function")
    wants_context = False
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        params = list(signature.parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        required = [p for p in positional if p.default is p.empty]
        required_kw = [p for p in params if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
        var_positional = any(p.kind == p.VAR_POSITIONAL for p in params)
        if len(required) > 1 or required_kw or not (positional or var_positional):
            raise ImportFailure(f"{target}{signature} must take exactly one argument: the nonce (block height)")
        if positional:
            wants_context = _wants_context(positional[0])
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))
    return UserFunction(fn=fn, name=target, is_async=is_async, wants_context=wants_context)


# --- checking a prediction -------------------------------------------------------------------
def check_prediction(value: Any) -> Any:
    """Return the JSON form of a valid prediction; raise PredictionRefused for anything the chain must not get."""
    if isinstance(value, dict):
        if not value:
            raise PredictionRefused("invalid_value", "returned an empty dict; a multi-output topic needs label → value")
        shown = {}
        for label, item in value.items():
            if not isinstance(label, str) or not label:
                raise PredictionRefused("invalid_value", f"dict keys must be non-empty label strings, got {label!r}")
            shown[label] = _check_scalar(item, f"the value for label {label!r}")
        return shown
    return _check_scalar(value, "the prediction")


_LARGEST_FLOAT = int(sys.float_info.max)


def _check_scalar(value: Any, what: str) -> Any:
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        raise PredictionRefused("invalid_value", f"{what} is {value!r}; NaN and infinity cannot be submitted")
    if value is None:
        raise PredictionRefused("invalid_value", f"{what} is None; return a number")
    if isinstance(value, bool):
        raise PredictionRefused("invalid_value", f"{what} is a bool ({value}); return a number")
    if isinstance(value, int):
        if abs(value) > _LARGEST_FLOAT:  # 10**5000 cannot even be written as text (sys.get_int_max_str_digits)
            raise PredictionRefused("invalid_value", f"{what} is an integer of {value.bit_length()} bits, beyond any float; return a float")
        return int(value)
    if isinstance(value, Decimal):
        if value.is_finite():
            return str(value)
        raise PredictionRefused("invalid_value", f"{what} is Decimal({str(value)!r}); it must be finite")
    if isinstance(value, str):
        try:
            if Decimal(value).is_finite():
                return value
        except InvalidOperation:
            pass
        raise PredictionRefused("invalid_value", f"{what} is the string {value[:40]!r}, not a finite decimal number")
    kind = type(value)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        if getattr(value, "shape", None) == ():
            raise PredictionRefused("invalid_value", f"{what} is a {name}; return float(value)")
        raise PredictionRefused("invalid_value", f"{what} is an array ({name}); return one scalar, e.g. float(values[0])")
    if isinstance(value, (list, tuple, set, frozenset)):
        raise PredictionRefused("invalid_value", f"{what} is a {name}; return one scalar, e.g. float(values[0])")
    raise PredictionRefused("invalid_value", f"{what} has type {name}; return a float, int, str or Decimal")


def _plain(value: Any) -> Any:
    """Float subclasses (numpy.float64) as plain floats, so the SDK signs exactly what was checked."""
    if isinstance(value, float) and type(value) is not float:
        return float(value)
    if isinstance(value, dict):
        return {label: _plain(item) for label, item in value.items()}
    return value

