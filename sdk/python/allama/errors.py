"""Typed action errors.

Raise one of these from an action; `allama` turns it into the WIT
`action-error` the host reports, so the engine's retry policy can tell a bad
input from a throttled vendor. Every class has a default for `retryable`
that a caller may override: ``raise Upstream("...", status=502, retryable=False)``.

Any other exception escaping an action becomes `Internal` (not retryable),
with its traceback written to the step's stderr.
"""

from __future__ import annotations

from typing import Optional

from wit_world.imports import types as _types


class ActionError(Exception):
    """Base class of the typed errors. Use a subclass."""

    #: Whether a retry of the same call may succeed, unless told otherwise.
    default_retryable = False

    def __init__(self, message: str, *, retryable: Optional[bool] = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = self.default_retryable if retryable is None else retryable

    def _kind(self) -> _types.ErrorKind:
        raise NotImplementedError

    def to_wit(self) -> _types.ActionError:
        """The WIT `action-error` record for this error."""
        return _types.ActionError(self._kind(), self.message, self.retryable)


class InvalidInput(ActionError):
    """The input does not match what the action expects."""

    def _kind(self):
        return _types.ErrorKind_InvalidInput()


class Unauthorized(ActionError):
    """The vendor refused the credentials (HTTP 401/403)."""

    def _kind(self):
        return _types.ErrorKind_Unauthorized()


class NotFound(ActionError):
    """The thing asked about does not exist (HTTP 404)."""

    def _kind(self):
        return _types.ErrorKind_NotFound()


class RateLimited(ActionError):
    """The vendor is throttling; `retry_after_ms` if it said how long."""

    default_retryable = True

    def __init__(
        self,
        message: str,
        retry_after_ms: Optional[int] = None,
        *,
        retryable: Optional[bool] = None,
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.retry_after_ms = retry_after_ms

    def _kind(self):
        return _types.ErrorKind_RateLimited(self.retry_after_ms)


class Upstream(ActionError):
    """The vendor failed; `status` is its HTTP status if there was one.

    Retryable by default when there is no status (connection failure) or the
    status is 5xx.
    """

    def __init__(
        self,
        message: str,
        status: Optional[int] = None,
        *,
        retryable: Optional[bool] = None,
    ) -> None:
        if retryable is None:
            retryable = status is None or status >= 500
        super().__init__(message, retryable=retryable)
        self.status = status

    def _kind(self):
        return _types.ErrorKind_Upstream(self.status)


class Timeout(ActionError):
    """The vendor or an operation took too long."""

    default_retryable = True

    def _kind(self):
        return _types.ErrorKind_Timeout()


class Denied(ActionError):
    """The host refused a capability use: the grant does not allow it."""

    def _kind(self):
        return _types.ErrorKind_Denied()


class Internal(ActionError):
    """A bug or an unexpected state in the component."""

    def _kind(self):
        return _types.ErrorKind_Internal()
