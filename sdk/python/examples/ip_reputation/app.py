"""IP reputation, an Allama action in Python.

``check`` looks an IP address up at a reputation vendor ("IPIntel", an
AbuseIPDB-like API) and returns a verdict; ``echo`` returns its input.

The vendor's API key is the secret ``IPINTEL_API_KEY``: the component only
names it, the host sends it (to the hosts the grant allows) and scrubs it
from the answer. Verdicts are cached in kv for an hour.
"""

import ipaddress

# WitWorld is the component's export: componentize-py looks for it here.
from allama import WitWorld, Upstream, InvalidInput, action, header, http, kv, log, require  # noqa: F401

DEFAULT_BASE_URL = "https://api.ipintel.example"
CACHE_SECONDS = 3600


@action("check")
def check(input):
    """``{"ip": "203.0.113.7", "base_url"?: "https://..."}`` → a verdict."""
    raw = require(input, "ip", str)
    try:
        ip = ipaddress.ip_address(raw.strip())
    except ValueError:
        raise InvalidInput(f"input.ip: {raw[:64]!r} is not an IPv4 or IPv6 address") from None
    if getattr(ip, "scope_id", None):
        raise InvalidInput("input.ip: an address with a zone (`%...`) is not a public address")
    base_url = require(input, "base_url", str, default=DEFAULT_BASE_URL).rstrip("/")

    cache_key = f"verdict:{ip}"
    cached = kv.get_json(cache_key)
    if cached is not None:
        return {**cached, "cached": True}

    data = http.get(
        f"{base_url}/v1/ip/{ip}",
        auth=header("x-api-key", "IPINTEL_API_KEY"),
        headers={"accept": "application/json"},
        query={"max_age_days": 90},
    ).json()
    score = data.get("abuse_score") if isinstance(data, dict) else None
    if not isinstance(score, int) or isinstance(score, bool) or not 0 <= score <= 100:
        raise Upstream("IPIntel answered without an abuse_score in 0..100", 200, retryable=False)

    verdict = "malicious" if score >= 75 else "suspicious" if score >= 25 else "harmless"
    result = {
        "ip": str(ip),
        "verdict": verdict,
        "score": score,
        "country": data.get("country"),
        "reports": data.get("total_reports", 0),
        "raw": data,
    }
    kv.set_json(cache_key, result, ttl_seconds=CACHE_SECONDS)
    log.info("ip checked", ip=str(ip), verdict=verdict, score=score)
    return {**result, "cached": False}


@action("echo")
def echo(input):
    """Returns its input."""
    return input
