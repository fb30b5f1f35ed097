#!/usr/bin/env python3
"""Instruction counts of keyless's short-lived hot paths under valgrind --tool=callgrind.

Instruction counts do not depend on the machine's load, so they show what a change bought even
on a busy machine. Writes bench/results/callgrind.json (totals) and, per run, the top inclusive
functions to bench/results/callgrind-NAME.txt (function names need a binary with a symbol table:
pass --binary target/bench-profiles/bin/cargo-defaults, which `bench/run --profiles` keeps).

Usage: bench/.venv/bin/python bench/callgrind.py [--binary PATH]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import suite  # noqa: E402

RESULTS = suite.BENCH / "results"


def callgrind(name, argv, env, work):
    out = work / f"callgrind.out.{name}"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *map(str, argv)],
        env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600,
    )
    text = out.read_text(errors="replace")
    total = int(re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M).group(1))
    annotate = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", str(out)], capture_output=True, text=True
    ).stdout
    annotate = annotate.replace(str(suite.ROOT) + "/", "")
    lines = [l for l in annotate.splitlines() if re.match(r"^\s*[\d,]+ \(", l)]
    if name.startswith("symbols"):  # a stripped binary's functions are all `???`
        (RESULTS / f"callgrind-{name}.txt").write_text("\n".join(lines[:40]) + "\n")
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.environ.get(
        "KEYLESS_BENCH_BINARY", str(suite.ROOT / "target" / "dist" / "keyless")))
    args = ap.parse_args()
    binary = args.binary
    work = Path(tempfile.mkdtemp(prefix="keyless-callgrind-"))
    env = suite.base_env(work)
    lab = suite.Lab(binary, work)
    try:
        env = {**env, **lab.env}
        creds = [binary, "aws", "credentials", "--role-arn", suite.ROLE]
        suite.check_once(creds, env)  # fills the cache
        runs = [
            {"what": "`keyless --version`",
             "instructions": callgrind("version", [binary, "--version"], env, work)},
            {"what": "`keyless aws credentials` warm (cache hit)",
             "instructions": callgrind("warm", creds, env, work)},
            {"what": "`keyless aws credentials --no-cache` (token + STS, client side)",
             "instructions": callgrind("cold", creds + ["--no-cache"], env, work)},
        ]
        # Where the instructions go: the same runs on the build that keeps its symbols.
        symbols = suite.ROOT / "target" / "bench-profiles" / "bin" / "cargo-defaults"
        if symbols.exists():
            sym = [str(symbols), *creds[1:]]
            for name, argv, what in (
                ("symbols-warm", sym, "warm"),
                ("symbols-cold", sym + ["--no-cache"], "cold"),
            ):
                runs.append({
                    "what": f"{what}, `cargo-defaults` build (symbols, no LTO)",
                    "instructions": callgrind(name, argv, env, work),
                    "note": f"top functions: bench/results/callgrind-{name}.txt",
                })
    finally:
        lab.stop()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "callgrind.json").write_text(
        json.dumps({"binary": Path(binary).name, "runs": runs}, indent=1) + "\n"
    )
    for r in runs:
        print(f"{r['instructions']:>14,}  {r['what']}", file=sys.stderr)


if __name__ == "__main__":
    main()
