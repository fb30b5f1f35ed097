#!/usr/bin/env python3
"""Turns bench/results/*.json (written by bench/suite.py, profiles.py, callgrind.py) and the
hand-written analysis in bench/notes.md into BENCHMARKS.md. Standard library only."""

import json
from pathlib import Path

import scale  # bench/scale.py: section 7
import percall

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def load(name):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def ms(s, digits=None):
    """'median ms (min–max)' from a summary in milliseconds."""
    def f(x):
        d = digits if digits is not None else (2 if x < 10 else 1 if x < 100 else 0)
        return f"{x:,.{d}f}"
    return f"{f(s['median'])} ms ({f(s['min'])}–{f(s['max'])}, n={s['n']})"


def ratio(peer, ours):
    r = peer / ours if ours else float("inf")
    if r >= 10:
        return f"**{r:,.0f}×**"
    return f"**{r:,.1f}×**" if r >= 1 else f"{r:.2f}×"


def met(ok):
    return "yes" if ok else "**no**"


def us(x):
    return f"{x / 1000:.2f} ms" if x >= 1000 else f"{x:.0f} µs"


def ns(x):
    if x >= 1e6:
        return f"{x / 1e6:,.2f} ms"
    if x >= 1e3:
        return f"{x / 1e3:,.2f} µs"
    return f"{x:,.0f} ns"


def mb(kb):
    return f"{kb / 1024:.1f} MB"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def section_credential_process(s):
    w, c = s["keyless_warm"], s["keyless_cold"]
    aws, boto = s["aws_cli"], s["boto3"]
    wm = w["wall_ms"]["median"]
    rows = [
        ["warm (cache hit): start → JSON on stdout", ms(w["wall_ms"]), "—", "—", "median ≤ 3 ms",
         met(wm <= 3)],
        ["warm vs the aws CLI (`aws sts assume-role-with-web-identity`)", ms(w["wall_ms"]),
         ms(aws["wall_ms"]), ratio(aws["wall_ms"]["median"], wm), "≥ 100×",
         met(aws["wall_ms"]["median"] / wm >= 100)],
        ["warm vs a boto3 script (`assume_role_with_web_identity`)", ms(w["wall_ms"]),
         ms(boto["wall_ms"]), ratio(boto["wall_ms"]["median"], wm), "≥ 50×",
         met(boto["wall_ms"]["median"] / wm >= 50)],
        ["cold (cache miss: ID token + STS) vs the aws CLI", ms(c["wall_ms"]), ms(aws["wall_ms"]),
         ratio(aws["wall_ms"]["median"], c["wall_ms"]["median"]), "—", "—"],
        ["cold vs the boto3 script", ms(c["wall_ms"]), ms(boto["wall_ms"]),
         ratio(boto["wall_ms"]["median"], c["wall_ms"]["median"]), "—", "—"],
        ["client CPU per exchange (cold; user+sys of the client process) vs the aws CLI",
         ms(c["cpu_ms"]), ms(aws["cpu_ms"]), ratio(aws["cpu_ms"]["median"], c["cpu_ms"]["median"]),
         "—", "—"],
        ["client CPU per exchange vs the boto3 script", ms(c["cpu_ms"]), ms(boto["cpu_ms"]),
         ratio(boto["cpu_ms"]["median"], c["cpu_ms"]["median"]), "—", "—"],
        ["client CPU, warm", ms(w["cpu_ms"]), "—", "—", "—", "—"],
    ] + percall.credential_process_rows(s, ms, met) + percall.tls_rows(s, ms, met)
    return table(["what", "keyless", "peer", "peer ÷ keyless", "target", "met?"], rows) + (
        f"\n\nSTS calls during the {w['wall_ms']['n']} warm runs: **{s['warm_sts_calls']}** "
        "(every one a cache hit). The peers get a token already minted (read from the lab's "
        "metadata server once); keyless's cold figure includes minting it."
    )


def section_aws_to_gcp(s):
    k, g, gi = s["keyless"], s["google_auth"], s["google_auth_refresh_only"]
    kc = k["cpu_ms"]["median"]
    rows = [
        ["client CPU, whole process (start → token)", ms(k["cpu_ms"]), ms(g["cpu_ms"]),
         ratio(g["cpu_ms"]["median"], kc), "≥ 20×", met(g["cpu_ms"]["median"] / kc >= 20)],
        ["client CPU, the refresh alone (google-auth already imported, in one process)",
         ms(k["cpu_ms"]), ms(gi["cpu_ms"]), ratio(gi["cpu_ms"]["median"], kc), "—", "—"],
        ["wall time, whole process", ms(k["wall_ms"]), ms(g["wall_ms"]),
         ratio(g["wall_ms"]["median"], k["wall_ms"]["median"]), "—", "—"],
        ["wall time, the refresh alone", ms(k["wall_ms"]), ms(gi["wall_ms"]),
         ratio(gi["wall_ms"]["median"], k["wall_ms"]["median"]), "—", "—"],
    ]
    warm_note = ""
    if "keyless_warm" in s:  # results from before the gcp cache have no warm runs
        w = s["keyless_warm"]
        wm = w["wall_ms"]["median"]
        rows += [
            ["warm `gcp token` (cache hit): start → token on stdout", ms(w["wall_ms"]), "—", "—",
             "median ≤ 3 ms", met(wm <= 3)],
            ["warm vs a google-auth process doing the refresh", ms(w["wall_ms"]),
             ms(g["wall_ms"]), ratio(g["wall_ms"]["median"], wm), "≥ 50×",
             met(g["wall_ms"]["median"] / wm >= 50)],
            ["client CPU, warm", ms(w["cpu_ms"]), "—", "—", "—", "—"],
        ]
        warm_note = (
            f" Google STS exchanges during the {w['wall_ms']['n']} warm runs: "
            f"**{s['warm_google_sts_exchanges']}** (every one a cache hit)."
        )
    return table(["what", "keyless `gcp token`", "google-auth", "google-auth ÷ keyless",
                  "target", "met?"], rows) + (
        "\n\nBoth start from the same AWS session credentials in the environment and do the "
        "same three steps against the lab: sign GetCallerIdentity (the subject token), Google STS "
        "token exchange, IAM Credentials `generateAccessToken` for the service account. keyless's "
        "figures are whole processes (start, TLS stack, runtime, exit) in every row; the cold "
        "ones pass `--no-cache`, the warm ones are served from the disk cache." + warm_note
    )


MICRO = [
    ("sigv4_subject_token", "SigV4 subject token (sign GetCallerIdentity, serialise, URL-encode)",
     "google-auth `aws.Credentials.retrieve_subject_token` (env credentials)"),
    ("sts_xml_parse", "STS `AssumeRoleWithWebIdentity` XML answer → credentials",
     "botocore `QueryParser` with the STS model"),
    ("jwt_claims_decode", "JWT claim decoding (unverified, as keyless needs)",
     "google-auth `jwt.decode(verify=False)`"),
    ("ini_rewrite_1000_profiles", "one profile of a 1,000-profile credentials file, in memory",
     "`configparser` read + set + write (loses comments)"),
    ("ini_write_profile_file_1000_profiles",
     "`write-profile` on disk: lock, read, edit, temp file, fsync, rename",
     "awscli `ConfigFileWriter.update_config` (`aws configure set`; no fsync, no lock)"),
]


def section_micro(s):
    rust, py = s["rust"], s["python"]
    rows = []
    for key, what, peer in MICRO:
        if key not in rust:
            continue
        r = rust[key]["median_ns"]
        p = py.get(key, {}).get("median_ns")
        rows.append([what, ns(r), ns(p) if p else "—", peer, ratio(p, r) if p else "—"])
    extra = [
        ("refresher_get_cached", "refresh engine `get()` with a valid credential held"),
        ("ecs_response_body", "ECS-style response body (JSON) from held credentials"),
        ("credential_process_cache_hit", "credential_process cache hit in process: read, check, parse the entry, render JSON"),
        ("ecs_handler_credentials", "ECS-style endpoint: one request through its router (auth, handler, shared body), no socket"),
        ("imds_handler_credentials", "IMDS-style endpoint: one credentials request through its router (session check, handler, shared body), no socket"),
    ]
    for key, what in extra:
        if key in rust:
            rows.append([what, ns(rust[key]["median_ns"]), "—", "—", "—"])
    return table(["operation", "keyless (criterion median)", "Python peer (timeit median)",
                  "peer", "peer ÷ keyless"], rows)


def section_endpoints(s):
    w = s["wrk"]
    out = []
    for kind, ours, peer, label in (
        ("ECS-style (`aws serve`, `GET /creds` with the Authorization token)", "keyless_ecs",
         "python_ecs", "ECS"),
        ("GCE-style (`gcp serve`, `GET .../service-accounts/default/token`)", "keyless_gce",
         "python_gce", "GCE"),
    ):
        k, p = s[ours], s[peer]
        rows = [
            ["requests/s", f"{k['rps']['median']:,.0f}", f"{p['rps']['median']:,.0f}",
             ratio(k["rps"]["median"], p["rps"]["median"]) + " (keyless ÷ stub)", "≥ 100,000",
             met(k["rps"]["median"] >= 100_000)],
            ["p50 latency", us(k["p50_us"]["median"]), us(p["p50_us"]["median"]),
             ratio(p["p50_us"]["median"], k["p50_us"]["median"]), "—", "—"],
            ["p99 latency", us(k["p99_us"]["median"]), us(p["p99_us"]["median"]),
             ratio(p["p99_us"]["median"], k["p99_us"]["median"]), "≤ 1 ms",
             met(k["p99_us"]["median"] <= 1000)],
            ["p99.9 latency", us(k["p999_us"]["median"]), us(p["p999_us"]["median"]),
             ratio(p["p999_us"]["median"], k["p999_us"]["median"]), "—", "—"],
            ["RSS after the runs (peak)", f"{mb(k['rss_kb'])} ({mb(k['peak_rss_kb'])})",
             f"{mb(p['rss_kb'])} ({mb(p['peak_rss_kb'])})",
             ratio(p["peak_rss_kb"], k["peak_rss_kb"]), "≤ 20 MB",
             met(k["peak_rss_kb"] <= 20 * 1024)],
        ]
        out.append(f"**{kind}**\n\n" + table(
            ["", "keyless", "Python stub", "ratio", "target", "met?"], rows))
        rng = lambda d: f"{d['min']:,.0f}–{d['max']:,.0f}"
        out.append(f"keyless {label} requests/s over the {w['rounds']} rounds: {rng(k['rps'])}; "
                   f"stub: {rng(p['rps'])}.")
    out += percall.endpoints_rows(s, table, us, mb, met)
    out += percall.floor_rows(s, table, us)
    out.append(
        f"wrk: 1 thread, {w['connections']} keep-alive connections, {w['rounds']} rounds of "
        f"{w['seconds']} s after a 2 s warm-up; medians of the rounds. The stub is "
        "`bench/peers/stub_server.py` (http.server, a thread per connection, HTTP/1.1, the same "
        "header checks). keyless runs as shipped: one runtime thread."
    )
    return "\n\n".join(out)


def section_single_flight(s):
    rows = []
    for key, what in (("engine", "refresh engine, `Refresher::get` from 1,000 tasks"),
                      ("ecs_http", "ECS-style endpoint, 1,000 HTTP clients on their own connections (as shipped: `deliver::server`'s listener, backlog 4,096)"),
                      ("ecs_http_backlog_128", "the same behind std's listen backlog of 128 (`TcpListener::bind`, as keyless's servers once listened)"),
                      ("naive", "peer: hand-written cache (RwLock, fetch when expired)")):
        if key not in s:
            continue
        d = s[key]
        rows.append([what, d["callers"], f"**{d['upstream_calls']}**", f"{d['p50_ms']:.1f} ms",
                     f"{d['p99_ms']:.1f} ms", f"{d['max_ms']:.1f} ms",
                     "1" if key != "naive" else "—",
                     met(d["upstream_calls"] == 1) if key != "naive" else "—"])
    return table(["scene", "callers", "upstream calls", "p50", "p99", "max", "target", "met?"],
                 rows) + (
        f"\n\nThe fake STS answers after {s['upstream_latency_ms']} ms, so a caller's latency is "
        "that plus the wait for its turn. The scene starts just after the held credential "
        "expired, all callers released by one barrier, on a 2-worker runtime "
        "(`benches/single_flight.rs`)."
    )


def section_footprint(s):
    v, av = s["version"], s["aws_version"]
    b = s.get("build")
    rows = [
        ["binary size (dist profile, shipped)", f"{s['binary_bytes'] / 2**20:.1f} MiB "
         f"({'stripped' if s['stripped'] else 'not stripped'})",
         f"{s['aws_cli_install_bytes'] / 2**20:.1f} MiB (the aws CLI's Python packages, "
         "without Python)", ratio(s["aws_cli_install_bytes"], s["binary_bytes"])],
        ["cold start: `--version`", ms(v["wall_ms"]), ms(av["wall_ms"]),
         ratio(av["wall_ms"]["median"], v["wall_ms"]["median"])],
        ["dist build from scratch (`--profile dist`: fat LTO, 1 codegen unit)",
         f"{b['seconds'] / 60:.1f} min ({b['date']}, {b['cores']} "
         f"cores, load {b['load_at_start']} at start)" if b else "not measured (`bench/run --build-time`)",
         "—", "—"],
        ["release build from scratch (`cargo run --release`: thin LTO, 16 codegen units)",
         f"{b['release_seconds'] / 60:.1f} min, binary {b['release_bytes'] / 2**20:.1f} MiB "
         f"(dist: {b['dist_bytes'] / 2**20:.1f} MiB)"
         if b and "release_seconds" in b else "not measured (`bench/run --build-time`)",
         "—", "—"],
    ]
    return table(["what", "keyless", "aws CLI", "aws CLI ÷ keyless"], rows)


def section_profiles(p):
    if not p:
        return "Not measured in this run (`bench/run --profiles`)."
    rows = []
    for v in p["variants"]:
        rows.append([v["name"], v["settings"], f"{v['bytes'] / 2**20:.2f} MiB",
                     f"{v['stripped_bytes'] / 2**20:.2f} MiB",
                     f"{v['warm_instructions']:,}",
                     f"{v['warm_cpu_ms']['median']:.2f} ms", f"{v['warm_ms']['median']:.2f} ms",
                     f"{v['version_ms']['median']:.2f} ms",
                     f"{v['build_seconds'] / 60:.1f} min"])
    return table(["variant", "settings", "size", "size stripped",
                  "warm credential_process: instructions", "CPU", "wall", "`--version` wall",
                  "build from scratch"], rows) + (
        f"\n\nMeasured {p['date']} (load {p['load']}); medians of 200 runs each. The build "
        "times were taken while other engineers compiled on the same 2 cores (load 5–9): they "
        "show the order of magnitude, not a comparison.")


def section_callgrind(c):
    if not c:
        return "Not measured in this run (`bench/run --callgrind`)."
    rows = [[r["what"], f"{r['instructions']:,}", r.get("note", "")] for r in c["runs"]]
    return table(["run", "instructions (Ir)", "note"], rows)


def section_ci(c):
    """Wall time of `.ci/run` from a fresh clone (bench/ci_time.py), against issue 15's 6-minute target."""
    if not c:
        return "Not measured (`bench/run --ci-time`)."
    target = 360
    rows = [[r["label"], f"`{r['commit']}`" if r.get("commit") else "—",
             f"{r['seconds'] / 60:.1f} min ({r['seconds']} s)",
             r.get("load_at_start", "not recorded"), met(r["seconds"] <= target),
             r.get("note", r.get("date", ""))] for r in c["runs"]]
    out = [table(["run", "commit", "wall", "load at start", "≤ 6 min", "note"], rows)]
    last = next((r for r in reversed(c["runs"])
                 if r.get("steps") and r["label"].startswith("after")), None)
    if last:
        out.append(f"Where the time goes ({last['label']}, `{last['commit']}`):")
        out.append(table(["step of `.ci/run`", "seconds"],
                         [[s["step"], s["seconds"]] for s in last["steps"]]))
    out.append("A fresh clone of the committed HEAD, `CI=true bash .ci/run`, on 2 cores; cargo's "
               "downloaded crates and pip's wheel cache are kept from earlier runs, as on a "
               "developer's machine or a CI runner with a cache. `bench/run --ci-time` (or "
               "`python3 bench/ci_time.py`) adds a row.")
    return "\n\n".join(out)


def main():
    r = load("latest.json")
    if not r:
        raise SystemExit("no bench/results/latest.json: run bench/run first")
    m, s = r["machine"], r["sections"]
    notes = (ROOT / "bench" / "notes.md")
    parts = [
        "# Benchmarks",
        "<!-- Generated by bench/report.py from bench/results/; edit bench/notes.md or the "
        "scripts, not this file. -->",
        "Every figure is a ratio against a peer measured in the same run on the same machine. "
        "Regenerate with **`bench/run`** (one command: installs wrk and the pinned peers into "
        "`bench/.venv`, builds the release binary, starts `keyless lab`, runs everything and "
        "rewrites this file; `bench/run --help` for the options). Medians, with min–max and the "
        "number of runs.",
        table(["machine", ""], [
            ["cores", m["cores"]], ["CPU", m["cpu"]], ["kernel", m["kernel"]],
            ["tools", ", ".join(f"{k} {v}" for k, v in m["versions"].items())],
        ]),
        table(["run", "sections", "commit", "load average (1/5/15 min) before → after"], [
            [run["date"], ", ".join(run["sections"]), f"`{run['commit']}`",
             f"{' / '.join(f'{x:.2f}' for x in run['load_before'])} → "
             f"{' / '.join(f'{x:.2f}' for x in run['load_after'])}"
             + (" (**--quick: too few samples to quote**)" if run.get("quick") else "")]
            for run in r.get("runs", [{"sections": list(s), "date": m["date"],
                                       "commit": m["commit"], "load_before": m["load_before"],
                                       "load_after": m.get("load_after", m["load_before"])}])
        ]),
    ]
    text = notes.read_text() if notes.exists() else ""
    head, _, rest = text.partition("<!-- sections -->")
    _, _, rest = rest.partition("<!-- release-profile -->")
    release_text, _, profile_text = rest.partition("<!-- profile -->")
    if head.strip():
        parts.append(head.strip())
    for title, key, fn in (
        ("1. credential_process (GCP → AWS)", "credential_process", section_credential_process),
        ("2. AWS → GCP exchange", "aws_to_gcp", section_aws_to_gcp),
        ("3. Signing and parsing (micro-benchmarks)", "micro", section_micro),
        ("4. Local endpoints under load", "endpoints", section_endpoints),
        ("5. Single flight at expiry", "single_flight", section_single_flight),
        ("6. Footprint", "footprint", section_footprint),
        ("7. One daemon, 1,000 profiles", "scale", scale.section_scale),
    ):
        parts.append(f"## {title}")
        parts.append(fn(s[key]) if key in s else "Not measured in this run.")
    parts.append("## 8. The test suite: `.ci/run` from a fresh clone")
    parts.append(section_ci(load("ci-time.json")))
    parts.append("## Release profile")
    if release_text.strip():
        parts.append(release_text.strip())
    parts.append(section_profiles(load("profiles.json")))
    parts.append("## Profile")
    parts.append(section_callgrind(load("callgrind.json")))
    if profile_text.strip():
        parts.append(profile_text.strip())
    (ROOT / "BENCHMARKS.md").write_text("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
