# shellcheck shell=bash
# Helpers of the k8s-yaml tests (sourced after lib.sh, never run).
#
#   k8s_certs                 $T/certs: a CA, the server's and a client
#                             certificate, and an unrelated CA (other-ca.crt)
#   k8s_start NAME [ARGS...]  tests/servers/k8s_fixture.py serve ARGS on a free
#                             port, output in $T/NAME.log; sets K8S_PORT and
#                             K8S_URL (https:// with --tls, else http://);
#                             stopped when the test exits
#   k8s_ctl URL [-X POST] PATH
#                             a control request (/__fixture/...) to the
#                             fixture at URL, the answer on stdout
#   k8s_kubeconfig FILE URL KIND [ARG]
#                             a kubeconfig for URL (CA as data) whose user is
#                             KIND: token T, tokenfile PATH, exec PROGRAM,
#                             cert (the client certificate of $T/certs), none
#   k8s_pipeline FILE NAME REPO KUBECONFIG [WITH-LINE...]
#                             a k8s-yaml -> local pipeline (KUBECONFIG -: no
#                             kubeconfig option); each WITH-LINE is added under
#                             `with:` ("include_secrets: true")
#   KUBECTL                   kubectl ($KUBECTL, else kubectl on the PATH)
#   K8S_TOKEN                 the bearer token the fixtures accept

K8S_FIXTURE="$REPO_ROOT/tests/servers/k8s_fixture.py"
K8S_CHECK="$TESTS_INTEGRATION_DIR/k8s_check.py"
K8S_TOKEN=fixture-token-7c1d9e
KUBECTL=${KUBECTL:-kubectl}

k8s_require_clients() {
  command -v "$KUBECTL" >/dev/null 2>&1 ||
    fail "kubectl is required (apt-get install kubernetes-client; scripts/setup-deps.sh does)"
  "$PYTHON" -c 'import yaml' 2>/dev/null || fail "python3-yaml is required"
}

k8s_certs() {
  [ -f "$T/certs/ca.crt" ] && return 0
  "$PYTHON" "$K8S_FIXTURE" certs "$T/certs" >"$T/certs.log" 2>&1 || {
    show "$T/certs.log"
    fail "unable to make the fixture's certificates with openssl"
  }
}

K8S_PIDS=()
k8s_start() {
  local name=$1
  shift
  local tls=0 a
  for a in "$@"; do [ "$a" = --tls ] && tls=1; done
  rm -f "$T/$name.port"
  "$PYTHON" "$K8S_FIXTURE" serve --port-file "$T/$name.port" --log "$T/$name.log" "$@" \
    >>"$T/$name.log" 2>&1 &
  local pid=$!
  [ ${#K8S_PIDS[@]} -gt 0 ] || at_exit _k8s_stop_all
  K8S_PIDS+=("$pid")
  local i
  for i in $(seq 1 100); do
    [ -s "$T/$name.port" ] && break
    kill -0 "$pid" 2>/dev/null || { show "$T/$name.log"; fail "the k8s fixture ($name) exited at start"; }
    sleep 0.1
  done
  [ -s "$T/$name.port" ] || { show "$T/$name.log"; fail "the k8s fixture ($name) did not start"; }
  K8S_PORT=$(cat "$T/$name.port")
  if [ "$tls" = 1 ]; then K8S_URL=https://127.0.0.1:$K8S_PORT; else K8S_URL=http://127.0.0.1:$K8S_PORT; fi
}
_k8s_stop_all() {
  local p
  for p in "${K8S_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${K8S_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}

k8s_ctl() {
  local url=$1
  shift
  local args=()
  if [ "${1:-}" = -X ]; then
    args=(-X "$2")
    shift 2
  fi
  [ -f "$T/certs/ca.crt" ] && args+=(--cacert "$T/certs/ca.crt")
  curl -sf "${args[@]}" "$url$1" || fail "fixture control request $1 to $url failed"
}

k8s_kubeconfig() {
  local file=$1 url=$2 kind=$3 arg=${4:-}
  local ca=""
  [ -f "$T/certs/ca.crt" ] && ca=$(base64 -w0 <"$T/certs/ca.crt")
  {
    echo "apiVersion: v1"
    echo "kind: Config"
    echo "clusters:"
    echo "- name: fixture"
    echo "  cluster:"
    echo "    server: $url"
    [ -n "$ca" ] && [ "${url#https}" != "$url" ] && echo "    certificate-authority-data: $ca"
    echo "contexts:"
    echo "- name: fixture"
    echo "  context:"
    echo "    cluster: fixture"
    echo "    user: tester"
    echo "    namespace: shop"
    echo "current-context: fixture"
    echo "users:"
    echo "- name: tester"
    echo "  user:"
    case $kind in
    token) echo "    token: $arg" ;;
    tokenfile) echo "    tokenFile: $arg" ;;
    exec)
      echo "    exec:"
      echo "      apiVersion: client.authentication.k8s.io/v1"
      echo "      command: $arg"
      echo "      args: [--cluster, fixture]"
      echo "      env: [{name: FIXTURE_EXEC_MODE, value: token}]"
      echo "      installHint: install the fixture's credential helper"
      echo "      provideClusterInfo: true"
      echo "      interactiveMode: Never"
      ;;
    cert)
      echo "    client-certificate-data: $(base64 -w0 <"$T/certs/client.crt")"
      echo "    client-key-data: $(base64 -w0 <"$T/certs/client.key")"
      ;;
    none) echo "    {}" ;;
    *) fail "k8s_kubeconfig: unknown user kind $kind" ;;
    esac
  } >"$file"
  chmod 600 "$file"
}

k8s_pipeline() {
  local file=$1 name=$2 repo=$3 kc=$4
  shift 4
  {
    echo "version: 1"
    echo "name: $name"
    echo "sources:"
    echo "  - name: cluster"
    echo "    type: k8s-yaml"
    echo "    with:"
    [ "$kc" = - ] || echo "      kubeconfig: $(yq "$kc")"
    local l
    for l in "$@"; do echo "      $l"; done
    echo "stages:"
    echo "  compress: {algorithm: zstd, level: 3}"
    echo "  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}"
    echo "sinks:"
    echo "  - name: local"
    echo "    type: local"
    echo "    with:"
    echo "      path: $(yq "$repo")"
    echo "      fsync: false"
  } >"$file"
}

# k8s_engine_has_http_ext: does this engine's HTTP client present client
# certificates and send PATCH bodies (ENGINE_HTTP_EXT_MINOR in engine/host.h)?
k8s_engine_has_http_ext() {
  grep -q ENGINE_HTTP_EXT_MINOR "$REPO_ROOT/include/engine/host.h"
}
