#!/usr/bin/env python3
"""Source checks in the spirit of curl's checksrc.pl, run by tests/run-all.sh.

    python3 scripts/checksrc.py            # every tracked *.c / *.h
    python3 scripts/checksrc.py FILE...    # only these

Rules (comments and string/character literals are ignored):

  BANNEDFUNC  a call to gets, strcpy, strcat, sprintf, vsprintf or strtok:
              unbounded writes (use snprintf with the room left, memcpy with
              a computed length, xasprintf) or hidden global state (strtok:
              the engine is threaded; use strtok_r or a loop).
  ASSIGNIF    an assignment inside an if condition, `if ((p = f()) != NULL)`:
              assign first, then test. The read-loop idiom
              `while ((n = read(...)) > 0)` is allowed.

A justified exception is written down in one of two places, always with the
reason:
  - in the code, a comment on the line or the line above:
        /* checksrc: allow sprintf: writes at most 4 bytes into a 5-byte buffer */
    (the word after 'allow' is the banned function's name, or 'assign');
  - in scripts/checksrc.allow, for files that cannot carry the comment:
        PATH | RULE-WORD | FRAGMENT OF THE LINE | REASON
    An entry that matches nothing is reported as stale, so the list shrinks.

Exit status 0 when clean, 1 with one line per finding ("path:line: ...").
"""
import os
import re
import subprocess
import sys

BANNED = {
    "gets": "reads without a bound; use fgets or getline",
    "strcpy": "unbounded copy; use memcpy with a computed length, snprintf or xstrdup",
    "strcat": "unbounded append; use memcpy with a computed length or snprintf",
    "sprintf": "unbounded formatting; use snprintf with the room left, or xasprintf",
    "vsprintf": "unbounded formatting; use vsnprintf with the room left",
    "strtok": "keeps hidden global state (the engine is threaded); use strtok_r or a loop",
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALLOW_FILE = os.path.join(ROOT, "scripts", "checksrc.allow")
SKIP_PREFIXES = ("tests/fuzz/corpus/",)


def strip_code(src):
    """The source with comments and literals blanked (line numbers kept), and
    the comments' text per line (for the allow markers)."""
    out = []
    comments = {}
    i, n, line = 0, len(src), 1

    def note(text, at_line):
        for k, part in enumerate(text.split("\n")):
            comments.setdefault(at_line + k, []).append(part)

    while i < n:
        c = src[i]
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            note(src[i:j], line)
        elif src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            note(src[i:j], line)
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            j = min(j + 1, n)
            body = src[i + 1 : j - 1]
            out.append(c + re.sub(r"[^\n]", " ", body) + c)
            line += body.count("\n")
            i = j
            continue
        else:
            out.append(c)
            if c == "\n":
                line += 1
            i += 1
            continue
        blank = re.sub(r"[^\n]", " ", src[i:j])
        out.append(blank)
        line += blank.count("\n")
        i = j
    return "".join(out), comments


def allowed_inline(comments, lineno, word):
    pat = re.compile(r"checksrc:\s*allow\s+" + re.escape(word) + r"\b\s*:?\s*(\S.*)?")
    for ln in (lineno, lineno - 1):
        for text in comments.get(ln, []):
            m = pat.search(text)
            if m and m.group(1) and m.group(1).strip(" */"):
                return True
    return False


def load_allow_list():
    entries = []
    if not os.path.exists(ALLOW_FILE):
        return entries, []
    problems = []
    with open(ALLOW_FILE, encoding="utf-8") as f:
        for k, raw in enumerate(f, 1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            parts = [p.strip() for p in text.split("|")]
            if len(parts) != 4 or not all(parts):
                problems.append(
                    f"scripts/checksrc.allow:{k}: expected 'PATH | RULE-WORD | FRAGMENT | REASON'"
                )
                continue
            entries.append({"path": parts[0], "word": parts[1], "frag": parts[2], "line": k,
                            "used": False})
    return entries, problems


def allowed_by_list(entries, path, word, line_text):
    for e in entries:
        if e["path"] == path and e["word"] == word and e["frag"] in line_text:
            e["used"] = True
            return True
    return False


def tracked_files():
    """Every *.c / *.h git tracks, or outside a checkout every one below the
    root except build directories."""
    git = subprocess.run(["git", "ls-files", "*.c", "*.h"], cwd=ROOT, capture_output=True,
                         text=True)
    out = git.stdout.split() if git.returncode == 0 else []
    if not out:
        out = []
        for d, dirs, files in os.walk(ROOT):
            dirs[:] = sorted(x for x in dirs if not x.startswith((".", "build")))
            rel = os.path.relpath(d, ROOT)
            out += [os.path.normpath(os.path.join(rel, f)) for f in sorted(files)
                    if f.endswith((".c", ".h"))]
    return [p for p in out if not p.startswith(SKIP_PREFIXES)]


def check_file(path, entries):
    findings = []
    with open(os.path.join(ROOT, path), encoding="utf-8", errors="replace") as f:
        src = f.read()
    lines = src.split("\n")
    code, comments = strip_code(src)

    def lineno(pos):
        return code.count("\n", 0, pos) + 1

    def report(pos, word, message):
        ln = lineno(pos)
        text = lines[ln - 1] if ln - 1 < len(lines) else ""
        if allowed_inline(comments, ln, word) or allowed_by_list(entries, path, word, text):
            return
        findings.append(f"{path}:{ln}: {message}\n    {text.strip()}")

    for m in re.finditer(r"(?<![\w.>])(" + "|".join(BANNED) + r")\s*\(", code):
        name = m.group(1)
        report(m.start(1), name, f"BANNEDFUNC: {name}(): {BANNED[name]}")

    for m in re.finditer(r"\bif\s*\(", code):
        depth, j = 1, m.end()
        while j < len(code) and depth:
            if code[j] == "(":
                depth += 1
            elif code[j] == ")":
                depth -= 1
            j += 1
        cond = code[m.end() : j - 1]
        a = re.search(r"(?<![=!<>])=(?!=)", cond)
        if a:
            report(m.end() + a.start(), "assign",
                   "ASSIGNIF: assignment inside an if condition; assign first, then test")
    return findings


def main(argv):
    entries, problems = load_allow_list()
    files = [os.path.relpath(os.path.abspath(p), ROOT) for p in argv] if argv else tracked_files()
    findings = list(problems)
    for path in files:
        findings.extend(check_file(path, entries))
    if not argv:
        for e in entries:
            if not e["used"]:
                findings.append(f"scripts/checksrc.allow:{e['line']}: stale entry: nothing in "
                                f"{e['path']} matches {e['word']} '{e['frag']}'; remove it")
    for f in findings:
        print(f)
    print(f"checksrc: {len(files)} files, {len(findings)} problem(s)")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
