/* Exec credential plugins (client.authentication.k8s.io v1 and v1beta1), as
 * kubectl runs them: EKS (aws eks get-token, aws-iam-authenticator), GKE
 * (gke-gcloud-auth-plugin), AKS (kubelogin) and anything else that prints an
 * ExecCredential.
 *
 * The program runs through the host's spawn: it gets the allow-listed part of
 * the engine's environment (PATH, HOME, locale, TMPDIR ...), the env entries
 * of the kubeconfig, KUBERNETES_EXEC_INFO, and from the engine's environment
 * only the variables the cloud plugins read that hold no secret (below) plus
 * those the `exec_env` option names. Its stdout is read (at most 1 MiB) and
 * wiped after parsing; its stderr is quoted when it fails. */
#include <errno.h>
#include <fnmatch.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "k8s.h"

#define EXEC_MAX_OUT (1024 * 1024)
#define EXEC_TIMEOUT_MS 120000

extern char **environ;

/* Variables of the engine's environment handed to exec plugins without being
 * asked for: where the cloud CLIs find their configuration, never a secret. */
static const char *const default_pass[] = {
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_STS_REGIONAL_ENDPOINTS",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "CLOUDSDK_CONFIG",
    "CLOUDSDK_CORE_PROJECT",
    "CLOUDSDK_ACTIVE_CONFIG_NAME",
    "USE_GKE_GCLOUD_AUTH_PLUGIN",
    "AZURE_CONFIG_DIR",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "KUBECONFIG",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    NULL,
};

void k8s_exec_cred_free(struct k8s_exec_cred *c) {
  k8s_wipe_free(c->token);
  k8s_wipe_free(c->cert_pem);
  k8s_wipe_free(c->key_pem);
  memset(c, 0, sizeof(*c));
}

static char *b64encode(const char *s, size_t n) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
  if (!out)
    return NULL;
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    *o++ = tbl[(v >> 18) & 63];
    *o++ = tbl[(v >> 12) & 63];
    *o++ = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
    *o++ = i + 2 < n ? tbl[v & 63] : '=';
  }
  *o = '\0';
  return out;
}

/* RFC 3339 ("2024-05-01T10:00:00Z", fractions and offsets allowed) to ms
 * since the epoch; -1 when it is not one. */
static int64_t parse_rfc3339(const char *s) {
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  int n = 0;
  if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
             &tm.tm_min, &tm.tm_sec, &n) != 6)
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  const char *p = s + n;
  if (*p == '.')
    for (p++; *p >= '0' && *p <= '9'; p++)
      ;
  int64_t off = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int hh, mm;
    if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
      return -1;
    off = (int64_t)(hh * 3600 + mm * 60) * (*p == '-' ? -1 : 1);
    p += 6;
  } else {
    return -1;
  }
  if (*p)
    return -1;
  time_t t = timegm(&tm);
  return ((int64_t)t - off) * 1000;
}

/* Is the program there? (so a missing one gets a sentence with the install
 * hint, not a spawn error) */
static int find_program(const char *cmd) {
  if (strchr(cmd, '/'))
    return access(cmd, X_OK) == 0;
  const char *path = getenv("PATH");
  if (!path)
    path = "/usr/local/bin:/usr/bin:/bin";
  char *copy = strdup(path), *save = NULL;
  int found = 0;
  for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d && !found;
       d = strtok_r(NULL, ":", &save)) {
    char *p = k8s_strf("%s/%s", *d ? d : ".", cmd);
    found = p && access(p, X_OK) == 0;
    free(p);
  }
  free(copy);
  return found;
}

static int passed(const char *name, size_t nlen, char **pass_env, size_t n_pass) {
  for (size_t i = 0; default_pass[i]; i++)
    if (strlen(default_pass[i]) == nlen && memcmp(default_pass[i], name, nlen) == 0)
      return 1;
  char tmp[256];
  if (nlen >= sizeof(tmp))
    return 0;
  memcpy(tmp, name, nlen);
  tmp[nlen] = '\0';
  for (size_t i = 0; i < n_pass; i++)
    if (fnmatch(pass_env[i], tmp, 0) == 0)
      return 1;
  return 0;
}

static char *exec_info(const struct k8s_creds *cr) {
  json_t *spec = json_pack("{s:b}", "interactive", 0);
  if (cr->exec->provide_cluster_info) {
    json_t *cl = json_pack("{s:s}", "server", cr->server);
    if (cr->ca_data) {
      char *b = b64encode(cr->ca_data, strlen(cr->ca_data));
      json_object_set_new(cl, "certificate-authority-data", json_string(b ? b : ""));
      free(b);
    }
    if (cr->insecure)
      json_object_set_new(cl, "insecure-skip-tls-verify", json_true());
    if (cr->tls_server_name)
      json_object_set_new(cl, "tls-server-name", json_string(cr->tls_server_name));
    json_object_set_new(spec, "cluster", cl);
  }
  json_t *info = json_pack("{s:s, s:s, s:o}", "apiVersion", cr->exec->api_version, "kind",
                           "ExecCredential", "spec", spec);
  char *s = info ? json_dumps(info, JSON_COMPACT) : NULL;
  json_decref(info);
  return s;
}

/* Read the child's stdout (bounded in size and time). */
static int read_output(const struct engine_host *h, struct engine_child *ch, struct k8s_buf *out,
                       const char *cmd) {
  int64_t deadline = h->now_ms(h) + EXEC_TIMEOUT_MS;
  char tmp[8192];
  for (;;) {
    if (h->cancelled(h)) {
      h->set_error(h, "cancelled while the exec credential plugin '%s' ran", cmd);
      return ENGINE_ERROR;
    }
    if (h->now_ms(h) > deadline) {
      h->set_error(h, "the exec credential plugin '%s' did not finish within %d s", cmd,
                   EXEC_TIMEOUT_MS / 1000);
      return ENGINE_ERROR;
    }
    struct pollfd pfd = {.fd = ch->stdout_fd, .events = POLLIN};
    int pr = poll(&pfd, 1, 500);
    if (pr < 0 && errno != EINTR) {
      h->set_error(h, "exec credential plugin '%s': poll: %s", cmd, strerror(errno));
      return ENGINE_ERROR;
    }
    if (pr <= 0)
      continue;
    ssize_t n = read(ch->stdout_fd, tmp, sizeof(tmp));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      h->set_error(h, "exec credential plugin '%s': reading its output: %s", cmd, strerror(errno));
      return ENGINE_ERROR;
    }
    if (n == 0)
      return ENGINE_OK;
    k8s_buf_add(out, tmp, (size_t)n);
    explicit_bzero(tmp, sizeof(tmp));
    if (out->len > EXEC_MAX_OUT || out->oom) {
      h->set_error(h, "exec credential plugin '%s' printed more than 1 MiB", cmd);
      return ENGINE_ERROR;
    }
  }
}

static int parse_cred(const struct engine_host *h, const struct k8s_creds *cr, const char *text,
                      size_t len, struct k8s_exec_cred *out) {
  const char *cmd = cr->exec->command;
  json_error_t je;
  json_t *j = json_loadb(text, len, 0, &je);
  if (!j || !json_is_object(j)) {
    h->set_error(h, "exec credential plugin '%s' did not print an ExecCredential as JSON (%s)", cmd,
                 j ? "not an object" : je.text);
    json_decref(j);
    return ENGINE_ERROR;
  }
  const char *kind = json_string_value(json_object_get(j, "kind"));
  const char *api = json_string_value(json_object_get(j, "apiVersion"));
  json_t *st = json_object_get(j, "status");
  int rc = ENGINE_ERROR;
  if (!kind || strcmp(kind, "ExecCredential") != 0) {
    h->set_error(h, "exec credential plugin '%s' printed kind '%s', expected ExecCredential", cmd,
                 kind ? kind : "(none)");
  } else if (!api || strcmp(api, cr->exec->api_version) != 0) {
    h->set_error(h,
                 "exec credential plugin '%s' answered with apiVersion '%s', but the "
                 "kubeconfig asked for %s",
                 cmd, api ? api : "(none)", cr->exec->api_version);
  } else if (!json_is_object(st)) {
    h->set_error(h, "exec credential plugin '%s' printed an ExecCredential without status", cmd);
  } else {
    const char *tok = json_string_value(json_object_get(st, "token"));
    const char *cert = json_string_value(json_object_get(st, "clientCertificateData"));
    const char *key = json_string_value(json_object_get(st, "clientKeyData"));
    const char *exp = json_string_value(json_object_get(st, "expirationTimestamp"));
    if (!tok && !(cert && key)) {
      h->set_error(h,
                   "exec credential plugin '%s' gave neither a token nor a client certificate "
                   "and key",
                   cmd);
    } else if (exp && parse_rfc3339(exp) < 0) {
      h->set_error(h,
                   "exec credential plugin '%s': expirationTimestamp '%s' is not an RFC 3339 "
                   "time",
                   cmd, exp);
    } else {
      out->token = tok ? strdup(tok) : NULL;
      out->cert_pem = cert ? strdup(cert) : NULL;
      out->key_pem = key ? strdup(key) : NULL;
      out->expires_ms = exp ? parse_rfc3339(exp) : 0;
      rc = ENGINE_OK;
    }
  }
  /* the token's text inside the parsed document */
  json_t *t = json_object_get(st, "token");
  if (json_is_string(t)) {
    char *p = (char *)json_string_value(t);
    explicit_bzero(p, strlen(p));
  }
  json_decref(j);
  return rc;
}

int k8s_exec_run(const struct engine_host *h, const struct k8s_creds *cr, char **pass_env,
                 size_t n_pass_env, struct k8s_exec_cred *out) {
  const struct k8s_exec *e = cr->exec;
  memset(out, 0, sizeof(*out));
  if (e->interactive_always) {
    h->set_error(h,
                 "the exec credential plugin '%s' (%s) needs a terminal (interactiveMode: "
                 "Always); a backup cannot answer its prompts",
                 e->command, cr->origin);
    return ENGINE_ERROR;
  }
  if (!find_program(e->command)) {
    h->set_error(h, "the exec credential plugin '%s' of %s was not found%s%s%s", e->command,
                 cr->origin, strchr(e->command, '/') ? "" : " in PATH", e->install_hint ? ": " : "",
                 e->install_hint ? e->install_hint : "");
    return ENGINE_ERROR;
  }
  /* the environment: the kubeconfig's entries, the exec info, chosen variables */
  size_t nkc = 0;
  while (e->env && e->env[nkc])
    nkc++;
  size_t nenv = 0;
  while (environ && environ[nenv])
    nenv++;
  char **env = calloc(nkc + nenv + 2, sizeof(char *));
  char *info = exec_info(cr);
  char *info_var = info ? k8s_strf("KUBERNETES_EXEC_INFO=%s", info) : NULL;
  free(info);
  if (!env || !info_var) {
    free(env);
    free(info_var);
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  size_t ne = 0;
  for (size_t i = 0; i < nenv; i++) {
    const char *eq = strchr(environ[i], '=');
    if (eq && passed(environ[i], (size_t)(eq - environ[i]), pass_env, n_pass_env))
      env[ne++] = environ[i];
  }
  for (size_t i = 0; i < nkc; i++) /* later entries win: the kubeconfig's over the engine's */
    env[ne++] = e->env[i];
  env[ne++] = info_var;
  env[ne] = NULL;
  struct engine_spawn_opts o = {
      .struct_size = sizeof(o),
      .file = e->command,
      .argv = (const char *const *)e->argv,
      .env = (const char *const *)env,
      .stdin_mode = ENGINE_STDIO_NULL,
      .stdout_mode = ENGINE_STDIO_PIPE,
      .stderr_mode = ENGINE_STDIO_PIPE,
  };
  struct engine_child *ch = NULL;
  int rc = h->spawn(h, &o, &ch);
  free(env);
  free(info_var);
  if (rc != ENGINE_OK)
    return ENGINE_ERROR;
  struct k8s_buf buf = {0};
  rc = read_output(h, ch, &buf, e->command);
  if (rc != ENGINE_OK)
    h->child_kill(h, ch, SIGKILL);
  close(ch->stdout_fd);
  ch->stdout_fd = -1;
  int status = 0;
  if (h->child_wait(h, ch, &status) != ENGINE_OK && rc == ENGINE_OK) {
    h->set_error(h, "exec credential plugin '%s': unable to wait for it", e->command);
    rc = ENGINE_ERROR;
  }
  if (rc == ENGINE_OK && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    const char *err = h->child_stderr(h, ch);
    size_t el = err ? strlen(err) : 0;
    if (WIFEXITED(status))
      h->set_error(h, "the exec credential plugin '%s' of %s exited with status %d%s%s", e->command,
                   cr->origin, WEXITSTATUS(status), el ? ": " : "",
                   el > 1500 ? err + el - 1500 : (el ? err : ""));
    else
      h->set_error(h, "the exec credential plugin '%s' of %s was killed by signal %d", e->command,
                   cr->origin, WTERMSIG(status));
    rc = ENGINE_ERROR;
  }
  h->child_free(h, ch);
  if (rc == ENGINE_OK)
    rc = parse_cred(h, cr, buf.p ? buf.p : "", buf.len, out);
  if (buf.p)
    explicit_bzero(buf.p, buf.len);
  k8s_buf_free(&buf);
  return rc;
}
