#!/usr/bin/env bash
# From a fresh Debian bookworm machine to a first backup: install the build
# dependencies, build engine (Release) into ./build, create a random
# passphrase for the example pipeline if there is none, back up
# /usr/share/doc with conf.d/example.yml, list the snapshots and verify the
# repository. Safe to run again: each run adds a (mostly deduplicated)
# snapshot to the same repository.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
pipeline=conf.d/example.yml
secret_dir=/var/tmp/engine-example
passphrase=$secret_dir/passphrase
jobs=$(nproc 2>/dev/null || echo 2)

step() { printf '\n==> %s\n' "$*"; }

step "installing dependencies (scripts/setup-deps.sh)"
bash scripts/setup-deps.sh

step "building engine into ./build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$jobs"
engine=$root/build/engine

if [ ! -s "$passphrase" ]; then
  step "creating a random passphrase in $passphrase (mode 0600)"
  (
    umask 077
    mkdir -p "$secret_dir"
    head -c 32 /dev/urandom | base64 >"$passphrase.tmp"
    mv "$passphrase.tmp" "$passphrase"
  )
else
  step "using the existing passphrase in $passphrase"
fi

step "engine validate $pipeline"
"$engine" validate "$pipeline"

step "engine run $pipeline --progress always"
"$engine" run "$pipeline" --progress always

step "engine snapshots $pipeline"
"$engine" snapshots "$pipeline"

step "engine check $pipeline"
"$engine" check "$pipeline"

cat <<EOT

Done. The repository is $secret_dir/repo, its passphrase $passphrase.
Try:
  $engine show $pipeline latest
  $engine restore $pipeline latest --target /tmp/engine-restored
  $engine check $pipeline --read-data
EOT
