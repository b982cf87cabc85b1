#!/usr/bin/env python3
"""engine side by side with restic (and borg) on one phase, in alternating rounds.

    python3 bench/vs.py PHASE --data DIR --engine BIN [--pairs N] [--tools engine,restic,borg]

PHASE is one of
  backup    first backup of DIR into a new repository (one per sample)
  rebackup  unchanged second backup (each tool's repository holds one backup of DIR)
  restore   full restore of the latest snapshot into a new directory, then a
            timed sync(2) (engine's restore ends with a syncfs; the others' do not)
  check     engine check --read-data / restic check --read-data / borg check --verify-data
  prune     prune after forget: a copy of DIR is backed up, every third file
            (in sorted order) deleted, backed up again, the first snapshot
            forgotten; each sample prunes a fresh copy of that repository
            (engine prune / restic prune / borg delete + compact), caches emptied

Every round runs each tool once, the order rotating from round to round
(engine, restic, then restic, engine, ...), so a machine whose speed drifts
shifts both sides of a round alike: the verdict is the median of the
per-round ratios (the other tool's wall time divided by engine's; above 1,
engine is faster) next to the medians. Before every sample the page cache
is dropped (root only) and the input is read once, as bench/bench.py does.
Measured commands run at nice -10 as root. Every sample (wall, user and
system CPU, peak RSS, the load average before and after) goes to --json.

All tools use local repositories in --work (default: a new directory under
bench/out); engine: zstd 3 and aes-256-gcm; restic: repository version 2,
--compression auto; borg: repokey, zstd,3.
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
from bench import tree_bytes, verify_tree, warm  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# seconds to wait after --drop-targets deletes a round's restores (see go())
SETTLE_S = 361
PASS = "vs-passphrase"
PHASES = ("backup", "rebackup", "restore", "check", "prune")


def die(msg):
    print(f"vs: {msg}", file=sys.stderr)
    sys.exit(1)


def run(cmd, env, cwd=None):
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        die(f"{' '.join(cmd)} failed (exit {r.returncode}):\n{r.stdout[-1000:]}{r.stderr[-2000:]}")
    return r.stdout


class Tool:
    def __init__(self, v, key):
        self.v = v
        self.key = key
        self.cache = os.path.join(v.work, "cache", key)

    def repo(self, tag):
        return os.path.join(self.v.work, "repos", f"{self.key}-{tag}")

    def clear_cache(self):
        shutil.rmtree(self.cache, ignore_errors=True)


class Engine(Tool):
    def env(self):
        return dict(self.v.env, ENGINE_PASSPHRASE=PASS, ENGINE_CACHE_DIR=self.cache)

    def pipeline(self, repo, data):
        path = repo + ".yml"
        with open(path, "w") as f:
            f.write("version: 1\nname: vs\n"
                    f"sources: [{{name: files, type: files, with: {{paths: [{json.dumps(data)}]}}}}]\n"
                    "stages: {compress: {algorithm: zstd, level: 3}, "
                    "encrypt: {algorithm: aes-256-gcm, passphrase: env:ENGINE_PASSPHRASE}}\n"
                    f"sinks: [{{name: local, type: local, with: {{path: {json.dumps(repo)}}}}}]\n")
        return path

    def warm_cmds(self):
        return [[self.v.engine, "plugins"]]

    def init(self, repo, data):
        self.pipeline(repo, data)

    def backup(self, repo, data):
        return [self.v.engine, "-q", "run", self.pipeline(repo, data), "--json", "--progress", "never"]

    def restore(self, repo, target):
        return [self.v.engine, "-q", "restore", repo + ".yml", "latest", "--target", target, "--yes"]

    def check(self, repo):
        return [self.v.engine, "-q", "check", repo + ".yml", "--read-data"]

    def snapshots(self, repo):
        s = json.loads(run([self.v.engine, "snapshots", repo + ".yml", "--json"], self.env()))
        return [x["id"] for x in sorted(s, key=lambda x: x["time"])]

    def forget(self, repo, snap):
        run([self.v.engine, "-q", "forget", repo + ".yml", snap], self.env())

    def prune(self, repo):
        extra = ["--repack-threshold", self.v.a.repack_threshold] if self.v.a.repack_threshold else []
        return [self.v.engine, "-q", "prune", repo + ".yml"] + extra

    def restored(self, target, data):
        return os.path.join(target, data.lstrip("/"))


class Restic(Tool):
    def env(self):
        return dict(self.v.env, RESTIC_PASSWORD=PASS, RESTIC_CACHE_DIR=self.cache)

    def warm_cmds(self):
        return [["restic", "version"]]

    def init(self, repo, data):
        run(["restic", "-q", "-r", repo, "init", "--repository-version", "2"], self.env())

    def backup(self, repo, data):
        return ["restic", "-q", "-r", repo, "--compression", "auto", "backup", data]

    def restore(self, repo, target):
        return ["restic", "-q", "-r", repo, "restore", "latest", "--target", target]

    def check(self, repo):
        return ["restic", "-q", "-r", repo, "check", "--read-data"]

    def snapshots(self, repo):
        s = json.loads(run(["restic", "-r", repo, "snapshots", "--json"], self.env()))
        return [x["id"] for x in sorted(s, key=lambda x: x["time"])]

    def forget(self, repo, snap):
        run(["restic", "-q", "-r", repo, "forget", snap], self.env())

    def prune(self, repo):
        return ["restic", "-q", "-r", repo, "prune"]

    def restored(self, target, data):
        return os.path.join(target, data.lstrip("/"))


class Borg(Tool):
    def __init__(self, v, key):
        super().__init__(v, key)
        self.n = 0

    def env(self):
        return dict(self.v.env, BORG_PASSPHRASE=PASS, BORG_BASE_DIR=self.cache,
                    BORG_RELOCATED_REPO_ACCESS_IS_OK="yes", BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes")

    def warm_cmds(self):
        return [["borg", "--version"]]

    def init(self, repo, data):
        run(["borg", "init", "-e", "repokey", repo], self.env())

    def backup(self, repo, data):
        self.n += 1
        return ["borg", "create", "--compression", "zstd,3", f"{repo}::a{self.n}", data]

    def restore(self, repo, target):
        last = run(["borg", "list", "--short", "--last", "1", repo], self.env()).split()[0]
        os.makedirs(target)
        return ["borg", "extract", f"{repo}::{last}"]

    def restore_cwd(self, target):
        return target

    def check(self, repo):
        return ["borg", "check", "--verify-data", repo]

    def snapshots(self, repo):
        return run(["borg", "list", "--short", repo], self.env()).split()

    def forget(self, repo, snap):
        pass  # borg's delete is timed with its compact (see prune)

    def prune(self, repo):
        first = self.snapshots(repo)[0]
        return ["sh", "-c", 'borg delete "$0::$1" && borg compact "$0"', repo, first]

    def restored(self, target, data):
        return os.path.join(target, data.lstrip("/"))


TOOLS = {"engine": Engine, "restic": Restic, "borg": Borg}


class Vs:
    def __init__(self, a):
        self.a = a
        self.phase = a.phase
        self.data = os.path.abspath(a.data)
        self.engine = os.path.abspath(a.engine)
        self.work = a.work
        self.env = dict(os.environ)
        for k in ("RESTIC_REPOSITORY", "RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND",
                  "BORG_REPO", "BORG_PASSCOMMAND", "BORG_PASSPHRASE_FD"):
            self.env.pop(k, None)
        self.tools = [TOOLS[k](self, k) for k in a.tools]
        self.samples = {t.key: [] for t in self.tools}
        self.nice = ["nice", "-n", "-10"] if os.geteuid() == 0 else []

    def timed(self, tool, cmd, cwd=None):
        load0 = os.getloadavg()[0]
        t0 = time.monotonic()
        r = subprocess.run(["/usr/bin/time", "-f", "%U %S %M"] + self.nice + cmd, env=tool.env(), cwd=cwd,
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
        wall = time.monotonic() - t0
        if r.returncode != 0:
            die(f"{' '.join(cmd)} failed (exit {r.returncode}):\n{r.stdout[-1000:]}{r.stderr[-2000:]}")
        u, s, m = r.stderr.strip().splitlines()[-1].split()
        out = {"wall": wall, "user": float(u), "sys": float(s), "cpu": float(u) + float(s),
               "rss_mib": int(m) / 1024, "load_before": load0, "load_after": os.getloadavg()[0]}
        if tool.key == "engine" and "--json" in cmd:
            try:
                j = json.loads(r.stdout)
                out["engine"] = {k: j.get(k) for k in ("new_chunks", "chunks", "items", "packs",
                                                       "stored_bytes", "bytes_read")}
            except json.JSONDecodeError:
                pass
        return out

    # ---- setup per phase (untimed) ----

    def setup(self):
        if self.phase in ("rebackup", "restore", "check"):
            for t in self.tools:
                repo = t.repo("base")
                t.init(repo, self.data)
                run(t.backup(repo, self.data), t.env())
                print(f"vs: {t.key}: one backup of {self.data} in {repo}", flush=True)
        elif self.phase == "prune":
            copy = os.path.join(self.work, "prune-data")
            subprocess.run(["cp", "-a", self.data, copy], check=True)
            for t in self.tools:
                t.init(t.repo("base"), copy)
                run(t.backup(t.repo("base"), copy), t.env())
            files = []
            for dirpath, dirnames, names in os.walk(copy):
                dirnames.sort()
                files += [os.path.join(dirpath, n) for n in sorted(names)]
            gone = files[::3]
            for p in gone:
                os.unlink(p)
            print(f"vs: prune: deleted {len(gone)} of {len(files)} files of the copy", flush=True)
            for t in self.tools:
                repo = t.repo("base")
                run(t.backup(repo, copy), t.env())
                snaps = t.snapshots(repo)
                if len(snaps) != 2:
                    die(f"{t.key}: expected 2 snapshots in {repo}, found {len(snaps)}")
                t.forget(repo, snaps[0])
                print(f"vs: {t.key}: two backups, the first forgotten, in {repo} "
                      f"({du(repo) / 2**20:.0f} MiB)", flush=True)

    # ---- one sample ----

    def sample(self, t, name):
        load = [t.warm_cmds()[0]]
        if self.phase == "backup":
            repo = t.repo(name)
            t.init(repo, self.data)
            t.clear_cache()
            warm([self.data], load)
            m = self.timed(t, t.backup(repo, self.data))
            m["repo_mib"] = du(repo) / 2**20
            shutil.rmtree(repo)
            if os.path.exists(repo + ".yml"):
                os.unlink(repo + ".yml")
        elif self.phase == "rebackup":
            repo = t.repo("base")
            warm([self.data, repo], load)
            m = self.timed(t, t.backup(repo, self.data))
        elif self.phase == "restore":
            target = os.path.join(self.work, "restores", f"{t.key}-{name}")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            cmd = t.restore(t.repo("base"), target)
            warm([t.repo("base"), t.cache], load)
            m = self.timed(t, cmd, cwd=getattr(t, "restore_cwd", lambda x: None)(target))
            s0 = time.monotonic()
            os.sync()
            m["sync"] = time.monotonic() - s0
            if self.a.verify and not self.verified.get(t.key):
                problems = verify_tree(self.data, t.restored(target, self.data))
                if problems:
                    die(f"{t.key} restored a tree that differs from {self.data}:\n  " + "\n  ".join(problems))
                self.verified[t.key] = True
                print(f"  {t.key}: restore verified (content, sizes, mtimes)", flush=True)
            self.targets.append(target)
        elif self.phase == "check":
            warm([t.repo("base"), t.cache], load)
            m = self.timed(t, t.check(t.repo("base")))
        else:  # prune
            repo = t.repo(name)
            subprocess.run(["cp", "-a", t.repo("base"), repo], check=True)
            if t.key == "engine":
                with open(t.repo("base") + ".yml") as f:
                    text = f.read()
                with open(repo + ".yml", "w") as f:
                    f.write(text.replace(json.dumps(t.repo("base")), json.dumps(repo)))
            t.clear_cache()
            before = du(repo)
            warm([repo], load)
            m = self.timed(t, t.prune(repo))
            m["repo_mib_before"] = before / 2**20
            m["repo_mib"] = du(repo) / 2**20
            if not self.verified.get(t.key):
                check = t.check(repo)
                if t.key == "engine":
                    check = check[:-1]  # the structure; --read-data is the check phase
                elif t.key == "restic":
                    check = check[:-1]
                else:
                    check = ["borg", "check", repo]
                run(check, t.env())
                self.verified[t.key] = True
                print(f"  {t.key}: the pruned repository passes its check", flush=True)
            shutil.rmtree(repo)
        return m

    def go(self):
        self.verified = {}
        self.targets = []
        print(f"vs: {self.phase} of {self.data} ({self.nfiles} files, {self.nbytes / 2**20:.0f} MiB), "
              f"{self.a.pairs} rounds of {', '.join(t.key for t in self.tools)}; load {uptime()}", flush=True)
        self.setup()
        n = len(self.tools)
        for i in range(self.a.pairs):
            order = self.tools[i % n:] + self.tools[:i % n]
            for t in order:
                m = self.sample(t, f"{i}")
                m["round"] = i
                self.samples[t.key].append(m)
            line = "  ".join(f"{t.key} {self.samples[t.key][-1]['wall']:.2f} s "
                             f"({self.samples[t.key][-1]['cpu']:.1f} CPU-s, "
                             f"{self.samples[t.key][-1]['rss_mib']:.0f} MiB)" for t in self.tools)
            print(f"round {i + 1}/{self.a.pairs}: {line}  load {os.getloadavg()[0]:.2f}", flush=True)
            if self.a.drop_targets:
                for d in self.targets:
                    shutil.rmtree(d, ignore_errors=True)
                self.targets = []
                # ext4 without a journal (this benchmark VM's root) skips, at
                # every inode allocation, each free inode deleted less than
                # 60 s ago, 360 s while its inode table block is dirty
                # (recently_deleted(), fs/ext4/ialloc.c), and the next
                # restore's own allocations dirty those blocks: after
                # deleting 600,000 restored files, the next rounds' restores
                # spent most of their time in that scan (perf) and took 2-3x
                # longer, whichever tool came first; 61 s of waiting was not
                # enough. So the deletes settle for 6 minutes.
                os.sync()
                time.sleep(SETTLE_S)
        self.report()

    def report(self):
        print(f"\n{self.phase} of {self.data}: {self.nfiles} files, {self.nbytes / 2**20:.0f} MiB; "
              f"{self.a.pairs} rounds; load after {uptime()}")
        loads = [m["load_before"] for s in self.samples.values() for m in s]
        print(f"  1-minute load average before the samples: min {min(loads):.2f}, "
              f"median {statistics.median(loads):.2f}, max {max(loads):.2f} ({os.cpu_count()} CPUs)")
        for t in self.tools:
            s = self.samples[t.key]
            w = [x["wall"] for x in s]
            extra = ""
            if self.phase == "restore":
                extra = f", + sync median {statistics.median(x['wall'] + x['sync'] for x in s):.2f} s"
            if self.phase == "prune":
                extra = (f", repository {statistics.median(x['repo_mib_before'] for x in s):.0f} -> "
                         f"{statistics.median(x['repo_mib'] for x in s):.0f} MiB")
            elif self.phase == "backup":
                extra = f", repository {statistics.median(x['repo_mib'] for x in s):.0f} MiB"
            print(f"  {t.key:<7} wall median {statistics.median(w):.2f} s (min {min(w):.2f}, max {max(w):.2f}){extra}, "
                  f"CPU {statistics.median(x['cpu'] for x in s):.2f} s "
                  f"(sys {statistics.median(x['sys'] for x in s):.2f}), "
                  f"peak RSS median {statistics.median(x['rss_mib'] for x in s):.0f} MiB "
                  f"(max {max(x['rss_mib'] for x in s):.0f})")
        e = self.samples.get("engine")
        for t in self.tools:
            if t.key == "engine" or not e:
                continue
            o = self.samples[t.key]
            r = [o[i]["wall"] / e[i]["wall"] for i in range(len(e))]
            print(f"  {t.key}/engine wall per round: {', '.join(f'{x:.2f}' for x in r)}; "
                  f"median {statistics.median(r):.2f}x (engine faster in {sum(1 for x in r if x > 1)} of {len(r)})")
            if self.phase == "restore":
                r2 = [(o[i]["wall"] + o[i]["sync"]) / (e[i]["wall"] + e[i]["sync"]) for i in range(len(e))]
                print(f"  {t.key}/engine restore + sync per round: median {statistics.median(r2):.2f}x")
            c = [o[i]["cpu"] / e[i]["cpu"] for i in range(len(e)) if e[i]["cpu"] > 0]
            if c:
                print(f"  {t.key}/engine CPU seconds per round: median {statistics.median(c):.2f}x "
                      "(steadier than wall time on a busy machine)")
            rr = [e[i]["rss_mib"] / o[i]["rss_mib"] for i in range(len(e))]
            print(f"  engine/{t.key} peak RSS per round: median {statistics.median(rr):.2f}")
        if self.a.json:
            with open(self.a.json, "w") as f:
                json.dump({"phase": self.phase, "data": self.data, "files": self.nfiles, "bytes": self.nbytes,
                           "versions": versions(self.engine), "machine": machine(),
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "samples": self.samples}, f, indent=1)


def du(path):
    return int(subprocess.run(["du", "-sb", path], check=True, capture_output=True, text=True).stdout.split()[0])


def uptime():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def versions(engine):
    def first(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unavailable"
    return {"engine": first([engine, "--version"]), "restic": first(["restic", "version"]),
            "borg": first(["borg", "--version"])}


def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model}), kernel {os.uname().release}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("phase", choices=PHASES)
    ap.add_argument("--data", required=True, help="the data set (a directory)")
    ap.add_argument("--engine", required=True, help="engine binary (finds its plugins next to it)")
    ap.add_argument("--pairs", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--tools", default="engine,restic", help="engine,restic[,borg] (default engine,restic)")
    ap.add_argument("--work", default=None, help="scratch directory (default: a new one under bench/out)")
    ap.add_argument("--json", default=None, help="write every sample here")
    ap.add_argument("--no-verify", dest="verify", action="store_false",
                    help="restore: do not compare each tool's first restore with the data set")
    ap.add_argument("--drop-targets", action="store_true",
                    help="restore: delete each round's restores after the round (large trees; "
                         "by default they are kept to the end; after the deletes the next round waits %d s, see go())" % SETTLE_S)
    ap.add_argument("--repack-threshold", default=None, metavar="F",
                    help="prune: engine prune --repack-threshold F (default: engine's own, 0.5; restic "
                         "prune runs with its default --max-unused 5%%)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    a.tools = [t for t in a.tools.split(",") if t]
    for t in a.tools:
        if t not in TOOLS:
            die(f"unknown tool '{t}' (engine, restic, borg)")
    if "engine" not in a.tools:
        die("--tools must include engine (ratios are taken against it)")
    if a.pairs < 1:
        die("--pairs must be at least 1")
    if not os.path.isdir(a.data):
        die(f"no data set at {a.data} (bench/gen_data.py makes one)")
    if not os.access(a.engine, os.X_OK):
        die(f"{a.engine} is not an executable")
    if not os.path.exists("/usr/bin/time"):
        die("/usr/bin/time is missing (apt-get install time)")
    for t in a.tools:
        if t != "engine" and not shutil.which(t):
            die(f"{t} is not installed (apt-get install {t if t == 'restic' else 'borgbackup'})")
    made = a.work is None
    if made:
        os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
        a.work = tempfile.mkdtemp(prefix=f"vs-{a.phase}-", dir=os.path.join(HERE, "out"))
    os.makedirs(os.path.join(a.work, "repos"), exist_ok=True)
    v = Vs(a)
    v.nbytes, v.nfiles = tree_bytes(v.data)
    try:
        v.go()
    finally:
        if made and not a.keep:
            shutil.rmtree(a.work, ignore_errors=True)


if __name__ == "__main__":
    main()
