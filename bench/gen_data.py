#!/usr/bin/env python3
"""Generate the benchmark's reproducible mixed data set.

The same seed and size always give byte-identical files with identical
mtimes, so results from different machines and runs compare the same input.
The mix is chosen to exercise what differs between backup tools: compressible
text (log lines, prose), incompressible random binary, thousands of small
files (per-file overhead), semi-structured records, exact duplicates
(whole-file dedup) and shifted copies (content-defined chunking).

With --small-files N it writes only small files instead: N files of
64 B - 4 KiB (2 KiB on average; text, C-like code, JSON, log lines and
random binary in turn, as the mixed set's small files), 1,000 per directory:
the many-small-files host (per-file cost, memory per file).
"""

import argparse
import json
import os
import random
import shutil
import struct
import sys
import time

GENERATOR_VERSION = 1
MIB = 1024 * 1024
# 2024-01-01T00:00:00Z: every file gets this plus a per-file offset.
BASE_MTIME = 1704067200

# Share of the total size per category; the rest of the layout follows from it.
SHARES = {
    "logs": 0.30,
    "docs": 0.10,
    "bin": 0.27,
    "records": 0.08,
    "small": 0.10,
    "dup": 0.15,
}

LEVELS = ["INFO"] * 14 + ["DEBUG"] * 8 + ["WARN"] * 3 + ["ERROR"]
COMPONENTS = ["http", "db.pool", "scheduler", "auth", "cache", "worker",
              "storage", "api.v2", "mailer", "metrics", "gc", "replication"]
METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE", "PATCH"]
PATHS = ["/api/v2/users", "/api/v2/orders", "/static/app.js", "/health",
         "/api/v2/items", "/login", "/logout", "/api/v2/search", "/metrics",
         "/api/v2/reports/daily", "/uploads", "/api/v2/invoices"]


def make_vocabulary(rng, count):
    syllables = ["ka", "lo", "mi", "ten", "ra", "su", "ve", "dor", "an", "is",
                 "po", "quin", "el", "tra", "mo", "ne", "ri", "sta", "ul", "gor",
                 "be", "fi", "ho", "cle", "ment", "ar", "ox", "ja", "wen", "zu"]
    words = set()
    while len(words) < count:
        n = rng.choice((1, 2, 2, 2, 3, 3, 4))
        words.add("".join(rng.choice(syllables) for _ in range(n)))
    words = sorted(words)
    rng.shuffle(words)
    # Zipf-like weights make the text compress like natural language does.
    cum = []
    total = 0.0
    for rank in range(1, count + 1):
        total += 1.0 / rank
        cum.append(total)
    return words, cum


class Generator:
    def __init__(self, root, size_mb, seed):
        self.root = root
        self.total = size_mb * MIB
        self.rng = random.Random(seed)
        self.words, self.word_cum = make_vocabulary(self.rng, 6000)
        self.file_index = 0
        self.stats = {}
        self.files = []
        self.clock = BASE_MTIME

    # ---- writing ----

    def write(self, category, rel, data):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        self.files.append(rel)
        files, size = self.stats.get(category, (0, 0))
        self.stats[category] = (files + 1, size + len(data))

    # ---- content kinds ----

    def log_text(self, size):
        rng = self.rng
        r = rng.random
        ri = rng.randrange
        out = []
        n = 0
        t = self.clock + ri(86400 * 300)
        while n < size:
            t += r() * 0.4
            lt = time.gmtime(int(t))
            ms = int((t % 1) * 1000)
            level = LEVELS[ri(len(LEVELS))]
            comp = COMPONENTS[ri(len(COMPONENTS))]
            kind = ri(6)
            if kind <= 2:
                msg = (f"{ri(1, 255)}.{ri(256)}.{ri(256)}.{ri(256)} "
                       f"\"{METHODS[ri(len(METHODS))]} {PATHS[ri(len(PATHS))]}/{ri(100000)} HTTP/1.1\" "
                       f"{(200, 200, 200, 201, 204, 304, 404, 500)[ri(8)]} {ri(50, 90000)} "
                       f"{r() * 800:.3f}ms req={rng.getrandbits(64):016x}")
            elif kind == 3:
                msg = (f"query ok table={self.words[ri(200)]} rows={ri(5000)} "
                       f"elapsed={r() * 120:.2f}ms conn={ri(64)}")
            elif kind == 4:
                msg = (f"job {self.words[ri(300)]}-{ri(10000)} finished status="
                       f"{('ok', 'ok', 'ok', 'retry', 'failed')[ri(5)]} attempts={ri(1, 4)}")
            else:
                msg = (f"cache {('hit', 'miss', 'evict')[ri(3)]} key=user:{ri(1000000)}:"
                       f"{self.words[ri(len(self.words))]} size={ri(64, 65536)}")
            line = (f"{lt.tm_year:04d}-{lt.tm_mon:02d}-{lt.tm_mday:02d}T{lt.tm_hour:02d}:"
                    f"{lt.tm_min:02d}:{lt.tm_sec:02d}.{ms:03d}Z {level:<5} [{comp}] {msg}\n")
            out.append(line)
            n += len(line)
        return "".join(out).encode()[:size]

    def prose_text(self, size):
        rng = self.rng
        # ~6.5 bytes per word including the separator.
        words = rng.choices(self.words, cum_weights=self.word_cum, k=size // 6 + 64)
        out = []
        i = 0
        n = 0
        while n < size and i < len(words):
            sentence_len = rng.randrange(5, 22)
            sent = words[i:i + sentence_len]
            i += sentence_len
            if not sent:
                break
            s = " ".join(sent).capitalize() + rng.choice((". ", ". ", ". ", "? ", "! ", ", "))
            if rng.random() < 0.08:
                s += "\n\n"
            out.append(s)
            n += len(s)
        data = "".join(out).encode()
        while len(data) < size:
            data += self.prose_text(size - len(data))
        return data[:size]

    def code_text(self, size):
        rng = self.rng
        out = []
        n = 0
        while n < size:
            name = self.words[rng.randrange(400)]
            arg = self.words[rng.randrange(400)]
            block = (f"static int {name}_{rng.randrange(100)}(struct {arg} *{arg[:3]}, size_t n)\n{{\n"
                     f"    for (size_t i = 0; i < n; i++) {{\n"
                     f"        if ({arg[:3]}->{self.words[rng.randrange(100)]}[i] > {rng.randrange(4096)})\n"
                     f"            return -{rng.randrange(1, 40)};\n"
                     f"    }}\n    return 0;\n}}\n\n")
            out.append(block)
            n += len(block)
        return "".join(out).encode()[:size]

    def json_text(self, size):
        rng = self.rng
        items = []
        n = 2
        while n < size:
            item = {
                "id": rng.getrandbits(48),
                "name": " ".join(rng.choices(self.words, cum_weights=self.word_cum, k=3)),
                "enabled": rng.random() < 0.7,
                "weight": round(rng.random() * 100, 3),
                "tags": rng.sample(self.words[:50], 3),
            }
            s = json.dumps(item)
            items.append(s)
            n += len(s) + 2
        return ("[" + ",\n".join(items) + "]\n").encode()[:size]

    def records(self, size):
        # Fixed-size rows with a few low-entropy columns and one random column:
        # compresses roughly 2-3x, like a typical database or metrics file.
        rng = self.rng
        pack = struct.Struct("<QQ16s24sIf").pack
        rows = []
        n = 0
        seq = rng.getrandbits(32)
        ts = self.clock * 1000
        while n < size:
            seq += 1
            ts += rng.randrange(1, 2000)
            name = self.words[rng.randrange(500)].encode()[:24]
            rows.append(pack(seq, ts, rng.randbytes(16), name, rng.randrange(10),
                             rng.random() * 1000.0))
            n += 64
        return b"".join(rows)[:size]

    # ---- layout ----

    def split(self, budget, lo, hi):
        """Random file sizes in [lo, hi] that add up to budget exactly."""
        sizes = []
        left = budget
        while left > 0:
            s = min(left, self.rng.randrange(lo, hi + 1))
            if left - s < lo // 2:
                s = left
            sizes.append(s)
            left -= s
        return sizes

    def generate(self):
        b = {k: int(self.total * v) for k, v in SHARES.items()}
        log_files, bin_files = [], []

        for i, s in enumerate(self.split(b["logs"], 1 * MIB, 24 * MIB)):
            rel = f"logs/{self.words[i % 40]}/app-{i:04d}.log"
            self.write("logs (text)", rel, self.log_text(s))
            log_files.append(rel)

        for i, s in enumerate(self.split(b["docs"], 32 * 1024, 3 * MIB)):
            rel = f"docs/{self.words[100 + i % 12]}/chapter-{i:04d}.txt"
            self.write("docs (prose)", rel, self.prose_text(s))

        for i, s in enumerate(self.split(b["bin"], 2 * MIB, 48 * MIB)):
            rel = f"bin/blob-{i:04d}.bin"
            self.write("bin (random)", rel, self.rng.randbytes(s))
            bin_files.append(rel)

        for i, s in enumerate(self.split(b["records"], 1 * MIB, 16 * MIB)):
            self.write("records (semi-structured)", f"records/table-{i:03d}.dat", self.records(s))

        # Small files: at least a few thousand whatever the size, ~10 KiB average.
        count = max(3000, b["small"] // (10 * 1024))
        avg = max(256, b["small"] // count)
        kinds = (self.prose_text, self.code_text, self.json_text, self.log_text,
                 self.rng.randbytes)
        for i in range(count):
            s = self.rng.randrange(64, 2 * avg)
            kind = self.rng.randrange(len(kinds))
            ext = ("txt", "c", "json", "log", "bin")[kind]
            rel = f"small/d{i // 100:03d}/{self.words[(i * 7) % 1000]}-{i:05d}.{ext}"
            self.write("small (thousands)", rel, kinds[kind](s))

        # Duplicates: exact copies of existing files under other names (whole-
        # file dedup), and copies shifted by a random prefix (only content-
        # defined chunking finds those).
        dup_budget = b["dup"]
        pool = bin_files + log_files
        self.rng.shuffle(pool)
        i = 0
        for rel in pool:
            if dup_budget <= 0:
                break
            with open(os.path.join(self.root, rel), "rb") as f:
                data = f.read()
            if len(data) > dup_budget:
                data = data[:dup_budget]
            if i % 2 == 0:
                self.write("dup (exact copies)", f"dup/copy-{i:03d}-{os.path.basename(rel)}", data)
            else:
                data = self.rng.randbytes(self.rng.randrange(1, 4096)) + data
                data = data[:dup_budget]
                self.write("dup (shifted copies)", f"dup/shifted-{i:03d}-{os.path.basename(rel)}", data)
            dup_budget -= len(data)
            i += 1

    def generate_small(self, count):
        kinds = (self.prose_text, self.code_text, self.json_text, self.log_text,
                 self.rng.randbytes)
        exts = ("txt", "c", "json", "log", "bin")
        for i in range(count):
            if i % 1000 == 0:
                os.makedirs(os.path.join(self.root, f"d{i // 1000:04d}"))
            s = self.rng.randrange(64, 4033)
            kind = self.rng.randrange(len(kinds))
            rel = f"d{i // 1000:04d}/{self.words[(i * 7) % 1000]}-{i:07d}.{exts[kind]}"
            data = kinds[kind](s)
            with open(os.path.join(self.root, rel), "wb") as f:
                f.write(data)
            self.files.append(rel)
            files, size = self.stats.get("small files", (0, 0))
            self.stats["small files"] = (files + 1, size + len(data))

    def fix_mtimes(self):
        for n, rel in enumerate(self.files):
            t = BASE_MTIME + n * 37
            os.utime(os.path.join(self.root, rel), (t, t), follow_symlinks=False)
        # Directories last and deepest first: creating entries changes a
        # directory's mtime.
        dirs = []
        for dirpath, _, _ in os.walk(self.root):
            dirs.append(dirpath)
        for d in sorted(dirs, key=lambda p: p.count(os.sep), reverse=True):
            os.utime(d, (BASE_MTIME, BASE_MTIME))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory to create (must not exist)")
    ap.add_argument("--size-mb", type=int, default=int(os.environ.get("BENCH_SIZE_MB", "1024")),
                    help="total size in MiB (default $BENCH_SIZE_MB or 1024)")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--small-files", type=int, default=0, metavar="N",
                    help="write N small files (64 B - 4 KiB) instead of the mixed set (--size-mb is ignored)")
    ap.add_argument("--stamp", help="write a JSON description of the data set here when done")
    args = ap.parse_args()

    if args.small_files < 0:
        sys.exit("gen_data.py: --small-files must be a positive number of files")
    if args.small_files:
        args.size_mb = 0
    elif args.size_mb < 16:
        sys.exit("gen_data.py: --size-mb must be at least 16")
    out = os.path.abspath(args.out)
    if os.path.exists(out):
        sys.exit(f"gen_data.py: refusing to write into '{out}': it already exists")

    # Build under a temporary name so an interrupted run never leaves a
    # half-written data set that looks complete.
    tmp = f"{out}.partial-{os.getpid()}"
    started = time.monotonic()
    try:
        g = Generator(tmp, args.size_mb, args.seed)
        if args.small_files:
            g.generate_small(args.small_files)
        else:
            g.generate()
        g.fix_mtimes()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total_files = sum(f for f, _ in g.stats.values())
    total_bytes = sum(s for _, s in g.stats.values())
    for cat, (files, size) in g.stats.items():
        print(f"  {cat:<28} {files:6d} files {size / MIB:9.1f} MiB")
    print(f"  {'total':<28} {total_files:6d} files {total_bytes / MIB:9.1f} MiB"
          f" ({time.monotonic() - started:.1f} s)")
    if args.stamp:
        with open(args.stamp, "w") as f:
            json.dump({"generator_version": GENERATOR_VERSION, "size_mb": args.size_mb,
                       "small_files": args.small_files,
                       "seed": args.seed, "files": total_files, "bytes": total_bytes,
                       "categories": {k: {"files": v[0], "bytes": v[1]} for k, v in g.stats.items()}},
                      f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
