"""Outbound HTTP through the host.

::

    r = http.get(f"{base}/v1/ip/{ip}", auth=header("x-api-key", "IPINTEL_KEY"))
    data = r.json()

The host checks every request against the grant (``[http] allow``), follows
redirects itself and caps the response. Credentials are secret *names*:
`bearer`, `basic`, `header` and `query_secret` write ``{{secret:NAME}}``
placeholders that the host fills in on the way out, so the component never
holds a plaintext.

By default a response that is not a success raises the typed error the
engine's retry policy understands:

====================  =========================================
401, 403              `Unauthorized`
404                   `NotFound`
408                   `Timeout` (retryable)
429                   `RateLimited` with ``Retry-After`` in ms (retryable)
5xx                   `Upstream(status)` (retryable)
other 3xx and 4xx     `Upstream(status)` (not retryable)
====================  =========================================

Pass ``raise_for_status=False`` to look at the status yourself. Failures
without a response raise too: a request the grant does not allow is `Denied`,
a timeout `Timeout`, a connection failure a retryable `Upstream`.
"""

from __future__ import annotations

import json as _json
import re
import time
from email.utils import parsedate_to_datetime
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union
from urllib.parse import quote, urlsplit

from componentize_py_types import Err
from wit_world.imports import http as _wit

from .errors import (
    ActionError,
    Denied,
    Internal,
    NotFound,
    RateLimited,
    Timeout,
    Unauthorized,
    Upstream,
)
from .secret import secret

Pairs = Union[Dict[str, Any], Iterable[Tuple[str, Any]]]

_PLACEHOLDER = re.compile(r"(\{\{secret:[A-Za-z_][A-Za-z0-9_]{0,127}(?:\|base64)?\}\})")
_METHODS = {m.name: m for m in _wit.Method}
_NOTHING = object()


class Auth:
    """Credentials as secret placeholders: headers and query parameters to add."""

    def __init__(self, headers=(), query=()) -> None:
        self.headers: List[Tuple[str, str]] = list(headers)
        self.query: List[Tuple[str, str]] = list(query)


def bearer(secret_name: str) -> Auth:
    """``Authorization: Bearer {{secret:NAME}}``."""
    return Auth(headers=[("authorization", "Bearer " + secret(secret_name))])


def basic(secret_name: str) -> Auth:
    """HTTP Basic: ``Authorization: Basic {{secret:NAME|base64}}``, the secret
    holding ``user:password`` (the host base64-encodes it on the way out)."""
    return Auth(headers=[("authorization", "Basic " + secret(secret_name, base64=True))])


def header(name: str, secret_name: str) -> Auth:
    """A header carrying the secret, e.g. ``header("x-apikey", "VT_API_KEY")``."""
    return Auth(headers=[(name, secret(secret_name))])


def query_secret(param: str, secret_name: str) -> Auth:
    """A query parameter carrying the secret, e.g. ``query_secret("key", "NAME")``."""
    return Auth(query=[(param, secret(secret_name))])


class Response:
    """A response: `status`, `headers` (lower-case names; repeated headers
    joined with ``", "``), `body` (bytes), `text` and `json()`."""

    def __init__(self, method: str, url: str, status: int, headers, body: bytes) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.headers: Dict[str, str] = {}
        for k, v in headers:
            k = k.lower()
            self.headers[k] = f"{self.headers[k]}, {v}" if k in self.headers else v
        self.body = body

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        """The body as UTF-8 text (invalid bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON; `Upstream` if it is not JSON."""
        try:
            return _json.loads(self.body)
        except ValueError:
            raise Upstream(
                f"{_where(self.method, self.url)}: HTTP {self.status}, the body is not JSON",
                self.status,
                retryable=False,
            ) from None

    def raise_for_status(self) -> "Response":
        """Raise the typed error for a status that is not a success; return self."""
        error = status_error(self)
        if error is not None:
            raise error
        return self

    def __repr__(self) -> str:
        return f"<Response {self.status} {_where(self.method, self.url)}>"


def request(
    method: str,
    url: str,
    *,
    query: Optional[Pairs] = None,
    headers: Optional[Pairs] = None,
    json: Any = _NOTHING,
    data: Union[bytes, str, None] = None,
    auth: Optional[Auth] = None,
    timeout_ms: Optional[int] = None,
    raise_for_status: bool = True,
) -> Response:
    """Send a request through the host and return its `Response`.

    `query` values are percent-encoded (placeholders are kept as written);
    `json` is sent as ``application/json``, `data` as is. See the module
    documentation for the errors raised.
    """
    wit_method = _METHODS.get(method.upper())
    if wit_method is None:
        raise ValueError(f"unsupported HTTP method {method!r}")
    pairs = _pairs(query) + (auth.query if auth else [])
    if pairs:
        encoded = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in pairs if v is not None)
        if encoded:
            url = url + ("&" if "?" in url else "?") + encoded
    hdrs = [(str(k), str(v)) for k, v in _pairs(headers)]
    if auth:
        hdrs += auth.headers
    body: Optional[bytes] = None
    if json is not _NOTHING:
        body = _json.dumps(json, separators=(",", ":")).encode()
        if not any(k.lower() == "content-type" for k, _ in hdrs):
            hdrs.append(("content-type", "application/json"))
    elif data is not None:
        body = data.encode() if isinstance(data, str) else bytes(data)
    req = _wit.Request(wit_method, url, hdrs, body, timeout_ms)
    try:
        r = _wit.send(req)
    except Err as e:
        raise from_wit_error(e.value, method.upper(), url) from None
    response = Response(method.upper(), url, r.status, r.headers, r.body)
    return response.raise_for_status() if raise_for_status else response


def get(url: str, **kwargs: Any) -> Response:
    """`request` with GET."""
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> Response:
    """`request` with POST."""
    return request("POST", url, **kwargs)


def put(url: str, **kwargs: Any) -> Response:
    """`request` with PUT."""
    return request("PUT", url, **kwargs)


def patch(url: str, **kwargs: Any) -> Response:
    """`request` with PATCH."""
    return request("PATCH", url, **kwargs)


def delete(url: str, **kwargs: Any) -> Response:
    """`request` with DELETE."""
    return request("DELETE", url, **kwargs)


def paginate(
    url: str,
    *,
    items: str = "data",
    cursor: str = "meta.next_cursor",
    cursor_param: str = "cursor",
    max_pages: int = 100,
    **kwargs: Any,
) -> Iterator[Any]:
    """Yield every item of a cursor-paginated GET endpoint, page by page.

    Each page is a JSON object; `items` is the dotted path of its list of
    items and `cursor` the dotted path of the next page's cursor, which is sent
    back as the query parameter `cursor_param`. It stops when the cursor is
    missing, null or empty, or after `max_pages` pages (with a warning in the
    log); a vendor repeating a cursor raises `Upstream`. Other keyword
    arguments (`query`, `headers`, `auth`, ...) go to every request.
    """
    from . import log

    base_query = _pairs(kwargs.pop("query", None))
    next_cursor: Any = None
    seen = set()
    for _ in range(max_pages):
        query = base_query + ([(cursor_param, next_cursor)] if next_cursor is not None else [])
        response = get(url, query=query, **kwargs)
        page = response.json()
        page_items = _dig(page, items)
        if not isinstance(page_items, list):
            raise Upstream(
                f"{_where('GET', url)}: the page has no list at `{items}`",
                response.status,
                retryable=False,
            )
        yield from page_items
        next_cursor = _dig(page, cursor)
        if next_cursor is None or next_cursor == "":
            return
        if next_cursor in seen:
            raise Upstream(
                f"{_where('GET', url)}: the vendor repeated cursor {next_cursor!r}",
                response.status,
                retryable=False,
            )
        seen.add(next_cursor)
    log.warn("pagination stopped at max_pages", url=_where("GET", url), max_pages=max_pages)


def status_error(response: Response) -> Optional[ActionError]:
    """The typed error for `response`'s status, or None for a success."""
    status = response.status
    if status < 300 or status == 304:
        return None
    where = f"{_where(response.method, response.url)}: HTTP {status}"
    detail = _vendor_message(response)
    message = f"{where}: {detail}" if detail else where
    if status in (401, 403):
        return Unauthorized(message)
    if status == 404:
        return NotFound(message)
    if status == 408:
        return Timeout(message)
    if status == 429:
        return RateLimited(message, _retry_after_ms(response.headers.get("retry-after")))
    return Upstream(message, status)


def from_wit_error(e, method: str = "", url: str = "") -> ActionError:
    """The typed error for a WIT `http-error`."""
    where = _where(method, url) if url else "http"
    if isinstance(e, _wit.HttpError_Denied):
        return Denied(f"{where}: refused by the grant: {e.value}")
    if isinstance(e, _wit.HttpError_Timeout):
        return Timeout(f"{where}: timed out: {e.value}")
    if isinstance(e, _wit.HttpError_RateLimited):
        return RateLimited(f"{where}: the vendor asked to wait {e.value} ms", e.value)
    if isinstance(e, _wit.HttpError_Connection):
        return Upstream(f"{where}: connection failed: {e.value}")
    if isinstance(e, _wit.HttpError_ResponseTooLarge):
        return Upstream(
            f"{where}: the response exceeded {e.value} bytes (http.max_response_kib)",
            retryable=False,
        )
    return Internal(f"{where}: the request is malformed: {e.value}")


def _pairs(p: Optional[Pairs]) -> List[Tuple[str, Any]]:
    if p is None:
        return []
    if isinstance(p, dict):
        p = p.items()
    out: List[Tuple[str, Any]] = []
    for k, v in p:
        if isinstance(v, (list, tuple)):
            out.extend((k, item) for item in v)
        else:
            out.append((k, v))
    return out


def _encode(value: Any) -> str:
    """Percent-encode a query key or value, keeping ``{{secret:NAME}}`` as written."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    parts = _PLACEHOLDER.split(str(value))
    # split() with a group puts the placeholders at odd indices.
    return "".join(p if i % 2 else quote(p, safe="") for i, p in enumerate(parts))


def _where(method: str, url: str) -> str:
    """`METHOD scheme://host/path`, without the query (which may carry placeholders)."""
    try:
        u = urlsplit(url)
        shown = f"{u.scheme}://{u.netloc}{u.path}"
    except ValueError:
        shown = "(bad url)"
    return f"{method} {shown}".strip()


def _vendor_message(response: Response) -> str:
    """The vendor's error message, from common JSON shapes or the text, shortened."""
    message: Any = None
    try:
        body = _json.loads(response.body)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "message", "detail", "error_description", "errors"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("code")
            if value:
                message = value if isinstance(value, str) else _json.dumps(value)
                break
    if message is None:
        message = response.text.strip()
    message = " ".join(message.split())
    return message[:300] + ("…" if len(message) > 300 else "")


def _retry_after_ms(value: Optional[str]) -> Optional[int]:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0, int((when - time.time()) * 1000))


def _dig(value: Any, path: str) -> Any:
    for part in path.split(".") if path else []:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
