#!/usr/bin/env python3
"""Line coverage per module from a build made with --coverage (gcov), as
tests/run-all.sh prints it at the end of a run:

    python3 scripts/coverage.py BUILD_DIR [--json OUT]

A module is a folder of core/ (core/repo, core/pipeline, ...), a plugin
(plugins/<kind>/<name>) or include/. The counts come from gcovr (Debian
package gcovr), which runs gcov over the .gcda files the tests left in
BUILD_DIR; tests/ itself is not counted. Files no test reached count with
0 lines covered. With --json the per-file summary is kept in OUT.

Exit status 0 (also when nothing was measured: the table says so), 2 when
gcovr is missing or fails.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def module_of(path):
    parts = path.split("/")
    if parts[0] == "core" and len(parts) > 2:
        return "/".join(parts[:2])
    if parts[0] == "plugins" and len(parts) > 3:
        return "/".join(parts[:3])
    return parts[0] if len(parts) > 1 else "(top)"


def main(argv):
    if not argv or argv[0].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    build = os.path.abspath(argv[0])
    keep = argv[2] if len(argv) > 2 and argv[1] == "--json" else None
    gcovr = shutil.which("gcovr")
    if gcovr is None:
        print("coverage: gcovr is not installed (apt-get install -y gcovr)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = keep or os.path.join(tmp, "summary.json")
        # racy counters of threaded code can make gcov print negative branch
        # counts, which gcovr cannot parse: those lines are skipped (only
        # branch lines; line coverage is what is reported)
        cmd = [gcovr, "--root", ROOT, "--exclude", os.path.join(ROOT, "tests") + "/",
               "--gcov-ignore-parse-errors", "--json-summary", out, build]
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if run.returncode != 0:
            sys.stderr.write(run.stderr[-4000:])
            print(f"coverage: gcovr failed (exit {run.returncode})", file=sys.stderr)
            return 2
        with open(out, encoding="utf-8") as f:
            summary = json.load(f)
    mods = {}
    for fe in summary.get("files", []):
        name = fe["filename"]
        if name.startswith(("/", "..", "build")):
            continue  # system headers, files a build generated
        m = mods.setdefault(module_of(name), [0, 0, 0])
        m[0] += fe["line_total"]
        m[1] += fe["line_covered"]
        m[2] += 1
    if not mods:
        print(f"coverage: no coverage data under {build} (built without --coverage?)")
        return 0
    width = max(len(k) for k in mods) + 2
    print(f"{'module':<{width}}{'files':>6}{'lines':>8}{'covered':>9}{'':>3}line coverage")
    tot = [0, 0, 0]
    for name in sorted(mods):
        lines, covered, files = mods[name]
        pct = 100.0 * covered / lines if lines else 0.0
        bar = "#" * int(round(pct / 5))
        print(f"{name:<{width}}{files:>6}{lines:>8}{covered:>9}{pct:>8.1f}%  {bar}")
        tot = [tot[0] + lines, tot[1] + covered, tot[2] + files]
    pct = 100.0 * tot[1] / tot[0] if tot[0] else 0.0
    print(f"{'total':<{width}}{tot[2]:>6}{tot[0]:>8}{tot[1]:>9}{pct:>8.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
