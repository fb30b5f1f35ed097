"""Per-call floors of issue 15: the warm credential_process floor, the same exchange over TLS,
the local endpoints against a minimal server (bench/floor_server.c),
and the endpoints holding 10,000 idle keep-alive connections. Called from bench/suite.py
(measuring) and bench/report.py (rows); standard library only besides what suite.py uses.

The floor of a cached credential_process run is a process that does nothing but what a cache
hit must: start, read the cached answer, write it to stdout, exit. bench/floor.c is that, linked
statically (no dynamic loader, no relocations, no allocator), reading a file that holds the very
JSON keyless printed; it is spawned the same way (posix_spawn, wait4) right after keyless's warm
runs, so both saw the same machine.
"""

import resource
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

# Issue 15's targets for a cached `credential_process` run.
FLOOR_RATIO_TARGET = 1.5
WARM_MEDIAN_TARGET_MS = 1.2


def build_c(work, name, *flags):
    """bench/NAME.c built with `cc -O2 FLAGS` into `work`: (path, None), or (None, why) without
    a C toolchain."""
    out = work / name
    try:
        subprocess.run(["cc", "-O2", *flags, "-o", str(out), str(BENCH / f"{name}.c")],
                       check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        return None, f"could not build bench/{name}.c {' '.join(flags)}: {getattr(e, 'stderr', e)}"
    return out, None


def credential_process_floor(suite, warm_argv, env, work, quick):
    """The floor process's figures, measured like keyless's warm runs; or why there are none."""
    floor, why = build_c(work, "floor", "-static")
    if floor is None:
        suite.log(f"   floor: {why}")
        return {"error": why}
    answer = work / "credential_process.json"
    answer.write_text(suite.check_once(warm_argv, env))
    suite.log("   floor: a static binary printing the same JSON")
    figures = suite.measure([floor, answer], env, runs=50 if quick else 300, warmup=10,
                            expect=r'"AccessKeyId":"ASIA')
    figures["bytes"] = answer.stat().st_size
    return figures


def credential_process_rows(s, ms, met):
    """Rows for section 1: keyless warm against the floor."""
    f = s.get("floor")
    if not f:
        return []
    if "error" in f:
        return [["warm vs the floor (a static binary printing the same JSON)", "—",
                 f"not measured: {f['error']}", "—", "—", "—"]]
    w = s["keyless_warm"]
    wm, fm = w["wall_ms"]["median"], f["wall_ms"]["median"]
    r = wm / fm if fm else float("inf")
    return [
        ["warm vs the floor (a static binary that reads the same JSON from a file and prints it; "
         "bench/floor.c): keyless ÷ floor", ms(w["wall_ms"]), ms(f["wall_ms"]), f"{r:.2f}× (keyless ÷ floor)",
         f"≤ {FLOOR_RATIO_TARGET}×", met(r <= FLOOR_RATIO_TARGET)],
        ["warm, at low load", ms(w["wall_ms"]), "—", "—", f"median ≤ {WARM_MEDIAN_TARGET_MS} ms",
         met(wm <= WARM_MEDIAN_TARGET_MS)],
        ["client CPU, warm vs the floor", ms(w["cpu_ms"]), ms(f["cpu_ms"]),
         f"{w['cpu_ms']['median'] / max(f['cpu_ms']['median'], 1e-9):.2f}× (keyless ÷ floor)",
         "—", "—"],
    ]


# --- endpoints: the IMDS-style row, and 10,000 idle keep-alive connections ---------------------

IDLE_CONNECTIONS = 10_000


def imds_token(endpoint):
    """An IMDSv2 session token from `aws serve --imds` (what an SDK does first)."""
    import urllib.request
    put = urllib.request.Request(f"{endpoint.rstrip('/')}/latest/api/token", method="PUT",
                                 headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
    with urllib.request.urlopen(put, timeout=5) as r:
        return r.read().decode()


def bench_imds(suite, binary, env, role, rounds, seconds, conns):
    """`aws serve --imds` under wrk: the credentials document, with one session token."""
    # One export line only (suite.start_and_read_exports waits for two).
    out = tempfile.NamedTemporaryFile("w+", delete=False)
    proc = subprocess.Popen([binary, "aws", "serve", "--imds", "--role-arn", role], env=env,
                            stdout=out, stderr=subprocess.DEVNULL)

    def endpoint_line():
        if proc.poll() is not None:
            raise SystemExit(f"bench: keyless aws serve --imds exited with {proc.returncode}")
        return suite.parse_exports(Path(out.name).read_text()).get(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT")

    try:
        endpoint = suite.wait_for(endpoint_line, "keyless aws serve --imds").rstrip("/")
        token = imds_token(endpoint)
        role_name = role.rsplit("/", 1)[1]
        url = f"{endpoint}/latest/meta-data/iam/security-credentials/{role_name}"
        return suite.wrk_series("keyless imds", proc.pid, url,
                                [f"X-aws-ec2-metadata-token: {token}"], rounds, seconds, conns)
    finally:
        suite.stop(proc)


def raise_fd_limit(wanted):
    """Soft RLIMIT_NOFILE up to `wanted` (at most the hard limit); what it is now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_idle(host, port, request, count):
    """`count` connections, each answered once (so kept alive by the server) and then left idle."""
    held = []
    for _ in range(count):
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("bench: the endpoint closed a connection it had just answered")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status:
            raise SystemExit(f"bench: idle connection setup answered {status!r}")
        length = int(next(l.split(b":", 1)[1] for l in head.split(b"\r\n")
                          if l.lower().startswith(b"content-length:")))
        body = head.split(b"\r\n\r\n", 1)[1]
        while len(body) < length:
            body += s.recv(65536)
        held.append(s)
    return held


def still_open(held):
    """How many held connections the server has not closed (a closed one reads EOF)."""
    alive = 0
    for s in held:
        s.setblocking(False)  # a socket with a timeout would wait for data first
        try:
            alive += 1 if s.recv(1, socket.MSG_PEEK) else 0
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive


def bench_idle_connections(suite, binary, env, role, seconds, conns, quick):
    """`aws serve` (ECS-style) holding IDLE_CONNECTIONS idle kept-alive connections: RSS with
    them held, and wrk's figures on other connections meanwhile.

    Two of the server's limits (src/deliver/server.rs) stand in the way by design and are
    lifted through their operator knobs for this step only: at most 4,096 connections per
    listener (KEYLESS_SERVER_MAX_CONNECTIONS) and 10 s for a kept-alive connection's next
    request (KEYLESS_SERVER_HEADER_TIMEOUT)."""
    count = 2_000 if quick else IDLE_CONNECTIONS
    soft = raise_fd_limit(count + conns + 512)
    if soft < count + conns + 64:
        return {"error": f"the file-descriptor limit is {soft}; {count} connections need more "
                         "(raise `ulimit -Hn`)"}
    env = {**env, "KEYLESS_SERVER_MAX_CONNECTIONS": str(count + conns + 256),
           "KEYLESS_SERVER_HEADER_TIMEOUT": "600"}
    suite.log(f"   {count:,} idle keep-alive connections to keyless ecs, then wrk beside them")
    proc, exports = suite.start_and_read_exports(
        [binary, "aws", "serve", "--role-arn", role], env, "keyless aws serve")
    held = []
    try:
        url = exports["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
        token = exports["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
        hostport, path = url.split("://", 1)[1].split("/", 1)
        host, port = hostport.rsplit(":", 1)
        request = (f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: {token}\r\n"
                   "Connection: keep-alive\r\n\r\n").encode()
        before = suite.rss_kb(proc.pid)
        started = time.monotonic()
        held = open_idle(host, int(port), request, count)
        opened_s = time.monotonic() - started
        time.sleep(1)
        with_held = suite.rss_kb(proc.pid)
        wrk = suite.run_wrk(url, [f"Authorization: {token}"], seconds, conns, strict=True)
        alive = still_open(held)
        return {
            "connections": count,
            "open_seconds": opened_s,
            "rss_kb_before": before["rss_kb"],
            "rss_kb_held": with_held["rss_kb"],
            "peak_rss_kb": suite.rss_kb(proc.pid)["peak_rss_kb"],
            "still_open_after_wrk": alive,
            "wrk": {k: wrk[k] for k in ("rps", "p50_us", "p99_us", "p999_us", "requests")},
            "wrk_connections": conns,
            "wrk_seconds": seconds,
        }
    finally:
        for s in held:
            s.close()
        suite.stop(proc)


def bench_endpoint_floor(suite, body, work, rounds, seconds, conns):
    """bench/floor_server.c answering every request with `body` (the bytes keyless's ECS-style
    endpoint served), under the same wrk runs: what loopback HTTP gives on this machine."""
    import signal
    server, why = build_c(work, "floor_server")
    if server is None:
        suite.log(f"   endpoint floor: {why}")
        return {"error": why}
    port_file = work / "floor_server.port"
    body_file = work / "ecs-body.json"
    body_file.write_bytes(body)
    proc = subprocess.Popen([server, body_file, port_file], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        port = suite.wait_for(lambda: port_file.exists() and port_file.read_text(),
                              "bench/floor_server.c")
        figures = suite.wrk_series("endpoint floor", proc.pid, f"http://127.0.0.1:{port}/creds",
                                   [], rounds, seconds, conns)
        figures["body_bytes"] = len(body)
        return figures
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def endpoints(suite, binary, env, role, rounds, seconds, conns, quick, ecs_body, work):
    """Section 4's additions: the floor, the IMDS-style endpoint and the idle connections."""
    return {
        "floor": bench_endpoint_floor(suite, ecs_body, work, rounds, seconds, conns),
        "keyless_imds": bench_imds(suite, binary, env, role, rounds, seconds, conns),
        "idle_connections": bench_idle_connections(suite, binary, env, role, seconds, conns,
                                                   quick),
    }


def floor_rows(s, table, us):
    """Section 4's floor: each endpoint's requests/s and p99 against bench/floor_server.c's."""
    f = s.get("floor")
    if not f:
        return []
    if "error" in f:
        return [f"The floor: not measured ({f['error']})."]
    rows = [["the floor (bench/floor_server.c)", f"{f['rps']['median']:,.0f}", "1.00",
             us(f["p50_us"]["median"]), us(f["p99_us"]["median"])]]
    for key, name in (("keyless_ecs", "ECS-style"), ("keyless_gce", "GCE-style"),
                      ("keyless_imds", "IMDS-style")):
        k = s.get(key)
        if k:
            rows.append([f"keyless, {name}", f"{k['rps']['median']:,.0f}",
                         f"{k['rps']['median'] / f['rps']['median']:.2f}",
                         us(k["p50_us"]["median"]), us(k["p99_us"]["median"])])
    return ["**The floor: what loopback HTTP gives on this machine**\n\n"
            + table(["", "requests/s", "÷ floor", "p50", "p99"], rows)
            + f"\n\nbench/floor_server.c: one thread, epoll, keep-alive, and for every request "
            f"the same HTTP/1.1 200 with the {f['body_bytes']:,} bytes keyless's ECS-style endpoint "
            "served, without parsing, routing, checking a token or allocating; under the same wrk "
            "runs. The endpoint targets (≥ 100,000 requests/s, p99 ≤ 1 ms) were met on the machine "
            "they were set on; where the floor itself is below them, the machine is the gap, and "
            "keyless's share of the floor is the figure to read."]


def endpoints_rows(s, table, us, mb, met):
    """Section 4's additions as paragraphs: the IMDS-style table and the idle connections."""
    out = []
    k = s.get("keyless_imds")
    if k:
        rows = [
            ["requests/s", f"{k['rps']['median']:,.0f}", "≥ 100,000",
             met(k["rps"]["median"] >= 100_000)],
            ["p50 latency", us(k["p50_us"]["median"]), "—", "—"],
            ["p99 latency", us(k["p99_us"]["median"]), "≤ 1 ms", met(k["p99_us"]["median"] <= 1000)],
            ["p99.9 latency", us(k["p999_us"]["median"]), "—", "—"],
            ["RSS after the runs (peak)", f"{mb(k['rss_kb'])} ({mb(k['peak_rss_kb'])})", "≤ 20 MB",
             met(k["peak_rss_kb"] <= 20 * 1024)],
        ]
        out.append("**IMDS-style (`aws serve --imds`, `GET /latest/meta-data/iam/security-"
                   "credentials/ROLE` with one IMDSv2 session token)**\n\n"
                   + table(["", "keyless", "target", "met?"], rows))
    i = s.get("idle_connections")
    if i and "error" in i:
        out.append(f"Idle keep-alive connections: not measured ({i['error']}).")
    elif i:
        w = i["wrk"]
        per_conn = (i["rss_kb_held"] - i["rss_kb_before"]) * 1024 / i["connections"]
        rows = [
            ["connections held (answered once, then idle)", f"{i['connections']:,}",
             f"{i['still_open_after_wrk']:,} still open after wrk", "—"],
            ["RSS before → with them held (peak)",
             f"{mb(i['rss_kb_before'])} → {mb(i['rss_kb_held'])} ({mb(i['peak_rss_kb'])})",
             f"{per_conn / 1024:.1f} KiB per idle connection", "—"],
            [f"wrk beside them ({i['wrk_connections']} connections, {i['wrk_seconds']} s): "
             "requests/s", f"{w['rps']:,.0f}", "—", "—"],
            ["p99 latency while they are held", us(w["p99_us"]), "≤ 1 ms",
             met(w["p99_us"] <= 1000)],
        ]
        out.append(f"**{i['connections']:,} idle keep-alive connections (ECS-style, `aws serve`)**\n\n"
                   + table(["", "keyless", "", "target / met?"], rows)
                   + "\n\nEach connection sends one credentials request, reads the answer and "
                   "stays open. The server's defaults would not hold them (src/deliver/server.rs, "
                   "\"Limits\"): at most 4,096 connections per listener (more wait in the kernel's "
                   "backlog) and 10 s for a kept-alive connection's next request; this step lifts "
                   "both with their operator knobs (`KEYLESS_SERVER_MAX_CONNECTIONS`, "
                   "`KEYLESS_SERVER_HEADER_TIMEOUT`) to show what holding them costs.")
    return out


# --- the same cold exchange over TLS -----------------------------------------------------------

# Issue 15's target for a cold `aws credentials --no-cache` against the lab (client CPU).
COLD_CPU_TARGET_MS = 1.5


def tls_cold(suite, binary, env, work, quick):
    """A second lab serving STS over HTTPS (`keyless lab --tls-ca-file`), and the cold
    `aws credentials --no-cache` against it with SSL_CERT_FILE = the lab's CA: the http figure
    plus loading one root and a TLS handshake (ECDSA P-256, TLS 1.3) per process."""
    import signal
    tls_dir = work / "tls-lab"
    tls_dir.mkdir(exist_ok=True)
    env_file, ca_file, err = tls_dir / "lab.env", tls_dir / "ca.pem", tls_dir / "lab.stderr"
    proc = subprocess.Popen([binary, "lab", "--env-file", env_file, "--tls-ca-file", ca_file],
                            stdout=subprocess.DEVNULL, stderr=open(err, "w"))
    try:
        suite.wait_for(lambda: env_file.exists() and "try:" in err.read_text(),
                       "the HTTPS lab to start")
        lab_env = suite.parse_exports(env_file.read_text())
        if not lab_env.get("AWS_ENDPOINT_URL_STS", "").startswith("https://"):
            raise SystemExit(f"bench: the HTTPS lab exported {lab_env}")
        argv = [binary, "aws", "credentials", "--role-arn", suite.ROLE, "--no-cache"]
        suite.log("   cold over TLS: keyless lab --tls-ca-file, SSL_CERT_FILE = its CA")
        return suite.measure(argv, {**env, **lab_env}, runs=10 if quick else 40, warmup=2,
                             expect=r'"AccessKeyId":"ASIA')
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def tls_rows(s, ms, met):
    """Rows for section 1: the cold exchange's client CPU, over http and over TLS."""
    c, t = s["keyless_cold"], s.get("keyless_cold_tls")
    rows = [["client CPU per cold exchange (`aws credentials --no-cache`, http lab)",
             ms(c["cpu_ms"]), "—", "—", f"≤ {COLD_CPU_TARGET_MS} ms",
             met(c["cpu_ms"]["median"] <= COLD_CPU_TARGET_MS)]]
    w = s.get("keyless_warm")
    if w:
        own = c["cpu_ms"]["median"] - w["cpu_ms"]["median"]
        rows.append(
            ["of which the exchange itself (cold − warm: reading the token, the STS request and "
             "answer, the cache write); the rest is starting and ending the process, which the "
             "warm run pays too (see the floor above and the profile below)",
             f"{own:.2f} ms", ms(w["cpu_ms"]) + " (warm)", "—", "—", "—"])
    if t:
        extra = t["cpu_ms"]["median"] - c["cpu_ms"]["median"]
        rows += [
            ["client CPU per cold exchange over TLS (the lab's STS on https://, SSL_CERT_FILE = "
             f"its CA): TLS adds {extra:+.2f} ms", ms(t["cpu_ms"]), ms(c["cpu_ms"]) + " (http)",
             f"{t['cpu_ms']['median'] / c['cpu_ms']['median']:.2f}× (TLS ÷ http)", "—", "—"],
            ["cold over TLS, wall time", ms(t["wall_ms"]), ms(c["wall_ms"]) + " (http)", "—",
             "—", "—"],
        ]
    return rows
