#!/usr/bin/env bash
# k8s-yaml credentials, resolved as kubectl resolves them, against the
# fixture API server over TLS (tests/servers/k8s_fixture.py):
#   - a bearer token; a tokenFile; $KUBECONFIG as a list of files merged (the
#     context and cluster in one, the user in the other);
#   - an exec credential plugin (a script printing an ExecCredential): run
#     once per backup while its token is valid, run again after a 401, given
#     KUBERNETES_EXEC_INFO with the cluster, the kubeconfig's env and the
#     non-secret cloud variables, never the engine's secrets;
#   - the in-cluster service account (token, ca.crt and namespace files,
#     KUBERNETES_SERVICE_HOST/PORT), with no kubeconfig anywhere;
#   - a client certificate and insecure-skip-tls-verify (when this engine's
#     HTTP client can do them, ENGINE_HTTP_EXT_MINOR; otherwise the refusal
#     says so);
#   - clear errors: malformed kubeconfig (path:line:col), a missing user,
#     an unknown context, an untrusted server certificate, an exec plugin that
#     is missing or fails, a refused token, an unreachable server (bounded
#     time), a token for a plain-http server.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$TESTS_INTEGRATION_DIR/k8s_helpers.sh"

k8s_certs
k8s_start main --tls "$T/certs" --token "$K8S_TOKEN" --client-ca
MAIN=$K8S_URL

# backup_ok NAME KUBECONFIG [WITH-LINE...]: a backup that must succeed and hold
# the shop's Deployment
backup_ok() {
  local name=$1 kc=$2
  shift 2
  k8s_pipeline "$T/$name.yml" "$name" "$T/repo-$name" "$kc" "namespaces: [shop]" "$@"
  run_ok "$T/$name.out" "$T/$name.err" -v run "$T/$name.yml"
  run_ok "$T/$name.r.out" "$T/$name.r.err" restore "$T/$name.yml" latest --target "$T/out-$name"
  [ -f "$T/out-$name/shop/deployments.apps/web.yaml" ] || fail "$name: the backup lacks shop's Deployment"
}
# backup_fails NAME KUBECONFIG NEEDLE [WITH-LINE...]: a backup that must fail
# with a message containing NEEDLE
backup_fails() {
  local name=$1 kc=$2 needle=$3
  shift 3
  k8s_pipeline "$T/$name.yml" "$name" "$T/repo-$name" "$kc" "$@"
  run_engine "$T/$name.out" "$T/$name.err" run "$T/$name.yml"
  [ "$RC" -ne 0 ] || fail "$name: the backup succeeded"
  assert_contains "$T/$name.err" "$needle" "$name: the error message"
}

note "bearer token, token file"
k8s_kubeconfig "$T/kc-token" "$MAIN" token "$K8S_TOKEN"
backup_ok token "$T/kc-token"
printf '%s\n' "$K8S_TOKEN" >"$T/token"
k8s_kubeconfig "$T/kc-tokenfile" "$MAIN" tokenfile "$T/token"
backup_ok tokenfile "$T/kc-tokenfile"
echo wrong-token >"$T/token-bad"
k8s_kubeconfig "$T/kc-bad" "$MAIN" tokenfile "$T/token-bad"
backup_fails badtoken "$T/kc-bad" "401 Unauthorized"
assert_contains "$T/badtoken.err" "credentials were refused" "401 hint"
assert_not_contains "$T/badtoken.err" "wrong-token" "the refused token in the message"

note "KUBECONFIG: two files merged (cluster and context in one, the user in the other)"
head -n "$(grep -n '^users:' "$T/kc-token" | cut -d: -f1)" "$T/kc-token" | sed '$d' >"$T/kc-a"
{ echo "apiVersion: v1"; echo "kind: Config"; sed -n '/^users:/,$p' "$T/kc-token"; } >"$T/kc-b"
KUBECONFIG="$T/missing-file:$T/kc-a:$T/kc-b" backup_ok merged -
assert_contains "$T/merged.err" "context 'fixture' of $T/kc-a" "where the context came from"

note "exec credential plugin"
mkdir -p "$T/bin"
cat >"$T/bin/fixture-cred" <<EOF
#!/usr/bin/env bash
# counts its runs, records its environment, prints an ExecCredential
n=\$(( \$(cat "$T/exec.count" 2>/dev/null || echo 0) + 1 ))
echo \$n >"$T/exec.count"
env >"$T/exec.env.\$n"
echo "\$*" >"$T/exec.args"
case \${FIXTURE_EXEC_MODE:-} in
  fail) echo "error: the SSO session has expired; run 'aws sso login'" >&2; exit 2 ;;
  first-wrong) tok=\$([ \$n = 1 ] && echo stale-token || echo "$K8S_TOKEN") ;;
  *) tok="$K8S_TOKEN" ;;
esac
exp=\$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}\n' "\$tok" "\$exp"
EOF
chmod +x "$T/bin/fixture-cred"
k8s_kubeconfig "$T/kc-exec" "$MAIN" exec "$T/bin/fixture-cred"
AWS_PROFILE=backup-profile SOME_SECRET=must-not-leak backup_ok exec "$T/kc-exec"
assert_eq 1 "$(cat "$T/exec.count")" "exec plugin runs in one backup (cached until it expires)"
assert_eq "--cluster fixture" "$(cat "$T/exec.args")" "the exec plugin's arguments"
env1="$T/exec.env.1"
grep -q '^FIXTURE_EXEC_MODE=token$' "$env1" || fail "the kubeconfig's exec env did not reach the plugin"
grep -q '^AWS_PROFILE=backup-profile$' "$env1" || fail "AWS_PROFILE did not reach the exec plugin"
grep -q '^KUBERNETES_EXEC_INFO=.*"kind":"ExecCredential".*"server":"https://127.0.0.1' "$env1" ||
  fail "KUBERNETES_EXEC_INFO lacks the cluster (provideClusterInfo)"
grep -q 'must-not-leak\|ENGINE_PASSPHRASE\|integration-test-passphrase' "$env1" &&
  fail "the engine's secrets reached the exec plugin"
# a stale token first: the 401 makes the client run the plugin again
rm -f "$T/exec.count"
sed -i 's/value: token}/value: first-wrong}/' "$T/kc-exec"
backup_ok exec2 "$T/kc-exec"
assert_eq 2 "$(cat "$T/exec.count")" "exec plugin runs after a 401"
sed -i 's/value: first-wrong}/value: fail}/' "$T/kc-exec"
backup_fails execfail "$T/kc-exec" "exited with status 2: error: the SSO session has expired"
k8s_kubeconfig "$T/kc-nocmd" "$MAIN" exec no-such-credential-helper
backup_fails execmissing "$T/kc-nocmd" "'no-such-credential-helper' of context 'fixture'"
assert_contains "$T/execmissing.err" "install the fixture's credential helper" "the install hint"

note "in-cluster service account"
mkdir -p "$T/sa" "$T/emptyhome"
printf '%s' "$K8S_TOKEN" >"$T/sa/token"
cp "$T/certs/ca.crt" "$T/sa/ca.crt"
echo shop >"$T/sa/namespace"
k8s_pipeline "$T/incluster.yml" incluster "$T/repo-incluster" - "service_account_dir: $T/sa" "namespaces: [shop]"
HOME=$T/emptyhome KUBECONFIG='' KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$K8S_PORT \
  run_ok "$T/incluster.out" "$T/incluster.err" -v run "$T/incluster.yml"
assert_contains "$T/incluster.err" "in-cluster service account" "the credentials used"
HOME=$T/emptyhome KUBECONFIG='' run_engine "$T/nocreds.out" "$T/nocreds.err" run "$T/incluster.yml"
assert_contains "$T/nocreds.err" "no Kubernetes credentials" "no kubeconfig and not in a cluster"

note "client certificate, insecure-skip-tls-verify"
k8s_kubeconfig "$T/kc-cert" "$MAIN" cert
# insecure-skip-tls-verify instead of the CA
sed 's|certificate-authority-data: .*|insecure-skip-tls-verify: true|' "$T/kc-token" >"$T/kc-insecure"
if k8s_engine_has_http_ext; then
  backup_ok cert "$T/kc-cert"
  backup_ok insecure "$T/kc-insecure"
else
  backup_fails cert "$T/kc-cert" "client certificates need an engine whose HTTP client supports them"
  backup_fails insecure "$T/kc-insecure" "insecure-skip-tls-verify need an engine whose HTTP client"
fi

note "errors"
k8s_kubeconfig "$T/kc-broken" "$MAIN" token "$K8S_TOKEN"
sed -i 's/^contexts:$/contexts: [unclosed/' "$T/kc-broken"
backup_fails broken "$T/kc-broken" "$T/kc-broken:"
assert_contains "$T/broken.err" "the kubeconfig is not valid YAML" "a malformed kubeconfig"
k8s_kubeconfig "$T/kc-nouser" "$MAIN" token "$K8S_TOKEN"
sed -i 's/^    user: tester$/    user: somebody/' "$T/kc-nouser"
backup_fails nouser "$T/kc-nouser" "$T/kc-nouser:12: context 'fixture' names user 'somebody', which no kubeconfig file defines"
backup_fails noctx "$T/kc-token" "context 'staging' is not in $T/kc-token (contexts there: fixture)" "context: staging"
sed "s|certificate-authority-data: .*|certificate-authority-data: $(base64 -w0 <"$T/certs/other-ca.crt")|" \
  "$T/kc-token" >"$T/kc-otherca"
backup_fails untrusted "$T/kc-otherca" "the server's certificate is not trusted"
port=$(free_port)
k8s_kubeconfig "$T/kc-down" "https://127.0.0.1:$port" token "$K8S_TOKEN"
start=$(date +%s)
backup_fails down "$T/kc-down" "is the API server reachable from here?" "max_retries: 2" "connect_timeout: 2s"
took=$(($(date +%s) - start))
note "an unreachable server failed after $took s"
[ "$took" -lt 20 ] || fail "an unreachable server took $took s to fail"
k8s_start plain --token "$K8S_TOKEN"
k8s_kubeconfig "$T/kc-plain" "$K8S_URL" token "$K8S_TOKEN"
backup_fails plain "$T/kc-plain" "refusing to send credentials to the plain-HTTP server"
for f in "$T"/*.err; do
  assert_not_contains "$f" "$K8S_TOKEN" "the token in the engine's output ($f)"
done

note "ok"
