#!/usr/bin/env bash
# --only in the mongodb source's own terms (plugin ABI 1.8 select_globs):
# `--only mongo/DB.COLL`, `--only mongo/DB`, globs on the collection and on
# the database (`mongo/DB.us*`, `mongo/*.users`), and a collection whose
# name holds a dot (`a.b` beside `a`) each restore exactly those
# collections into a second server, document for document (checked with
# pymongo, not the engine); the item-name form (`mongo/DB/COLL.*`) still
# works; `--as NEWDB.NEWCOLL` and `--as NEWDB` rename what the new form
# selects, and a rename of two collections is refused naming the form to
# use; --to-stdout and --dry-run take the new form; a selection that
# matches nothing fails, saying how the source read it, and writes
# nothing; `run --only` and `snapshots --contains` read the same form.
#
# The servers are CongoDB (tests/servers/congodb.sh). What it cannot show
# here: collection options, views and time-series collections (it forgets
# them; tests/unit/test_selection.c checks that a time-series collection's
# buckets and a view's metadata are selected).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mongo_lib.sh"
mongo_require

congodb_start A
congodb_start B
note "CongoDB A on $A_PORT, B on $B_PORT"

mpy - "$A_URI" <<'EOF' || fail "seeding CongoDB A failed"
import sys, pymongo
c = pymongo.MongoClient(sys.argv[1])
def fill(db, coll, n, tag):
    c[db][coll].insert_many([{"n": i, "tag": tag, "pad": tag * (1 + i % 7)} for i in range(n)])
fill("shop", "orders", 50, "o")
fill("shop", "orders_old", 10, "oo")
fill("shop", "users", 30, "u")
fill("shop", "users_archive", 15, "ua")
fill("shop", "a.b", 12, "ab")
fill("shop", "a", 7, "a")
fill("crm", "users", 20, "cu")
fill("crm", "contacts", 25, "cc")
fill("shopping", "users", 5, "su")
c.shop.users.create_index("n", unique=True)
c.shop["a.b"].create_index([("tag", 1), ("n", -1)])
EOF

mongo_pipeline "$T/p.yml" mongo-sel "$T/repo" "$A_URI"
run_ok "$T/run.json" "$T/run.err" run "$T/p.yml" --json
assert_eq 18 "$(json_get "$T/run.json" 'j["items"]')" "items backed up (9 collections)"

# expect_on_b WHAT NS...: B holds exactly the collections NS (DB.COLL, or
# NEWDB.NEWCOLL=DB.COLL for a renamed one), each with the documents of
# A's DB.COLL byte for byte and in order, and its indexes
expect_on_b() {
  local what=$1
  shift
  mpy - "$A_URI" "$B_URI" "$@" <<'EOF' || fail "$what: B is not what was selected (see above)"
import sys, pymongo
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
a = pymongo.MongoClient(sys.argv[1]); b = pymongo.MongoClient(sys.argv[2])
raw = CodecOptions(document_class=RawBSONDocument)
want = dict((x.split("=", 1) + [x])[:2] for x in sys.argv[3:])
got = sorted("%s.%s" % (d, c) for d in b.list_database_names() if d not in ("admin", "local", "config")
             for c in b[d].list_collection_names())
if got != sorted(want):
    sys.exit("collections on B: %s, expected %s" % (got, sorted(want)))
def coll(client, ns):
    d, c = ns.split(".", 1)
    return client[d].get_collection(c, codec_options=raw)
for new, old in want.items():
    x = [r.raw for r in coll(a, old).find()]
    y = [r.raw for r in coll(b, new).find()]
    if not x or x != y:
        sys.exit("%s: %d documents, %d in %s on A" % (new, len(y), len(x), old))
    ia = coll(a, old).index_information(); ib = coll(b, new).index_information()
    if ia != ib:
        sys.exit("%s: indexes %s, %s on A" % (new, ib, ia))
print("B holds %s" % ", ".join(sorted(want)))
EOF
}
clear_b() {
  mpy - "$B_URI" <<'EOF' || fail "unable to empty B"
import sys, pymongo
b = pymongo.MongoClient(sys.argv[1])
for d in b.list_database_names():
    if d not in ("admin", "local", "config"):
        b.drop_database(d)
EOF
}
# restore_b ONLY NS... [-- ENGINE ARGS]: restore --only ONLY into an empty B;
# B then holds exactly NS
restore_b() {
  local only=$1 args=()
  shift
  local ns=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do ns+=("$1"); shift; done
  [ $# -gt 0 ] && { shift; args=("$@"); }
  clear_b
  run_ok "$T/r.out" "$T/r.err" restore "$T/p.yml" latest --only "$only" --target "$B_URI" "${args[@]}"
  expect_on_b "--only $only ${args[*]}" "${ns[@]}"
}

# ---- the new form ------------------------------------------------------------------------------
restore_b mongo/shop.orders shop.orders
assert_contains "$T/r.out" "restored 2 item(s)" "one collection: its metadata and data items"
restore_b mongo/shop shop.orders shop.orders_old shop.users shop.users_archive shop.a.b shop.a
restore_b 'mongo/shop.us*' shop.users shop.users_archive
restore_b 'mongo/*.users' shop.users crm.users shopping.users
restore_b 'mongo/sh*p' shop.orders shop.orders_old shop.users shop.users_archive shop.a.b shop.a
restore_b 'mongo/shop.a.b' shop.a.b
restore_b 'mongo/shop.a' shop.a
restore_b 'mongo/crm.[!u]*' crm.contacts
note "--only mongo/DB.COLL, mongo/DB, collection and database globs, a collection named a.b: exactly those collections"
# the item-name form
restore_b 'mongo/shop/orders.*' shop.orders
restore_b 'mongo/shop/a.b.*' shop.a.b

# ---- renames --------------------------------------------------------------------------------
restore_b mongo/shop.orders arch.o2=shop.orders -- --as arch.o2
restore_b mongo/shop.a.b copy.x.y=shop.a.b -- --as copy.x.y
restore_b 'mongo/shop.us*' shop_copy.users=shop.users shop_copy.users_archive=shop.users_archive -- --as shop_copy
clear_b
run_engine "$T/as2.out" "$T/as2.err" restore "$T/p.yml" latest --only 'mongo/shop.us*' --as x.y --target "$B_URI"
assert_rc 3 "--as NEWDB.NEWCOLL with two collections selected" "$T/as2.out" "$T/as2.err"
assert_contains "$T/as2.err" "select one collection with --only SOURCE/DB.COLL" "the refusal names the form to use"
note "--as NEWDB.NEWCOLL and --as NEWDB rename what the new form selects; two collections under one name refused"

# ---- --to-stdout, --dry-run ----------------------------------------------------------------------
run_engine "$T/ab.bson" "$T/ab.err" restore "$T/p.yml" latest --only 'mongo/shop.a.b' --to-stdout
assert_rc 0 "--to-stdout --only mongo/shop.a.b" "$T/ab.err"
mpy - "$A_URI" "$T/ab.bson" <<'EOF' || fail "--to-stdout --only mongo/shop.a.b is not shop.a.b's BSON"
import sys, pymongo
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
a = pymongo.MongoClient(sys.argv[1])
want = b"".join(r.raw for r in a.shop.get_collection("a.b", codec_options=CodecOptions(document_class=RawBSONDocument)).find())
got = open(sys.argv[2], "rb").read()
assert got == want, "%d bytes, %d expected" % (len(got), len(want))
EOF
run_ok "$T/dry.out" "$T/dry.err" restore "$T/p.yml" latest --only 'mongo/shop.a.b' --target "$B_URI" --dry-run
assert_eq "shop/a.b.bson shop/a.b.metadata.json" \
  "$(grep -o 'mongo/[^ ]*' "$T/dry.out" | sed 's|^mongo/||' | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//')" \
  "--dry-run --only mongo/shop.a.b lists"

# ---- a selection that matches nothing ------------------------------------------------------------
clear_b
for only in mongo/shop.nosuch mongo/nosuch 'mongo/*.nosuch*'; do
  run_engine "$T/none.out" "$T/none.err" restore "$T/p.yml" latest --only "$only" --target "$B_URI"
  assert_rc 1 "--only $only (matches nothing)" "$T/none.out" "$T/none.err"
  assert_contains "$T/none.err" "no item of source 'mongo' matches '${only#mongo/}' (read as the item globs '" \
    "the error names the selection and how the source read it"
  assert_contains "$T/none.err" "; item names are relative paths as stored, e.g. '" "the error shows a stored item name"
done
expect_on_b "after the selections that matched nothing"
note "a selection that matches nothing: exit 1, says how it was read, B untouched"

# ---- run --only and snapshots --contains read the same form ----------------------------------------
run_ok "$T/sel.json" "$T/sel.err" run "$T/p.yml" --only 'mongo/shop.a.b' --only mongo/crm.contacts --json
assert_eq 4 "$(json_get "$T/sel.json" 'j["items"]')" "items of run --only mongo/shop.a.b --only mongo/crm.contacts"
sel_id=$(json_get "$T/sel.json" 'j["snapshot"]')
run_ok "$T/ls.out" "$T/ls.err" restore "$T/p.yml" "$sel_id" --target "$B_URI" --dry-run
assert_eq "crm/contacts.bson crm/contacts.metadata.json shop/a.b.bson shop/a.b.metadata.json" \
  "$(grep -o 'mongo/[^ ]*' "$T/ls.out" | sed 's|^mongo/||' | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//')" \
  "the items of the run --only snapshot"
run_engine "$T/seln.json" "$T/seln.err" run "$T/p.yml" --only 'mongo/shop.nosuch'
assert_rc 1 "run --only mongo/shop.nosuch" "$T/seln.err"
assert_contains "$T/seln.err" "no item of source 'mongo' matches 'shop.nosuch' (read as the item globs" \
  "run --only's error says how the source read it"
count_contains() {
  run_ok "$T/c.json" "$T/c.err" snapshots "$T/p.yml" --contains "$1" --json
  json_get "$T/c.json" 'len(j)'
}
assert_eq 2 "$(count_contains mongo/shop.a.b)" "snapshots --contains mongo/shop.a.b"
assert_eq 1 "$(count_contains mongo/shop.a)" "snapshots --contains mongo/shop.a (not shop.a.b)"
assert_eq 1 "$(count_contains 'mongo/*.users')" "snapshots --contains 'mongo/*.users'"
assert_eq 2 "$(count_contains '*/crm.contacts')" "snapshots --contains '*/crm.contacts'"
assert_eq 0 "$(count_contains mongo/shop.nosuch)" "snapshots --contains mongo/shop.nosuch"
assert_eq 1 "$(count_contains 'mongo/shop/orders.*')" "snapshots --contains (item-name form)"
note "run --only and snapshots --contains read mongo/DB.COLL too"
note "PASS"
