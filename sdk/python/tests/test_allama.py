"""Unit tests of the Python SDK, on the host's Python, without Wasm.

componentize-py's stub bindings stand in for the host: each test replaces
the capability functions it needs. Run from the repository root:

    python3 -m unittest discover -s sdk/python/tests

(end-to-end tests in the real host: host/runtime/tests/all/python.rs)
"""

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest
from email.utils import formatdate
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
_bindings = tempfile.TemporaryDirectory()
subprocess.run(
    [os.environ.get("COMPONENTIZE_PY", "componentize-py"), "-q", "-d", os.path.join(ROOT, "wit"),
     "-w", "action", "bindings", _bindings.name],
    check=True,
)
sys.path[:0] = [_bindings.name, os.path.join(ROOT, "sdk", "python")]
sys.dont_write_bytecode = True

from componentize_py_types import Err  # noqa: E402
from wit_world.imports import http as wit_http  # noqa: E402
from wit_world.imports import kv as wit_kv  # noqa: E402
from wit_world.imports import log as wit_log  # noqa: E402
from wit_world.imports import types  # noqa: E402

import allama  # noqa: E402
from allama import http, kv, log  # noqa: E402

CTX = types.Context("run-1", "step-1", "run-1/step-1", 2)


@allama.action("t-echo")
def _echo(input):
    return input


@allama.action("t-ctx")
def _ctx(input, ctx):
    return {"attempt": ctx.attempt, "key": ctx.idempotency_key}


@allama.action("t-raise")
def _raise(input):
    kind = input["kind"]
    if kind == "not-found":
        raise allama.NotFound("no such thing")
    if kind == "rate":
        raise allama.RateLimited("slow down", 1500)
    if kind == "bug":
        return {}["missing"]
    if kind == "nan":
        return float("nan")
    if kind == "raw-http":
        raise Err(wit_http.HttpError_Denied("host not granted"))


def run(action, value):
    """WitWorld.run as componentize-py calls it: the JSON, or the WIT error."""
    try:
        return json.loads(allama.WitWorld().run(action, json.dumps(value), CTX))
    except Err as e:
        return e.value


class FakeHttp:
    """Replaces http.send: records requests, answers with `responses` in turn."""

    def __init__(self, *responses):
        self.responses = list(responses)
        self.requests = []

    def __call__(self, req):
        self.requests.append(req)
        r = self.responses.pop(0)
        if isinstance(r, Exception):
            raise r
        status, headers, body = r
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        return wit_http.Response(status, headers, body)


class Patched(unittest.TestCase):
    def patch(self, module, name, value):
        old = getattr(module, name)
        setattr(module, name, value)
        self.addCleanup(setattr, module, name, old)


class DispatchTest(Patched):
    def test_echo_round_trips(self):
        value = {"a": [1, 2.5, None, True], "t": "é ✓"}
        self.assertEqual(run("t-echo", value), value)

    def test_context_is_passed_to_two_argument_actions(self):
        self.assertEqual(run("t-ctx", {}), {"attempt": 2, "key": "run-1/step-1"})

    def test_unknown_action_lists_the_known_ones(self):
        e = run("nope", {})
        self.assertIsInstance(e.kind, types.ErrorKind_InvalidInput)
        self.assertIn("unknown action `nope`", e.message)
        self.assertIn("t-echo", e.message)

    def test_bad_json_is_invalid_input(self):
        with self.assertRaises(Err) as cm:
            allama.WitWorld().run("t-echo", "{not json", CTX)
        self.assertIsInstance(cm.exception.value.kind, types.ErrorKind_InvalidInput)

    def test_typed_errors_keep_their_kind_and_retryable(self):
        e = run("t-raise", {"kind": "not-found"})
        self.assertEqual(e, types.ActionError(types.ErrorKind_NotFound(), "no such thing", False))
        e = run("t-raise", {"kind": "rate"})
        self.assertEqual(e, types.ActionError(types.ErrorKind_RateLimited(1500), "slow down", True))

    def test_other_exceptions_are_internal(self):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            e = run("t-raise", {"kind": "bug"})
        self.assertIn("Traceback", stderr.getvalue())
        self.assertIsInstance(e.kind, types.ErrorKind_Internal)
        self.assertEqual(e.message, "unexpected KeyError: 'missing'")
        self.assertFalse(e.retryable)
        e = run("t-raise", {"kind": "nan"})
        self.assertIsInstance(e.kind, types.ErrorKind_Internal)
        self.assertIn("not JSON", e.message)

    def test_an_unhandled_binding_error_keeps_its_type(self):
        e = run("t-raise", {"kind": "raw-http"})
        self.assertIsInstance(e.kind, types.ErrorKind_Denied)

    def test_registering_twice_fails(self):
        with self.assertRaises(ValueError):
            allama.action("t-echo")(lambda i: i)

    def test_require(self):
        self.assertEqual(allama.require({"n": 3}, "n", int), 3)
        self.assertEqual(allama.require({"n": 3}, "n", float), 3)
        self.assertEqual(allama.require({}, "n", int, default=5), 5)
        for bad in ({"n": True}, {"n": "3"}, {}, {"n": None}):
            with self.assertRaises(allama.InvalidInput):
                allama.require(bad, "n", int)
        with self.assertRaises(allama.InvalidInput):
            allama.require([1], "n", int)

    def test_upstream_is_retryable_for_5xx_and_connections_only(self):
        self.assertTrue(allama.Upstream("x", 503).retryable)
        self.assertTrue(allama.Upstream("x").retryable)
        self.assertFalse(allama.Upstream("x", 400).retryable)
        self.assertFalse(allama.Upstream("x", 503, retryable=False).retryable)


class HttpTest(Patched):
    def fake(self, *responses):
        f = FakeHttp(*responses)
        self.patch(wit_http, "send", f)
        return f

    def test_request_with_auth_query_and_json(self):
        f = self.fake((200, [("content-type", "application/json"), ("x-a", "1"), ("X-A", "2")], {"ok": True}))
        r = http.post(
            "https://api.example.com/v1/x?fixed=1",
            query={"q": "a b&c", "tags": ["x", "y"], "skip": None, "flag": True},
            headers={"accept": "application/json"},
            json={"key": allama.secret("BODY_KEY")},
            auth=allama.bearer("API_TOKEN"),
            timeout_ms=500,
        )
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"ok": True})
        self.assertEqual(r.headers["x-a"], "1, 2")
        req = f.requests[0]
        self.assertEqual(req.method, wit_http.Method.POST)
        self.assertEqual(
            req.url, "https://api.example.com/v1/x?fixed=1&q=a%20b%26c&tags=x&tags=y&flag=true"
        )
        self.assertEqual(
            req.headers,
            [
                ("accept", "application/json"),
                ("authorization", "Bearer {{secret:API_TOKEN}}"),
                ("content-type", "application/json"),
            ],
        )
        self.assertEqual(req.body, b'{"key":"{{secret:BODY_KEY}}"}')
        self.assertEqual(req.timeout_ms, 500)

    def test_placeholders_in_query_values_are_kept_as_written(self):
        f = self.fake((200, [], b""))
        http.get(
            "https://api.example.com/x",
            query={"note": "{{secret:NOT_A_SECRET_CALL}} & more", "b": "{{secret:B|base64}}"},
            auth=allama.query_secret("apikey", "VT_KEY"),
        )
        self.assertEqual(
            f.requests[0].url,
            "https://api.example.com/x?note={{secret:NOT_A_SECRET_CALL}}%20%26%20more"
            "&b={{secret:B|base64}}&apikey={{secret:VT_KEY}}",
        )

    def test_auth_helpers_write_placeholders_only(self):
        self.assertEqual(allama.header("X-Key", "K").headers, [("X-Key", "{{secret:K}}")])
        self.assertEqual(
            allama.basic("JIRA_CREDS").headers,
            [("authorization", "Basic {{secret:JIRA_CREDS|base64}}")],
        )
        self.assertEqual(allama.secret("K", base64=True), "{{secret:K|base64}}")
        for bad in ("sk-live-123", "1ABC", "", "a b", "{{secret:X}}"):
            with self.assertRaises(ValueError):
                allama.bearer(bad)

    def test_statuses_map_to_typed_errors(self):
        cases = [
            (401, [], allama.Unauthorized, False),
            (403, [], allama.Unauthorized, False),
            (404, [], allama.NotFound, False),
            (408, [], allama.Timeout, True),
            (429, [("retry-after", "7")], allama.RateLimited, True),
            (500, [], allama.Upstream, True),
            (400, [], allama.Upstream, False),
            (302, [("location", "/elsewhere")], allama.Upstream, False),
        ]
        for status, headers, cls, retryable in cases:
            self.fake((status, headers, {"error": {"message": "vendor says no"}}))
            with self.assertRaises(cls) as cm:
                http.get("https://api.example.com/x?key={{secret:K}}")
            e = cm.exception
            self.assertEqual(e.retryable, retryable, status)
            self.assertEqual(
                e.message, f"GET https://api.example.com/x: HTTP {status}: vendor says no"
            )
        self.assertEqual(allama.RateLimited("x", 7000).retry_after_ms, 7000)

    def test_retry_after_as_a_date_and_missing(self):
        self.fake((429, [("retry-after", formatdate(time.time() + 60, usegmt=True))], b"slow"))
        with self.assertRaises(allama.RateLimited) as cm:
            http.get("https://api.example.com/x")
        self.assertTrue(55_000 <= cm.exception.retry_after_ms <= 60_000, cm.exception.retry_after_ms)
        self.assertEqual(cm.exception.message, "GET https://api.example.com/x: HTTP 429: slow")
        self.fake((429, [], b""))
        with self.assertRaises(allama.RateLimited) as cm:
            http.get("https://api.example.com/x")
        self.assertIsNone(cm.exception.retry_after_ms)

    def test_raise_for_status_false_returns_the_response(self):
        self.fake((404, [], b"gone"))
        r = http.get("https://api.example.com/x", raise_for_status=False)
        self.assertEqual((r.status, r.ok, r.text), (404, False, "gone"))
        self.assertIsInstance(allama.http.status_error(r), allama.NotFound)

    def test_a_body_that_is_not_json(self):
        self.fake((200, [], b"<html>"))
        with self.assertRaises(allama.Upstream) as cm:
            http.get("https://api.example.com/x").json()
        self.assertEqual(cm.exception.status, 200)
        self.assertFalse(cm.exception.retryable)

    def test_host_errors_map_to_typed_errors(self):
        cases = [
            (wit_http.HttpError_Denied("not granted"), allama.Denied, False),
            (wit_http.HttpError_Timeout("10 s"), allama.Timeout, True),
            (wit_http.HttpError_RateLimited(2500), allama.RateLimited, True),
            (wit_http.HttpError_Connection("refused"), allama.Upstream, True),
            (wit_http.HttpError_ResponseTooLarge(1024), allama.Upstream, False),
            (wit_http.HttpError_InvalidRequest("bad url"), allama.Internal, False),
        ]
        for error, cls, retryable in cases:
            self.fake(Err(error))
            with self.assertRaises(cls) as cm:
                http.get("https://api.example.com/x")
            self.assertEqual(cm.exception.retryable, retryable, error)
            self.assertTrue(cm.exception.message.startswith("GET https://api.example.com/x: "))
        self.assertEqual(http.from_wit_error(wit_http.HttpError_RateLimited(2500)).retry_after_ms, 2500)

    def test_paginate_follows_cursors(self):
        f = self.fake(
            (200, [], {"data": [1, 2], "meta": {"next_cursor": "2"}}),
            (200, [], {"data": [3, 4], "meta": {"next_cursor": "4"}}),
            (200, [], {"data": [5], "meta": {"next_cursor": None}}),
        )
        items = list(http.paginate("https://api.example.com/items", query={"limit": 2}))
        self.assertEqual(items, [1, 2, 3, 4, 5])
        self.assertEqual(
            [r.url for r in f.requests],
            [
                "https://api.example.com/items?limit=2",
                "https://api.example.com/items?limit=2&cursor=2",
                "https://api.example.com/items?limit=2&cursor=4",
            ],
        )

    def test_paginate_other_shapes_and_guards(self):
        self.fake(
            (200, [], {"results": ["a"], "next": 10}),
            (200, [], {"results": ["b"], "next": ""}),
        )
        got = list(http.paginate("https://x.example/l", items="results", cursor="next", cursor_param="offset"))
        self.assertEqual(got, ["a", "b"])

        self.fake(
            (200, [], {"data": [1], "meta": {"next_cursor": "a"}}),
            (200, [], {"data": [2], "meta": {"next_cursor": "a"}}),
        )
        with self.assertRaises(allama.Upstream):
            list(http.paginate("https://x.example/l"))

        self.fake((200, [], {"oops": True}))
        with self.assertRaises(allama.Upstream):
            list(http.paginate("https://x.example/l"))

        lines = []
        self.patch(wit_log, "write", lambda level, message, fields: lines.append(message))
        self.fake(*[(200, [], {"data": [i], "meta": {"next_cursor": str(i + 1)}}) for i in range(3)])
        self.assertEqual(list(http.paginate("https://x.example/l", max_pages=3)), [0, 1, 2])
        self.assertEqual(lines, ["pagination stopped at max_pages"])


class KvAndLogTest(Patched):
    def test_kv_round_trip(self):
        store = {}

        def set_(key, value, ttl):
            store[key] = (value, ttl)

        self.patch(wit_kv, "get", lambda key: store[key][0] if key in store else None)
        self.patch(wit_kv, "set", set_)
        self.patch(wit_kv, "delete", lambda key: store.pop(key, None) is not None)
        self.patch(wit_kv, "list_prefix", lambda p, n: sorted(k for k in store if k.startswith(p))[:n])
        kv.set_json("v:1", {"a": 1}, ttl_seconds=60)
        kv.set("v:2", "text")
        self.assertEqual(kv.get_json("v:1"), {"a": 1})
        self.assertEqual(kv.get("v:2"), b"text")
        self.assertEqual(store["v:1"], (b'{"a":1}', 60))
        self.assertIsNone(kv.get("v:3"))
        self.assertEqual(kv.get_json("v:3", default=[]), [])
        self.assertEqual(kv.list_prefix("v:"), ["v:1", "v:2"])
        self.assertTrue(kv.delete("v:1"))
        self.assertFalse(kv.delete("v:1"))

    def test_kv_errors_are_typed(self):
        cases = [
            (wit_kv.KvError_Denied("kv is not granted"), allama.Denied, False),
            (wit_kv.KvError_QuotaExceeded("max_keys"), allama.Internal, False),
            (wit_kv.KvError_InvalidKey("empty"), allama.Internal, False),
            (wit_kv.KvError_TooLarge("64 KiB"), allama.Internal, False),
            (wit_kv.KvError_Unavailable("db down"), allama.Upstream, True),
        ]
        for error, cls, retryable in cases:
            def fail(*_args, error=error):
                raise Err(error)

            self.patch(wit_kv, "get", fail)
            with self.assertRaises(cls) as cm:
                kv.get("k")
            self.assertEqual(cm.exception.retryable, retryable)
            self.assertEqual(cm.exception.message, f"kv: {error.value}")

    def test_log_fields(self):
        lines = []
        self.patch(wit_log, "write", lambda level, message, fields: lines.append((level, message, fields)))
        log.info("checked", ip="1.2.3.4", score=87, tags=["a"])
        log.warning("careful")
        self.assertEqual(
            lines,
            [
                (wit_log.Level.INFO, "checked", [("ip", "1.2.3.4"), ("score", "87"), ("tags", '["a"]')]),
                (wit_log.Level.WARN, "careful", []),
            ],
        )


if __name__ == "__main__":
    unittest.main()
