"""A stand-in for the IPIntel API, for trying the example locally.

    python3 mock_vendor.py [PORT] [API_KEY]    (defaults: 8787, demo-key)

GET /v1/ip/<ip> with header ``x-api-key: <API_KEY>`` answers
``{"ip", "abuse_score", "country", "total_reports", "key_seen"}``; the score
is derived from the address. ``key_seen`` echoes the key the vendor received,
to show that the host scrubs it before the component sees the answer. A
wrong key is answered 401.
"""

import json
import sys
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8787
API_KEY = sys.argv[2] if len(sys.argv) > 2 else "demo-key"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        key = self.headers.get("x-api-key", "")
        if not path.startswith("/v1/ip/"):
            return self.answer(404, {"error": "not found"})
        if key != API_KEY:
            return self.answer(401, {"error": f"invalid API key {key!r}"})
        ip = path[len("/v1/ip/"):]
        score = zlib.crc32(ip.encode()) % 101
        self.answer(200, {
            "ip": ip,
            "abuse_score": score,
            "country": "NL",
            "total_reports": score // 3,
            "key_seen": key,
        })

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    print(f"mock IPIntel on http://127.0.0.1:{PORT} (key {API_KEY!r})", flush=True)
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
