#!/usr/bin/env bash
# A throwaway single-node Ceph cluster (one monitor, one OSD, one radosgw)
# bound to 127.0.0.1, for the S3 integration tests and the S3 benchmark.
#
#   tests/servers/ceph.sh start DIR PORT    # radosgw S3 on http://127.0.0.1:PORT
#   tests/servers/ceph.sh stop DIR          # stop by PID, remove DIR
#   tests/servers/ceph.sh logs DIR          # tail of the daemons' logs
#
# Environment:
#   MONPORT   monitor port (default PORT+1)
#   STORE     memstore (default: fast, RAM-backed) or bluestore (a 10 GiB
#             sparse file in DIR)
#   MINPART   radosgw's minimum multipart part size in bytes (default 5242880)
#   AK, SK    access key / secret of the S3 user "test"
#             (default TESTACCESSKEY / TESTSECRETKEY)
#   CEPH_START_TIMEOUT  seconds to wait for each daemon (default 60)
#
# Needs the Debian packages ceph-mon ceph-osd radosgw (and curl). Nothing is
# installed or started system-wide: every file lives under DIR, every daemon
# is stopped by its PID. Authentication inside the cluster is off (cephx
# none); radosgw still checks the S3 signatures of every request.
set -euo pipefail

say() { echo "[ceph] $*"; }
die() {
  echo "[ceph] error: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 start DIR PORT | stop DIR | logs DIR" >&2
  exit 2
}

daemons=(client.rgw.a osd.0 mon.a)

show_logs() {
  local d=$1 f
  for f in "$d"/log/*.log; do
    [ -f "$f" ] || continue
    echo "----- last 25 lines of $f -----" >&2
    tail -n 25 "$f" >&2
  done
}

stop() {
  local d=$1 f p i
  [ -d "$d" ] || return 0
  for f in "${daemons[@]}"; do
    p=$(cat "$d/run/$f.pid" 2>/dev/null || true)
    [ -n "$p" ] && kill "$p" 2>/dev/null && say "stopping $f (pid $p)"
  done
  for f in "${daemons[@]}"; do
    p=$(cat "$d/run/$f.pid" 2>/dev/null || true)
    [ -n "$p" ] || continue
    for i in $(seq 100); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$p" 2>/dev/null; then
      say "$f (pid $p) did not stop within 10 s; killing it"
      kill -9 "$p" 2>/dev/null || true
    fi
  done
  rm -rf "$d"
}

# wait_for WHAT SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local what=$1 secs=$2 t0
  shift 2
  t0=$(date +%s)
  until "$@" >/dev/null 2>&1; do
    if [ $(($(date +%s) - t0)) -ge "$secs" ]; then
      show_logs "$D"
      die "$what did not come up within ${secs}s (logs above, directory $D)"
    fi
    sleep 0.3
  done
}

start() {
  D=$1
  # a failed start leaves nothing running
  trap 'rc=$?; [ "$rc" -eq 0 ] || stop "$D" >/dev/null 2>&1; exit $rc' EXIT
  local port=$2
  case "$port" in '' | *[!0-9]*) die "PORT must be a number, got '$port'" ;; esac
  local monport=${MONPORT:-$((port + 1))}
  local ak=${AK:-TESTACCESSKEY} sk=${SK:-TESTSECRETKEY}
  local store=${STORE:-memstore} minpart=${MINPART:-5242880}
  local tmo=${CEPH_START_TIMEOUT:-60}
  local t0 tool
  t0=$(date +%s)
  for tool in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph curl; do
    command -v "$tool" >/dev/null 2>&1 ||
      die "'$tool' not found: apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw curl"
  done
  case "$store" in memstore | bluestore) ;; *) die "STORE must be memstore or bluestore, got '$store'" ;; esac
  if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then
    die "something already listens on 127.0.0.1:$port"
  fi

  rm -rf "$D"
  mkdir -p "$D/mon/ceph-a" "$D/osd/ceph-0" "$D/run" "$D/log" "$D/rgw"
  D=$(cd "$D" && pwd -P)
  local fsid
  fsid=$(cat /proc/sys/kernel/random/uuid)
  cat >"$D/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$monport
mon initial members = a
public addr = 127.0.0.1
public network = 127.0.0.0/8
ms bind ipv6 = false
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd crush chooseleaf type = 0
# the device-class update at OSD start sometimes races the monitor's commit
# of "osd new" and fails the start ('wrong fsid'); the class is not needed
osd class update on start = false
run dir = $D/run
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
pid file = $D/run/\$name.pid
mon data = $D/mon/\$cluster-\$id
osd data = $D/osd/\$cluster-\$id
osd objectstore = $store
bluestore block create = true
bluestore block size = 10737418240
bluestore fsck on mount = false
bluestore block db create = false
bluestore block wal create = false
memstore device bytes = 8589934592
osd max object name len = 460
osd max object namespace len = 64
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$port
rgw dns name = s3.localhost
rgw multipart min part size = $minpart
rgw data = $D/rgw
log file = $D/log/rgw.log
EOF
  local C=(-c "$D/ceph.conf")

  say "monitor on 127.0.0.1:$monport ($store, directory $D)"
  monmaptool --create --addv a "[v1:127.0.0.1:$monport]" --fsid "$fsid" "$D/monmap" >/dev/null ||
    die "monmaptool failed"
  ceph-mon "${C[@]}" --mkfs -i a --monmap "$D/monmap" >>"$D/log/mkfs.log" 2>&1 ||
    { show_logs "$D"; die "ceph-mon --mkfs failed"; }
  ceph-mon "${C[@]}" -i a || { show_logs "$D"; die "ceph-mon did not start"; }
  wait_for "the monitor" "$tmo" timeout 5 ceph "${C[@]}" --connect-timeout 2 mon stat

  say "OSD"
  local osduuid id
  osduuid=$(cat /proc/sys/kernel/random/uuid)
  id=$(timeout 30 ceph "${C[@]}" osd new "$osduuid") || { show_logs "$D"; die "'ceph osd new' failed"; }
  [ "$id" = 0 ] || die "expected OSD id 0, got '$id'"
  ceph-osd "${C[@]}" -i "$id" --mkfs --osd-uuid "$osduuid" >>"$D/log/mkfs.log" 2>&1 ||
    { show_logs "$D"; die "ceph-osd --mkfs failed"; }
  local try
  for try in 1 2 3; do
    ceph-osd "${C[@]}" -i "$id" 2>>"$D/log/osd-start.log" && break
    [ "$try" -lt 3 ] || { show_logs "$D"; die "ceph-osd did not start (3 attempts)"; }
    say "ceph-osd failed to start (attempt $try); retrying"
    sleep 1
  done
  osd_up() { timeout 5 ceph "${C[@]}" --connect-timeout 2 osd stat 2>/dev/null | grep -q '1 up'; }
  wait_for "the OSD" "$tmo" osd_up

  say "radosgw on 127.0.0.1:$port"
  radosgw "${C[@]}" -n client.rgw.a || { show_logs "$D"; die "radosgw did not start"; }
  # radosgw creates its pools on first start, which takes most of the time
  wait_for "radosgw" "$((tmo * 2))" curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"
  radosgw-admin "${C[@]}" user create --uid=test --display-name=test --access-key="$ak" \
    --secret="$sk" >/dev/null 2>>"$D/log/admin.log" || { show_logs "$D"; die "radosgw-admin user create failed"; }
  say "up in $(($(date +%s) - t0))s: http://127.0.0.1:$port (user 'test'); pids mon=$(cat "$D/run/mon.a.pid") osd=$(cat "$D/run/osd.0.pid") rgw=$(cat "$D/run/client.rgw.a.pid")"
}

[ $# -ge 2 ] || usage
case "$1" in
start)
  [ $# -eq 3 ] || usage
  start "$2" "$3"
  ;;
stop)
  stop "$2"
  ;;
logs)
  D=$2
  show_logs "$2" 2>&1
  ;;
*) usage ;;
esac
