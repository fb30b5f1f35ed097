"""Steady load on keyless's ECS-style and GCE-style endpoints, for tests/integration/soak.rs.

Usage: soak_client.py SECONDS RATE ECS_URL ECS_TOKEN GCE_HOST

Per endpoint, a few threads send GETs (keep-alive, as the SDKs do) at RATE requests per second
in all, for SECONDS, and check every answer:
  - a 200 must carry a credential whose expiry is still ahead (else it counts as expired_served);
  - anything else is a failure, which must not happen while the last credential seen is still
    valid, i.e. more than the server's 5 s safety margin from its expiry (failures_while_valid).
The server decides somewhere between a request's sending and its answer's arrival, so only what
holds over that whole interval counts as a violation: a load spike on the machine can make an
answer late, not a correct answer wrong. GCE's expires_in is counted from the sending, which
never puts the expiry later than the real one.
Prints one JSON document of counts on stdout.
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse
from datetime import datetime

THREADS = 3
# The refresh engine stops serving a credential this close to its expiry (s).
MARGIN = 5.0


class Endpoint:
    def __init__(self, name, url, headers, read_expiry):
        parts = urllib.parse.urlsplit(url)
        self.name = name
        self.host = parts.hostname
        self.port = parts.port
        self.path = parts.path or "/"
        self.headers = headers
        self.read_expiry = read_expiry
        self.lock = threading.Lock()
        self.valid_until = 0.0
        self.stats = {
            "requests": 0,
            "ok": 0,
            "failures": 0,
            "failures_while_valid": 0,
            "expired_served": 0,
            "min_seconds_left": None,
            "max_latency_ms": 0,
            "max_latency_ok_ms": 0,
            "over_1s": 0,
            "failure_examples": [],
        }

    def record(self, sent, received, status, body):
        s = self.stats
        with self.lock:
            s["requests"] += 1
            latency = int((received - sent) * 1000)
            s["max_latency_ms"] = max(s["max_latency_ms"], latency)
            if latency > 1000:
                s["over_1s"] += 1
            if status == 200:
                try:
                    expiry = self.read_expiry(json.loads(body), sent)
                except (ValueError, KeyError, TypeError) as e:
                    status, body = "unreadable", f"{e}: {body[:200]!r}"
                else:
                    left = expiry - received
                    if expiry <= sent:
                        s["expired_served"] += 1
                    else:
                        s["ok"] += 1
                        s["max_latency_ok_ms"] = max(s["max_latency_ok_ms"], latency)
                        self.valid_until = max(self.valid_until, expiry - MARGIN)
                    if s["min_seconds_left"] is None or left < s["min_seconds_left"]:
                        s["min_seconds_left"] = round(left, 2)
                    return
            s["failures"] += 1
            if received < self.valid_until:
                s["failures_while_valid"] += 1
                if len(s["failure_examples"]) < 5:
                    s["failure_examples"].append(
                        {"status": status, "body": str(body)[:300], "at": sent}
                    )


def ecs_expiry(doc, _sent):
    return datetime.fromisoformat(doc["Expiration"].replace("Z", "+00:00")).timestamp()


def gce_expiry(doc, sent):
    return sent + float(doc["expires_in"])


def worker(endpoint, stop_at, interval):
    conn = None
    next_at = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= stop_at:
            break
        if now < next_at:
            time.sleep(next_at - now)
        next_at = max(next_at + interval, time.monotonic() - interval)
        sent = time.time()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=30)
            conn.request("GET", endpoint.path, headers=endpoint.headers)
            response = conn.getresponse()
            body = response.read().decode("utf-8", "replace")
            status = response.status
            if response.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            if conn is not None:
                conn.close()
            conn = None
            status, body = "error", repr(e)
        endpoint.record(sent, time.time(), status, body)
    if conn is not None:
        conn.close()


def main():
    seconds, rate, ecs_url, ecs_token, gce_host = sys.argv[1:6]
    seconds, rate = float(seconds), float(rate)
    endpoints = [
        Endpoint("ecs", ecs_url, {"Authorization": ecs_token}, ecs_expiry),
        Endpoint(
            "gce",
            f"http://{gce_host}/computeMetadata/v1/instance/service-accounts/default/token",
            {"Metadata-Flavor": "Google"},
            gce_expiry,
        ),
    ]
    stop_at = time.monotonic() + seconds
    threads = [
        threading.Thread(target=worker, args=(e, stop_at, THREADS / rate), daemon=True)
        for e in endpoints
        for _ in range(THREADS)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    result = {e.name: e.stats for e in endpoints}
    result["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
