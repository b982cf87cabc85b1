#!/usr/bin/env bash
# The fault matrix (issue 15): every command that touches a repository (run,
# restore, check, forget, prune, sync) under every fault a sink can show:
#
#   s3 (a real Ceph radosgw behind tests/servers/faultproxy.py): HTTP 503,
#     connection resets, truncated replies, a request slower than the
#     client's timeout, lost replies (the request took effect), and the
#     server stopping half-way through the command (connections refused from
#     then on);
#   local (a repository on a small tmpfs): EIO from read, write, fsync and
#     rename/unlink through the LD_PRELOAD shim tests/tools/faultfs.c, and
#     ENOSPC from a file system that is really full.
#
# A cell passes when the command either succeeds or fails cleanly (exit 1,
# or 3 for a partial restore, with an error that gives the cause: the sink's
# answer, "Input/output error", "No space left on device"; no hang, no crash,
# no sanitizer report) and, once the fault is gone, `check --read-data`
# passes, exactly the snapshots that should exist are listed, and (after the
# cells that write: run, sync, forget, prune) each of them restores byte for
# byte (compare_trees against a copy of the source taken at backup time);
# restore and check only add and remove their own lock, and the next cell's
# restores cover them. After a sync cell the sync target must pass
# `check --read-data` too. The matrix (fault x command -> outcome) is printed
# at the end and written to $FAULT_MATRIX_OUT if set; docs/TESTING.md keeps a
# copy. The local rows run alongside the s3 ones, in a second instance of
# this test (FAULT_MATRIX_ONLY=s3|local runs one half; FAULT_MATRIX_ROWS=REGEX
# only the rows whose names match).
#
# Then the data-loss scenario of issue 15 on S3: radosgw answers HTTP 500 for
# one snapshot object, persistently. `snapshots`, `check`, `restore latest`,
# `forget` and `prune` must refuse (exit 1) naming it and delete nothing
# (the bucket listing is compared with awscli's before and after); once the
# object is readable again it restores byte for byte.
#
# Needs root (mounts a tmpfs), ceph-mon ceph-osd radosgw awscli, and the
# build's tests/tools/engine-faultfs.so.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || fail "must run as root (it mounts a tmpfs)"
aws_init
FAULTFS=${ENGINE_FAULTFS:-$(dirname "$ENGINE_BIN")/tests/tools/engine-faultfs.so}
[ -f "$FAULTFS" ] || fail "the fault-injection shim '$FAULTFS' is missing (built by tests/CMakeLists.txt; set ENGINE_FAULTFS)"
# an ASan build needs its runtime first in the preload list
ASAN_RT=$(ldd "$ENGINE_BIN" | awk '/libasan\.so/ {print $3; exit}')
PRELOAD="${ASAN_RT:+$ASAN_RT }$FAULTFS"
T0=$(date +%s)

BUCKET=engine-matrix
FS=$T/fs   # the local repositories' tmpfs
PPORT=1    # the fault proxy's port (the s3 half sets it)
# FAULT_MATRIX_ONLY=s3|local runs one half. By default the local rows, which
# need no server, run alongside the s3 ones in a second instance of this
# test (its output in $T/local.log, its rows merged at the end).
PART=${FAULT_MATRIX_ONLY:-all}
LOCAL_PID=
# (Ceph and the proxy are stopped by lib.sh's helpers, after this)
cleanup_local() {
  if [ -n "$LOCAL_PID" ]; then
    kill "$LOCAL_PID" 2>/dev/null || true
    wait "$LOCAL_PID" 2>/dev/null || true
  fi
  if mountpoint -q "$FS"; then umount "$FS" 2>/dev/null || umount -l "$FS" 2>/dev/null || true; fi
}
at_exit cleanup_local

if [ "$PART" = all ]; then
  FAULT_MATRIX_ONLY=local FAULT_MATRIX_PART_OUT="$T/local-part" TMPDIR="$T" bash "$0" >"$T/local.log" 2>&1 &
  LOCAL_PID=$!
  PART=s3
fi

if [ "$PART" = s3 ]; then
ceph_start 65536
awsc s3 mb "s3://$BUCKET" >/dev/null || fail "aws s3 mb failed"

# the proxy ends itself in mode `stop`: proxy_ensure starts it again
proxy_start
PPORT=$PROXY_PORT
# arm MODE COUNT EVERY [METHOD] [PATH] [DELAY]
arm() { proxy_arm "$1" "$2" "every=$3" "method=${4:-}" "path=${5:-}" "delay=${6:-3}"; }
disarm() { proxy_up && arm off 0 1 || true; }
pstat() { # FIELD: requests, or injected (all modes)
  proxy_stats "j['requests'] if '$1' == 'requests' else sum(j['injected'].values())" 2>/dev/null || echo 0
}

fi # s3

if [ "$PART" = local ]; then
  mkdir -p "$FS"
  mount -t tmpfs -o size=48m tmpfs "$FS" || fail "unable to mount a tmpfs on $FS"
fi

# ---- the data, the pipelines ----------------------------------------------

src=$T/src
mkdir -p "$src/dir/sub"
seeded_file "$src/base-1MiB" 1 matrix-base
seq 1 50000 >"$src/dir/numbers.txt"
echo "hello" >"$src/hello.txt"
echo "deep" >"$src/dir/sub/deep.txt"
ln -s hello.txt "$src/link"

# sinks PIPELINE-NAME SINK-YAML...: a pipeline over $src with the given sinks
pipeline() {
  local file=$1 name=$2
  shift 2
  {
    echo "version: 1"
    echo "name: $name"
    echo "sources:"
    echo "  - {name: files, type: files, with: {paths: [$(yq "$src")]}}"
    echo "stages:"
    echo "  compress: {algorithm: zstd, level: 3}"
    echo "  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}"
    echo "repository: {chunk_min: 64KiB, chunk_avg: 256KiB, chunk_max: 1MiB, pack_size: 1MiB}"
    echo "retention: {keep_last: 100}"
    echo "sinks:"
    local s
    for s in "$@"; do echo "  - $s"; done
  } >"$file"
}
# virtual-host addressing through the proxy (its Host header passes
# unchanged, so the signatures stay valid); a 3 s timeout so that `slow`
# (5 s) is a request that times out and is retried
S3SINK="{name: offsite, type: s3, with: {endpoint: 'http://s3.localhost:$PPORT', bucket: $BUCKET, prefix: matrix, part_size: 256KiB, multipart_threshold: 512KiB, max_retries: 3, timeout: 3s, stale_upload_age: 0s}}"
pipeline "$T/s3.yml" matrix "$S3SINK"
pipeline "$T/s3sync.yml" matrix "$S3SINK" "{name: mirror, type: local, with: {path: $(yq "$T/s3mirror")}}"
pipeline "$T/s3mirror.yml" matrix "{name: mirror, type: local, with: {path: $(yq "$T/s3mirror")}}"
pipeline "$T/local.yml" matrix "{name: local, type: local, with: {path: $(yq "$FS/repo")}}"
pipeline "$T/localsync.yml" matrix "{name: local, type: local, with: {path: $(yq "$FS/repo")}}" \
  "{name: mirror, type: local, with: {path: $(yq "$FS/mirror")}}"
pipeline "$T/localmirror.yml" matrix "{name: mirror, type: local, with: {path: $(yq "$FS/mirror")}}"

# ---- running commands -------------------------------------------------------

FX_ENV=()
# fx ARGS...: the engine with FX_ENV in its environment and a time limit;
# status in RC, output in $T/cur.out / $T/cur.err
fx() {
  RC=0
  local t=$EPOCHREALTIME
  env ${FX_ENV[@]+"${FX_ENV[@]}"} ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" \
    timeout -k 5 240 "$ENGINE_BIN" "$@" >"$T/cur.out" 2>"$T/cur.err" </dev/null || RC=$?
  FX_SECONDS=$(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  echo "$FX_SECONDS $1" >>"$T/timing.log"
  if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$T/cur.err"; then
    show "$T/cur.err"
    fail "sanitizer report from 'engine $*'"
  fi
  [ "$RC" -ne 124 ] && [ "$RC" -ne 137 ] || { show "$T/cur.err"; fail "'engine $*' hung (killed after 240 s)"; }
}
# ok ARGS...: fx without faults; must succeed
ok() {
  FX_ENV=()
  fx "$@"
  [ "$RC" -eq 0 ] || { show "$T/cur.out" "$T/cur.err"; fail "'engine $*' (no fault) exited with status $RC"; }
}

# ---- what must hold ---------------------------------------------------------

declare -A EXPECT # snapshot id -> copy of the source taken when it was made
n_copy=0
SNAP_IDS= # the ids of the last listing (list_snaps), one per line
list_snaps() { # PIPELINE: SNAP_IDS; $T/snaps.json (none before the first run)
  FX_ENV=()
  fx snapshots "$1" --json
  if [ "$RC" -ne 0 ] && grep -q "no repository at sink" "$T/cur.err"; then
    echo "[]" >"$T/snaps.json"
    SNAP_IDS=
    return 0
  fi
  [ "$RC" -eq 0 ] || { show "$T/cur.out" "$T/cur.err"; fail "'engine snapshots $1' (no fault) exited with status $RC"; }
  cp "$T/cur.out" "$T/snaps.json"
  SNAP_IDS=$(json_get "$T/snaps.json" '"\n".join(s["id"] for s in j)')
}
newest() { # the id of the newest snapshot of the last listing
  json_get "$T/snaps.json" 'max(j, key=lambda s: (s["time"], s["id"]))["id"] if j else ""'
}
copy_src() { # a copy of the source, named in $COPY (not in a subshell: n_copy counts)
  n_copy=$((n_copy + 1))
  COPY=$T/expect/$n_copy
  mkdir -p "$T/expect"
  cp -a "$src" "$COPY"
}
# adopt COPY: a listed snapshot that is not expected yet was made from COPY
adopt() {
  local id
  for id in $SNAP_IDS; do
    [ -n "${EXPECT[$id]:-}" ] || EXPECT[$id]=$1
  done
}
# snapshot times have whole seconds: a new snapshot must be newer than the
# last one for `restore latest` to have one answer
next_second() {
  local now=$EPOCHSECONDS
  while [ "$EPOCHSECONDS" -eq "$now" ]; do sleep 0.1; done
}
# backup PIPELINE: an unfaulted run; its snapshot is expected from now on
backup() {
  copy_src
  next_second
  ok run "$1"
  list_snaps "$1"
  adopt "$COPY"
}
restores_as() { # PIPELINE ID COPY WHAT
  rm -rf "$T/v"
  ok restore "$1" "$2" --target "$T/v"
  if ! compare_trees "$3" "$(restored_path "$T/v" "$src")" >"$T/cmp.out" 2>&1; then
    cat "$T/cmp.out" >&2
    fail "$4: snapshot ${2:0:8} does not restore byte for byte"
  fi
  rm -rf "$T/v"
}
# verify PIPELINE WHAT [MIRROR-PIPELINE|""] [ADOPT-COPY]: check --read-data
# passes and exactly the expected snapshots exist (a new one, from a run
# cell, was made from ADOPT-COPY), each restoring byte for byte; a sync
# target must pass check --read-data too. VERIFY_LIGHT=1 (after restore and
# check, which only add and remove their own lock): no restores, the next
# cell's verify covers them.
verify() {
  local p=$1 what=$2 id
  FX_ENV=()
  fx check "$p" --read-data
  [ "$RC" -eq 0 ] || { show "$T/cur.out" "$T/cur.err"; fail "$what: check --read-data fails after the fault (exit $RC)"; }
  list_snaps "$p"
  [ -z "${4:-}" ] || adopt "$4"
  for id in "${!EXPECT[@]}"; do
    grep -qx "$id" <<<"$SNAP_IDS" || fail "$what: snapshot ${id:0:8} is gone"
  done
  for id in $SNAP_IDS; do
    [ -n "${EXPECT[$id]:-}" ] || fail "$what: unexpected snapshot ${id:0:8}"
    [ "${VERIFY_LIGHT:-0}" = 1 ] || restores_as "$p" "$id" "${EXPECT[$id]}" "$what"
  done
  if [ -n "${3:-}" ]; then
    fx check "$3" --read-data
    [ "$RC" -eq 0 ] || { show "$T/cur.out" "$T/cur.err"; fail "$what: the sync target fails check --read-data (exit $RC)"; }
  fi
}

# ---- the matrix ---------------------------------------------------------------

COMMANDS=(run restore check sync forget prune)
ROWS=()
declare -A CELL    # "row|command" -> outcome
declare -A DETAIL  # "row|command" -> the error line of a failure
declare -A REQS    # command -> requests it made through the proxy (s3 503 row)

# outcome ROW CMD HITS: classify $RC/$T/cur.err into CELL. HITS "-": a
# control row without faults. A failure must say why: its stderr matches
# ROW_REASON (an extended regex) when the row sets one.
ROW_REASON=
outcome() {
  local key="$1|$2" hits=$3 msg warned=""
  # (radosgw here takes parts below S3's 5 MiB minimum, which every
  # command warns about)
  grep -v "below S3's 5 MiB minimum" "$T/cur.err" | grep -qE '^([0-9TZ:.-]+ )?engine: warning: ' && warned=", warned"
  case "$RC" in
  0)
    if [ "$hits" = - ]; then
      CELL[$key]="ok"
    elif [ "$hits" -gt 0 ]; then
      CELL[$key]="ok ($hits hit$warned)"
    else
      CELL[$key]="ok (not hit)"
    fi
    ;;
  1 | 3)
    [ "$hits" != - ] || { show "$T/cur.out" "$T/cur.err"; fail "$1 / $2: exit $RC without any fault"; }
    msg=$(grep -h -m1 -A1 -E '^([0-9TZ:.-]+ )?engine: error: ' "$T/cur.err" | tr '\n' ' ' || true)
    [ -n "$msg" ] || msg=$(grep -h -m1 -iE 'error|unable|fail' "$T/cur.err" "$T/cur.out" || true)
    [ -n "$msg" ] || { show "$T/cur.out" "$T/cur.err"; fail "$1 / $2: exit $RC without an error message"; }
    if [ -n "$ROW_REASON" ] && ! grep -qE "$ROW_REASON" "$T/cur.err" "$T/cur.out"; then
      show "$T/cur.out" "$T/cur.err"
      fail "$1 / $2: exit $RC, but the messages do not give the cause (/$ROW_REASON/)"
    fi
    CELL[$key]="exit $RC ($hits hit)"
    # object ids shortened, the scratch directory as $T
    DETAIL[$key]=$(sed -E -e 's/^([0-9TZ:.-]+ )?engine: error: //' -e "s|/?${T#/}/|\$T/|g" \
      -e 's/\b([0-9a-f]{8})[0-9a-f]{56}\b/\1…/g' <<<"${msg% }" | cut -c1-300)
    ;;
  *)
    show "$T/cur.out" "$T/cur.err"
    fail "$1 / $2: exit status $RC (expected 0, or 1 with a message)"
    ;;
  esac
  printf '[%s] %-44s %-8s %-22s %5s s\n' "$TEST_NAME" "$1" "$2" "${CELL[$key]}" "$FX_SECONDS"
}

VICTIM=
round=0
RESTORE_TARGET=$T/r
# The six cells of one row. fault_on / fault_off / hits are the row's
# functions: arm before the command, disarm after, count the faults hit.
# SNAP_IDS and $T/snaps.json hold the listing of the last verify.
row() {
  local name=$1 p=$2 psync=$3 pmirror=$4 from=$5 to=$6 t_row=$SECONDS
  # FAULT_MATRIX_ROWS=REGEX: only the rows whose names match (to work on one)
  [[ "$name" =~ ${FAULT_MATRIX_ROWS:-.} ]] || return 0
  ROWS+=("$name")
  local copy newest_id id before
  round=$((round + 1))

  # run: new data that only this row's snapshot holds
  seeded_file "$src/row-$round" 1 "row-$round"
  echo "row $round" >>"$src/hello.txt"
  before=$SNAP_IDS
  copy_src
  copy=$COPY
  next_second
  fault_on run
  fx run "$p"
  fault_off run
  outcome "$name" run "$(hits run)"
  verify "$p" "$name / run" "" "$copy"
  # the row's snapshot is the one forget and prune remove: its data is its
  # own (made now if the run failed)
  VICTIM=
  for id in $SNAP_IDS; do grep -qx "$id" <<<"$before" || VICTIM=$id; done
  if [ -z "$VICTIM" ]; then
    backup "$p"
    for id in $SNAP_IDS; do grep -qx "$id" <<<"$before" || VICTIM=$id; done
  fi
  rm -f "$src/row-$round"

  # restore latest
  newest_id=$(newest)
  rm -rf "$RESTORE_TARGET"
  fault_on restore
  fx restore "$p" latest --target "$RESTORE_TARGET"
  fault_off restore
  outcome "$name" restore "$(hits restore)"
  if [ "$RC" -eq 0 ] && ! compare_trees "${EXPECT[$newest_id]}" "$(restored_path "$RESTORE_TARGET" "$src")" >"$T/cmp.out" 2>&1; then
    cat "$T/cmp.out" >&2
    fail "$name / restore: exit 0 but the restored tree differs"
  fi
  rm -rf "$RESTORE_TARGET"
  VERIFY_LIGHT=1 verify "$p" "$name / restore"

  # check --read-data
  fault_on check
  fx check "$p" --read-data
  fault_off check
  outcome "$name" check "$(hits check)"
  VERIFY_LIGHT=1 verify "$p" "$name / check"

  # sync from one sink to the other: the row's snapshot is new to the target
  fault_on sync
  fx sync "$psync" --from "$from" --to "$to"
  fault_off sync
  outcome "$name" sync "$(hits sync)"
  verify "$p" "$name / sync" "$pmirror"

  # forget the row's snapshot
  fault_on forget
  fx forget "$p" "$VICTIM"
  fault_off forget
  outcome "$name" forget "$(hits forget)"
  local forget_rc=$RC
  list_snaps "$p"
  if grep -qx "$VICTIM" <<<"$SNAP_IDS"; then
    [ "$forget_rc" -ne 0 ] || fail "$name / forget: exit 0 but snapshot ${VICTIM:0:8} is still listed"
    ok forget "$p" "$VICTIM" # failed: forget it without faults, prune then has work to do
  fi
  unset "EXPECT[$VICTIM]"
  verify "$p" "$name / forget"

  # prune: deletes the forgotten snapshot's pack(s), rewrites the index
  fault_on prune
  fx prune "$p"
  fault_off prune
  outcome "$name" prune "$(hits prune)"
  verify "$p" "$name / prune"
  note "  ($((SECONDS - t_row)) s)"
}

# ---- s3 rows ----------------------------------------------------------------

if [ "$PART" = s3 ]; then
note "baseline snapshot (s3)"
backup "$T/s3.yml"
ok sync "$T/s3sync.yml" --from offsite --to mirror

S3_MODE=
s3_req0=0
s3_inj0=0
s3_on() {
  proxy_ensure
  s3_req0=$(pstat requests)
  s3_inj0=$(pstat injected)
  eval "$S3_ARM"
}
s3_off() {
  if [ "$S3_MODE" = 503 ]; then REQS[$1]=$(($(pstat requests) - s3_req0)); fi
  if proxy_up; then
    S3_HITS=$(($(pstat injected) - s3_inj0))
    disarm
  else # the proxy stopped: that was the fault
    S3_HITS=1
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=
    proxy_start
  fi
}
s3_hits() { echo "$S3_HITS"; }
fault_on() { s3_on "$1"; }
fault_off() { s3_off "$1"; }
hits() { s3_hits; }
s3_row() { # NAME MODE ARM-COMMAND
  S3_MODE=$2
  S3_ARM=$3
  # a transient fault is retried; when a command fails all the same, or the
  # server stopped, the message says what the sink answered
  ROW_REASON="sink 'offsite'.*(no response from|HTTP [0-9]{3})"
  row "$1" "$T/s3.yml" "$T/s3sync.yml" "$T/s3mirror.yml" offsite mirror
}
s3_row "s3: HTTP 503 (every 3rd request, 4x)" 503 'arm 503 4 3'
s3_row "s3: connection reset (every 3rd, 3x)" reset 'arm reset 3 3'
s3_row "s3: reply cut short (every 2nd GET, 3x)" truncate 'arm truncate 3 2 GET'
s3_row "s3: reply lost, request done (every 3rd, 3x)" drop 'arm drop 3 3'
s3_row "s3: 5 s > timeout 3 s (every 2nd, 1x)" slow 'arm slow 1 2 "" "" 5'
# the server stops half-way through the command: the proxy ends itself at
# the request in the middle of what the command made in the 503 row
s3_row "s3: server stopped mid-command" stop 'arm stop 1 $(( ${REQS[$1]:-4} / 2 > 1 ? ${REQS[$1]:-4} / 2 : 2 ))'

note "after the s3 rows: no multipart upload left open (prune aborted what the faults left)"
ok prune "$T/s3.yml"
assert_eq 0 "$(awsc s3api list-multipart-uploads --bucket "$BUCKET" --query 'length(Uploads || `[]`)' --output text)" \
  "multipart uploads open after the s3 rows and a prune"

# ---- the data-loss scenario: one unreadable snapshot --------------------------

note "one snapshot object answers HTTP 500, persistently: every command that decides from the list refuses"
seeded_file "$src/loss" 1 loss # data only this snapshot holds: prune would delete it
backup "$T/s3.yml"
LOST=$(newest)
rm -f "$src/loss"
bucket_listing() { # every object but the locks (commands add and remove theirs) and the
  # verification records (check stores the outcome of each check, failed ones included)
  awsc s3api list-objects-v2 --bucket "$BUCKET" --prefix matrix/ --query 'Contents[].[Key,Size]' \
    --output text | grep -v -e '^matrix/locks/' -e '^matrix/verify/' | LC_ALL=C sort
}
objects_before=$(bucket_listing)
inj0=$(pstat injected)
arm 500 1000000000 1 "" "/matrix/snapshots/$LOST"
refuses() { # WHAT ARGS...: exit 1 naming the snapshot
  local what=$1
  shift
  FX_ENV=()
  fx "$@"
  [ "$RC" -eq 1 ] || { show "$T/cur.out" "$T/cur.err"; fail "$what with snapshot ${LOST:0:8} unreadable: exit $RC, expected 1"; }
  grep -qF "${LOST:0:8}" "$T/cur.out" "$T/cur.err" ||
    { show "$T/cur.out" "$T/cur.err"; fail "$what: the unreadable snapshot ${LOST:0:8} is not named"; }
  note "  $what: exit 1 ($(grep -m1 -F "${LOST:0:8}" "$T/cur.err" "$T/cur.out" | cut -d: -f2- | cut -c1-150))"
}
refuses "snapshots" snapshots "$T/s3.yml"
grep -qi "unreadable" "$T/cur.out" "$T/cur.err" || { show "$T/cur.out" "$T/cur.err"; fail "snapshots does not list ${LOST:0:8} as unreadable"; }
refuses "check" check "$T/s3.yml"
rm -rf "$T/r"
refuses "restore latest" restore "$T/s3.yml" latest --target "$T/r"
assert_empty_dir_or_absent "$T/r" "restore latest with the newest snapshot unreadable"
refuses "prune" prune "$T/s3.yml"
refuses "forget (retention)" forget "$T/s3.yml"
refuses "forget --prune" forget "$T/s3.yml" --prune
[ "$(($(pstat injected) - inj0))" -ge 6 ] || fail "the proxy answered 500 for the snapshot fewer times than the commands read it"
disarm
assert_eq "$objects_before" "$(bucket_listing)" "the objects in the bucket (awscli) after the refused commands"
note "  the bucket holds the same objects; readable again, the snapshot restores byte for byte"
verify "$T/s3.yml" "after the unreadable snapshot"


# sync decides from the config objects whether the sinks hold the same
# repository: one that cannot be read is an error that says why, never "no
# repository" (which, for the target, would let sync write into a sink
# holding who knows what)
note "sync with a config object that answers HTTP 500: the error says so"
arm 500 1000000000 1 "" "/matrix/config"
FX_ENV=()
fx sync "$T/s3sync.yml" --from offsite --to mirror
[ "$RC" -eq 1 ] || { show "$T/cur.err"; fail "sync from a sink whose config answers 500: exit $RC, expected 1"; }
assert_contains "$T/cur.err" "sink 'offsite': unable to read 'config': GET matrix/config: HTTP 500" "sync from a sink whose config cannot be read"
assert_not_contains "$T/cur.err" "no repository" "sync from a sink whose config cannot be read"
fx sync "$T/s3sync.yml" --from mirror --to offsite
[ "$RC" -eq 1 ] || { show "$T/cur.err"; fail "sync to a sink whose config answers 500: exit $RC, expected 1"; }
assert_contains "$T/cur.err" "sink 'offsite': unable to read 'config': GET matrix/config: HTTP 500" "sync to a sink whose config cannot be read"
assert_not_contains "$T/cur.err" "no engine repository" "sync to a sink whose config cannot be read"
disarm
fi # FAULT_MATRIX_ONLY

# ---- local rows ---------------------------------------------------------------

if [ "$PART" = local ]; then
note "baseline snapshots (local, on a 48 MiB tmpfs)"
for id in "${!EXPECT[@]}"; do unset "EXPECT[$id]"; done
backup "$T/local.yml"
echo "changed" >"$src/dir/sub/deep.txt"
rm -f "$src/link"
backup "$T/local.yml"
ok sync "$T/localsync.yml" --from local --to mirror

# The first local row has no fault: through the shim it counts each
# command's calls of each class on the repository (or, for sync, the mirror
# it writes). A fault row then fails the call half-way through the command's
# calls of its class, so the fault lands in the middle of the work rather
# than on the lock every command takes first.
declare -A CENSUS # "command|class" -> calls
FS_OPS=
FS_ERRNO=EIO
fs_target() { # CMD: the sink a command's faults hit: a sync writes the mirror
  if [ "$1" = sync ] && [ "$FS_OPS" != read ]; then echo "$FS/mirror/"; else echo "$FS/repo/"; fi
}
census_on() {
  rm -f "$T/trace.log"
  # both sinks: a sync reads the one and writes the other
  FX_ENV=("LD_PRELOAD=$PRELOAD" "FAULTFS_PATH=$FS/" "FAULTFS_OPS=read,write,fsync,rename,unlink"
    "FAULTFS_AFTER=1000000000000" "FAULTFS_TRACE=$T/trace.log")
}
census_off() {
  FX_ENV=()
  local c
  for c in read write fsync rename unlink; do
    CENSUS[$1|$c]=$(grep -c "^$c " "$T/trace.log" 2>/dev/null || true)
  done
}
local_on() { # CMD
  rm -f "$T/faultfs.log"
  local calls=0 c
  for c in ${FS_OPS//,/ }; do calls=$((calls + ${CENSUS[$1|$c]:-0})); done
  FX_ENV=("LD_PRELOAD=$PRELOAD" "FAULTFS_PATH=$(fs_target "$1")" "FAULTFS_OPS=$FS_OPS"
    "FAULTFS_AFTER=$((calls / 2))" "FAULTFS_ERRNO=$FS_ERRNO" "FAULTFS_LOG=$T/faultfs.log")
}
local_off() { FX_ENV=(); }
local_hits() { if [ -f "$T/faultfs.log" ]; then wc -l <"$T/faultfs.log"; else echo 0; fi; }

fault_on() { census_on "$1"; }
fault_off() { census_off "$1"; }
hits() { echo -; }
ROW_REASON=
row "local: no fault (counts the calls)" "$T/local.yml" "$T/localsync.yml" "$T/localmirror.yml" local mirror
note "  calls per command (read write fsync rename unlink): $(for c in "${COMMANDS[@]}"; do
  printf '%s %s/%s/%s/%s/%s; ' "$c" "${CENSUS[$c|read]}" "${CENSUS[$c|write]}" "${CENSUS[$c|fsync]}" \
    "${CENSUS[$c|rename]}" "${CENSUS[$c|unlink]}"
done)"

local_row() { # NAME OPS
  FS_OPS=$2
  fault_on() { local_on "$1"; }
  fault_off() { local_off; }
  hits() { local_hits; }
  ROW_REASON="Input/output error"
  row "$1" "$T/local.yml" "$T/localsync.yml" "$T/localmirror.yml" local mirror
}
local_row "local: EIO from read (half-way)" read
local_row "local: EIO from write (half-way)" write
local_row "local: EIO from fsync (half-way)" fsync
local_row "local: EIO from rename/unlink (half-way)" rename,unlink

# ENOSPC: the tmpfs filled up but for FREE_KIB; restore writes its target
# on the full file system too
FREE_KIB=0
nospc_on() {
  sync -f "$FS" 2>/dev/null || true
  local avail
  rm -f "$FS/filler"
  avail=$(df -k --output=avail "$FS" | tail -1)
  if [ "$avail" -gt "$FREE_KIB" ]; then
    fallocate -l "$(((avail - FREE_KIB) * 1024))" "$FS/filler" 2>/dev/null ||
      head -c "$(((avail - FREE_KIB) * 1024))" /dev/zero >"$FS/filler" 2>/dev/null || true
  fi
  FX_ENV=()
}
nospc_off() {
  if grep -q "No space left on device" "$T/cur.err" "$T/cur.out"; then ENOSPC_HITS=1; else ENOSPC_HITS=0; fi
  rm -f "$FS/filler"
}
fault_on() { nospc_on; }
fault_off() { nospc_off; }
hits() { echo "$ENOSPC_HITS"; }
ROW_REASON="No space left on device"
RESTORE_TARGET=$FS/r
FREE_KIB=256
row "local: ENOSPC, 256 KiB left (tmpfs)" "$T/local.yml" "$T/localsync.yml" "$T/localmirror.yml" local mirror
FREE_KIB=0
row "local: ENOSPC, nothing left (tmpfs)" "$T/local.yml" "$T/localsync.yml" "$T/localmirror.yml" local mirror
RESTORE_TARGET=$T/r
fi # FAULT_MATRIX_ONLY

# ---- the matrix -----------------------------------------------------------------

print_rows() {
  local r c line
  for r in ${ROWS[@]+"${ROWS[@]}"}; do
    line="| $r |"
    for c in "${COMMANDS[@]}"; do line="$line ${CELL[$r|$c]:-?} |"; done
    echo "$line"
  done >"$T/rows.md"
  for r in ${ROWS[@]+"${ROWS[@]}"}; do
    for c in "${COMMANDS[@]}"; do
      [ -z "${DETAIL[$r|$c]:-}" ] || echo "* $r / $c: ${DETAIL[$r|$c]}"
    done
  done >"$T/notes.md"
}
print_rows
note "time spent in engine commands, by command: $(awk '{ t[$2] += $1; n[$2]++ } END { for (c in t) printf "%s %.0f s (%d), ", c, t[c], n[c] }' "$T/timing.log")"
if [ -n "${FAULT_MATRIX_PART_OUT:-}" ]; then # the local half, run by the s3 half
  cp "$T/rows.md" "$FAULT_MATRIX_PART_OUT.rows"
  cp "$T/notes.md" "$FAULT_MATRIX_PART_OUT.notes"
  note "all good ($(($(date +%s) - T0)) s)"
  exit 0
fi
if [ -n "$LOCAL_PID" ]; then
  note "waiting for the local rows (running alongside since the start)"
  rc=0
  wait "$LOCAL_PID" || rc=$?
  LOCAL_PID=
  grep '^\[test_fault_matrix\]' "$T/local.log" | sed 's/^\[test_fault_matrix\]/[test_fault_matrix local]/' || true
  if [ "$rc" -ne 0 ]; then
    tail -n 60 "$T/local.log" >&2
    fail "the local rows failed (exit $rc; output above)"
  fi
  cat "$T/local-part.rows" >>"$T/rows.md"
  cat "$T/local-part.notes" >>"$T/notes.md"
fi
{
  printf '| fault | %s |\n' "$(IFS='|'; echo "${COMMANDS[*]}" | sed 's/|/ | /g')"
  printf '|---|%s\n' "$(printf -- '---|%.0s' "${COMMANDS[@]}")"
  cat "$T/rows.md"
  echo
  echo "Failures, with the first error line:"
  echo
  cat "$T/notes.md"
} >"$T/matrix.md"
echo
cat "$T/matrix.md"
echo
[ -z "${FAULT_MATRIX_OUT:-}" ] || cp "$T/matrix.md" "$FAULT_MATRIX_OUT"

note "all good ($(($(date +%s) - T0)) s)"
