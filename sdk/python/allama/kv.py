"""The package's small key-value store (needs ``[kv]`` in the grant).

Keys are UTF-8 text of at most 512 bytes; values are bytes (``str`` values
are stored as UTF-8). Failures raise typed errors, as in the Rust SDK: not
granted is `Denied`; over quota, a bad key or an oversized value is
`Internal`; a store failure is a retryable `Upstream`.
"""

from __future__ import annotations

import json as _json
from typing import Any, List, Optional

from componentize_py_types import Err
from wit_world.imports import kv as _wit

from .errors import ActionError, Denied, Internal, Upstream


def get(key: str) -> Optional[bytes]:
    """The value under `key`, or None if there is none (or it expired)."""
    return _call(_wit.get, key)


def get_json(key: str, default: Any = None) -> Any:
    """The value under `key` parsed as JSON, or `default` if there is none."""
    raw = get(key)
    return default if raw is None else _json.loads(raw)


def set(key: str, value: bytes | str, ttl_seconds: Optional[int] = None) -> None:
    """Store `value` under `key`, expiring after `ttl_seconds` if given."""
    if isinstance(value, str):
        value = value.encode()
    _call(_wit.set, key, value, ttl_seconds)


def set_json(key: str, value: Any, ttl_seconds: Optional[int] = None) -> None:
    """Store `value` as compact JSON under `key`."""
    set(key, _json.dumps(value, separators=(",", ":")), ttl_seconds)


def delete(key: str) -> bool:
    """Remove `key`; True if it existed."""
    return _call(_wit.delete, key)


def list_prefix(prefix: str, limit: int = 1000) -> List[str]:
    """Up to `limit` keys (at most 1000) starting with `prefix`, in order."""
    return _call(_wit.list_prefix, prefix, limit)


def _call(f, *args):
    try:
        return f(*args)
    except Err as e:
        raise from_wit_error(e.value) from None


def from_wit_error(e) -> ActionError:
    """The typed error for a WIT `kv-error` (the same mapping as the Rust SDK)."""
    message = f"kv: {e.value}"
    if isinstance(e, _wit.KvError_Denied):
        return Denied(message)
    if isinstance(e, _wit.KvError_Unavailable):
        return Upstream(message)
    return Internal(message)
