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
