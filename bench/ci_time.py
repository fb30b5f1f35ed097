#!/usr/bin/env python3
"""Times `.ci/run` from a fresh clone, as a new contributor (or CI) would run it, and records the
wall time of the whole run and of each of its steps in bench/results/ci-time.json.

The clone is of the committed HEAD (uncommitted changes are not in it) into a throwaway directory,
so every crate of the workspace and every test binary is built from scratch. What a machine keeps
between clones is kept here too, as it would be on a developer's machine or a CI runner with a
cache: cargo's downloaded crates (~/.cargo/registry) and pip's wheel cache. Earlier rows of the
file (the figure issue 15 was filed with, the last landing before it) are kept; a new run replaces
the row with the same label. Standard library only.

    python3 bench/ci_time.py                 # label "after"
    python3 bench/ci_time.py --label before  # e.g. on an older checkout
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "ci-time.json"
STEP = re.compile(r"^=== (.*) \(at (\d+)s\)$")


def git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def steps_from(log, total):
    """[(name, seconds)] from .ci/run's `=== name (at Ns)` markers: each step lasts until the next."""
    marks = [(m.group(1), int(m.group(2))) for m in map(STEP.match, log.splitlines()) if m]
    out = []
    for (name, at), (_, nxt) in zip(marks, marks[1:] + [("end", total)]):
        if name != "all green":
            out.append({"step": name, "seconds": nxt - at})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", default="after")
    args = ap.parse_args()

    commit = git("rev-parse", "--short", "HEAD")
    load = float(Path("/proc/loadavg").read_text().split()[0])
    scratch = Path(tempfile.mkdtemp(prefix="keyless-ci-"))
    try:
        clone = scratch / "keyless"
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)],
                       check=True)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CARGO_TARGET_DIR", "RUST_TEST_THREADS", "VIRTUAL_ENV"))}
        env["CI"] = "true"
        print(f"ci_time: .ci/run in a fresh clone of {commit} ({scratch}), load {load}",
              file=sys.stderr)
        started = time.monotonic()
        run = subprocess.run(["bash", ".ci/run"], cwd=clone, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seconds = round(time.monotonic() - started)
        (ROOT / "target").mkdir(exist_ok=True)
        (ROOT / "target" / "ci-time.log").write_text(run.stdout)
        if run.returncode != 0:
            sys.exit(f"ci_time: .ci/run failed (exit {run.returncode}) after {seconds} s; "
                     f"its output is in target/ci-time.log")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    row = {"label": args.label, "commit": commit, "seconds": seconds,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "cores": os.cpu_count(), "load_at_start": load,
           "steps": steps_from(run.stdout, seconds)}
    data = json.loads(OUT.read_text()) if OUT.exists() else {"runs": []}
    data["runs"] = [r for r in data["runs"] if r["label"] != args.label] + [row]
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"ci_time: green in {seconds} s; wrote {OUT.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
