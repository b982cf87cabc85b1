#!/usr/bin/env bash
# engine schedule: the pipeline's cron `schedule:` becomes a systemd
# .service/.timer pair with the equivalent OnCalendar=; bad expressions are
# refused by `engine validate` and `engine schedule` with a clear message.
# Where systemd-analyze exists, every generated OnCalendar is also checked by
# systemd itself.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

mkdir -p "$T/src"
write_sched() { # CRON
  cat >"$T/p.yml" <<YAML
version: 1
name: nightly
schedule: "$1"
sources:
  - { name: files, type: files, with: { paths: [$T/src] } }
stages:
  compress: { algorithm: zstd }
  encrypt: { algorithm: aes-256-gcm, passphrase: "env:ENGINE_PASSPHRASE" }
sinks:
  - { name: local, type: local, with: { path: $T/repo } }
YAML
}
check() { # CRON EXPECTED_ONCALENDAR
  write_sched "$1"
  run_ok "$T/out" "$T/err" schedule "$T/p.yml"
  got=$(sed -n 's/^OnCalendar=//p' "$T/out")
  [ "$got" = "$2" ] || fail "schedule '$1': OnCalendar='$got', expected '$2'"
  if command -v systemd-analyze >/dev/null 2>&1; then
    systemd-analyze calendar "$got" >/dev/null 2>&1 || fail "systemd rejects OnCalendar='$got' (from '$1')"
  fi
}
check "0 3 * * *" "*-*-* 03:00:00"
check "*/15 * * * *" "*-*-* *:00,15,30,45:00"
check "30 2 1 * *" "*-*-01 02:30:00"
check "0 4 * * 1-5" "Mon,Tue,Wed,Thu,Fri *-*-* 04:00:00"
check "@weekly" "Sun *-*-* 00:00:00"
check "0 0 1 1,7 *" "*-01,07-01 00:00:00"
assert_contains "$T/out" "ExecStart=" "service unit"
assert_contains "$T/out" "Persistent=true" "timer catches up after downtime"
assert_contains "$T/out" "$T/p.yml" "absolute pipeline path in ExecStart"

# --install into a directory
write_sched "0 3 * * *"
run_ok "$T/out" "$T/err" schedule "$T/p.yml" --install --unit-dir "$T/units"
[ -f "$T/units/engine-nightly.service" ] && [ -f "$T/units/engine-nightly.timer" ] || fail "units not installed"
grep -q '^OnCalendar=\*-\*-\* 03:00:00$' "$T/units/engine-nightly.timer" || fail "installed timer content"

# bad expressions are refused, by validate too
for bad in "61 3 * * *" "0 3 * *" "0 3 1 * 1" "x * * * *"; do
  write_sched "$bad"
  run_engine "$T/vout" "$T/verr" validate "$T/p.yml"
  [ "$RC" = 1 ] || { cat "$T/verr"; fail "validate accepted schedule '$bad' (exit $RC)"; }
  assert_contains "$T/verr" "schedule" "message names the schedule"
done
note "cron schedules become systemd timers; bad ones are refused"

# ---- hardened units, secrets in an environment file, OnFailure= ----------------
command -v systemd-analyze >/dev/null 2>&1 || fail "systemd-analyze is required (Debian package systemd; scripts/setup-deps.sh)"
# split_units FILE DIR: the printed units, one file each ("# engine-X.service" headers)
split_units() {
  mkdir -p "$2"
  awk -v d="$2" '/^# engine-.*\.(service|timer)$/ { f = d "/" substr($0, 3); next } f { print > f }' "$1"
}
export HOOK_TOKEN=hook-token-5d1e-secret S3_LIKE_SECRET=other-secret-77a1
secret_pipeline() { # FILE NAME SOURCE SINK
  cat >"$1" <<YAML
version: 1
name: $2
schedule: "0 3 * * *"
sources:
  - { name: files, type: files, with: { paths: [$3] } }
stages:
  encrypt: { algorithm: aes-256-gcm, passphrase: "env:ENGINE_PASSPHRASE" }
sinks:
  - { name: local, type: local, with: { path: $4 } }
limits: { timeout: 90m }
notify:
  - { webhook: "http://127.0.0.1:9/hook", on: [failure], headers: { Authorization: env:HOOK_TOKEN } }
YAML
}
# a files -> local pipeline as an operator writes it (nothing under /tmp)
secret_pipeline "$T/srv.yml" srvbackup /srv/data /var/backups/srvbackup
run_ok "$T/units.txt" "$T/units.err" schedule "$T/srv.yml"
split_units "$T/units.txt" "$T/u1"
[ -f "$T/u1/engine-srvbackup.service" ] && [ -f "$T/u1/engine-srvbackup.timer" ] &&
  [ -f "$T/u1/engine-srvbackup-failure.service" ] || { ls "$T/u1" >&2; fail "the printed units"; }
svc=$T/u1/engine-srvbackup.service
for want in "NoNewPrivileges=yes" "ProtectSystem=strict" "ReadWritePaths=-/var/backups/srvbackup" \
  "ProtectHome=read-only" "PrivateTmp=yes" "StateDirectory=engine" "CacheDirectory=engine" \
  "OnFailure=engine-srvbackup-failure.service" "TimeoutStartSec=5400s" \
  "EnvironmentFile=/etc/engine/srvbackup.env" "CapabilityBoundingSet=CAP_DAC_READ_SEARCH"; do
  grep -qxF -- "$want" "$svc" || grep -q "^$want" "$svc" || { show "$svc"; fail "the service lacks '$want'"; }
done
grep -q "^ExecStart=.* notify $T/srv.yml failure" "$T/u1/engine-srvbackup-failure.service" ||
  { show "$T/u1/engine-srvbackup-failure.service"; fail "the OnFailure= unit does not run engine notify"; }
for f in "$T"/u1/*; do
  for secret in "$TEST_PASSPHRASE" "$HOOK_TOKEN"; do assert_not_contains "$f" "$secret" "unit $f"; done
done
assert_contains "$svc" "ENGINE_PASSPHRASE HOOK_TOKEN" "the service names the secrets it expects"
# systemd's own checks: the units are valid, the service's exposure is at most 4.0
(cd "$T/u1" && systemd-analyze verify engine-srvbackup.service engine-srvbackup-failure.service \
  engine-srvbackup.timer) >"$T/verify.out" 2>&1 || { show "$T/verify.out"; fail "systemd-analyze verify refuses the units"; }
[ ! -s "$T/verify.out" ] || { show "$T/verify.out"; fail "systemd-analyze verify has remarks"; }
exposure() { # UNIT-FILE: the overall exposure, e.g. 2.1
  (cd "$(dirname "$1")" && systemd-analyze security --offline=true "$(basename "$1")" 2>&1) |
    sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p'
}
for u in "$svc" "$T/u1/engine-srvbackup-failure.service"; do
  x=$(exposure "$u")
  [ -n "$x" ] || fail "no exposure level for $u"
  awk -v x="$x" 'BEGIN { exit !(x <= 4.0) }' || { (cd "$T/u1" && systemd-analyze security --offline=true "$(basename "$u")") >&2; fail "$(basename "$u"): exposure $x, expected at most 4.0"; }
  note "$(basename "$u"): systemd-analyze security exposure $x"
done
# the same checks catch what they should: an unknown directive, an unsandboxed unit
printf '[Service]\nType=oneshot\nExecStart=/bin/true\nNoSuchSetting=1\n' >"$T/u1/broken.service"
(cd "$T/u1" && systemd-analyze verify broken.service) >"$T/vb.out" 2>&1 || true
assert_contains "$T/vb.out" "NoSuchSetting" "systemd-analyze verify reports an unknown directive"
printf '[Service]\nType=oneshot\nExecStart=/bin/true\n' >"$T/u1/plain.service"
x=$(exposure "$T/u1/plain.service")
awk -v x="$x" 'BEGIN { exit !(x > 4.0) }' || fail "an unhardened unit scores $x: the exposure check proves nothing"

# a repository under /home: ProtectHome=no; a path under /tmp: no PrivateTmp=
secret_pipeline "$T/home.yml" homebackup /tmp/spool /home/backup/repo
run_ok "$T/home.txt" "$T/home.err" schedule "$T/home.yml"
assert_contains "$T/home.txt" "ProtectHome=no" "a repository under /home"
assert_not_contains "$T/home.txt" "PrivateTmp=yes" "a source under /tmp"
assert_contains "$T/home.txt" "ReadWritePaths=-/home/backup/repo" "the repository is writable"

# --install: the environment file (0600) from the current environment, kept when it exists
secret_pipeline "$T/inst.yml" instbackup "$T/src" "$T/repo-inst"
run_ok "$T/i.out" "$T/i.err" schedule "$T/inst.yml" --install --unit-dir "$T/u2" --env-file "$T/etc/inst.env"
[ "$(stat -c %a "$T/etc/inst.env")" = 600 ] || fail "the environment file is mode $(stat -c %a "$T/etc/inst.env"), expected 600"
grep -qx "ENGINE_PASSPHRASE=\"$TEST_PASSPHRASE\"" "$T/etc/inst.env" || { show "$T/etc/inst.env"; fail "the passphrase is not in the environment file"; }
grep -qx "HOOK_TOKEN=\"$HOOK_TOKEN\"" "$T/etc/inst.env" || fail "the header's secret is not in the environment file"
[ -d "$T/repo-inst" ] || fail "--install did not create the repository directory ReadWritePaths= names"
assert_contains "$T/u2/engine-instbackup.service" "EnvironmentFile=$T/etc/inst.env" "the installed service loads the file"
for f in "$T"/u2/*; do assert_not_contains "$f" "$TEST_PASSPHRASE" "installed unit $f"; done
(cd "$T/u2" && systemd-analyze verify engine-instbackup.service engine-instbackup-failure.service engine-instbackup.timer) >"$T/verify2.out" 2>&1 ||
  { show "$T/verify2.out"; fail "systemd-analyze verify refuses the installed units"; }
# a second install keeps what the operator put there, and says what is missing
printf 'ENGINE_PASSPHRASE="kept"\n' >"$T/etc/inst.env"
run_ok "$T/i2.out" "$T/i2.err" schedule "$T/inst.yml" --install --unit-dir "$T/u2" --env-file "$T/etc/inst.env"
assert_eq 'ENGINE_PASSPHRASE="kept"' "$(cat "$T/etc/inst.env")" "an existing environment file is kept"
assert_contains "$T/i2.err" "does not set HOOK_TOKEN" "the missing secret is named"
# --metrics-file: the timer's runs write the Prometheus textfile, into a
# directory the sandbox lets them write
run_ok "$T/mf.txt" "$T/mf.err" schedule "$T/srv.yml" --metrics-file /var/lib/prometheus/node-exporter/engine-srvbackup.prom
split_units "$T/mf.txt" "$T/u3"
grep -q "^ExecStart=.* -v run $T/srv.yml --progress never --metrics-file /var/lib/prometheus/node-exporter/engine-srvbackup.prom\$" \
  "$T/u3/engine-srvbackup.service" || { show "$T/u3/engine-srvbackup.service"; fail "ExecStart= without --metrics-file"; }
grep -qx "ReadWritePaths=-/var/lib/prometheus/node-exporter" "$T/u3/engine-srvbackup.service" ||
  fail "the metrics file's directory is not writable in the sandbox"
! grep -q "node-exporter" "$T/u3/engine-srvbackup-failure.service" || fail "the failure unit may write the metrics directory"
(cd "$T/u3" && systemd-analyze verify engine-srvbackup.service engine-srvbackup-failure.service \
  engine-srvbackup.timer) >"$T/verify3.out" 2>&1 && [ ! -s "$T/verify3.out" ] ||
  { show "$T/verify3.out"; fail "systemd-analyze verify on the units with --metrics-file"; }
x=$(exposure "$T/u3/engine-srvbackup.service")
awk -v x="$x" 'BEGIN { exit !(x <= 4.0) }' || fail "with --metrics-file: exposure $x, expected at most 4.0"
run_engine "$T/mr.txt" "$T/mr.err" schedule "$T/srv.yml" --metrics-file engine.prom
assert_rc 1 "schedule --metrics-file with a relative path" "$T/mr.err"
assert_contains "$T/mr.err" "is not an absolute path" "the refusal"
# the installed service's command, run as the timer would: a textfile promtool accepts
mkdir -p "$T/src" "$T/textfile"
echo data >"$T/src/f"
run_ok "$T/i3.out" "$T/i3.err" schedule "$T/inst.yml" --install --unit-dir "$T/u4" --env-file "$T/etc/inst.env" \
  --metrics-file "$T/textfile/engine-instbackup.prom"
cmd=$(sed -n 's/^ExecStart=//p' "$T/u4/engine-instbackup.service")
case "$cmd" in *" -v run $T/inst.yml --progress never --metrics-file $T/textfile/engine-instbackup.prom") ;;
  *) fail "the installed ExecStart= is '$cmd'" ;; esac
# (shell words: no path of this test has blanks)
# shellcheck disable=SC2086
ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" $cmd >"$T/timer.out" 2>"$T/timer.err" </dev/null ||
  { show "$T/timer.err"; fail "the timer's command failed"; }
if command -v promtool >/dev/null 2>&1; then
  promtool check metrics <"$T/textfile/engine-instbackup.prom" >"$T/promtool.out" 2>&1 ||
    { show "$T/textfile/engine-instbackup.prom" "$T/promtool.out"; fail "promtool refuses the timer's textfile"; }
fi
grep -q '^engine_last_success_timestamp_seconds{pipeline="instbackup"} [0-9]' "$T/textfile/engine-instbackup.prom" ||
  { show "$T/textfile/engine-instbackup.prom"; fail "the timer's textfile has no last success"; }
# without a webhook for failure there is no OnFailure= unit
write_sched "0 3 * * *"
run_ok "$T/nf.out" "$T/nf.err" schedule "$T/p.yml"
! grep -q '^OnFailure=' "$T/nf.out" || fail "OnFailure= without a webhook for failure"
assert_contains "$T/nf.out" "no webhook of the pipeline is called for 'failure'" "why there is no OnFailure="
note "hardened units (systemd-analyze verify clean, exposure at most 4.0), secrets in a 0600 environment file"
