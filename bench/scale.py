"""7. scale: one `keyless serve` for 1,000 ECS-style profiles against a slow lab.

A node agent runs one daemon for many workloads. This section starts `keyless lab --latency
50ms --credential-lifetime 60s` (an STS 50 ms away, sessions lasting a minute so a short run sees
many refreshes), writes a keyless.toml with 1,000 GCP → AWS profiles, each with its own
`ecs_listen` (the daemon binds one listener per profile: 1,000 sockets, so the soft
`ulimit -n` is raised to the hard limit first), and measures against the issue's targets:

- start-up: time from spawn until `/healthz` answers 200 (every profile holds a credential);
- the most upstream calls in flight at once (the lab's high-water mark), at start-up and after;
- RSS with 10 and with 1,000 profiles, and per profile;
- SIGHUP reload of one profile: time until its endpoint serves the new credential, and that the
  other 999 made no call (done early, while no other profile's refresh is due);
- `/metrics` series, in all and per profile;
- a poller asking random profiles for credentials for 10 minutes (`--quick`: 1), checking at
  receipt that `Expiration` is in the future: zero expired credentials served.

Run alone with `bench/run --only scale`; suite.py registers it, report.py renders it.
"""

import http.client
import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROLE = "arn:aws:iam::123456789012:role/gcp-deploy"
PROFILES = 1000
SMALL = 10
TOKEN = "bench-scale-authorization-token-0123456789abcdef"


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def wait_for(predicate, what, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise SystemExit(f"bench: timed out waiting for {what}")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def free_ports(n):
    """n distinct free loopback ports (all held open while choosing, so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SlowLab:
    """`keyless lab` with a 50 ms upstream and 60 s credentials."""

    def __init__(self, binary, work, env):
        env_file, err_file = work / "scale-lab.env", work / "scale-lab.stderr"
        self.proc = subprocess.Popen(
            [binary, "lab", "--env-file", env_file, "--latency", "50ms",
             "--credential-lifetime", "60s"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(err_file, "w"),
        )
        wait_for(lambda: "try:" in err_file.read_text(), "the slow lab to start", 30)
        self.env = dict(re.findall(r"^export ([A-Z0-9_]+)=['\"]?([^'\"\n]*)['\"]?$", env_file.read_text(), re.M))
        self.sts = self.env["AWS_ENDPOINT_URL_STS"]

    def _call(self, method, path):
        host = self.sts.removeprefix("http://")
        conn = http.client.HTTPConnection(host, timeout=10)
        conn.request(method, path)
        body = conn.getresponse().read()
        conn.close()
        return json.loads(body) if body else None

    def stats(self):
        return self._call("GET", "/_lab/stats")

    def reset_most_in_flight(self):
        self._call("POST", "/_lab/stats/reset-in-flight")


def write_config(path, metrics_port, ports, token_file, changed=None):
    lines = [f'metrics_listen = "127.0.0.1:{metrics_port}"', ""]
    for i, port in enumerate(ports):
        lines += [
            f"[profile.p{i:04d}]",
            f'role_arn = "{ROLE}"',
            f'session_name = "p{i:04d}"',
            f'ecs_listen = "127.0.0.1:{port}"',
            f'auth_token_file = "{token_file}"',
        ]
        if i == changed:
            lines.append('duration = "15m"')  # any change restarts the profile
        lines.append("")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class Serve:
    """`keyless serve` with n profiles."""

    def __init__(self, binary, work, env, n, tag):
        self.dir = work / f"scale-{tag}"
        self.dir.mkdir()
        self.token_file = self.dir / "auth.token"
        self.token_file.write_text(TOKEN)
        os.chmod(self.token_file, 0o600)
        os.chmod(self.dir, 0o700)
        ports = free_ports(n + 1)
        self.metrics, self.ports = ports[0], ports[1:]
        self.config = self.dir / "keyless.toml"
        write_config(self.config, self.metrics, self.ports, self.token_file)
        self.ready_file = self.dir / "ready.json"
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [binary, "--config", self.config, "serve", "--ready-file", self.ready_file],
            env=env, stdout=subprocess.DEVNULL, stderr=open(self.dir / "serve.stderr", "w"),
        )
        self.conns = {}

    def get(self, path, port=None, headers=None):
        """(status, body) over a kept-alive connection to the port."""
        port = port or self.metrics
        for attempt in (0, 1):
            conn = self.conns.get(port)
            if conn is None:
                conn = self.conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", path, headers=headers or {})
                r = conn.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                del self.conns[port]
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def healthz(self):
        if self.proc.poll() is not None:
            raise SystemExit(f"bench: keyless serve exited with {self.proc.returncode}; "
                             f"see {self.dir / 'serve.stderr'}")
        try:
            return self.get("/healthz")[0] == 200
        except OSError:
            return False

    def wait_ready(self, timeout):
        wait_for(self.healthz, "/healthz 200", timeout)
        return time.perf_counter() - self.started

    def credential(self, i):
        status, body = self.get("/", self.ports[i], {"Authorization": TOKEN})
        return status, (json.loads(body) if status == 200 else body)

    def rss_kb(self):
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))

    def open_fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def metrics_series(self):
        status, body = self.get("/metrics")
        assert status == 200, status
        return sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))

    def close(self):
        for conn in self.conns.values():
            conn.close()
        stop(self.proc)


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def expiration(doc):
    return datetime.strptime(doc["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def measure_reload(serve, lab, changed):
    """SIGHUP with one profile changed: seconds until it serves a new credential, and the
    upstream calls the reload caused (the changed profile's one, nothing for the others)."""
    status, before = serve.credential(changed)
    assert status == 200, before
    calls_before = lab.stats()["assume_role_with_web_identity_calls"]
    write_config(serve.config, serve.metrics, serve.ports, serve.token_file, changed=changed)
    sent = time.perf_counter()
    serve.proc.send_signal(signal.SIGHUP)

    def new_credential():
        status, doc = serve.credential(changed)
        return status == 200 and doc["AccessKeyId"] != before["AccessKeyId"]

    wait_for(new_credential, "the reloaded profile's new credential", 30)
    took = time.perf_counter() - sent
    time.sleep(1.0)  # anything the reload set off has started by now
    calls = lab.stats()["assume_role_with_web_identity_calls"] - calls_before
    others_serving = all(serve.credential(i)[0] == 200
                         for i in random.sample(range(len(serve.ports)), 50) if i != changed)
    return took, calls, others_serving


def poll(serve, seconds, rate):
    """Random profiles' credentials for `seconds`, ~`rate` a second; Expiration checked at
    receipt against this machine's clock."""
    served = expired = errors = 0
    least_left = None
    end = time.monotonic() + seconds
    gap = 1.0 / rate
    rss, next_sample = [], time.monotonic()
    while time.monotonic() < end:
        if time.monotonic() >= next_sample:  # RSS once a minute: does it level off?
            rss.append(serve.rss_kb())
            next_sample += 60
        i = random.randrange(len(serve.ports))
        try:
            status, doc = serve.credential(i)
        except OSError:
            errors += 1
            continue
        now = datetime.now(timezone.utc)
        if status != 200:
            errors += 1
            continue
        served += 1
        left = (expiration(doc) - now).total_seconds()
        least_left = left if least_left is None else min(least_left, left)
        if left <= 0:
            expired += 1
        time.sleep(gap)
    rss.append(serve.rss_kb())
    return {"served": served, "expired": expired, "errors": errors,
            "least_seconds_left": least_left, "rss_kb_per_minute": rss}


def bench_scale(binary, env, work, quick):
    log(f"7. scale: {PROFILES} ECS-style profiles in one keyless serve, 50 ms upstream, 60 s credentials")
    nofile = raise_fd_limit()
    lab = SlowLab(binary, work, env)
    env = {**env, **lab.env}
    results = {"profiles": PROFILES, "upstream_latency_ms": 50, "credential_seconds": 60,
               "ulimit_n": nofile, "binary": str(binary)}
    try:
        small = Serve(binary, work, env, SMALL, "small")
        try:
            results["small_ready_s"] = small.wait_ready(60)
            time.sleep(1)
            results["small_rss_kb"] = small.rss_kb()
            results["small_metrics_series"] = small.metrics_series()
        finally:
            small.close()

        lab.reset_most_in_flight()
        calls_at_start = lab.stats()["assume_role_with_web_identity_calls"]
        serve = Serve(binary, work, env, PROFILES, "large")
        try:
            results["ready_s"] = serve.wait_ready(120)
            stats = lab.stats()
            results["most_in_flight_startup"] = stats["most_upstream_calls_in_flight"]
            results["startup_calls"] = stats["assume_role_with_web_identity_calls"] - calls_at_start
            results["rss_kb"] = serve.rss_kb()
            results["open_fds"] = serve.open_fds()
            results["metrics_series"] = serve.metrics_series()
            took, calls, others = measure_reload(serve, lab, changed=PROFILES // 2)
            results["reload_ms"] = took * 1e3
            results["reload_upstream_calls"] = calls
            results["reload_others_serving"] = others
            lab.reset_most_in_flight()
            seconds = 60 if quick else 600
            log(f"   polling random profiles for {seconds} s")
            results["run"] = poll(serve, seconds, rate=100)
            results["run"]["seconds"] = seconds
            stats = lab.stats()
            results["most_in_flight_run"] = stats["most_upstream_calls_in_flight"]
            results["run"]["upstream_calls"] = stats["assume_role_with_web_identity_calls"] - calls_at_start
            results["rss_kb_after_run"] = serve.rss_kb()
            results["metrics_series_after_run"] = serve.metrics_series()
        finally:
            serve.close()
    finally:
        stop(lab.proc)
    extra = PROFILES - SMALL
    results["rss_kb_per_profile"] = (results["rss_kb"] - results["small_rss_kb"]) / extra
    results["metrics_series_per_profile"] = (
        results["metrics_series"] - results["small_metrics_series"]) / extra
    log("   " + json.dumps({k: v for k, v in results.items() if k != "run"}))
    log("   run: " + json.dumps(results["run"]))
    return results


def section_scale(s):
    """The BENCHMARKS.md section (report.py calls it)."""
    from report import mb, met, table

    run = s["run"]
    rows = [
        [f"{s['profiles']:,} profiles: spawn → `/healthz` 200 (every profile holds a credential)",
         f"{s['ready_s']:.2f} s", "≤ 10 s", met(s["ready_s"] <= 10)],
        ["most upstream calls in flight at start-up (the lab's high-water mark)",
         s["most_in_flight_startup"], "≤ 50", met(s["most_in_flight_startup"] <= 50)],
        [f"most upstream calls in flight during the {run['seconds']} s run (refreshes)",
         s["most_in_flight_run"], "≤ 50", met(s["most_in_flight_run"] <= 50)],
        ["RSS once ready", mb(s["rss_kb"]), "≤ 100 MB", met(s["rss_kb"] <= 100 * 1024)],
        [f"RSS per profile ({s['profiles']:,} vs {SMALL} profiles)",
         f"{s['rss_kb_per_profile']:.1f} kB", "—", "—"],
        [f"RSS after the {run['seconds']} s run (once a minute: "
         + " → ".join(mb(x) for x in run.get("rss_kb_per_minute", [])) + ")",
         mb(s["rss_kb_after_run"]), "≤ 100 MB", met(s["rss_kb_after_run"] <= 100 * 1024)],
        ["SIGHUP reload of one profile: signal → its endpoint serves the new credential",
         f"{s['reload_ms']:.0f} ms", "≤ 100 ms", met(s["reload_ms"] <= 100)],
        ["upstream calls the reload caused (the changed profile: 1; the other 999: none)",
         s["reload_upstream_calls"], "1", met(s["reload_upstream_calls"] == 1)],
        ["`/metrics` series, and per profile",
         f"{s['metrics_series']:,} ({s['metrics_series_per_profile']:.1f} per profile; "
         f"{s['metrics_series_after_run']:,} after the run)", "bounded by the profiles",
         met(s["metrics_series_after_run"] == s["metrics_series"])],
        [f"credentials served over {run['seconds']} s to a poller (random profiles, "
         "~100 a second), expired at receipt",
         f"{run['expired']} of {run['served']:,} (errors: {run['errors']}; least time left "
         f"{run['least_seconds_left']:.0f} s)", "0 expired",
         met(run["expired"] == 0 and run["errors"] == 0)],
    ]
    return table(["", "keyless", "target", "met?"], rows) + (
        f"\n\n`keyless lab --latency {s['upstream_latency_ms']}ms --credential-lifetime "
        f"{s['credential_seconds']}s` (every STS call answered after 50 ms; sessions last "
        "60 s, so each profile refreshes about every 30 s), and one `keyless serve` with "
        f"{s['profiles']:,} GCP → AWS profiles, each with its own `ecs_listen` "
        f"({s['open_fds']:,} open descriptors once ready; the soft `ulimit -n` raised to "
        f"{s['ulimit_n']:,}). {run['upstream_calls']:,} STS calls in all. `bench/scale.py`.")
