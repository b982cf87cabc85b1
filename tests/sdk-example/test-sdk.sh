#!/usr/bin/env bash
# SDK round trip: build the engine (or use $ENGINE_BUILD), install it into a
# temporary prefix, build the out-of-tree "hello" plugin against the
# installed SDK through `pkg-config engine-plugin` only, and check that
# `engine plugins --json --plugin-dir DIR` loads it without error, and that
# `engine validate` holds its options to the bounds it declares.
#
#   tests/sdk-example/test-sdk.sh              # fresh configure + build
#   ENGINE_BUILD=build tests/sdk-example/test-sdk.sh
#   KEEP_TMP=1 ...                             # keep the scratch directory
#
# Exits 0 on success, non-zero with a "test-sdk: FAIL:" line otherwise.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)

fail() {
  echo "test-sdk: FAIL: $*" >&2
  exit 1
}
step() { echo "test-sdk: $*"; }
show_log() {
  echo "---- last lines of $1 ----" >&2
  tail -n 40 "$1" >&2 || true
  echo "----" >&2
}

for tool in cmake make pkg-config cc; do
  command -v "$tool" >/dev/null 2>&1 || fail "'$tool' is required but not on PATH"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/engine-sdk-test.XXXXXX") || fail "unable to create a scratch directory"
cleanup() {
  if [ "${KEEP_TMP:-0}" = 1 ]; then
    echo "test-sdk: scratch directory kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# ---- 1. engine build + install ------------------------------------------
if [ -n "${ENGINE_BUILD:-}" ]; then
  [ -f "$ENGINE_BUILD/CMakeCache.txt" ] ||
    fail "ENGINE_BUILD='$ENGINE_BUILD' is not a configured CMake build directory (no CMakeCache.txt)"
  build=$(cd "$ENGINE_BUILD" && pwd)
  step "building the existing build tree $build"
  cmake --build "$build" -j "$jobs" >"$work/build.log" 2>&1 ||
    { show_log "$work/build.log"; fail "building the engine in $build failed"; }
  # That tree was configured for its own install prefix, and the installed
  # paths (pkg-config file, plugin dir) are absolute: stage the install with
  # DESTDIR and let pkg-config map the paths through its sysroot.
  configured_prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:[A-Z]*=//p' "$build/CMakeCache.txt")
  [ -n "$configured_prefix" ] || fail "no CMAKE_INSTALL_PREFIX in $build/CMakeCache.txt"
  stage="$work/stage"
  step "installing into the staging directory $stage (prefix $configured_prefix)"
  DESTDIR="$stage" cmake --install "$build" >"$work/install.log" 2>&1 ||
    { show_log "$work/install.log"; fail "cmake --install of $build failed"; }
  prefix="$stage$configured_prefix"
  export PKG_CONFIG_SYSROOT_DIR="$stage"
else
  build="$work/build"
  prefix="$work/prefix"
  step "configuring the engine in $build (install prefix $prefix)"
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DENGINE_BUILD_TESTS=OFF \
    -DCMAKE_INSTALL_PREFIX="$prefix" >"$work/configure.log" 2>&1 ||
    { show_log "$work/configure.log"; fail "configuring the engine failed"; }
  step "building the engine"
  cmake --build "$build" -j "$jobs" >"$work/build.log" 2>&1 ||
    { show_log "$work/build.log"; fail "building the engine failed"; }
  step "installing into $prefix"
  cmake --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 ||
    { show_log "$work/install.log"; fail "cmake --install failed"; }
fi

pcfile=$(find "$prefix" -path '*/pkgconfig/engine-plugin.pc' -print -quit)
[ -n "$pcfile" ] || fail "cmake --install did not install engine-plugin.pc under $prefix"
engine=$(find "$prefix" -path '*/bin/engine' -type f -perm -u+x -print -quit)
[ -n "$engine" ] || fail "cmake --install did not install an executable bin/engine under $prefix"

# Only the freshly installed SDK may be found: no system-wide engine-plugin.pc.
export PKG_CONFIG_PATH="$(dirname "$pcfile")"
export PKG_CONFIG_LIBDIR="$PKG_CONFIG_PATH"
pkg-config --exists engine-plugin || fail "pkg-config cannot read $pcfile"
# echo without quotes: normalise the spacing pkg-config leaves around flags
cflags=$(echo $(pkg-config --cflags engine-plugin))
[ -n "$cflags" ] || fail "pkg-config --cflags engine-plugin is empty"
includedir=$(pkg-config --variable=includedir engine-plugin)
case "$cflags" in
  *"$prefix"*) ;;
  *) fail "pkg-config --cflags engine-plugin gives '$cflags', which does not point into the install prefix $prefix; engine-plugin.pc is not relocatable" ;;
esac
case "$includedir" in
  "$prefix"*) hdr="$includedir/engine/plugin.h" ;;
  *) hdr="${PKG_CONFIG_SYSROOT_DIR:-}$includedir/engine/plugin.h" ;;
esac
[ -f "$hdr" ] || fail "the SDK header $hdr named by engine-plugin.pc was not installed"
abi=$(pkg-config --variable=abi_major engine-plugin)
[ "$abi" = 1 ] || fail "engine-plugin.pc says abi_major='$abi', expected 1"
step "SDK found through pkg-config: $cflags"

# ---- 2. the out-of-tree plugin --------------------------------------------
# Built from a copy outside the source tree so nothing can leak in from it.
ex="$work/example"
mkdir -p "$ex"
cp "$here/hello.c" "$here/Makefile" "$ex/"
step "building the hello plugin in $ex"
make -C "$ex" >"$work/example.log" 2>&1 ||
  { show_log "$work/example.log"; fail "building the out-of-tree hello plugin failed"; }
grep -qF -- "$cflags" "$work/example.log" ||
  fail "the hello plugin was not compiled with the SDK's pkg-config flags ($cflags); see $work/example.log"
so="$ex/engine-source-hello.so"
[ -f "$so" ] || fail "make succeeded but $so does not exist"
if command -v nm >/dev/null 2>&1; then
  exported=$(nm -D --defined-only "$so" | awk '$2 == "T" { print $3 }')
  [ "$exported" = engine_plugin_query ] ||
    fail "the hello plugin must export exactly engine_plugin_query, it exports: $(echo $exported)"
fi
# Installed into a subdirectory: the loader scans DIR and DIR/*/.
pdir="$work/plugins"
make -C "$ex" install PLUGINDIR="$pdir/hello" >>"$work/example.log" 2>&1 ||
  { show_log "$work/example.log"; fail "make install of the hello plugin failed"; }
want_path="$pdir/hello/engine-source-hello.so"
[ -f "$want_path" ] || fail "make install did not put the plugin at $want_path"

# ---- 3. the engine loads it ----------------------------------------------
step "listing plugins with $engine"
out="$work/plugins.json"
rc=0
env -u ENGINE_PLUGIN_PATH "$engine" plugins --json --plugin-dir "$pdir" >"$out" 2>"$work/plugins.err" || rc=$?
if [ "$rc" -ne 0 ]; then
  show_log "$work/plugins.err"
  fail "'engine plugins --json --plugin-dir $pdir' exited with status $rc"
fi

check_jq() {
  jq -e --arg path "$want_path" '
    type == "array"
    and ([.[] | select(.name == "hello")] | length == 1)
    and ([.[] | select(.name == "hello")][0]
         | .kind == "source" and .version == "1.0.0" and .path == $path and .error == null)
  ' "$out" >/dev/null
}
check_python() {
  python3 - "$out" "$want_path" <<'EOF'
import json, sys
data = json.load(open(sys.argv[1]))
assert isinstance(data, list), "not a JSON array"
hello = [p for p in data if isinstance(p, dict) and p.get("name") == "hello"]
assert len(hello) == 1, "hello listed %d times" % len(hello)
h = hello[0]
assert h.get("kind") == "source" and h.get("version") == "1.0.0", h
assert h.get("path") == sys.argv[2] and h.get("error") is None, h
EOF
}
if command -v jq >/dev/null 2>&1; then
  checker=check_jq
elif command -v python3 >/dev/null 2>&1; then
  checker=check_python
else
  fail "jq or python3 is needed to read the JSON output"
fi
if ! $checker; then
  echo "---- engine plugins --json ----" >&2
  cat "$out" >&2
  echo "----" >&2
  fail "'engine plugins --json' does not list 'hello' as a source plugin, version 1.0.0, from $want_path, without error"
fi

# ---- 4. the engine checks its options against its schema ------------------
# hello declares bounds for 'repeat' (option_bounds, ABI 1.5): the engine,
# not the plugin, refuses a value outside them.
installed_plugins=$(dirname "$(find "$prefix" -name 'engine-sink-local.so' -print -quit)")
[ -d "$installed_plugins" ] || fail "cmake --install did not install the bundled plugins under $prefix"
pipeline() { # FILE REPEAT
  cat >"$1" <<EOF
version: 1
name: sdk
sources:
  - {name: hello, type: hello, with: {repeat: $2}}
stages:
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
sinks:
  - {name: here, type: local, with: {path: $work/repo}}
EOF
}
validate() { # FILE
  env -u ENGINE_PLUGIN_PATH "$engine" validate --plugin-dir "$pdir" --plugin-dir "$installed_plugins" "$1"
}
pipeline "$work/ok.yml" 10
validate "$work/ok.yml" >"$work/validate-ok.out" 2>&1 ||
  { show_log "$work/validate-ok.out"; fail "'engine validate' refused repeat: 10, within hello's bounds"; }
pipeline "$work/bad.yml" 11
rc=0
validate "$work/bad.yml" >"$work/validate-bad.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || { show_log "$work/validate-bad.out"; fail "'engine validate' accepted repeat: 11, outside hello's bounds (1 to 10)"; }
grep -qF "expected an integer from 1 to 10, got '11'" "$work/validate-bad.out" ||
  { show_log "$work/validate-bad.out"; fail "'engine validate' did not name hello's bounds for repeat: 11"; }
step "the engine enforces hello's option bounds (repeat: 10 valid, 11 refused)"

step "PASS: the out-of-tree hello plugin builds from pkg-config and loads"
