#!/usr/bin/env python3
"""What each release-profile setting buys: rebuilds keyless with the settings undone one at a
time and measures size, the warm credential_process and `--version`.

Variants (cumulative, each from the one above):
  cargo-defaults  opt-level 3, lto = false, codegen-units = 16, panic = unwind, no strip
  lto             + lto = "fat"
  dist            + codegen-units = 1, strip = true   (what ships: `--profile dist`)
  panic-abort     + panic = "abort"                   (measured, not shipped: see BENCHMARKS.md)

Each build goes to target/bench-profiles/build, which is deleted after its binary is copied
to target/bench-profiles/bin/ (disk is tight on the 2-core machines: one release target dir at a
time). cargo-defaults keeps its symbol table, for callgrind.py --binary.
Writes bench/results/profiles.json. Slow: three release builds from scratch.
--build-only builds and stops; --reuse measures binaries already in target/bench-profiles/bin/.
"""

import json
import re
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import suite  # noqa: E402

TARGET = suite.ROOT / "target" / "bench-profiles"
VARIANTS = [
    ("cargo-defaults", "lto=false, codegen-units=16, unwind, no strip",
     {"lto": "false", "codegen-units": "16", "strip": "false", "panic": '"unwind"'}),
    ("lto", "+ lto=fat", {"lto": "true", "codegen-units": "16", "strip": "false",
                          "panic": '"unwind"'}),
    ("dist", "+ codegen-units=1, strip (shipped: --profile dist)", None),
    ("panic-abort", "+ panic=abort", {"lto": "true", "codegen-units": "1", "strip": "true",
                                      "panic": '"abort"'}),
]


def build(name, overrides, reuse):
    if overrides is None:
        binary = Path(os.environ.get("KEYLESS_BENCH_BINARY",
                                     suite.ROOT / "target" / "dist" / "keyless"))
        return binary, None
    keep = TARGET / "bin" / name
    took_file = keep.with_suffix(".seconds")
    if reuse and keep.exists() and took_file.exists():
        return keep, float(took_file.read_text())
    args = ["cargo", "build", "--release", "--locked", "--quiet"]
    for key, value in overrides.items():
        args += ["--config", f"profile.release.{key}={value}"]
    build_dir = TARGET / "build"
    env = {**os.environ, "CARGO_TARGET_DIR": str(build_dir)}
    suite.log(f"building {name}")
    started = time.monotonic()
    subprocess.run(args, cwd=suite.ROOT, env=env, check=True)
    took = time.monotonic() - started
    keep.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(build_dir / "release" / "keyless", keep)
    took_file.write_text(f"{took:.0f}\n")
    shutil.rmtree(build_dir)
    return keep, took


def main():
    build_only = "--build-only" in sys.argv
    reuse = "--reuse" in sys.argv
    builds = {}
    for name, settings, overrides in VARIANTS:
        binary, took = build(name, overrides, reuse)
        builds[name] = (binary, took, settings)
    if build_only:
        return
    work = Path(tempfile.mkdtemp(prefix="keyless-profiles-"))
    env = suite.base_env(work)
    variants = []
    lab = suite.Lab(str(builds["dist"][0]), work)
    try:
        lab_env = {**env, **lab.env}
        for name, settings, _ in VARIANTS:
            binary, took, settings = builds[name]
            creds = [binary, "aws", "credentials", "--role-arn", suite.ROLE]
            warm = suite.measure(creds, lab_env, runs=200, warmup=10)
            version = suite.measure([binary, "--version"], env, runs=200, warmup=10)
            out = work / f"callgrind.{name}"
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            *map(str, creds)], env=lab_env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            instructions = int(re.search(r"^totals:\s+(\d+)", out.read_text(), re.M).group(1))
            stripped = work / f"{name}.stripped"
            shutil.copy2(binary, stripped)
            subprocess.run(["strip", stripped], check=True)
            variants.append({
                "name": name, "settings": settings, "bytes": binary.stat().st_size,
                "stripped_bytes": stripped.stat().st_size, "warm_ms": warm["wall_ms"],
                "warm_cpu_ms": warm["cpu_ms"], "version_ms": version["wall_ms"],
                "warm_instructions": instructions,
                "build_seconds": took if took is not None else float("nan"),
            })
    finally:
        lab.stop()
        shutil.rmtree(work, ignore_errors=True)
    shipped_build = suite.BENCH / "results" / "build-time.json"
    for v in variants:
        if v["name"] == "dist" and shipped_build.exists():
            v["build_seconds"] = json.loads(shipped_build.read_text())["seconds"]
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "variants": variants,
    }
    (suite.BENCH / "results" / "profiles.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
