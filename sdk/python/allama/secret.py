"""Secrets as handles.

A component never needs a secret's plaintext: it writes the placeholder
``{{secret:NAME}}`` (``secret("NAME")``) in a header value, a query value or
a request body, and the host substitutes the value on the way out, only
toward hosts the grant lists for that secret, and scrubs it from the response.
``{{secret:NAME|base64}}`` substitutes the value base64-encoded.
"""

from __future__ import annotations

import re

from componentize_py_types import Err
from wit_world.imports import secrets as _wit

from .errors import Denied

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")


def secret(name: str, *, base64: bool = False) -> str:
    """The placeholder ``{{secret:NAME}}`` for the secret `name`, or
    ``{{secret:NAME|base64}}`` (the value base64-encoded by the host) with
    `base64`.

    Raises `ValueError` if `name` is not a secret name (letters, digits and
    ``_``, not starting with a digit, at most 128 characters): pass the
    secret's *name*, never its value.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            "a secret name is letters, digits and `_`, not starting with a digit; "
            "pass the secret's name, never its value"
        )
    return "{{secret:%s%s}}" % (name, "|base64" if base64 else "")


def hmac_sha256(name: str, data: bytes | str) -> bytes:
    """HMAC-SHA256 of `data` keyed with secret `name`, computed by the host.

    Needs ``hmac = true`` in the secret's grant; raises `Denied` otherwise.
    """
    secret(name)  # validates the name
    if isinstance(data, str):
        data = data.encode()
    try:
        return _wit.hmac_sha256(name, data)
    except Err as e:
        raise Denied(f"secret {name}: {e.value.value}") from None
