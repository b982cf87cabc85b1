#!/usr/bin/env python3
"""The cost of the key hierarchy (issue 22) on a first backup and of key
rotate --rewrite, side by side, in alternating rounds.

    python3 bench/keys_bench.py --data DIR --engine BIN [--rounds N] [--json OUT]

Each round makes a first backup of DIR into a new local repository in each
configuration, the order rotating from round to round:
  v1          repository format 1 (today's default), a passphrase
  v2          repository format 2, a passphrase
  write-only  format 2, a writer credential (made beforehand, not timed)
  per-tenant  format 2, stages.encrypt.per_tenant with every top-level
              directory of DIR a tenant (tenant_of); data duplicated across
              those directories is stored once per tenant, by design
  one-tenant  format 2, per_tenant with all of DIR one tenant: the cost of the
              tenant machinery alone, deduplication as in v2
then `engine key rotate --rewrite` of the v2 repository it just wrote.
Before every sample the page cache is dropped (root only) and the input read
once (bench/bench.py's warm). Reported: per configuration the median wall
time, CPU and peak RSS, and the median of the per-round ratios to v1 (above
1: slower than v1); the rewrite's median wall time and MiB/s of stored data.
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
from bench import warm  # noqa: E402

PASS = "keys-bench-passphrase"
CONFIGS = ("v1", "v2", "write-only", "per-tenant", "one-tenant")


def die(msg):
    print(f"keys_bench: {msg}", file=sys.stderr)
    sys.exit(1)


def pipeline(path, repo, data, cfg, cred=None):
    enc = "  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}\n"
    fmt = "repository: {format: 2}\n" if cfg != "v1" else ""
    if cfg == "write-only":
        enc = f"  encrypt: {{mode: write-only, key_file: '{cred}'}}\n"
    elif cfg == "one-tenant":
        enc = ("  encrypt:\n    algorithm: aes-256-gcm\n    passphrase: 'env:ENGINE_PASSPHRASE'\n"
               "    per_tenant: true\n    tenant_of: {'files/*': everyone}\n")
    elif cfg == "per-tenant":
        rules = "".join(f"      'files/*/{os.path.basename(data)}/{d}': t-{d}\n"
                        for d in sorted(os.listdir(data)) if os.path.isdir(os.path.join(data, d)))
        enc = ("  encrypt:\n    algorithm: aes-256-gcm\n    passphrase: 'env:ENGINE_PASSPHRASE'\n"
               "    per_tenant: true\n    tenant_of:\n" + rules)
    with open(path, "w") as f:
        f.write(f"version: 1\nname: keys-{cfg}\nsources:\n  - name: files\n    type: files\n"
                f"    with: {{paths: ['{data}']}}\nstages:\n  compress: {{algorithm: zstd, level: 3}}\n"
                f"{enc}sinks:\n  - name: local\n    type: local\n    with: {{path: '{repo}'}}\n{fmt}")


def timed(cmd, env):
    t0 = time.monotonic()
    p = subprocess.Popen(["/usr/bin/time", "-f", "%e %U %S %M"] + cmd, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, err = p.communicate()
    wall = time.monotonic() - t0
    if p.returncode != 0:
        die(f"{' '.join(cmd)} failed (exit {p.returncode}):\n{err[-2000:]}")
    e, u, s, m = err.strip().splitlines()[-1].split()
    return {"wall": wall, "user": float(u), "sys": float(s), "rss_mib": int(m) / 1024.0,
            "load": os.getloadavg()[0]}


def du(path):
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(path) for n in ns)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--engine", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work")
    ap.add_argument("--json")
    a = ap.parse_args()
    data = os.path.abspath(a.data)
    work = a.work or tempfile.mkdtemp(prefix="keys-bench-", dir=os.path.join(os.path.dirname(__file__), "out"))
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, ENGINE_PASSPHRASE=PASS)
    nice = ["nice", "-n", "-10"] if os.geteuid() == 0 else []
    engine = nice + [os.path.abspath(a.engine)]
    # the writer credential: made once on a format-2 repository, whose copy
    # (without data) each write-only sample starts from
    base = os.path.join(work, "wo-base")
    if not os.path.isdir(base):
        os.makedirs(os.path.join(work, "empty"), exist_ok=True)
        pipeline(os.path.join(work, "base.yml"), base, os.path.join(work, "empty"), "v2")
        subprocess.run(engine + ["run", os.path.join(work, "base.yml")], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(engine + ["key", "add", os.path.join(work, "base.yml"), "--write-only",
                                 "--out", os.path.join(work, "writer.cred")], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    samples = {c: [] for c in CONFIGS}
    rewrites = []
    for rnd in range(a.rounds):
        order = CONFIGS[rnd % len(CONFIGS):] + CONFIGS[:rnd % len(CONFIGS)]
        for cfg in order:
            repo = os.path.join(work, f"repo-{cfg}")
            shutil.rmtree(repo, ignore_errors=True)
            if cfg == "write-only":
                shutil.copytree(base, repo)
            y = os.path.join(work, f"{cfg}.yml")
            pipeline(y, repo, data, cfg, os.path.join(work, "writer.cred"))
            warm([data], [engine[-1:] + ["--version"]])
            s = timed(engine + ["run", y], env)
            s["stored_mib"] = du(repo) / 1048576.0
            samples[cfg].append(s)
            print(f"round {rnd + 1} {cfg:10s} {s['wall']:7.2f} s  user {s['user']:6.2f}  "
                  f"sys {s['sys']:5.2f}  rss {s['rss_mib']:6.1f} MiB  load {s['load']:.2f}", flush=True)
        warm([], [engine[-1:] + ["--version"]])
        r = timed(engine + ["key", "rotate", os.path.join(work, "v2.yml"), "--rewrite"], env)
        r["stored_mib"] = du(os.path.join(work, "repo-v2")) / 1048576.0
        rewrites.append(r)
        print(f"round {rnd + 1} rewrite    {r['wall']:7.2f} s  ({r['stored_mib']:.0f} MiB stored, "
              f"{r['stored_mib'] / r['wall']:.0f} MiB/s)", flush=True)
    report = {"data": data, "rounds": a.rounds, "configs": {}, "rewrite": {}}
    for cfg in CONFIGS:
        ratios = [s["wall"] / v["wall"] for s, v in zip(samples[cfg], samples["v1"])]
        cpu_ratios = [(s["user"] + s["sys"]) / (v["user"] + v["sys"])
                      for s, v in zip(samples[cfg], samples["v1"])]
        report["configs"][cfg] = {
            "wall_median": statistics.median(s["wall"] for s in samples[cfg]),
            "cpu_median": statistics.median(s["user"] + s["sys"] for s in samples[cfg]),
            "rss_median_mib": statistics.median(s["rss_mib"] for s in samples[cfg]),
            "ratio_to_v1_median": statistics.median(ratios),
            "cpu_ratio_to_v1_median": statistics.median(cpu_ratios),
            "ratios": ratios, "samples": samples[cfg]}
    report["rewrite"] = {"wall_median": statistics.median(r["wall"] for r in rewrites),
                         "stored_mib": rewrites[-1]["stored_mib"], "samples": rewrites}
    print("\nconfiguration  wall (median)  CPU (median)  peak RSS  wall ratio to v1 (median of "
          "rounds)  CPU ratio  stored")
    for cfg in CONFIGS:
        c = report["configs"][cfg]
        print(f"{cfg:13s}  {c['wall_median']:10.2f} s  {c['cpu_median']:9.2f} s  "
              f"{c['rss_median_mib']:6.1f} MiB  {c['ratio_to_v1_median']:.3f}  "
              f"({', '.join(f'{x:.3f}' for x in c['ratios'])})  "
              f"{c['cpu_ratio_to_v1_median']:.3f}  {c['samples'][-1]['stored_mib']:.0f} MiB")
    rw = report["rewrite"]
    print(f"key rotate --rewrite: {rw['wall_median']:.2f} s median for {rw['stored_mib']:.0f} MiB "
          f"({rw['stored_mib'] / rw['wall_median']:.0f} MiB/s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)
    shutil.rmtree(work, ignore_errors=True) if not a.work else None


if __name__ == "__main__":
    main()
