#!/usr/bin/env bash
# The mongodb source's options, each against a server that checks what it
# is for, and the example pipeline conf.d/mongodb.yml run as it is written:
#
#   - `password: env:` and `password: file:` and a uri given as `file:`
#     holding the password: SCRAM-SHA-256 succeeds (backup, restore into the
#     same server, a --target uri without a user takes the pipeline's user
#     and password); a wrong password is refused and never printed;
#   - `tls_ca_file` + `tls_cert_key_file`: TLS with a client certificate
#     succeeds; without the client certificate, or with a CA that did not
#     sign the server's certificate, the run fails naming TLS;
#   - `read_preference` on a two-member replica set: the default
#     (secondaryPreferred) reads every collection from the secondary,
#     `primary` from the primary, `nearest` sends that mode; the manifest's
#     `server` mark names the member read;
#   - `databases` / `exclude_databases` / `collections` /
#     `exclude_collections` globs, local and config only when named, and
#     mongodump's system.* rule (system.js kept; system.profile,
#     system.buckets.* without their time-series collection, admin.system.keys
#     and config's internal collections skipped);
#   - `include_users_and_roles`: admin.system.users, system.roles and
#     system.version are backed up (and written into a mongodump directory);
#     restored through admin.tempusers/temproles and _mergeAuthzCollections
#     with mongorestore's arguments (only the collections restored: users
#     alone with --drop-existing leave the server's roles alone), never
#     written into admin.system.version;
#   - `batch_size` when restoring: unordered bulk inserts of at most
#     batch_size bytes (plus one document), bypassing document validation;
#   - conf.d/mongodb.yml validates, and runs against the stand-in with only
#     its hosts, file paths and repository changed.
#
# The server is tests/servers/mongowire.py (CongoDB has no SCRAM, TLS,
# replica set or users). Each of its behaviours used here is first checked
# with pymongo, a client that is not ours: it authenticates with the right
# password and is refused with a wrong one, it connects over TLS only with
# a client certificate the CA signed, and it sees the two members as a
# primary and a secondary. What the stand-in cannot show: a real server's
# authorization (the `backup` / `restore` roles; the stand-in lets an
# authenticated user do anything), certificate checks beyond the handshake
# (hostname rules are the driver's), members that lag or fail over while a
# backup runs, and what _mergeAuthzCollections really does with the users
# (the stand-in merges by _id as the server documents it).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mongo_lib.sh"
mongo_require

mpy - "$T" <<'EOF'
import os, sys, bson
T = sys.argv[1]
def w(name, docs):
    with open(os.path.join(T, name + ".bson"), "wb") as f:
        f.write(b"".join(bson.encode(d) for d in docs))
w("orders", [{"_id": i, "item": "sku%d" % (i % 50), "qty": i % 7, "pad": "o" * 80} for i in range(3000)])
w("carts", [{"_id": i, "n": i} for i in range(20)])
w("small", [{"_id": i} for i in range(5)])
w("users", [{"_id": "admin.backup", "userId": bson.Binary(b"0123456789abcdef", 4), "user": "backup",
             "db": "admin", "credentials": {"SCRAM-SHA-256": {"iterationCount": 15000}},
             "roles": [{"role": "backup", "db": "admin"}]},
            {"_id": "shop.app", "user": "app", "db": "shop", "roles": [{"role": "readWrite", "db": "shop"}]}])
w("roles", [{"_id": "shop.reporting", "role": "reporting", "db": "shop", "privileges": [], "roles": []}])
w("version", [{"_id": "featureCompatibilityVersion", "version": "7.0"},
              {"_id": "authSchema", "currentVersion": 5}])
w("keys", [{"_id": 1, "purpose": "HMAC"}])
EOF

# backup_files PIPELINE DIR: back up (status 0), restore the snapshot as a
# mongodump directory DIR; the list of its files (relative, sorted) in
# DIR.list
backup_files() {
  run_ok "$2.json" "$2.run.err" run "$1" --json
  rm -rf "$2"
  run_ok "$2.out" "$2.err" restore "$1" latest --target "$2"
  (cd "$2" && find . -type f -printf '%P\n' | LC_ALL=C sort) >"$2.list"
}
# expect_files DIR WHAT FILE...: DIR.list is exactly the FILEs
expect_files() {
  local dir=$1 what=$2
  shift 2
  printf '%s\n' "$@" >"$dir.want"
  diff -u "$dir.want" "$dir.list" >&2 || fail "$what: the files above differ (- expected, + stored)"
}

# ---- SCRAM: password env:, file:, a uri secret holding the password ---------------------------
PW='S3cret-of-the-backup-user'
export MONGO_PW=$PW MONGO_BAD_PW='not-the-password'
printf '%s' "$PW" >"$T/pw"
mongowire_start AUTH --scram "backup:$PW" --load "shop.orders=$T/orders.bson"
mpy - "127.0.0.1:$AUTH_PORT" "$PW" <<'EOF' || fail "the stand-in does not check passwords as a server does"
import sys, pymongo
ok = pymongo.MongoClient("mongodb://backup:%s@%s/" % (sys.argv[2], sys.argv[1]), serverSelectionTimeoutMS=3000)
assert sum(1 for _ in ok.shop.orders.find()) == 3000
bad = pymongo.MongoClient("mongodb://backup:wrong@%s/" % sys.argv[1], serverSelectionTimeoutMS=3000)
try:
    bad.shop.orders.find_one()
    raise SystemExit("a wrong password was accepted")
except pymongo.errors.OperationFailure as e:
    assert e.code == 18, e
none = pymongo.MongoClient("mongodb://%s/" % sys.argv[1], serverSelectionTimeoutMS=3000)
try:
    none.shop.orders.find_one()
    raise SystemExit("no password was accepted")
except pymongo.errors.OperationFailure as e:
    assert e.code == 13, e
EOF
mongo_pipeline "$T/env.yml" mongo-opt "$T/repo-auth" "mongodb://backup@127.0.0.1:$AUTH_PORT/?authSource=admin" \
  "password: 'env:MONGO_PW'"
run_ok "$T/env.json" "$T/env.err" run "$T/env.yml" --json
assert_eq 2 "$(json_get "$T/env.json" 'j["items"]')" "items read with password env:"
mongo_pipeline "$T/file.yml" mongo-opt "$T/repo-auth" "mongodb://backup@127.0.0.1:$AUTH_PORT/" \
  "password: $(yq "file:$T/pw")"
run_ok "$T/file.json" "$T/file.err" run "$T/file.yml" --json
printf 'mongodb://backup:%s@127.0.0.1:%s/\n' "$PW" "$AUTH_PORT" >"$T/uri"
mongo_pipeline "$T/urisecret.yml" mongo-opt "$T/repo-auth" "file:$T/uri"
run_ok "$T/urisecret.json" "$T/urisecret.err" run "$T/urisecret.yml" --json
# a restore authenticates too: into the same server under another name, and
# into a --target uri without a user (the pipeline's user and password)
run_ok "$T/as.out" "$T/as.err" restore "$T/file.yml" latest --only mongo/shop --as shop_copy
run_ok "$T/tg.out" "$T/tg.err" restore "$T/env.yml" latest --only mongo/shop --as shop_tg \
  --target "mongodb://127.0.0.1:$AUTH_PORT/"
mpy - "127.0.0.1:$AUTH_PORT" "$PW" <<'EOF' || fail "the restores under SCRAM are not what was backed up"
import sys, pymongo
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
c = pymongo.MongoClient("mongodb://backup:%s@%s/" % (sys.argv[2], sys.argv[1]))
raw = CodecOptions(document_class=RawBSONDocument)
src = [d.raw for d in c.shop.get_collection("orders", codec_options=raw).find()]
for db in ("shop_copy", "shop_tg"):
    got = [d.raw for d in c[db].get_collection("orders", codec_options=raw).find()]
    assert got == src, "%s.orders: %d documents of %d" % (db, len(got), len(src))
EOF
mongo_pipeline "$T/bad.yml" mongo-opt "$T/repo-auth" "mongodb://backup@127.0.0.1:$AUTH_PORT/" \
  "password: 'env:MONGO_BAD_PW'"
run_engine "$T/bad.out" "$T/bad.err" run "$T/bad.yml"
assert_rc 1 "a wrong password" "$T/bad.err"
assert_contains "$T/bad.err" "authentication failed for user 'backup' on 127.0.0.1:$AUTH_PORT" "wrong password"
for f in "$T"/*.err "$T"/*.out "$T"/*.json; do
  assert_not_contains "$f" "$PW" "the password in $f"
  assert_not_contains "$f" "$MONGO_BAD_PW" "the wrong password in $f"
done
grep -q '"op": "auth", "user": "backup", "ok": true' "$T/AUTH.wire.log" ||
  { show "$T/AUTH.wire.log"; fail "the stand-in saw no successful SCRAM conversation"; }
note "SCRAM-SHA-256 with password env:, file: and a file: uri holding it; restores authenticate; a wrong password is refused, never printed"

# ---- TLS with a client certificate ---------------------------------------------------------------
ossl() { openssl "$@" >/dev/null 2>&1 || fail "openssl $1 failed"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$T/ca.key" -out "$T/ca.pem" -days 2 -subj "/CN=engine-test-ca"
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$T/other.key" -out "$T/other.pem" -days 2 -subj "/CN=another-ca"
ossl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$T/srv.key" -out "$T/srv.csr" -subj "/CN=127.0.0.1"
printf 'subjectAltName=IP:127.0.0.1\n' >"$T/srv.ext"
ossl x509 -req -in "$T/srv.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial -out "$T/srv.crt" \
  -days 2 -extfile "$T/srv.ext"
ossl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$T/cl.key" -out "$T/cl.csr" -subj "/CN=backup"
ossl x509 -req -in "$T/cl.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial -out "$T/cl.crt" -days 2
cat "$T/srv.crt" "$T/srv.key" >"$T/srv.pem"
cat "$T/cl.crt" "$T/cl.key" >"$T/cl.pem"
mongowire_start TLS --tls-cert "$T/srv.pem" --tls-ca "$T/ca.pem" --load "shop.orders=$T/orders.bson"
mpy - "127.0.0.1:$TLS_PORT" "$T" <<'EOF' || fail "the stand-in does not check TLS clients as a server does"
import sys, pymongo
h, T = sys.argv[1], sys.argv[2]
def client(**kw):
    return pymongo.MongoClient("mongodb://%s/" % h, tls=True, serverSelectionTimeoutMS=2000, **kw)
ok = client(tlsCAFile=T + "/ca.pem", tlsCertificateKeyFile=T + "/cl.pem")
assert sum(1 for _ in ok.shop.orders.find()) == 3000
for kw in ({"tlsCAFile": T + "/ca.pem"}, {"tlsCAFile": T + "/other.pem", "tlsCertificateKeyFile": T + "/cl.pem"}):
    try:
        client(**kw).shop.orders.find_one()
        raise SystemExit("TLS accepted with %s" % kw)
    except pymongo.errors.ServerSelectionTimeoutError:
        pass
EOF
mongo_pipeline "$T/tls.yml" mongo-opt "$T/repo-tls" "mongodb://127.0.0.1:$TLS_PORT/" \
  "tls_ca_file: $(yq "$T/ca.pem")" "tls_cert_key_file: $(yq "$T/cl.pem")" "timeout: 2s"
run_ok "$T/tls.json" "$T/tls.err" run "$T/tls.yml" --json
assert_eq 2 "$(json_get "$T/tls.json" 'j["items"]')" "items read over TLS"
run_ok "$T/tlsr.out" "$T/tlsr.err" restore "$T/tls.yml" latest --only mongo/shop --as shop_tls
mongo_pipeline "$T/tls2.yml" mongo-opt "$T/repo-tls" "mongodb://127.0.0.1:$TLS_PORT/" \
  "tls_ca_file: $(yq "$T/ca.pem")" "timeout: 2s"
run_engine "$T/tls2.out" "$T/tls2.err" run "$T/tls2.yml"
assert_rc 1 "TLS without the client certificate" "$T/tls2.err"
assert_contains "$T/tls2.err" "TLS connection to 127.0.0.1:$TLS_PORT failed" "TLS without the client certificate"
mongo_pipeline "$T/tls3.yml" mongo-opt "$T/repo-tls" "mongodb://127.0.0.1:$TLS_PORT/" \
  "tls_ca_file: $(yq "$T/other.pem")" "tls_cert_key_file: $(yq "$T/cl.pem")" "timeout: 2s"
run_engine "$T/tls3.out" "$T/tls3.err" run "$T/tls3.yml"
assert_rc 1 "TLS with a CA that did not sign the server" "$T/tls3.err"
assert_contains "$T/tls3.err" "TLS connection to 127.0.0.1:$TLS_PORT failed" "TLS with another CA"
grep -q 'PEER_DID_NOT_RETURN_A_CERTIFICATE' "$T/TLS.wire.log" ||
  { show "$T/TLS.wire.log"; fail "the stand-in did not refuse the client without a certificate"; }
note "TLS: tls_ca_file + tls_cert_key_file back up and restore; no client certificate or another CA: TLS failure named"

# ---- read_preference on a two-member replica set ------------------------------------------------
P=$(free_port)
S=$(free_port)
RSLOAD=(--load "shop.orders=$T/orders.bson" --load "shop.carts=$T/carts.bson")
MONGOWIRE_PORT=$P mongowire_start RSP --replset rs0 --hosts "127.0.0.1:$P,127.0.0.1:$S" "${RSLOAD[@]}"
MONGOWIRE_PORT=$S mongowire_start RSS --replset rs0 --hosts "127.0.0.1:$P,127.0.0.1:$S" --secondary "${RSLOAD[@]}"
RS_URI="mongodb://127.0.0.1:$P,127.0.0.1:$S/?replicaSet=rs0"
mpy - "$RS_URI" "127.0.0.1:$P" "127.0.0.1:$S" <<'EOF' || fail "pymongo does not see a primary and a secondary"
import sys, time, pymongo
c = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=3000)
c.admin.command("ping")
end = time.time() + 5
while time.time() < end and not c.secondaries:
    time.sleep(0.1)
assert c.primary == ("127.0.0.1", int(sys.argv[2].split(":")[1])), c.primary
assert c.secondaries == {("127.0.0.1", int(sys.argv[3].split(":")[1]))}, c.secondaries
EOF
rp_run() { # LABEL [WITH-LINE]: back up the set; prints nothing
  mongo_pipeline "$T/rp.yml" mongo-opt "$T/repo-rp" "$RS_URI" "$@"
  : >"$T/RSP.wire.log"
  : >"$T/RSS.wire.log"
  run_ok "$T/rp.json" "$T/rp.err" run "$T/rp.yml" --json
  run_ok "$T/rp.show" "$T/rp.show.err" show "$T/rp.yml" latest --json
}
finds() { grep -c '"op": "find"' "$1" || true; }
rp_run
assert_eq "127.0.0.1:$S" "$(json_get "$T/rp.show" 'j["sources"][0]["marks"]["server"]')" "member read by default"
assert_eq 0 "$(finds "$T/RSP.wire.log")" "finds on the primary (default secondaryPreferred)"
assert_eq 2 "$(finds "$T/RSS.wire.log")" "finds on the secondary (default secondaryPreferred)"
grep '"op": "find"' "$T/RSS.wire.log" | grep -q '"readPreference": {"mode": "secondaryPreferred"}' ||
  { show "$T/RSS.wire.log"; fail "the finds do not carry read preference secondaryPreferred"; }
assert_eq cluster_time "$(json_get "$T/rp.show" 'j["sources"][0]["marks"]["consistency"]')" "consistency read from a secondary"
rp_run "read_preference: primary"
assert_eq "127.0.0.1:$P" "$(json_get "$T/rp.show" 'j["sources"][0]["marks"]["server"]')" "member read with primary"
assert_eq 2 "$(finds "$T/RSP.wire.log")" "finds on the primary (read_preference: primary)"
assert_eq 0 "$(finds "$T/RSS.wire.log")" "finds on the secondary (read_preference: primary)"
rp_run "read_preference: nearest"
cat "$T/RSP.wire.log" "$T/RSS.wire.log" | grep '"op": "find"' | grep -q '"readPreference": {"mode": "nearest"}' ||
  { show "$T/RSP.wire.log" "$T/RSS.wire.log"; fail "the finds do not carry read preference nearest"; }
note "read_preference: secondaryPreferred reads the secondary, primary the primary, nearest is sent as such"

# ---- globs, local/config, system.* ------------------------------------------------------------------
SMALL=$T/small.bson
mongowire_start SYS --load "shop.orders=$T/orders.bson" --load "shop.carts=$T/carts.bson" \
  --load "shop.tmp_x=$SMALL" --load "shop.system.js=$SMALL" --load "shop.system.profile=$SMALL" \
  --load "shop.system.buckets.gone=$SMALL" --load "scratch_1.t=$SMALL" --load "local.startup_log=$SMALL" \
  --load "config.settings=$SMALL" --load "config.system.sessions=$SMALL" --load "config.cache.chunks.x=$SMALL" \
  --load "config.transactions=$SMALL" --load "admin.app_settings=$SMALL" \
  --load "admin.system.users=$T/users.bson" --load "admin.system.roles=$T/roles.bson" \
  --load "admin.system.version=$T/version.bson" --load "admin.system.keys=$T/keys.bson"
mongo_pipeline "$T/g1.yml" mongo-opt "$T/repo-g" "$SYS_URI"
backup_files "$T/g1.yml" "$T/g1"
expect_files "$T/g1" "default selection" \
  admin/app_settings.bson \
  admin/app_settings.metadata.json \
  scratch_1/t.bson \
  scratch_1/t.metadata.json \
  shop/carts.bson \
  shop/carts.metadata.json \
  shop/orders.bson \
  shop/orders.metadata.json \
  shop/system.js.bson \
  shop/system.js.metadata.json \
  shop/tmp_x.bson \
  shop/tmp_x.metadata.json
mongo_pipeline "$T/g2.yml" mongo-opt "$T/repo-g" "$SYS_URI" "databases: ['*', config]" \
  "exclude_databases: ['scratch_*']" "collections: ['shop.*', 'config.*', 'admin.*']" \
  "exclude_collections: ['*.tmp_*', 'shop.c*']"
backup_files "$T/g2.yml" "$T/g2"
expect_files "$T/g2" "globs" \
  admin/app_settings.bson \
  admin/app_settings.metadata.json \
  config/settings.bson \
  config/settings.metadata.json \
  shop/orders.bson \
  shop/orders.metadata.json \
  shop/system.js.bson \
  shop/system.js.metadata.json
note "globs: local and config only when named; system.js kept; system.profile, orphan system.buckets.*, admin.system.*, config internals skipped"

# a mongodump directory: a non-empty one needs --yes; names mongodump escapes,
# and shortens when escaped they would pass 238 bytes (mongodump's
# outputPath: the first 208 bytes, %24, the base64url SHA-1 of the name)
run_engine "$T/ne.out" "$T/ne.err" restore "$T/g2.yml" latest --target "$T/g2"
assert_rc 1 "a non-empty target directory without --yes" "$T/ne.err"
assert_contains "$T/ne.err" "the target directory '$T/g2' is not empty" "a non-empty target directory"
run_ok "$T/ne2.out" "$T/ne2.err" restore "$T/g2.yml" latest --target "$T/g2" --yes
LONG="events of $(printf 'q1 %.0s' $(seq 1 80))/all"
SHORT='a b/c?d'
mongowire_start NAMES --load "names.$LONG=$SMALL" --load "names.$SHORT=$T/carts.bson"
mongo_pipeline "$T/n.yml" mongo-opt "$T/repo-n" "$NAMES_URI"
backup_files "$T/n.yml" "$T/n"
mpy - "$T/n" "$LONG" "$SHORT" "$NAMES_URI" <<'EOF' || fail "the mongodump directory does not name the files as mongodump does"
import base64, hashlib, json, os, sys, bson, pymongo
from urllib.parse import quote
from bson import json_util
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
root, names, c = sys.argv[1], sys.argv[2:4], pymongo.MongoClient(sys.argv[4])
raw = CodecOptions(document_class=RawBSONDocument)
def stem(name):  # mongodump's outputPath, written again from its source
    esc = quote(name, safe="-_.~$&+:=@")
    if len(esc) > 238:
        h = base64.urlsafe_b64encode(hashlib.sha1(name.encode()).digest()).rstrip(b"=").decode()
        esc = esc[:208] + "%24" + h
    return esc
want = sorted("names/%s%s" % (stem(n), ext) for n in names for ext in (".bson", ".metadata.json"))
got = open(root + ".list").read().split()
assert got == want, (got, want)
for n in names:
    with open(os.path.join(root, "names", stem(n) + ".metadata.json")) as f:
        assert json_util.loads(f.read())["collectionName"] == n
    with open(os.path.join(root, "names", stem(n) + ".bson"), "rb") as f:
        docs = [d.raw for d in bson.decode_file_iter(f, codec_options=raw)]
    assert docs == [d.raw for d in c.names.get_collection(n, codec_options=raw).find()], n
print("long name stored as %s.bson" % stem(names[0])[:40])
EOF
note "mongodump directories: a non-empty one needs --yes; names escaped and long ones shortened as mongodump does"

# ---- users and roles -----------------------------------------------------------------------------------
mongo_pipeline "$T/u.yml" mongo-opt "$T/repo-u" "$SYS_URI" "databases: [shop]" "include_users_and_roles: true"
backup_files "$T/u.yml" "$T/u"
expect_files "$T/u" "include_users_and_roles" \
  admin/system.roles.bson \
  admin/system.roles.metadata.json \
  admin/system.users.bson \
  admin/system.users.metadata.json \
  admin/system.version.bson \
  admin/system.version.metadata.json \
  shop/carts.bson \
  shop/carts.metadata.json \
  shop/orders.bson \
  shop/orders.metadata.json \
  shop/system.js.bson \
  shop/system.js.metadata.json \
  shop/tmp_x.bson \
  shop/tmp_x.metadata.json
mpy - "$SYS_URI" "$T/u" <<'EOF' || fail "the mongodump directory does not hold the server's users and roles"
import sys, bson, pymongo
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
c = pymongo.MongoClient(sys.argv[1]); raw = CodecOptions(document_class=RawBSONDocument)
for coll in ("system.users", "system.roles", "system.version"):
    server = [d.raw for d in c.admin.get_collection(coll, codec_options=raw).find()]
    with open("%s/admin/%s.bson" % (sys.argv[2], coll), "rb") as f:
        dumped = [d.raw for d in bson.decode_file_iter(f, codec_options=raw)]
    assert dumped == server and dumped, coll
EOF
mongowire_start U2 --load "admin.system.roles=$T/roles.bson"
run_ok "$T/u2.out" "$T/u2.err" restore "$T/u.yml" latest --only 'mongo/admin' --target "$U2_URI"
mpy - "$T/U2.wire.log" <<'EOF' || fail "users and roles were not restored as mongorestore restores them"
import json, sys
log = [json.loads(l) for l in open(sys.argv[1])]
ins = {e["ns"] for e in log if e["op"] == "insert"}
assert ins == {"admin.tempusers", "admin.temproles"}, ins
merge = [e["args"] for e in log if e["op"] == "_mergeAuthzCollections"]
assert merge == [{"tempUsersCollection": "admin.tempusers", "tempRolesCollection": "admin.temproles",
                  "drop": False, "db": ""}], merge
drops = [e["ns"] for e in log if e["op"] == "drop"]
assert drops[-2:] == ["admin.tempusers", "admin.temproles"], drops
EOF
: >"$T/U2.wire.log"
run_ok "$T/u3.out" "$T/u3.err" restore "$T/u.yml" latest --only 'mongo/admin/system.users.*' \
  --target "$U2_URI" --drop-existing --yes
mpy - "$T/U2.wire.log" "$U2_URI" "$SYS_URI" <<'EOF' || fail "users restored alone with --drop-existing touched the roles"
import json, sys, pymongo
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
log = [json.loads(l) for l in open(sys.argv[1])]
merge = [e["args"] for e in log if e["op"] == "_mergeAuthzCollections"]
assert merge == [{"tempUsersCollection": "admin.tempusers", "drop": True, "db": ""}], merge
raw = CodecOptions(document_class=RawBSONDocument)
a, b = pymongo.MongoClient(sys.argv[3]), pymongo.MongoClient(sys.argv[2])
for coll in ("system.users", "system.roles"):
    x = [d.raw for d in a.admin.get_collection(coll, codec_options=raw).find()]
    y = [d.raw for d in b.admin.get_collection(coll, codec_options=raw).find()]
    assert x == y, coll
assert "system.version" not in b.admin.list_collection_names()
EOF
note "include_users_and_roles: users, roles and the auth version backed up; restored through _mergeAuthzCollections naming only what was restored"

# ---- batch_size when restoring: bounded unordered bulk inserts ------------------------------------------
mongowire_start BULK
mongo_pipeline "$T/b.yml" mongo-opt "$T/repo-rp" "$RS_URI" "batch_size: 64KiB"
run_ok "$T/bulk.out" "$T/bulk.err" restore "$T/b.yml" latest --only 'mongo/shop/orders.*' --target "$BULK_URI"
mpy - "$T/BULK.wire.log" "$BULK_URI" "$T/orders.bson" <<'EOF' || fail "the restore's bulk inserts are not bounded by batch_size"
import json, sys, bson, pymongo
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
log = [json.loads(l) for l in open(sys.argv[1])]
ins = [e for e in log if e["op"] == "insert"]
biggest = max(len(d.raw) for d in bson.decode_file_iter(open(sys.argv[3], "rb"),
                                                          codec_options=CodecOptions(document_class=RawBSONDocument)))
assert len(ins) > 3, ins
for e in ins:
    assert e["bytes"] <= 64 * 1024 + biggest, e
    assert e["ordered"] is False and e["bypassDocumentValidation"] is True, e
assert sum(e["n"] for e in ins) == 3000
raw = CodecOptions(document_class=RawBSONDocument)
got = b"".join(d.raw for d in pymongo.MongoClient(sys.argv[2]).shop.get_collection("orders", codec_options=raw).find())
assert got == open(sys.argv[3], "rb").read()
print("%d inserts of at most %d bytes" % (len(ins), max(e["bytes"] for e in ins)))
EOF
note "restore with batch_size 64KiB: $(grep -c '"op": "insert"' "$T/BULK.wire.log") unordered inserts of at most 64 KiB, bypassing validation"

# ---- the example pipeline ---------------------------------------------------------------------------------
run_ok "$T/v.out" "$T/v.err" validate "$REPO_ROOT/conf.d/mongodb.yml"
printf 'example-passphrase\n' >"$T/passphrase"
P2=$(free_port)
S2=$(free_port)
MONGOWIRE_PORT=$P2 mongowire_start EXP --replset rs0 --hosts "127.0.0.1:$P2,127.0.0.1:$S2" \
  --scram "backup:$PW" "${RSLOAD[@]}" --load "scratch_9.t=$SMALL" --load "shop.tmp_1=$SMALL"
MONGOWIRE_PORT=$S2 mongowire_start EXS --replset rs0 --hosts "127.0.0.1:$P2,127.0.0.1:$S2" --secondary \
  --scram "backup:$PW" "${RSLOAD[@]}" --load "scratch_9.t=$SMALL" --load "shop.tmp_1=$SMALL"
sed -e "s|db1.example.net:27017,db2.example.net:27017|127.0.0.1:$P2,127.0.0.1:$S2|" \
  -e "s|/etc/engine/mongodb-backup.password|$T/pw|" -e "s|/etc/engine/mongodb.passphrase|$T/passphrase|" \
  -e "s|/var/backups/engine/mongodb|$T/repo-example|" "$REPO_ROOT/conf.d/mongodb.yml" >"$T/example.yml"
grep -q "127.0.0.1:$P2" "$T/example.yml" && grep -q "$T/pw" "$T/example.yml" ||
  fail "conf.d/mongodb.yml no longer has the hosts and paths this test replaces"
backup_files "$T/example.yml" "$T/ex"
assert_eq complete "$(json_get "$T/ex.json" 'j["status"]')" "status of the example pipeline"
expect_files "$T/ex" "the example pipeline" \
  shop/carts.bson shop/carts.metadata.json shop/orders.bson shop/orders.metadata.json
grep -q '"op": "find"' "$T/EXS.wire.log" || fail "the example pipeline did not read from the secondary"
note "conf.d/mongodb.yml validates and runs (SCRAM from the password file, replica set read from the secondary, globs)"
