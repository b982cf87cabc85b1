#!/usr/bin/env bash
# Install everything needed to build and test engine on Debian bookworm
# (build tools, the libraries it links, cmocka, and the tools the test
# scripts use). Idempotent: when every package is already installed it
# changes nothing and needs no network. Uses sudo only when not root.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libuv1-dev libcurl4-openssl-dev libjansson-dev libyaml-dev libzstd-dev zlib1g-dev libssl-dev
  # scrypt for repository keys (faster than libcrypto's, same result)
  libsodium-dev
  libcmocka-dev
  # fuzzing (tests/fuzz): clang and its libFuzzer/sanitizer runtimes
  clang libclang-rt-14-dev
  # source checks and coverage (tests/run-all.sh): scripts/check-format.sh,
  # scripts/coverage.py
  clang-format gcovr
  # engine serve: HTTP request parsing (and curl, which its tests and others use)
  libhttp-parser-dev curl
  # promtool (Debian's prometheus package) checks engine serve's /metrics and the
  # files of engine run --metrics-file
  prometheus
  # the GCS fake test generates a throwaway service-account key
  openssl
  python3 python3-cryptography python3-zstandard
  time procps coreutils findutils diffutils
  # test_files_restore_small counts the restore's system calls
  strace
  # fincore: the direct-I/O test checks what the local sink left in the page cache
  util-linux-extra
  # test_xattrs: getfattr/setfattr, getfacl/setfacl, getcap/setcap, chattr/lsattr/mkfs.ext4
  attr acl libcap2-bin e2fsprogs
  # postgres-schema source: libpq, xxHash (row digests), and a real PostgreSQL 15 for its tests
  libpq-dev libxxhash-dev postgresql-15 postgresql-client-15
  # s3 sink: XML responses; a real Ceph radosgw and an independent client for its tests
  libxml2-dev ceph-mon ceph-osd radosgw awscli
  # mongodb source: the official C driver; pymongo is the tests' independent client
  libmongoc-dev libbson-dev python3-pymongo
  # engine schedule's tests: systemd-analyze verify / security on the generated units
  # (works on unit files; no running systemd needed)
  systemd
  # docs/DISASTER_RECOVERY.md's commands pick values out of --json output with jq
  # (tests/integration/test_dr_*.sh run them as written)
  jq
)
# the GCS emulator (firebase-tools) and the MongoDB stand-in (CongoDB), from the npm
# registry, need node and npm
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi
packages+=(python3-kubernetes); command -v kubectl >/dev/null 2>&1 || packages+=(kubernetes-client) # k8s-yaml tests (a kubectl already there, e.g. Google Cloud SDK's, owns /usr/bin/kubectl)

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
  echo "setup-deps: apt-get/dpkg-query not found; this script supports Debian (bookworm) and derivatives." >&2
  echo "setup-deps: install these packages (or their equivalents) by hand: ${packages[*]}" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
# In CI the machine may be new: always refresh the package lists once and
# install the whole list (apt-get skips what is already there).
if [ "${CI:-}" = "true" ]; then
  missing=("${packages[@]}")
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-deps: all ${#packages[@]} packages are installed"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "setup-deps: not root and sudo is not available; run as root: apt-get install ${missing[*]}" >&2
  exit 1
fi

echo "setup-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
echo "setup-deps: done"
