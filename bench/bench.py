#!/usr/bin/env python3
"""Measure engine, restic, borg and tar|zstd|openssl side by side.

Called by bench/run.sh once the tools and the data set exist. For every
repeat it runs each phase (first backup, unchanged second backup, full
restore) for every tool, rotating the tool order between repeats so no tool
always runs right after the same neighbour. Right before each timed command
the input is read once (the data set for backups, the repository for
restores) so every tool starts from a warm page cache, and every repository
and restore target is a new directory: nothing big is deleted until the end.

Wall time is measured here around the command; peak RSS and CPU time come
from /usr/bin/time (for the tar pipeline: per stage, RSS added up). The
CPU the rest of the machine used meanwhile (from /proc/stat) is recorded per
measurement as a noise indicator.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

MIB = 1024 * 1024
MB = 1000 * 1000
# "restore + sync": the restore and a sync(2) timed right after it, i.e. the
# time until the restored data is on disk. engine's restore ends with a
# syncfs of the target's file system (its sync is ~0); restic, borg and tar
# leave the data in the page cache and their sync writes it out.
PHASES = ("first backup", "second backup (unchanged)", "restore", "restore + sync (durable)")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def die(msg):
    print(f"bench: {msg}", file=sys.stderr)
    sys.exit(1)


def tree_bytes(root):
    total = 0
    files = 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            st = os.lstat(os.path.join(dirpath, n))
            total += st.st_size
            files += 1
    return total, files


def du_bytes(path):
    out = subprocess.run(["du", "-sb", path], check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])


def drop_caches():
    """Write back dirty pages and empty the page cache (root only).

    Every restore leaves ~1 GiB in the page cache; after a few runs free
    memory is gone and every later run pays for reclaim (a first backup took
    5.2-5.8 s instead of 4.1-4.5 s here). Starting each timed run from the
    same state keeps the samples comparable. BENCH_DROP_CACHES=0 disables it."""
    if os.geteuid() != 0 or os.environ.get("BENCH_DROP_CACHES", "1") == "0":
        return
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def warm(paths, cmds=()):
    """Read every file below paths once so the timed run starts page-cache warm
    (after dropping the page cache, see drop_caches). cmds are run once, output
    discarded, to load the tool's own executable and libraries again."""
    drop_caches()
    for c in cmds:
        subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    buf = bytearray(4 * MIB)
    view = memoryview(buf)
    for root in paths:
        for dirpath, _, names in os.walk(root):
            for n in names:
                p = os.path.join(dirpath, n)
                try:
                    fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
                except OSError:
                    continue  # sockets, dangling links: nothing to warm
                try:
                    f = os.fdopen(fd, "rb", buffering=0)
                    with f:
                        while f.readinto(view):
                            pass
                except OSError as e:
                    die(f"unable to read '{p}' while warming the cache: {e.strerror}")


def cpu_busy_seconds():
    """CPU seconds the whole machine spent busy (including steal) since boot."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    v = [int(x) for x in fields]
    # user nice system idle iowait irq softirq steal ...
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    steal = v[7] if len(v) > 7 else 0
    return busy / CLK_TCK, steal / CLK_TCK


class Runner:
    def __init__(self, work, nice):
        self.work = work
        self.nice = nice
        self.logdir = os.path.join(work, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.seq = 0

    def timed(self, label, stages, env, cwd=None, stdout_path=None):
        """Run a pipeline of commands (a list of argv lists), each stage under
        /usr/bin/time. Returns wall seconds, summed peak RSS (MiB), summed CPU
        seconds, and the CPU seconds other processes used meanwhile."""
        self.seq += 1
        tag = f"{self.seq:03d}-{label.replace(' ', '_').replace('/', '_')}"
        timefiles = [os.path.join(self.logdir, f"{tag}.time{i}") for i in range(len(stages))]
        prefix = ["nice", "-n", str(self.nice)] if self.nice else []
        parts = []
        for i, argv in enumerate(stages):
            parts.append(" ".join(shlex.quote(a) for a in
                                  prefix + ["/usr/bin/time", "-f", "%M %U %S", "-o", timefiles[i]] + argv))
        script = "set -o pipefail; " + " | ".join(parts)
        if not stdout_path:
            stdout_path = os.path.join(self.logdir, f"{tag}.out")
        script += " > " + shlex.quote(stdout_path)
        errpath = os.path.join(self.logdir, f"{tag}.err")
        busy0, steal0 = cpu_busy_seconds()
        t0 = time.monotonic()
        with open(errpath, "wb") as err:
            rc = subprocess.run(["bash", "-c", script], env=env, cwd=cwd, stderr=err,
                                stdin=subprocess.DEVNULL).returncode
        wall = time.monotonic() - t0
        busy1, steal1 = cpu_busy_seconds()
        if rc != 0:
            with open(errpath, errors="replace") as f:
                tail = f.read()[-3000:]
            die(f"'{label}' failed with exit status {rc}: {script}\n{tail}")
        rss_kib = 0
        user = sys_ = 0.0
        for tf in timefiles:
            with open(tf) as f:
                # /usr/bin/time may prepend "Command exited..." lines; the
                # format line is the last one.
                last = f.read().strip().splitlines()[-1].split()
            rss_kib += int(last[0])
            user += float(last[1])
            sys_ += float(last[2])
        cpu = user + sys_
        foreign = max(0.0, (busy1 - busy0) - cpu)
        return {"wall": wall, "rss_mib": rss_kib / 1024.0, "cpu": cpu, "user": user, "sys": sys_,
                "foreign_cpu": foreign, "steal": steal1 - steal0,
                "loadavg": os.getloadavg()[0], "stdout": stdout_path}


# ---------------------------------------------------------------- tools


class Tool:
    name = ""
    has_incremental = True

    def __init__(self, bench):
        self.b = bench

    def env(self):
        return dict(self.b.base_env)

    def repo_path(self, r):
        return os.path.join(self.b.work, "repos", f"{self.key}-{r}")

    def restore_path(self, r):
        return os.path.join(self.b.work, "restores", f"{self.key}-{r}")

    def init(self, r):
        pass

    def warm_cmds(self):
        """Commands that load the tool's executables and libraries."""
        return []

    def restored_root(self, target):
        return os.path.join(target, self.b.data.lstrip("/"))


class Engine(Tool):
    name = "engine"
    key = "engine"
    level = 3  # zstd level 3, as borg's zstd,3; restic's "auto" is klauspost's SpeedDefault

    def env(self):
        e = dict(self.b.base_env)
        e["ENGINE_PASSPHRASE"] = "bench-passphrase"
        # the local index cache, like restic's cache, inside the work directory
        e["ENGINE_CACHE_DIR"] = os.path.join(self.b.work, "cache", "engine")
        return e

    def pipeline(self, r):
        path = os.path.join(self.b.work, "pipelines", f"{self.key}-{r}.yaml")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write("version: 1\nname: bench\n"
                        f"sources: [{{name: files, type: files, with: {{paths: [{json.dumps(self.b.data)}]}}}}]\n"
                        f"stages: {{compress: {{algorithm: zstd, level: {self.level}}}, "
                        "encrypt: {algorithm: aes-256-gcm, passphrase: env:ENGINE_PASSPHRASE}}\n"
                        f"sinks: [{{name: local, type: local, with: {{path: {json.dumps(self.repo_path(r))}}}}}]\n")
        return path

    def warm_cmds(self):
        return [[self.b.engine, "plugins"]]  # the binary, its libraries and every plugin

    def backup(self, r, n):
        return [[self.b.engine, "-q", "run", self.pipeline(r), "--json", "--progress", "never"]]

    def restore(self, r, target):
        return [[self.b.engine, "-q", "restore", self.pipeline(r), "latest", "--target", target, "--yes"]]


class EngineZ1(Engine):
    """engine with zstd level 1: what the faster level costs in repository
    size (an extra row, not the headline comparison)."""
    name = "engine (zstd 1)"
    key = "engine-z1"
    level = 1


class Restic(Tool):
    name = "restic"
    key = "restic"

    def warm_cmds(self):
        return [["restic", "version"]]

    def env(self):
        e = dict(self.b.base_env)
        e["RESTIC_PASSWORD"] = "bench-passphrase"
        e["RESTIC_CACHE_DIR"] = os.path.join(self.b.work, "cache", "restic")
        return e

    def init(self, r):
        subprocess.run(["restic", "-q", "-r", self.repo_path(r), "init", "--repository-version", "2"],
                       env=self.env(), check=True, stdout=subprocess.DEVNULL)

    def backup(self, r, n):
        return [["restic", "-r", self.repo_path(r), "--compression", "auto", "backup", self.b.data]]

    def restore(self, r, target):
        return [["restic", "-r", self.repo_path(r), "restore", "latest", "--target", target]]


class Borg(Tool):
    name = "borg"
    key = "borg"

    def warm_cmds(self):
        return [["borg", "--version"], ["borg", "help", "create"]]

    def env(self):
        e = dict(self.b.base_env)
        e["BORG_PASSPHRASE"] = "bench-passphrase"
        e["BORG_BASE_DIR"] = os.path.join(self.b.work, "borg-home")
        e["BORG_RELOCATED_REPO_ACCESS_IS_OK"] = "yes"
        return e

    def init(self, r):
        subprocess.run(["borg", "init", "-e", "repokey", self.repo_path(r)],
                       env=self.env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def backup(self, r, n):
        return [["borg", "create", "--compression", "zstd,3", f"{self.repo_path(r)}::b{n}", self.b.data]]

    def restore(self, r, target):
        os.makedirs(target)
        return [["borg", "extract", f"{self.repo_path(r)}::b2"]]

    def restore_cwd(self, target):
        return target


class TarRef(Tool):
    name = "tar|zstd|openssl"

    def warm_cmds(self):
        return [["tar", "--version"], ["zstd", "--version"], ["openssl", "version"]]
    key = "tar"
    has_incremental = False

    def env(self):
        e = dict(self.b.base_env)
        e["BENCH_TAR_PASS"] = "bench-passphrase"
        return e

    def init(self, r):
        os.makedirs(self.repo_path(r))

    def archive(self, r):
        return os.path.join(self.repo_path(r), "archive.tar.zst.enc")

    def backup(self, r, n):
        parent, base = os.path.split(self.b.data)
        return [["tar", "-cf", "-", "-C", parent, base],
                ["zstd", "-3", "-T0", "-q", "-c"],
                ["openssl", "enc", "-aes-256-ctr", "-pbkdf2", "-pass", "env:BENCH_TAR_PASS"]]

    def backup_stdout(self, r):
        return self.archive(r)

    def restore(self, r, target):
        os.makedirs(target)
        return [["openssl", "enc", "-d", "-aes-256-ctr", "-pbkdf2", "-pass", "env:BENCH_TAR_PASS",
                 "-in", self.archive(r)],
                ["zstd", "-d", "-q", "-c"],
                ["tar", "-xf", "-", "-C", target]]

    def restored_root(self, target):
        return os.path.join(target, os.path.basename(self.b.data))


# ---------------------------------------------------------------- verification


def verify_tree(src, dst):
    """Restored tree must hold the same files with the same bytes and mtimes."""
    problems = []
    for dirpath, dirnames, names in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        for n in names:
            a = os.path.join(dirpath, n)
            b = os.path.normpath(os.path.join(dst, rel, n))
            try:
                sa, sb = os.lstat(a), os.lstat(b)
            except OSError as e:
                problems.append(f"{b}: {e.strerror}")
                continue
            if sa.st_size != sb.st_size:
                problems.append(f"{b}: size {sb.st_size} != {sa.st_size}")
            elif int(sa.st_mtime) != int(sb.st_mtime):
                problems.append(f"{b}: mtime {int(sb.st_mtime)} != {int(sa.st_mtime)}")
            else:
                with open(a, "rb") as fa, open(b, "rb") as fb:
                    while True:
                        ca = fa.read(MIB)
                        if ca != fb.read(MIB):
                            problems.append(f"{b}: content differs")
                            break
                        if not ca:
                            break
            if len(problems) > 10:
                return problems
    _, want = tree_bytes(src)
    _, got = tree_bytes(dst)
    if want != got:
        problems.append(f"{dst}: {got} files restored, {want} expected")
    return problems


# ---------------------------------------------------------------- main


class Bench:
    def __init__(self, args):
        self.data = os.path.abspath(args.data)
        self.work = os.path.abspath(args.work)
        self.engine = os.path.abspath(args.engine)
        self.repeat = args.repeat
        self.verify = args.verify
        self.base_env = dict(os.environ)
        for k in ("RESTIC_REPOSITORY", "RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND",
                  "BORG_REPO", "BORG_PASSCOMMAND", "BORG_PASSPHRASE_FD"):
            self.base_env.pop(k, None)
        self.runner = Runner(self.work, args.nice)
        self.tools = [Engine(self), EngineZ1(self), Restic(self), Borg(self), TarRef(self)]
        only = [t for t in args.tools.split(",") if t]
        if only:
            self.tools = [t for t in self.tools if t.key in only]
        self.samples = {}  # (tool, phase) -> list of dicts
        self.notes = []

    def record(self, tool, phase, m):
        self.samples.setdefault((tool.name, phase), []).append(m)
        print(f"  {tool.name:<18} {phase:<27} {m['wall']:7.2f} s  {m['rss_mib']:7.1f} MiB"
              f"  cpu {m['cpu']:6.2f} s  others {m['foreign_cpu']:5.2f} cpu-s"
              f"  repo {m.get('repo_bytes', 0) / MIB:8.1f} MiB", flush=True)

    def run(self):
        self.input_bytes, self.input_files = tree_bytes(self.data)
        print(f"bench: data set {self.data}: {self.input_files} files, "
              f"{self.input_bytes / MIB:.1f} MiB; {self.repeat} repeat(s)", flush=True)
        for r in range(1, self.repeat + 1):
            k = (r - 1) % len(self.tools)
            order = self.tools[k:] + self.tools[:k]
            print(f"bench: repeat {r}/{self.repeat}, order: {', '.join(t.name for t in order)}", flush=True)

            for t in order:
                t.init(r)
                warm([self.data, t.repo_path(r)], t.warm_cmds())
                m = self.runner.timed(f"{t.key}-{r}-first", t.backup(r, 1), t.env(),
                                      stdout_path=getattr(t, "backup_stdout", lambda r: None)(r))
                m["repo_bytes"] = du_bytes(t.repo_path(r))
                if t.key.startswith("engine"):
                    m["summary"] = self.engine_summary(m["stdout"])
                self.record(t, PHASES[0], m)

            for t in order:
                if not t.has_incremental:
                    continue
                warm([self.data, t.repo_path(r)], t.warm_cmds())
                m = self.runner.timed(f"{t.key}-{r}-second", t.backup(r, 2), t.env())
                m["repo_bytes"] = du_bytes(t.repo_path(r))
                if t.key.startswith("engine"):
                    m["summary"] = self.engine_summary(m["stdout"])
                    if m["summary"].get("bytes_read", 0) > self.input_bytes // 100:
                        self.notes.append(f"engine's unchanged run read {m['summary']['bytes_read']} "
                                          "bytes: unchanged files were not all skipped")
                self.record(t, PHASES[1], m)

            for t in order:
                target = t.restore_path(r)
                # Set the target up before warming: borg and tar need the
                # directory to exist, and creating it must not be timed.
                stages = t.restore(r, target)
                warm([t.repo_path(r)], t.warm_cmds())
                m = self.runner.timed(f"{t.key}-{r}-restore", stages, t.env(),
                                      cwd=getattr(t, "restore_cwd", lambda x: None)(target))
                t_sync = time.monotonic()
                os.sync()
                m["sync"] = time.monotonic() - t_sync
                m["repo_bytes"] = du_bytes(t.repo_path(r))
                self.record(t, PHASES[2], m)
                self.record(t, PHASES[3], dict(m, wall=m["wall"] + m["sync"]))
                if self.verify and r == 1:
                    problems = verify_tree(self.data, t.restored_root(target))
                    if problems:
                        die(f"{t.name} restored a tree that differs from the data set:\n  "
                            + "\n  ".join(problems))
                    print(f"  {t.name:<18} restore verified (content, sizes, mtimes)", flush=True)

    def engine_summary(self, path):
        with open(path) as f:
            try:
                return json.load(f)
            except json.JSONDecodeError as e:
                die(f"unable to parse engine's --json output in '{path}': {e}")

    # ---- reporting ----

    def cell(self, tool, phase):
        s = self.samples.get((tool, phase))
        if not s:
            return None
        med = lambda key: statistics.median(x[key] for x in s)  # noqa: E731
        return {"wall": med("wall"), "rss": med("rss_mib"), "cpu": med("cpu"),
                "repo": med("repo_bytes") / MIB, "min": min(x["wall"] for x in s),
                "max": max(x["wall"] for x in s), "foreign": med("foreign_cpu"),
                "n": len(s)}

    def table(self):
        rows = []
        for phase in PHASES:
            ref = self.cell("restic", phase)
            for t in self.tools:
                c = self.cell(t.name, phase)
                if not c:
                    continue
                mbs = self.input_bytes / MB / c["wall"] if c["wall"] > 0 else float("inf")
                speed = f"{ref['wall'] / c['wall']:.2f}x" if ref and c["wall"] > 0 else "-"
                cpu = f"{ref['cpu'] / c['cpu']:.2f}x" if ref and c["cpu"] > 0 else "-"
                rss = f"{c['rss'] / ref['rss']:.2f}" if ref and ref["rss"] > 0 else "-"
                rows.append([t.name, phase, f"{c['wall']:.2f}", f"{mbs:.0f}", f"{c['cpu']:.2f}",
                             f"{c['rss']:.0f}", f"{c['repo']:.0f}", speed, cpu, rss,
                             f"{c['min']:.2f}-{c['max']:.2f}", f"{c['foreign']:.2f}"])
        head = ["tool", "phase", "wall s", "MB/s", "CPU s", "peak RSS MiB", "repo MiB",
                "speed vs restic", "CPU vs restic", "RSS vs restic", "wall min-max", "others' CPU s"]
        return head, rows

    def print_table(self, head, rows):
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
        print()
        print(fmt.format(*head))
        print("  ".join("-" * w for w in widths))
        for row in rows:
            print(fmt.format(*row))
        print()

    def markdown(self, head, rows, path, meta):
        lines = [f"# Benchmark results ({meta['date']})", "",
                 f"Data set: {self.input_files} files, {self.input_bytes / MIB:.1f} MiB "
                 f"(`{meta['data']}`); median of {self.repeat} repeat(s); "
                 f"MB/s = input bytes (10^6) / wall time; speed vs restic = restic wall / tool wall "
                 f"(> 1 is faster); CPU vs restic = restic CPU s / tool CPU s (steadier than wall time on a "
                 f"busy machine); RSS vs restic = tool peak RSS / restic peak RSS (< 1 is smaller); "
                 f"\"others' CPU s\" = CPU seconds used by other processes on the machine during the "
                 f"measurement, including kernel writeback (noise); measured commands ran at nice "
                 f"{self.runner.nice}.", "",
                 "| " + " | ".join(head) + " |",
                 "|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|"]
        esc = lambda v: str(v).replace("|", "\\|")  # noqa: E731  (tool names contain pipes)
        for row in rows:
            lines.append("| " + " | ".join(esc(v) for v in row) + " |")
        lines += ["", "Machine: " + meta["machine"], "", "Tools: " + meta["versions"], ""]
        eng = self.samples.get(("engine", PHASES[1]))
        if eng:
            s = eng[-1].get("summary", {})
            lines.append(f"engine's unchanged run: bytes_read={s.get('bytes_read')}, "
                         f"reused_items={s.get('reused_items')}, new_bytes={s.get('new_bytes')}, "
                         f"stored_bytes={s.get('stored_bytes')}")
            lines.append("")
        for n in self.notes:
            lines.append(f"Note: {n}")
        loads = [m["loadavg"] for s in self.samples.values() for m in s]
        if loads:
            lines += [f"1-minute load average at the end of each measurement: min {min(loads):.2f}, "
                      f"median {statistics.median(loads):.2f}, max {max(loads):.2f} "
                      f"({os.cpu_count()} CPUs).", ""]
        lines += ["## Raw samples", "",
                  "| tool | phase | wall s | CPU s | user s | sys s | RSS MiB | others' CPU s | steal s | load |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for (tool, phase), samples in self.samples.items():
            for m in samples:
                lines.append(f"| {esc(tool)} | {phase} | {m['wall']:.2f} | {m['cpu']:.2f} | {m['user']:.2f} | "
                             f"{m['sys']:.2f} | {m['rss_mib']:.1f} | "
                             f"{m['foreign_cpu']:.2f} | {m['steal']:.2f} | {m['loadavg']:.2f} |")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")


def tool_versions(engine):
    def first_line(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unavailable"
    return "; ".join([first_line([engine, "--version"]), first_line(["restic", "version"]),
                      first_line(["borg", "--version"]), first_line(["zstd", "--version"]),
                      first_line(["openssl", "version"]), first_line(["tar", "--version"])])


def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return f"{os.cpu_count()} CPUs ({model}), {mem_kib / MIB:.1f} GiB RAM, kernel {os.uname().release}"


def main():
    ap = argparse.ArgumentParser(description="engine vs restic vs borg vs tar benchmark")
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True, help="directory for repositories and restores (created)")
    ap.add_argument("--engine", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--results", required=True, help="markdown output")
    ap.add_argument("--json", help="raw samples as JSON")
    ap.add_argument("--nice", type=int, default=0,
                    help="run the measured commands at this nice level (negative needs root): "
                         "on a shared machine it keeps background jobs from distorting the figures")
    ap.add_argument("--tools", default="", help="comma-separated subset: engine,restic,borg,tar")
    ap.add_argument("--no-verify", dest="verify", action="store_false",
                    help="do not compare the first repeat's restores with the data set")
    args = ap.parse_args()
    if args.repeat < 1:
        die("--repeat must be at least 1")
    if not os.path.isdir(args.data):
        die(f"data set '{args.data}' is not a directory")
    if os.path.exists(args.work):
        die(f"work directory '{args.work}' already exists; the benchmark uses fresh directories only")
    os.makedirs(args.work)

    b = Bench(args)
    started = time.monotonic()
    b.run()
    head, rows = b.table()
    b.print_table(head, rows)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "data": args.data,
            "machine": machine(), "versions": tool_versions(b.engine)}
    b.markdown(head, rows, args.results, meta)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "input_bytes": b.input_bytes, "input_files": b.input_files,
                       "samples": [{"tool": k[0], "phase": k[1], "runs": v} for k, v in b.samples.items()]},
                      f, indent=2)
    print(f"bench: results written to {args.results} ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
