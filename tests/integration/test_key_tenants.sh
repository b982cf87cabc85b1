#!/usr/bin/env bash
# Per-tenant keys and crypto-shredding (repository format 2, stages.encrypt
# per_tenant: docs/FORMAT.md §3.6, docs/SECURITY.md), on a real PostgreSQL 15
# and real files, in one repository:
#   - three postgres-schema tenants (each schema is a tenant) and a files tree
#     with two tenants (tenant_of globs) and shared files; each tenant's data
#     goes into packs of its own under its own key, chunk ids are keyed per
#     tenant (equal files of two tenants are stored twice), an unchanged run
#     stores nothing new, and the independent reader (tests/tools) decrypts
#     every tenant's packs with the keys of the keyring alone;
#   - snapshots --tenant lists the snapshots holding a tenant;
#   - key shred (tenant_b, bob): every keyring object holding their keys is
#     gone; the other tenants restore exactly (row fingerprints, bytes), the
#     shredded ones fail with exit 3 and a sentence naming the shredding;
#     check --read-data passes and counts them; the independent reader, with
#     the passphrase and every key object, cannot decrypt their packs;
#   - prune removes their packs; afterwards neither their plaintext nor their
#     key bytes (raw or base64) occur anywhere in the repository; the reader
#     verifies the rest;
#   - the schema still exists: the next backup gives tenant_b a new key (a
#     warning says so) and that snapshot restores it.
# What this cannot show: copies made outside the repository (a versioned or
# object-locked bucket, a storage provider's backups) keep the old keyring
# objects; docs/SECURITY.md says so.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
use_postgres

READER_PY=${ENGINE_READER_PYTHON:-/usr/bin/python3}
reader() { "$READER_PY" "$TESTS_INTEGRATION_DIR/../tools/engine_reader.py" "$repo" --passphrase-env ENGINE_PASSPHRASE "$@"; }
export ENGINE_PASSPHRASE=tenants-test

pg_test_start pg
q -d postgres -c "CREATE DATABASE app" -c "CREATE DATABASE verify" -c "CREATE DATABASE verify2"
q -d app -f "$(dirname "$0")/../servers/pg_tenant.sql" >/dev/null
MARK_B="PLAINTEXT-OF-TENANT-B-$RANDOM$RANDOM"
MARK_BOB="PLAINTEXT-OF-BOB-$RANDOM$RANDOM"
for t in tenant_a tenant_b tenant_c; do
  q -d app -c "CALL make_tenant('$t', 10)"
done
q -d app -c "CREATE TABLE tenant_b.secret (t text)" \
  -c "INSERT INTO tenant_b.secret SELECT '$MARK_B ' || g FROM generate_series(1, 2000) g"
for t in tenant_a tenant_b tenant_c; do pg_fingerprint app "$t" >"$T/fp.$t"; done

src=$T/src
mkdir -p "$src/home/alice" "$src/home/bob" "$src/shared"
seeded_file "$src/home/alice/a.bin" 1 tenants-alice
seeded_file "$src/shared/s.bin" 1 tenants-shared
cp "$src/home/alice/a.bin" "$src/home/bob/same-as-alice.bin"
for i in $(seq 1 3000); do echo "$MARK_BOB line $i"; done >"$src/home/bob/notes.txt"
echo "alice's note" >"$src/home/alice/note.txt"

repo=$T/repo
DSN="host=$PG_DIR port=$PG_PORT user=postgres dbname=app"
cat >"$T/p.yml" <<EOF
version: 1
name: tenants
repository: {format: 2}
sources:
  - name: db
    type: postgres-schema
    with:
      dsn: $(yq "$DSN")
      schemas: ["tenant_*"]
      globals: false
  - name: files
    type: files
    with:
      paths: [$(yq "$src")]
stages:
  compress: {algorithm: none}
  encrypt:
    algorithm: aes-256-gcm
    passphrase: env:ENGINE_PASSPHRASE
    per_tenant: true
    tenant_of:
      "files/*/home/alice": alice
      "files/*/home/bob": bob
sinks:
  - name: local
    type: local
    with:
      path: $(yq "$repo")
EOF

# ---- configuration errors name the option -------------------------------------------
sed 's/    per_tenant: true/    per_tenant: maybe/' "$T/p.yml" >"$T/bad1.yml"
run_engine "$T/b1.out" "$T/b1.err" validate "$T/bad1.yml"
assert_rc 1 "validate per_tenant: maybe" "$T/b1.err"
assert_contains "$T/b1.err" "stages.encrypt.per_tenant" "the error names the option"
sed 's|      "files/\*/home/bob": bob|      "nosource": bob|' "$T/p.yml" >"$T/bad2.yml"
run_engine "$T/b2.out" "$T/b2.err" validate "$T/bad2.yml"
assert_rc 1 "validate tenant_of without SOURCE/GLOB" "$T/b2.err"
assert_contains "$T/b2.err" "expected SOURCE/ITEM-GLOB" "tenant_of key error"

# ---- backups --------------------------------------------------------------------------
run_ok "$T/r1.json" "$T/r1.err" run "$T/p.yml" --json
s1=$(json_get "$T/r1.json" 'j["snapshot"]')
run_ok "$T/kl.json" "$T/kl.err" key list "$T/p.yml" --json
assert_eq "alice,bob,tenant_a,tenant_b,tenant_c" \
  "$(json_get "$T/kl.json" '",".join(sorted(t["name"] for t in j["tenants"]))')" "tenants in the keyring"
reader tenants >"$T/tenants.before" || fail "the reader cannot list the tenant keys"
key_of() { "$PYTHON" -c 'import json,sys; print([json.loads(l)["key"] for l in open(sys.argv[1]) if json.loads(l)["name"] == sys.argv[2]][0])' "$T/tenants.before" "$1"; }
KEY_B=$(key_of tenant_b)
KEY_BOB=$(key_of bob)
# one pack per tenant at least, none mixing tenants: 5 tenants + shared data and trees
packs=$(find "$repo/data" -type f | wc -l)
[ "$packs" -ge 6 ] || fail "expected at least 6 packs (5 tenants and the shared keys), got $packs"
heads=$(for f in $(find "$repo/data" -type f); do head -c 8 "$f" | od -An -tx1 | tr -d ' \n'; echo; done | sort -u | wc -l)
note "first backup: $packs packs, $heads distinct key ids at their start"
# bob's copy of alice's file is stored again (chunk ids are keyed per
# tenant): nothing of the first run deduplicates
assert_eq "$(json_get "$T/r1.json" 'j["bytes_read"]')" "$(json_get "$T/r1.json" 'j["new_bytes"]')" \
  "new bytes of the first run (bob's copy of alice's file is not deduplicated)"
reader verify >"$T/v1.out" 2>"$T/v1.err" || { show "$T/v1.err"; fail "the independent reader does not verify the tenant packs"; }
reader cat "$s1" files "${src#/}/home/bob/notes.txt" >"$T/bob.notes" || fail "the reader cannot read bob's file with bob's key"
assert_files_equal "$src/home/bob/notes.txt" "$T/bob.notes" "bob's file read by the independent reader"

run_ok "$T/r2.json" "$T/r2.err" run "$T/p.yml" --json
assert_eq 0 "$(json_get "$T/r2.json" 'j["new_bytes"]')" "new bytes of an unchanged run"
run_ok "$T/st.out" "$T/st.err" snapshots "$T/p.yml" --tenant tenant_b
assert_contains "$T/st.out" "2 snapshot(s)" "snapshots --tenant tenant_b"
run_ok "$T/st2.out" "$T/st2.err" snapshots "$T/p.yml" --tenant nobody
assert_contains "$T/st2.out" "0 snapshot(s)" "snapshots --tenant of an unknown tenant"

# ---- shred ------------------------------------------------------------------------------
run_engine "$T/sh0.out" "$T/sh0.err" key shred "$T/p.yml" --tenant tenant_b </dev/null
assert_rc 2 "key shred without --yes and without a terminal" "$T/sh0.err"
run_engine "$T/sh1.out" "$T/sh1.err" key shred "$T/p.yml" --tenant nobody --yes
assert_rc 1 "key shred of an unknown tenant" "$T/sh1.err"
assert_contains "$T/sh1.err" "no tenant 'nobody'" "key shred of an unknown tenant"
# an optional sink that cannot be reached would keep the key: refused
awk '{print} /^sinks:/{print "  - name: offline\n    type: local\n    required: false\n    with:\n      path: /proc/engine-no-such-dir/repo"}' "$T/p.yml" >"$T/p2.yml"
run_engine "$T/sh4.out" "$T/sh4.err" key shred "$T/p2.yml" --tenant tenant_b --yes
assert_rc 1 "key shred with an optional sink offline" "$T/sh4.err"
assert_contains "$T/sh4.err" "optional sink 'offline' could not be reached" "key shred with a sink offline"
cp -a "$repo/keyring" "$T/keyring.before"
run_ok "$T/sh2.out" "$T/sh2.err" key shred "$T/p.yml" --tenant tenant_b --yes
run_ok "$T/sh3.out" "$T/sh3.err" key shred "$T/p.yml" --tenant bob --yes
assert_eq 1 "$(ls "$repo/keyring" | wc -l)" "keyring objects after shredding"
for k in "$T"/keyring.before/*; do
  [ ! -e "$repo/keyring/$(basename "$k")" ] || fail "keyring object $(basename "$k") survived the shredding"
done
run_ok "$T/show.out" "$T/show.err" show "$T/p.yml" latest
assert_contains "$T/show.out" "tenant_b: SHREDDED" "show marks the shredded tenant"

# other tenants restore exactly; the shredded one fails clearly
run_ok "$T/ra.out" "$T/ra.err" restore "$T/p.yml" latest --only 'db/tenant_a' --target dbname=verify
run_ok "$T/rc.out" "$T/rc.err" restore "$T/p.yml" latest --only 'db/tenant_c' --target dbname=verify
for t in tenant_a tenant_c; do
  pg_fingerprint verify "$t" >"$T/fp.v"
  assert_files_equal "$T/fp.$t" "$T/fp.v" "$t restored after tenant_b was shredded"
done
run_engine "$T/rb.out" "$T/rb.err" restore "$T/p.yml" latest --only 'db/tenant_b' --target dbname=verify
assert_rc 3 "restore of the shredded tenant_b" "$T/rb.err"
assert_contains "$T/rb.err" "tenant 'tenant_b', whose key was shredded" "restore of a shredded tenant"
[ "$(qa -d verify -c "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_b'")" = 0 ] ||
  fail "something of tenant_b was restored"
run_engine "$T/rf.out" "$T/rf.err" restore "$T/p.yml" latest --only files --target "$T/out"
assert_rc 3 "restore of the files (bob shredded)" "$T/rf.err"
assert_contains "$T/rf.err" "tenant 'bob', whose key was shredded" "restore of bob's files"
for f in home/alice/a.bin home/alice/note.txt shared/s.bin; do
  assert_files_equal "$src/$f" "$(restored_path "$T/out" "$src/$f")" "$f restored after bob was shredded"
done
[ ! -e "$(restored_path "$T/out" "$src/home/bob/notes.txt")" ] || fail "bob's file was restored"

run_ok "$T/ck.out" "$T/ck.err" check "$T/p.yml" --read-data
assert_contains "$T/ck.out" "shredded tenants" "check --read-data counts the shredded items"
# the independent reader, with the passphrase and every key object, cannot
# decrypt them either
if reader cat "$s1" files "${src#/}/home/bob/notes.txt" >/dev/null 2>"$T/rcat.err"; then
  fail "the independent reader still decrypts bob's file"
fi
assert_contains "$T/rcat.err" "shredded" "the reader's error on bob's file"
if reader verify >"$T/v2.out" 2>"$T/v2.err"; then fail "the reader verified the shredded packs"; fi
assert_contains "$T/v2.err" "tenant 'tenant_b', shredded" "the reader cannot open tenant_b's packs"

# ---- prune --------------------------------------------------------------------------------
before=$(du -sb "$repo/data" | cut -f1)
run_ok "$T/pr.out" "$T/pr.err" prune "$T/p.yml"
after=$(du -sb "$repo/data" | cut -f1)
note "prune after shredding: data $before -> $after bytes"
[ $((before - after)) -ge $((1024 * 1024)) ] || fail "prune freed $((before - after)) bytes, expected at least bob's 1 MiB copy"
if grep -rqa -e "$MARK_B" -e "$MARK_BOB" "$repo"; then fail "a shredded tenant's plaintext is in the repository"; fi
raw_hex() { "$PYTHON" -c 'import base64,sys; sys.stdout.write(base64.b64decode(sys.argv[1]).hex())' "$1"; }
for k in "$KEY_B" "$KEY_BOB"; do
  if grep -rqaF -e "$k" "$repo"; then fail "a shredded key (base64) is in the repository"; fi
  hx=$(raw_hex "$k")
  if find "$repo" -type f -exec cat {} + | od -An -v -tx1 | tr -d ' \n' | grep -q "$hx"; then
    fail "a shredded key (raw bytes) is in the repository"
  fi
done
reader verify >"$T/v3.out" 2>"$T/v3.err" || { show "$T/v3.err"; fail "the reader does not verify the pruned repository"; }
assert_contains "$T/v3.out" "of shredded tenants skipped" "the reader skips the shredded items"
run_ok "$T/ck2.out" "$T/ck2.err" check "$T/p.yml" --read-data
# the nightly restore test goes on passing: a shredded tenant is skipped,
# the others are restored into scratch space and verified
run_ok "$T/rt.out" "$T/rt.err" -v check "$T/p.yml" --restore-test
assert_contains "$T/rt.err" "db/tenant_b skipped" "the restore test skips the shredded tenant"
assert_contains "$T/rt.err" "restore test of schema 'tenant_a'" "the restore test verifies tenant_a"
rm -rf "$T/out2"
run_engine "$T/rf2.out" "$T/rf2.err" restore "$T/p.yml" latest --only files --target "$T/out2"
assert_rc 3 "restore of the files after prune" "$T/rf2.err"
assert_files_equal "$src/home/alice/a.bin" "$(restored_path "$T/out2" "$src/home/alice/a.bin")" "alice after prune"

# ---- the name again: a new key -----------------------------------------------------------
run_ok "$T/r3.json" "$T/r3.err" run "$T/p.yml" --json
assert_contains "$T/r3.err" "tenant 'tenant_b' was shredded" "a warning that tenant_b gets a new key"
run_ok "$T/rb2.out" "$T/rb2.err" restore "$T/p.yml" latest --only 'db/tenant_b' --target dbname=verify2
pg_fingerprint verify2 tenant_b >"$T/fp.v"
assert_files_equal "$T/fp.tenant_b" "$T/fp.v" "tenant_b restored from a backup made after the shredding"
note "PASS"
