#!/usr/bin/env python3
"""A/B two engine builds on the benchmark's data set, in alternating pairs.

    python3 bench/ab.py backup  [--pairs N] [--subdir small] A B
    python3 bench/ab.py restore [--pairs N] A B

A and B are engine binaries (each finds its plugins next to it, as a build
directory lays them out). `backup` times the first backup of the data set
(or of one of its directories) into a new repository; `restore` makes one
repository with A, then times full restores of it into new targets.

Why pairs: on a shared VM one tool's samples move by 5-40 % between runs
(docs/PERFORMANCE.md, "Measure on a quiet machine"), far more than most
changes are worth. Each pair runs A and B back to back, in alternating
order, and the verdict is the median of the per-pair differences next to
the two medians. Before every sample the page cache is dropped (root only)
and the input is read once, as bench/bench.py does; restore targets are
kept until the end (ext4 without a journal slows file creation for
minutes after a mass delete, see "Round 4"), so a restore A/B needs about
1 GiB of free disk per sample. Results are also written as JSON
(--json PATH) with every sample.

Needs bench/out/data (bench/run.sh generates it, or gen_data.py).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import warm  # noqa: E402  drop the page cache, load the binary, read the input

HERE = os.path.dirname(os.path.abspath(__file__))
PASSPHRASE = "ab-passphrase"


def die(msg):
    print(f"ab: {msg}", file=sys.stderr)
    sys.exit(1)


def pipeline(work, data, repo):
    path = os.path.join(work, f"p-{os.path.basename(repo)}.yaml")
    with open(path, "w") as f:
        f.write("version: 1\nname: ab\n"
                f"sources: [{{name: files, type: files, with: {{paths: [{json.dumps(data)}]}}}}]\n"
                "stages: {compress: {algorithm: zstd, level: 3}, "
                "encrypt: {algorithm: aes-256-gcm, passphrase: env:ENGINE_PASSPHRASE}}\n"
                f"sinks: [{{name: local, type: local, with: {{path: {json.dumps(repo)}}}}}]\n")
    return path


def timed(cmd, env):
    """Run cmd under /usr/bin/time; returns (wall s, CPU s, peak RSS MiB)."""
    nice = ["nice", "-n", "-10"] if os.geteuid() == 0 else []
    t0 = time.monotonic()
    r = subprocess.run(["/usr/bin/time", "-f", "%U %S %M"] + nice + cmd, env=env,
                       capture_output=True, text=True)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        die(f"{' '.join(cmd)} failed (exit {r.returncode}):\n{r.stderr[-2000:]}")
    u, s, m = r.stderr.strip().splitlines()[-1].split()
    return wall, float(u) + float(s), int(m) / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=["backup", "restore"])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--subdir", default="", help="back up only this directory of the data set")
    ap.add_argument("--data", default=os.path.join(HERE, "out", "data"))
    ap.add_argument("--work", default=None, help="scratch directory (default: a new one under bench/out)")
    ap.add_argument("--json", default=None, help="write every sample here")
    args = ap.parse_args()
    bins = [os.path.abspath(args.a), os.path.abspath(args.b)]
    for b in bins:
        if not os.access(b, os.X_OK):
            die(f"{b} is not an executable")
    data = os.path.join(args.data, args.subdir) if args.subdir else args.data
    if not os.path.isdir(data):
        die(f"no data set at {data} (run bench/run.sh once, or bench/gen_data.py)")
    if args.pairs < 1:
        die("--pairs must be at least 1")
    if not os.path.exists("/usr/bin/time"):
        die("/usr/bin/time is missing (apt-get install time)")
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    work = args.work or tempfile.mkdtemp(prefix="ab-", dir=os.path.join(HERE, "out"))
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, ENGINE_PASSPHRASE=PASSPHRASE, ENGINE_CACHE_DIR=os.path.join(work, "cache"))

    repo = None
    if args.phase == "restore":
        repo = os.path.join(work, "repo")
        warm([data])
        timed([bins[0], "-q", "run", pipeline(work, data, repo), "--progress", "never"], env)
    samples = {0: [], 1: []}
    try:
        for i in range(args.pairs):
            for k in ([0, 1] if i % 2 == 0 else [1, 0]):
                name = f"{i}-{'ab'[k]}"
                load = [[bins[k], "plugins"]]  # the binary, its libraries and plugins
                if args.phase == "backup":
                    shutil.rmtree(env["ENGINE_CACHE_DIR"], ignore_errors=True)
                    target = os.path.join(work, f"repo-{name}")
                    warm([data], load)
                    cmd = [bins[k], "-q", "run", pipeline(work, data, target), "--progress", "never"]
                else:
                    target = os.path.join(work, f"restore-{name}")
                    warm([repo, env["ENGINE_CACHE_DIR"]], load)
                    cmd = [bins[k], "-q", "restore", pipeline(work, data, repo), "latest",
                           "--target", target, "--yes"]
                samples[k].append(timed(cmd, env))
                if args.phase == "backup":
                    shutil.rmtree(target)  # a few large pack files: no file-creation penalty
            a, b = samples[0][-1], samples[1][-1]
            print(f"pair {i + 1}/{args.pairs}: A {a[0]:.3f} s ({a[1]:.2f} CPU-s, {a[2]:.0f} MiB)"
                  f"  B {b[0]:.3f} s ({b[1]:.2f} CPU-s, {b[2]:.0f} MiB)", flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
            if args.phase == "restore":
                # bench/run.sh waits until a mass delete is 6 minutes old
                with open(os.path.join(HERE, "out", ".last-cleanup"), "a"):
                    os.utime(os.path.join(HERE, "out", ".last-cleanup"))

    print(f"\n{args.phase} of {data}, {args.pairs} alternating pairs")
    for k in (0, 1):
        w = [s[0] for s in samples[k]]
        c = [s[1] for s in samples[k]]
        m = [s[2] for s in samples[k]]
        print(f"  {'AB'[k]} {bins[k]}: wall median {statistics.median(w):.3f} s "
              f"(min {min(w):.3f}, max {max(w):.3f}), CPU median {statistics.median(c):.2f} s, "
              f"peak RSS max {max(m):.0f} MiB")
    d = [samples[0][i][0] - samples[1][i][0] for i in range(args.pairs)]
    faster = sum(1 for x in d if x > 0)
    print(f"  paired (A - B) median {statistics.median(d):+.3f} s; B faster in {faster} of {args.pairs} pairs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"phase": args.phase, "data": data, "bins": bins,
                       "samples": {"AB"[k]: [dict(zip(("wall", "cpu", "rss_mib"), s)) for s in samples[k]]
                                   for k in (0, 1)}}, f, indent=1)


if __name__ == "__main__":
    main()
