"""Allama actions in Python.

A component is a module that registers actions and re-exports `WitWorld`,
the class componentize-py looks for in the app module::

    from allama import WitWorld, action, http, header, require  # noqa: F401

    @action("lookup")
    def lookup(input):
        ip = require(input, "ip", str)
        r = http.get(f"https://api.vendor.example/ip/{ip}",
                     auth=header("x-api-key", "VENDOR_KEY"))
        return {"ip": ip, "score": r.json()["score"]}

`WitWorld.run` (the world's export) parses the JSON input, calls the action
registered under the requested name with it (and with the step's `Context`
if the function takes a second argument), and returns its result as JSON.
Raise a typed error (`InvalidInput`, `NotFound`, ...) to fail; any other
exception becomes `Internal`, with its traceback in the step's stderr.

Modules: `http` (requests, auth helpers, pagination), `kv`, `log`,
`errors`; `secret(name)` writes a ``{{secret:NAME}}`` placeholder and
`hmac_sha256(name, data)` signs with a secret the component never sees.
"""

from __future__ import annotations

import json as _json
import sys
import traceback
from typing import Any, Callable, Dict, List, Tuple

import wit_world
from componentize_py_types import Err
from wit_world.imports import http as _wit_http
from wit_world.imports import kv as _wit_kv
from wit_world.imports.types import Context

from . import http, kv, log
from .errors import (
    ActionError,
    Denied,
    Internal,
    InvalidInput,
    NotFound,
    RateLimited,
    Timeout,
    Unauthorized,
    Upstream,
)
from .http import Auth, Response, basic, bearer, header, query_secret
from .secret import hmac_sha256, secret

__all__ = [
    "WitWorld", "action", "actions", "dispatch", "require", "Context",
    "http", "kv", "log", "secret", "hmac_sha256",
    "Auth", "Response", "bearer", "basic", "header", "query_secret",
    "ActionError", "InvalidInput", "Unauthorized", "NotFound", "RateLimited",
    "Upstream", "Timeout", "Denied", "Internal",
]  # fmt: skip

_ACTIONS: Dict[str, Tuple[Callable[..., Any], bool]] = {}
_MISSING = object()


def action(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the action `name`.

    The function takes the parsed JSON input, and optionally the step's
    `Context` (run_id, step_id, idempotency_key, attempt) as a second
    argument; it returns anything `json.dumps` accepts.
    """

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _ACTIONS:
            raise ValueError(f"action {name!r} is registered twice")
        code = getattr(fn, "__code__", None)
        takes_ctx = code is not None and code.co_argcount >= 2
        _ACTIONS[name] = (fn, takes_ctx)
        return fn

    return register


def actions() -> List[str]:
    """The registered action names, sorted."""
    return sorted(_ACTIONS)


def dispatch(name: str, input_json: str, ctx: Context) -> str:
    """Run action `name` on `input_json`; return its JSON output or raise `ActionError`."""
    entry = _ACTIONS.get(name)
    if entry is None:
        known = ", ".join(actions()) or "none"
        raise InvalidInput(f"unknown action `{name}`; this component provides: {known}")
    fn, takes_ctx = entry
    try:
        value = _json.loads(input_json)
    except ValueError as e:
        raise InvalidInput(f"the input is not JSON: {e}") from None
    result = fn(value, ctx) if takes_ctx else fn(value)
    try:
        return _json.dumps(result, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise Internal(f"action `{name}` returned something that is not JSON: {e}") from None


def require(input: Any, name: str, type: type = str, default: Any = _MISSING) -> Any:
    """`input[name]`, checked to be a `type`; `InvalidInput` if absent or mistyped.

    With `default`, an absent (or null) field gives `default` instead.
    """
    if not isinstance(input, dict):
        raise InvalidInput("the input must be a JSON object")
    value = input.get(name)
    if value is None:
        if default is not _MISSING:
            return default
        raise InvalidInput(f"input.{name} is required")
    # JSON has one number type: accept an integer where a float is expected.
    ok = isinstance(value, type) or (type is float and isinstance(value, int))
    if not ok or (type is int and isinstance(value, bool)):
        raise InvalidInput(f"input.{name}: expected {_TYPE_NAMES.get(type, type.__name__)}")
    return value


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
}


def _typed(e: BaseException) -> ActionError:
    """The typed error for an exception escaping an action."""
    if isinstance(e, ActionError):
        return e
    if isinstance(e, Err):  # a raw binding call whose error was not handled
        v = e.value
        if type(v).__module__ == _wit_http.__name__:
            return http.from_wit_error(v)
        if type(v).__module__ == _wit_kv.__name__:
            return kv.from_wit_error(v)
    traceback.print_exc(file=sys.stderr)
    return Internal(f"unexpected {type(e).__name__}: {e}")


class WitWorld(wit_world.WitWorld):
    """The world's export: componentize-py calls `run` for each step."""

    def run(self, action: str, input: str, ctx: Context) -> str:
        try:
            return dispatch(action, input, ctx)
        except Exception as e:
            raise Err(_typed(e).to_wit()) from None
