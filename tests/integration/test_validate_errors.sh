#!/usr/bin/env bash
# `engine validate` reports broken pipelines as FILE:LINE:COL errors with
# exit 1: an unknown key, a wrong type, an unknown plugin type, a missing
# required plugin option, a bad size; a literal passphrase is refused
# without being echoed. Positions are asserted exactly.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cd "$T"
# A valid pipeline; each case below changes one line of it. Line numbers:
#  7 paths, 9 compress, 12 passphrase, 15 sink type, 17 sink path
base() {
  cat <<EOF2
version: 1
name: valid
sources:
  - name: files
    type: files
    with:
      paths: [/usr/share/doc]
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt:
    algorithm: aes-256-gcm
    passphrase: env:ENGINE_PASSPHRASE
sinks:
  - name: local
    type: local
    with:
      path: $T/repo
EOF2
}
base >ok.yml
run_ok ok.out ok.err validate ok.yml
assert_contains ok.out "valid pipeline 'valid'" "validate of a valid pipeline"
run_ok okj.out okj.err validate ok.yml --json
assert_eq true "$(json_get okj.out 'j["valid"]')" "validate --json: valid"
[ ! -e "$T/repo" ] || fail "validate created the repository"

# expect_error FILE LINE:COL NEEDLE: exit 1 and a "FILE:LINE:COL: ..." line
# containing NEEDLE. LINE:COL may be "-" when only the file: prefix is checked.
expect_error() {
  local f=$1 pos=$2 needle=$3
  run_engine "$f.out" "$f.err" validate "$f"
  assert_rc 1 "validate $f" "$f" "$f.out" "$f.err"
  local line
  if [ "$pos" = - ]; then
    line=$(grep -E "^$f:[0-9]+:[0-9]+: " "$f.err" | grep -iF -- "$needle" | head -n 1 || true)
  else
    line=$(grep -F "$f:$pos: " "$f.err" | grep -iF -- "$needle" | head -n 1 || true)
  fi
  if [ -z "$line" ]; then
    show "$f" "$f.err"
    fail "validate $f: no error '$f:$pos: ...$needle...'"
  fi
  note "ok: $line"
}

# 1. unknown top-level key (line 3, column 1)
base | sed 's/^sources:/soruces:/' >unknown-key.yml
expect_error unknown-key.yml 3:1 "unknown key 'soruces'"

# 2. unknown plugin option (inserted as line 8, column 7)
base | sed '7a\      bogus: 1' >unknown-option.yml
expect_error unknown-option.yml 8:7 "bogus"

# 3. wrong type: an integer option given a word (line 9, column 38)
base | sed 's/level: 3/level: high/' >wrong-type.yml
expect_error wrong-type.yml 9:38 "level"

# 4. wrong type: a string option given a sequence (line 17, column 13)
base | sed "s|^      path: .*|      path: [a, b]|" >wrong-type-2.yml
expect_error wrong-type-2.yml 17:13 "sinks[0].with.path"

# 5. unknown plugin type (line 15, column 11)
base | sed 's/type: local/type: sftp/' >unknown-plugin.yml
expect_error unknown-plugin.yml 15:11 "sftp"

# 6. missing required plugin option: the local sink without `path`; the
# error points at its `with:` (line 16, column 5)
base | sed '/^      path: /d; 16s/.*/    with: {}/' >missing-option.yml
expect_error missing-option.yml 16:5 "sinks[0].with.path"

# 7. bad size (line 19, column 14)
{ base; printf 'repository:\n  pack_size: 12 parsecs\n'; } >bad-size.yml
expect_error bad-size.yml 19:14 "pack_size"

# 8. several problems at once are all reported
base | sed 's/^sources:/soruces:/; s/level: 3/level: high/' >two-errors.yml
expect_error two-errors.yml 3:1 "soruces"
expect_error two-errors.yml 9:38 "level"

# 9. a literal passphrase is refused and never echoed
base | sed 's/passphrase: env:ENGINE_PASSPHRASE/passphrase: Hunter2-Literal-Secret/' >literal.yml
expect_error literal.yml 12:17 "passphrase"
for f in literal.yml.out literal.yml.err; do
  assert_not_contains "$f" "Hunter2-Literal-Secret" "validate output for a literal passphrase"
done
run_engine literal-run.out literal-run.err run literal.yml
assert_rc 1 "run with a literal passphrase" literal-run.out literal-run.err
assert_not_contains literal-run.err "Hunter2-Literal-Secret" "run output for a literal passphrase"
assert_not_contains literal-run.out "Hunter2-Literal-Secret" "run output for a literal passphrase"
[ ! -e "$T/repo" ] || fail "a run with an invalid pipeline created the repository"

# 10. not a file at all
run_engine nofile.out nofile.err validate "$T/no-such-pipeline.yml"
assert_rc 1 "validate of a missing file" nofile.out nofile.err
assert_contains nofile.err "no-such-pipeline.yml" "the error names the missing file"

# 11. an alias bomb: a 1 MiB scalar aliased through three levels of lists
# (1 GiB once expanded) is refused at the alias that passes 16 MiB, quickly
# and without the memory (it used to take 1.15 GB; five levels aborted)
{
  base
  "$PYTHON" -c '
import sys
sys.stdout.write("bomb0: &b0 \"" + "x" * (1024 * 1024 - 4096) + "\"\n")
for i in range(1, 4):
    sys.stdout.write("bomb%d: &b%d [%s]\n" % (i, i, ", ".join(["*b%d" % (i - 1)] * 10)))
'
} >bomb.yml
start=$(date +%s)
expect_error bomb.yml 20:13 "bomb2[0]: the document expands to more than 16777216 bytes through aliases"
[ $(($(date +%s) - start)) -lt 30 ] || fail "validate of the alias bomb took $(($(date +%s) - start)) s"
if [ -x /usr/bin/time ]; then
  ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" /usr/bin/time -f '%M' -o bomb.rss "$ENGINE_BIN" validate bomb.yml \
    >/dev/null 2>&1 </dev/null || true
  rss_kb=$(tail -n 1 bomb.rss)
  note "peak RSS of validate on the alias bomb: $rss_kb KiB"
  assert_lt "$rss_kb" 400000 "peak RSS (KiB) of validate on the alias bomb"
fi

# 12. a FIFO (or any other non-regular file) is refused at once, not read:
# opening a FIFO used to wait forever for a writer
mkfifo fifo.yml
RC=0
timeout 30 env ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" validate fifo.yml \
  >fifo.out 2>fifo.err </dev/null || RC=$?
[ "$RC" -ne 124 ] || fail "validate of a FIFO blocked (killed after 30 s)"
assert_rc 1 "validate of a FIFO" fifo.out fifo.err
assert_contains fifo.err "unable to read 'fifo.yml': it is a FIFO; a pipeline must be a regular file" \
  "validate of a FIFO"
ln -s fifo.yml fifo-link.yml
RC=0
timeout 30 env ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" validate fifo-link.yml \
  >fifo-link.out 2>fifo-link.err </dev/null || RC=$?
assert_rc 1 "validate of a symlink to a FIFO" fifo-link.out fifo-link.err
assert_contains fifo-link.err "it is a FIFO" "validate of a symlink to a FIFO"
run_engine zero.out zero.err validate /dev/zero
assert_rc 1 "validate /dev/zero" zero.out zero.err
assert_contains zero.err "unable to read '/dev/zero': it is a character device" "validate /dev/zero"
run_engine dir.out dir.err validate "$T"
assert_rc 1 "validate of a directory" dir.out dir.err
assert_contains dir.err "it is a directory" "validate of a directory"

# 13. a file over 4 MiB is refused before it is read
{ base; head -c $((4 * 1024 * 1024)) /dev/zero | tr '\0' '#'; } >huge.yml
run_engine huge.out huge.err validate huge.yml
assert_rc 1 "validate of a 4 MiB + file" huge.out huge.err
assert_contains huge.err "unable to read 'huge.yml': it is $(stat -c %s huge.yml) bytes; a pipeline file may be at most 4194304 bytes (4 MiB)" \
  "validate of a file over 4 MiB"
note "PASS"
