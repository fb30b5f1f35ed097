#!/usr/bin/env python3
"""Every benchmark of BENCHMARKS.md, against the offline lab, with each peer in the same run.

Run through bench/run (which builds the release binary, creates bench/.venv with the pinned
peers and installs wrk); this file only measures and writes bench/results/latest.json, then
bench/report.py turns that into BENCHMARKS.md.

Process timings spawn the command directly (posix_spawn, no shell), wait with wait4 and take
the wall time from just before the spawn to just after the exit, and the child's user + system
CPU from its rusage. Each figure is the median of many runs, with min and max beside it.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import scale  # bench/scale.py: section 7
import percall

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV = BENCH / ".venv"
PY = VENV / "bin" / "python"
AWS = VENV / "bin" / "aws"
ROLE = "arn:aws:iam::123456789012:role/gcp-deploy"
COPYCAT = "copycat@keyless-lab.iam.gserviceaccount.com"


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def summary(xs):
    """Median, min, max and count of a list of numbers."""
    xs = sorted(xs)
    return {
        "median": statistics.median(xs),
        "min": xs[0],
        "max": xs[-1],
        "n": len(xs),
    }


def spawn_once(argv, env):
    """One run: (wall seconds, CPU seconds, exit status), output discarded."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0),
    ]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    return wall, ru.ru_utime + ru.ru_stime, os.waitstatus_to_exitcode(status)


def check_once(argv, env, expect=None):
    """Runs the command once with its output captured; fails loudly unless it works."""
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0 or (expect and not re.search(expect, out.stdout)):
        raise SystemExit(
            f"bench: {' '.join(map(str, argv[:4]))} ... failed ({out.returncode}):\n"
            f"{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        )
    return out.stdout


def measure(argv, env, runs, warmup=0, expect=None):
    """Wall and CPU time of `runs` runs (after `warmup` unmeasured ones), in milliseconds."""
    argv = [str(a) for a in argv]
    argv[0] = shutil.which(argv[0], path=env.get("PATH")) or argv[0]
    check_once(argv, env, expect)
    for _ in range(warmup):
        spawn_once(argv, env)
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu, code = spawn_once(argv, env)
        if code != 0:
            raise SystemExit(f"bench: {argv[0]} exited {code} during measurement")
        walls.append(wall * 1e3)
        cpus.append(cpu * 1e3)
    return {"wall_ms": summary(walls), "cpu_ms": summary(cpus)}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"bench: timed out waiting for {what}")


def parse_exports(text):
    return dict(re.findall(r"^export ([A-Z0-9_]+)=['\"]?([^'\"\n]*)['\"]?$", text, re.M))


class Lab:
    """`keyless lab` as a process: its environment, endpoints and counters."""

    def __init__(self, binary, work):
        self.env_file = work / "lab.env"
        self.err_file = work / "lab.stderr"
        self.proc = subprocess.Popen(
            [binary, "lab", "--env-file", self.env_file],
            stdout=subprocess.DEVNULL,
            stderr=open(self.err_file, "w"),
        )
        wait_for(lambda: "try:" in self.err_file.read_text(), "the lab to start")
        self.env = parse_exports(self.env_file.read_text())
        err = self.err_file.read_text()
        self.imds = re.search(r"AWS_EC2_METADATA_SERVICE_ENDPOINT=(\S+)", err).group(1)
        self.audience = re.search(
            r"workload identity provider.*\n\s+(\S+)", err
        ).group(1)
        self.sts = self.env["AWS_ENDPOINT_URL_STS"]

    def stats(self):
        with urllib.request.urlopen(f"{self.sts}/_lab/stats", timeout=5) as r:
            return json.load(r)

    def id_token(self, audience="sts.amazonaws.com"):
        host = self.env["GCE_METADATA_HOST"]
        req = urllib.request.Request(
            f"http://{host}/computeMetadata/v1/instance/service-accounts/default/identity"
            f"?audience={audience}&format=full",
            headers={"Metadata-Flavor": "Google"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.read().decode()

    def workload_credentials(self):
        """The AWS workload's role credentials, from the lab's IMDSv2."""
        put = urllib.request.Request(
            f"{self.imds}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"},
        )
        with urllib.request.urlopen(put, timeout=5) as r:
            token = r.read().decode()
        h = {"X-aws-ec2-metadata-token": token}
        base = f"{self.imds}/latest/meta-data/iam/security-credentials/"
        with urllib.request.urlopen(urllib.request.Request(base, headers=h), timeout=5) as r:
            role = r.read().decode().strip().splitlines()[0]
        with urllib.request.urlopen(urllib.request.Request(base + role, headers=h), timeout=5) as r:
            doc = json.load(r)
        return {
            "AWS_ACCESS_KEY_ID": doc["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": doc["SecretAccessKey"],
            "AWS_SESSION_TOKEN": doc["Token"],
        }

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def base_env(work):
    """A clean environment: a throwaway HOME and cache, no AWS or Google settings of the user."""
    home = work / "home"
    home.mkdir(exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TERM")}
    keep.update(
        {
            "HOME": str(home),
            "XDG_CACHE_HOME": str(work / "cache"),
            "XDG_CONFIG_HOME": str(work / "config"),
            "AWS_CONFIG_FILE": str(home / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    keep["PATH"] = f"{VENV / 'bin'}:{keep.get('PATH', '/usr/bin:/bin')}"
    return keep


# --- 1. credential_process ---------------------------------------------------------------------


def bench_credential_process(binary, lab, env, work, quick):
    log("1. credential_process: keyless warm and cold, the aws CLI, boto3")
    env = {**env, **lab.env}
    warm_argv = [binary, "aws", "credentials", "--role-arn", ROLE]
    expect = r'"AccessKeyId":"ASIA'
    check_once(warm_argv, env, expect)  # fills the cache
    before = lab.stats()
    warm = measure(warm_argv, env, runs=50 if quick else 300, warmup=10, expect=expect)
    after = lab.stats()
    floor = percall.credential_process_floor(sys.modules[__name__], warm_argv, env, work, quick)
    cold = measure(warm_argv + ["--no-cache"], env, runs=10 if quick else 40, warmup=2, expect=expect)
    cold_tls = percall.tls_cold(sys.modules[__name__], binary, env, work, quick)
    token_file = work / "id_token.jwt"
    token_file.write_text(lab.id_token())
    peer_runs = 5 if quick else 15
    aws_cli = measure(
        [AWS, "sts", "assume-role-with-web-identity", "--role-arn", ROLE,
         "--role-session-name", "bench", "--web-identity-token", token_file.read_text(),
         "--output", "json"],
        env, runs=peer_runs, warmup=1, expect=r'"AccessKeyId": "ASIA',
    )
    boto3 = measure(
        [PY, BENCH / "peers" / "boto3_assume.py", ROLE, token_file],
        env, runs=peer_runs, warmup=1, expect=expect.replace(":", ": "),
    )
    return {
        "keyless_warm": warm,
        "keyless_cold": cold,
        "floor": floor,
        "keyless_cold_tls": cold_tls,
        "aws_cli": aws_cli,
        "boto3": boto3,
        # The warm runs must all be cache hits: no STS call while they ran.
        "warm_sts_calls": after["assume_role_with_web_identity_calls"]
        - before["assume_role_with_web_identity_calls"],
    }


# --- 2. AWS → GCP ------------------------------------------------------------------------------


def bench_aws_to_gcp(binary, lab, env, work, quick):
    log("2. AWS → GCP: keyless gcp token against google-auth's external_account refresh")
    env = {**env, **lab.env, **lab.workload_credentials()}
    config = work / "external_account.json"
    check_once(
        [binary, "gcp", "config", "--audience", lab.audience, "--service-account", COPYCAT,
         "--token-url", lab.env["KEYLESS_TOKEN_URL"],
         "--iamcredentials-url", lab.env["KEYLESS_IAMCREDENTIALS_URL"], "--output", config],
        env,
    )
    runs = 10 if quick else 40
    token_argv = [binary, "gcp", "token", "--audience", lab.audience, "--service-account", COPYCAT]
    # Cold: every run a whole exchange, as google-auth's every run is.
    keyless = measure(token_argv + ["--no-cache"], env, runs=runs, warmup=2,
                      expect=r"^ya29\.|\S{20,}")
    # Warm: what a script calling `gcp token` again and again pays (the disk cache).
    check_once(token_argv, env)  # fills the cache
    before = lab.stats()
    warm = measure(token_argv, env, runs=50 if quick else 300, warmup=10,
                   expect=r"^ya29\.|\S{20,}")
    after = lab.stats()
    peer_runs = 5 if quick else 15
    google_auth = measure(
        [PY, BENCH / "peers" / "google_auth_token.py", config], env, runs=peer_runs, warmup=1,
        expect=r"\S{20,}",
    )
    inproc = json.loads(
        check_once(
            [PY, BENCH / "peers" / "google_auth_token.py", config, "--repeat",
             "10" if quick else "40"], env,
        )
    )
    return {
        "keyless": keyless,
        "keyless_warm": warm,
        # The warm runs must all be cache hits: no Google STS exchange while they ran.
        "warm_google_sts_exchanges": after["google_sts_exchanges"]
        - before["google_sts_exchanges"],
        "google_auth": google_auth,
        "google_auth_refresh_only": {
            "cpu_ms": summary([c * 1e3 for c in inproc["cpu_s"]]),
            "wall_ms": summary([w * 1e3 for w in inproc["wall_s"]]),
        },
    }


# --- 3. micro-benchmarks -----------------------------------------------------------------------


def bench_micro(env, work, quick):
    log("3. micro-benchmarks: cargo bench --bench micro, and the Python equivalents")
    args = ["cargo", "bench", "--locked", "--bench", "micro", "--"]
    if quick:
        args += ["--warm-up-time", "1", "--measurement-time", "2"]
    subprocess.run(args, cwd=ROOT, check=True, stdout=sys.stderr)
    rust = {}
    criterion = ROOT / "target" / "criterion"
    for estimates in criterion.glob("*/new/estimates.json"):
        name = estimates.parent.parent.name
        doc = json.loads(estimates.read_text())
        rust[name] = {
            "median_ns": doc["median"]["point_estimate"],
            "ci_low_ns": doc["median"]["confidence_interval"]["lower_bound"],
            "ci_high_ns": doc["median"]["confidence_interval"]["upper_bound"],
        }
    peer_env = {
        **env,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "AWS_SESSION_TOKEN": "bench-session-token",
        "AWS_REGION": "us-east-1",
    }
    python = json.loads(
        check_once([PY, BENCH / "peers" / "micro.py", BENCH / "data", work,
                    "--quick" if quick else "--full"], peer_env)
    )
    return {"rust": rust, "python": python}


# --- 4. local endpoints ------------------------------------------------------------------------


def rss_kb(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    get = lambda k: int(re.search(rf"^{k}:\s+(\d+) kB", status, re.M).group(1))
    return {"rss_kb": get("VmRSS"), "peak_rss_kb": get("VmHWM")}


def run_wrk(url, headers, seconds, connections, strict):
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s",
            "-s", str(BENCH / "wrk_report.lua")]
    for h in headers:
        argv += ["-H", h]
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout
    doc = json.loads(re.search(r"^WRK_JSON (.*)$", out, re.M).group(1))
    if strict and (doc["errors"] or doc["non_2xx"]):
        raise SystemExit(f"bench: wrk saw errors against {url}:\n{out}")
    return doc


def wrk_series(name, pid, url, headers, rounds, seconds, connections, strict=True):
    """`rounds` wrk runs (after a 2 s warm-up); medians of each figure, RSS after the runs.
    keyless must answer every request with 200 (`strict`); a peer's errors are counted."""
    log(f"   wrk {name}: {rounds} x {seconds}s, {connections} connections")
    run_wrk(url, headers, 2, connections, strict)
    runs = [run_wrk(url, headers, seconds, connections, strict) for _ in range(rounds)]
    figures = {k: summary([r[k] for r in runs]) for k in
               ("rps", "p50_us", "p90_us", "p99_us", "p999_us", "max_us")}
    figures.update(rss_kb(pid))
    figures["requests"] = sum(r["requests"] for r in runs)
    figures["errors"] = sum(r["errors"] + r["non_2xx"] for r in runs)
    return figures


def start_and_read_exports(argv, env, what):
    out_file = tempfile.NamedTemporaryFile("w+", delete=False)
    proc = subprocess.Popen(argv, env=env, stdout=out_file, stderr=subprocess.DEVNULL)

    def exports():
        if proc.poll() is not None:
            raise SystemExit(f"bench: {what} exited with {proc.returncode}")
        found = parse_exports(Path(out_file.name).read_text())
        return found if len(found) >= 2 else None

    return proc, wait_for(exports, what)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def bench_endpoints(binary, lab, env, work, quick):
    log("4. local endpoints under wrk: keyless aws serve, keyless gcp serve, a Python stub")
    rounds, seconds, conns = (1, 3, 64) if quick else (3, 10, 64)
    env = {**env, **lab.env}
    results = {"wrk": {"threads": 1, "connections": conns, "seconds": seconds, "rounds": rounds}}

    proc, exports = start_and_read_exports(
        [binary, "aws", "serve", "--role-arn", ROLE], env, "keyless aws serve")
    try:
        url = exports["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
        auth = f"Authorization: {exports['AWS_CONTAINER_AUTHORIZATION_TOKEN']}"
        results["keyless_ecs"] = wrk_series("keyless ecs", proc.pid, url, [auth], rounds, seconds, conns)
        request = urllib.request.Request(url, headers={"Authorization": auth.split(": ", 1)[1]})
        with urllib.request.urlopen(request, timeout=10) as answer:
            ecs_body = answer.read()
    finally:
        stop(proc)

    gcp_env = {**env, **lab.workload_credentials()}
    proc, exports = start_and_read_exports(
        [binary, "gcp", "serve", "--audience", lab.audience, "--service-account", COPYCAT],
        gcp_env, "keyless gcp serve")
    try:
        url = (f"http://{exports['GCE_METADATA_HOST']}/computeMetadata/v1/instance/"
               "service-accounts/default/token")
        results["keyless_gce"] = wrk_series(
            "keyless gce", proc.pid, url, ["Metadata-Flavor: Google"], rounds, seconds, conns)
    finally:
        stop(proc)
    results.update(percall.endpoints(sys.modules[__name__], binary, env, ROLE, rounds, seconds,
                                     conns, quick, ecs_body, work))

    port_file = work / "stub.port"
    proc = subprocess.Popen([PY, BENCH / "peers" / "stub_server.py", port_file],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = wait_for(lambda: port_file.exists() and port_file.read_text(), "the Python stub")
        results["python_ecs"] = wrk_series(
            "python ecs", proc.pid, f"http://127.0.0.1:{port}/creds",
            ["Authorization: bench-token"], rounds, seconds, conns, strict=False)
        results["python_gce"] = wrk_series(
            "python gce", proc.pid,
            f"http://127.0.0.1:{port}/computeMetadata/v1/instance/service-accounts/default/token",
            ["Metadata-Flavor: Google"], rounds, seconds, conns, strict=False)
    finally:
        stop(proc)
    return results


# --- 5. single flight --------------------------------------------------------------------------


def bench_single_flight(quick):
    log("5. single flight: cargo bench --bench single_flight")
    args = ["cargo", "bench", "--locked", "--bench", "single_flight", "--", "--json"]
    if quick:
        args.append("--quick")
    out = subprocess.run(args, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(re.search(r"^SINGLE_FLIGHT_JSON (.*)$", out, re.M).group(1))


# --- 6. footprint ------------------------------------------------------------------------------


def dir_size(paths):
    total = 0
    for p in paths:
        for f in Path(p).rglob("*"):
            if f.is_file() and not f.is_symlink():
                total += f.stat().st_size
    return total


def bench_footprint(binary, env, quick):
    log("6. footprint: size, keyless --version, aws --version")
    file_out = subprocess.run(["file", "-L", binary], capture_output=True, text=True).stdout
    site = next((VENV / "lib").glob("python3*/site-packages"))
    peer_pkgs = [p for p in site.iterdir() if p.name.split("-")[0].lower()
                 in ("awscli", "botocore", "boto3", "s3transfer", "jmespath", "dateutil",
                     "python_dateutil", "urllib3", "six.py", "docutils", "colorama", "yaml",
                     "pyyaml", "rsa", "pyasn1")]
    build = BENCH / "results" / "build-time.json"
    return {
        "binary_bytes": Path(binary).stat().st_size,
        "stripped": "not stripped" not in file_out,
        "file": file_out.split(":", 1)[1].strip(),
        "aws_cli_install_bytes": dir_size(peer_pkgs),
        "version": measure([binary, "--version"], env, runs=50 if quick else 300, warmup=10,
                           expect=r"keyless "),
        "aws_version": measure([AWS, "--version"], env, runs=5 if quick else 15, warmup=1),
        "build": json.loads(build.read_text()) if build.exists() else None,
    }


# --- the machine -------------------------------------------------------------------------------


def machine():
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    versions = {}
    for name, argv in {
        "rustc": ["rustc", "--version"],
        "wrk": ["wrk", "-v"],
        "python": [str(PY), "--version"],
        "aws": [str(AWS), "--version"],
    }.items():
        r = subprocess.run(argv, capture_output=True, text=True)
        versions[name] = (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr) else "?"
    pkgs = subprocess.run([str(PY), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    for pkg in ("boto3", "botocore", "google-auth"):
        m = re.search(rf"^{pkg}==(\S+)$", pkgs, re.M | re.I)
        versions[pkg] = m.group(1) if m else "?"
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit + ("+dirty" if dirty else ""),
        "load_before": os.getloadavg(),
        "versions": versions,
    }


SECTIONS = ["credential_process", "aws_to_gcp", "micro", "endpoints", "single_flight", "footprint",
            "scale"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=os.environ.get(
        "KEYLESS_BENCH_BINARY", str(ROOT / "target" / "dist" / "keyless")))
    ap.add_argument("--quick", action="store_true", help="fewer runs (a smoke test, not figures)")
    ap.add_argument("--only", action="append", choices=SECTIONS,
                    help="run only these sections (repeatable); the others keep their last results")
    ap.add_argument("--out", default=str(BENCH / "results" / "latest.json"))
    args = ap.parse_args()
    sections = args.only or SECTIONS
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() and args.only else {"sections": {}}
    results["machine"] = machine()
    results["quick"] = args.quick
    work = Path(tempfile.mkdtemp(prefix="keyless-bench-"))
    env = base_env(work)
    lab = Lab(args.binary, work) if set(sections) & {"credential_process", "aws_to_gcp", "endpoints"} else None
    try:
        s = results["sections"]
        if "credential_process" in sections:
            s["credential_process"] = bench_credential_process(args.binary, lab, env, work, args.quick)
        if "aws_to_gcp" in sections:
            s["aws_to_gcp"] = bench_aws_to_gcp(args.binary, lab, env, work, args.quick)
        if "endpoints" in sections:
            s["endpoints"] = bench_endpoints(args.binary, lab, env, work, args.quick)
        if "micro" in sections:
            s["micro"] = bench_micro(env, work, args.quick)
        if "single_flight" in sections:
            s["single_flight"] = bench_single_flight(args.quick)
        if "footprint" in sections:
            s["footprint"] = bench_footprint(args.binary, env, args.quick)
        if "scale" in sections:
            s["scale"] = scale.bench_scale(args.binary, env, work, args.quick)
    finally:
        if lab:
            lab.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["machine"]["load_after"] = os.getloadavg()
    # Which run measured which section (with --only, the others come from earlier runs).
    runs = results.get("runs", []) if args.only else []
    runs = [dict(r, sections=[x for x in r["sections"] if x not in sections]) for r in runs]
    runs = [r for r in runs if r["sections"]]
    m = results["machine"]
    runs.append({"sections": sections, "date": m["date"], "commit": m["commit"],
                 "load_before": m["load_before"], "load_after": m["load_after"],
                 "quick": args.quick})
    results["runs"] = runs
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
