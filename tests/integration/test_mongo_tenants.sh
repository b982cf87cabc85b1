#!/usr/bin/env bash
# The mongodb source declares each database a tenant (its items carry
# "tenant": DB): with stages.encrypt.per_tenant (repository format 2) every
# database's collections are under that database's own key, in packs of
# their own. Checked: the keyring holds one tenant per database, snapshots
# --tenant finds them, a restore into a second server equals the source
# document for document (pymongo, not the engine); key shred of one
# database makes its collections fail to restore (exit 3, naming the
# shredding) while the other database restores exactly, and prune removes
# the shredded database's packs.
#
# The servers are CongoDB (tests/servers/congodb.sh); what it cannot show
# here is listed in test_mongo_roundtrip.sh (snapshot reads, options, views).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mongo_lib.sh"
mongo_require

congodb_start A
congodb_start B

mpy - "$A_URI" <<'EOF' || fail "seeding CongoDB A failed"
import sys, pymongo
c = pymongo.MongoClient(sys.argv[1])
c.shop.orders.insert_many([{"n": i, "item": "o" * (1 + i % 50)} for i in range(3000)])
c.shop.users.insert_many([{"n": i, "name": "user%d" % i} for i in range(500)])
c.crm.contacts.insert_many([{"n": i, "mail": "c%d@example.org" % i} for i in range(2000)])
c.crm.contacts.create_index("mail", unique=True)
EOF

mongo_pipeline "$T/p.yml" mongo-tenants "$T/repo" "$A_URI"
sed -i "s|  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}|  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE', per_tenant: true}|" "$T/p.yml"
printf 'repository: {format: 2}\n' >>"$T/p.yml"
run_ok "$T/v.out" "$T/v.err" validate "$T/p.yml"
run_ok "$T/run.json" "$T/run.err" run "$T/p.yml" --json
run_ok "$T/kl.json" "$T/kl.err" key list "$T/p.yml" --json
assert_eq "crm,shop" "$(json_get "$T/kl.json" '",".join(sorted(t["name"] for t in j["tenants"]))')" \
  "tenants of a mongodb backup (its databases)"
run_ok "$T/st.out" "$T/st.err" snapshots "$T/p.yml" --tenant crm
assert_contains "$T/st.out" "1 snapshot(s)" "snapshots --tenant crm"
# two databases, two tenant packs at least (trees and metadata aside)
kids=$(for f in $(find "$T/repo/data" -type f); do head -c 8 "$f" | od -An -tx1 | tr -d ' \n'; echo; done | sort -u | wc -l)
[ "$kids" -ge 3 ] || fail "expected packs under at least 3 keys (2 databases and the shared keys), got $kids"

run_ok "$T/r1.out" "$T/r1.err" restore "$T/p.yml" latest --target "$B_URI"
mongo_compare "$A_URI" "$B_URI"
note "per-tenant mongodb backup restored document for document"

run_ok "$T/sh.out" "$T/sh.err" key shred "$T/p.yml" --tenant shop --yes
mpy - "$B_URI" <<'EOF' || fail "unable to empty B"
import sys, pymongo
b = pymongo.MongoClient(sys.argv[1])
for d in ("shop", "crm"):
    b.drop_database(d)
EOF
run_engine "$T/r2.out" "$T/r2.err" restore "$T/p.yml" latest --target "$B_URI"
assert_rc 3 "restore after shredding the database shop" "$T/r2.err"
assert_contains "$T/r2.err" "tenant 'shop', whose key was shredded" "restore of a shredded database"
mongo_compare "$A_URI" "$B_URI" crm
mpy - "$B_URI" <<'EOF' || fail "the shredded database was restored"
import sys, pymongo
b = pymongo.MongoClient(sys.argv[1])
n = sum(b.shop[c].count_documents({}) for c in b.shop.list_collection_names())
sys.exit("shop holds %d documents on B" % n if n else 0)
EOF
before=$(find "$T/repo/data" -type f | wc -l)
run_ok "$T/pr.out" "$T/pr.err" prune "$T/p.yml"
after=$(find "$T/repo/data" -type f | wc -l)
[ "$after" -lt "$before" ] || fail "prune kept every pack ($before) after the shredding"
run_ok "$T/ck.out" "$T/ck.err" check "$T/p.yml" --read-data
note "shop shredded: its collections fail to restore, crm restores exactly, prune $before -> $after packs"
note "PASS"
