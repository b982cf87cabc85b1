/* Requests to the API server, all through the host's shared HTTP client
 * (libcurl multi on the engine's loop): connection reuse, timeouts, and
 * retries with backoff on transport errors, 408, 429 and 5xx.
 *
 * Credentials per request: a static token; a token file read again every
 * minute (projected service-account tokens rotate); an exec plugin's token
 * or client certificate, cached until its expirationTimestamp. A 401 makes
 * the client fetch fresh credentials and try once more, as client-go does.
 *
 * Client certificates, insecure-skip-tls-verify and PATCH bodies (server-side
 * apply) need an HTTP client that has them: engine/host.h then defines
 * ENGINE_HTTP_EXT_MINOR, the ABI minor that added them, and the host must be
 * at least that. On an older engine client certificates and
 * insecure-skip-tls-verify are refused with a sentence that says so, and
 * restores create and replace objects instead of applying them (apply.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "k8s.h"

#define TOKEN_FILE_REFRESH_MS 60000
#define EXEC_EARLY_MS 10000 /* fetch a new exec credential this long before it expires */

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int k8s_client_init(struct k8s_client *c, const struct engine_host *h, struct k8s_creds *cr,
                    int64_t timeout_ms, int64_t connect_timeout_ms, int max_retries,
                    char **pass_env, size_t n_pass_env) {
  memset(c, 0, sizeof(*c));
  c->h = h;
  c->cr = *cr;
  memset(cr, 0, sizeof(*cr));
  cr->ca_fd = cr->cert_fd = cr->key_fd = -1;
  c->timeout_ms = timeout_ms;
  c->connect_timeout_ms = connect_timeout_ms;
  c->max_retries = max_retries;
  c->pass_env = pass_env;
  c->n_pass_env = n_pass_env;
  c->exec_cert_fd = c->exec_key_fd = -1;
  pthread_mutex_init(&c->mu, NULL);
#ifdef ENGINE_HTTP_EXT_MINOR
  c->can_patch = h->abi_minor >= ENGINE_HTTP_EXT_MINOR;
  c->can_client_cert = h->abi_minor >= ENGINE_HTTP_EXT_MINOR;
#endif
  const char *need = NULL;
  if (c->cr.cert_path && !c->can_client_cert)
    need = "client certificates";
  else if (c->cr.insecure && !c->can_client_cert)
    need = "insecure-skip-tls-verify";
  if (need) {
    h->set_error(h,
                 "%s: %s need an engine whose HTTP client supports them; this one does not "
                 "(plugin ABI %u.%u, or this plugin was built without them). Use a bearer token "
                 "or an exec plugin that prints one",
                 c->cr.origin, need, h->abi_major, h->abi_minor);
    return ENGINE_ERROR;
  }
  if (c->cr.tls_server_name) {
    h->set_error(h,
                 "%s: 'tls-server-name' is not supported; use a server URL whose host name "
                 "the certificate names",
                 c->cr.origin);
    return ENGINE_ERROR;
  }
  if (strncmp(c->cr.server, "http://", 7) == 0 && (c->cr.token || c->cr.token_file || c->cr.exec)) {
    h->set_error(h,
                 "%s: refusing to send credentials to the plain-HTTP server %s (kubectl does "
                 "not either); use https",
                 c->cr.origin, c->cr.server);
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

static void drop_exec_cert(struct k8s_client *c) {
  if (c->exec_cert_fd >= 0)
    close(c->exec_cert_fd);
  if (c->exec_key_fd >= 0)
    close(c->exec_key_fd);
  c->exec_cert_fd = c->exec_key_fd = -1;
  free(c->exec_cert_path);
  free(c->exec_key_path);
  c->exec_cert_path = c->exec_key_path = NULL;
}

void k8s_client_free(struct k8s_client *c) {
  if (!c->h)
    return;
  k8s_creds_free(&c->cr);
  k8s_wipe_free(c->token);
  k8s_exec_cred_free(&c->exec_cred);
  drop_exec_cert(c);
  pthread_mutex_destroy(&c->mu);
  memset(c, 0, sizeof(*c));
}

void k8s_resp_free(struct k8s_resp *r) {
  free(r->body);
  memset(r, 0, sizeof(*r));
}

static int read_token_file(struct k8s_client *c) {
  const struct engine_host *h = c->h;
  FILE *f = fopen(c->cr.token_file, "r");
  if (!f) {
    h->set_error(h, "unable to read the token file %s (%s): %s", c->cr.token_file, c->cr.origin,
                 strerror(errno));
    return ENGINE_ERROR;
  }
  char buf[16384];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
    buf[--n] = '\0';
  if (n == 0) {
    h->set_error(h, "the token file %s (%s) is empty", c->cr.token_file, c->cr.origin);
    return ENGINE_ERROR;
  }
  k8s_wipe_free(c->token);
  c->token = strdup(buf);
  explicit_bzero(buf, sizeof(buf));
  c->token_until_ms = h->now_ms(h) + TOKEN_FILE_REFRESH_MS;
  return c->token ? ENGINE_OK : ENGINE_ERROR;
}

static int run_exec(struct k8s_client *c) {
  const struct engine_host *h = c->h;
  k8s_exec_cred_free(&c->exec_cred);
  drop_exec_cert(c);
  k8s_wipe_free(c->token);
  c->token = NULL;
  if (k8s_exec_run(h, &c->cr, c->pass_env, c->n_pass_env, &c->exec_cred) != ENGINE_OK)
    return ENGINE_ERROR;
  if (c->exec_cred.cert_pem) {
    if (!c->can_client_cert) {
      h->set_error(h,
                   "the exec credential plugin '%s' gave a client certificate; this engine's "
                   "HTTP client cannot present one (plugin ABI 1.%u)",
                   c->cr.exec->command, h->abi_minor);
      return ENGINE_ERROR;
    }
    if (k8s_memfd(h, "client certificate", c->exec_cred.cert_pem, strlen(c->exec_cred.cert_pem),
                  &c->exec_cert_fd, &c->exec_cert_path) != ENGINE_OK ||
        k8s_memfd(h, "client key", c->exec_cred.key_pem, strlen(c->exec_cred.key_pem),
                  &c->exec_key_fd, &c->exec_key_path) != ENGINE_OK)
      return ENGINE_ERROR;
  }
  if (c->exec_cred.token) {
    c->token = strdup(c->exec_cred.token);
    if (!c->token) {
      h->set_error(h, "out of memory");
      return ENGINE_ERROR;
    }
  }
  return ENGINE_OK;
}

/* Make sure the credentials are current; fresh: fetch them again (after a
 * 401). Called with c->mu held. */
static int refresh(struct k8s_client *c, int fresh) {
  const struct engine_host *h = c->h;
  if (c->cr.exec) {
    int have = c->exec_cred.token || c->exec_cred.cert_pem;
    int expired = c->exec_cred.expires_ms && wall_ms() >= c->exec_cred.expires_ms - EXEC_EARLY_MS;
    if (!have || expired || fresh)
      return run_exec(c);
    return ENGINE_OK;
  }
  if (c->cr.token_file) {
    if (!c->token || fresh || h->now_ms(h) >= c->token_until_ms)
      return read_token_file(c);
    return ENGINE_OK;
  }
  if (c->cr.token && !c->token) {
    c->token = strdup(c->cr.token);
    if (!c->token) {
      h->set_error(h, "out of memory");
      return ENGINE_ERROR;
    }
  }
  return ENGINE_OK;
}

static const char *hint_for(const char *err) {
  if (strstr(err, "SSL certificate") || strstr(err, "peer certificate") ||
      strstr(err, "certificate verify") || strstr(err, "self-signed") || strstr(err, "self signed"))
    return "the server's certificate is not trusted: check certificate-authority / "
           "certificate-authority-data of the cluster";
  if (strstr(err, "SSL") || strstr(err, "TLS"))
    return "the TLS handshake failed";
  if (strstr(err, "onnect") || strstr(err, "resolve") || strstr(err, "imed out"))
    return "is the API server reachable from here?";
  return NULL;
}

int k8s_request(struct k8s_client *c, const char *method, const char *path, const char *ctype,
                const void *body, size_t len, int max_retries, struct k8s_resp *r) {
  const struct engine_host *h = c->h;
  memset(r, 0, sizeof(*r));
  char *url = k8s_strf("%s%s", c->cr.server, path);
  char *ct = ctype ? k8s_strf("Content-Type: %s", ctype) : NULL;
  if (!url || (ctype && !ct)) {
    free(url);
    free(ct);
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  const char *hdrs[] = {"Accept: application/json", "User-Agent: engine-k8s-yaml/1.0",
                        ct ? ct : NULL, NULL};
  int rc = ENGINE_ERROR;
  for (int attempt = 0; attempt < 2; attempt++) {
    pthread_mutex_lock(&c->mu);
    int cr_rc = refresh(c, attempt > 0);
    char *token = cr_rc == ENGINE_OK && c->token ? strdup(c->token) : NULL;
#ifdef ENGINE_HTTP_EXT_MINOR
    const char *cert = c->exec_cert_path ? c->exec_cert_path : c->cr.cert_path;
    const char *key = c->exec_key_path ? c->exec_key_path : c->cr.key_path;
#endif
    pthread_mutex_unlock(&c->mu);
    if (cr_rc != ENGINE_OK)
      break;
    struct engine_http_request req = {
        .struct_size = sizeof(req),
        .method = method,
        .url = url,
        .headers = hdrs,
        .body = body,
        .body_len = len,
        .bearer_token = token,
        .ca_bundle = c->cr.ca_path,
        .timeout_ms = c->timeout_ms,
        .connect_timeout_ms = c->connect_timeout_ms,
        .max_retries = max_retries >= 0 ? max_retries : c->max_retries,
        .retry_base_ms = 200,
        .max_body = 1024ull * 1024 * 1024,
    };
#ifdef ENGINE_HTTP_EXT_MINOR
    if (c->can_client_cert) {
      req.client_cert = cert;
      req.client_key = key;
      req.insecure = c->cr.insecure;
    }
#endif
    struct engine_http_response resp = {.struct_size = sizeof(resp)};
    int hr = h->http_request(h, &req, &resp);
    k8s_wipe_free(token);
    if (hr != ENGINE_OK) {
      const char *hint = hint_for(resp.error);
      snprintf(r->error, sizeof(r->error), "%s %s: no response after %d attempt%s: %s (%s%s%s)",
               method, url, resp.attempts, resp.attempts == 1 ? "" : "s", resp.error, c->cr.origin,
               hint ? "; " : "", hint ? hint : "");
      h->set_error(h, "%s", r->error);
      h->http_response_free(&resp);
      break;
    }
    r->status = resp.status;
    r->body = resp.body;
    r->len = resp.body_len;
    resp.body = NULL;
    h->http_response_free(&resp);
    rc = ENGINE_OK;
    if (r->status == 401 && attempt == 0 && (c->cr.exec || c->cr.token_file)) {
      k8s_resp_free(r);
      rc = ENGINE_ERROR;
      continue;
    }
    break;
  }
  free(url);
  free(ct);
  return rc;
}

static const char *status_text(long s) {
  switch (s) {
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 409:
    return "Conflict";
  case 410:
    return "Gone";
  case 415:
    return "Unsupported Media Type";
  case 422:
    return "Unprocessable Entity";
  case 429:
    return "Too Many Requests";
  case 500:
    return "Internal Server Error";
  case 503:
    return "Service Unavailable";
  default:
    return "";
  }
}

char *k8s_resp_reason(const struct k8s_resp *r) {
  json_t *j = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
  const char *msg = json_string_value(json_object_get(j, "message"));
  char *out;
  if (msg)
    out = k8s_strf("%ld %s: %s", r->status, status_text(r->status), msg);
  else if (r->len > 0 && r->len < 300)
    out = k8s_strf("%ld %s: %.*s", r->status, status_text(r->status), (int)r->len, r->body);
  else
    out = k8s_strf("%ld %s", r->status, status_text(r->status));
  json_decref(j);
  return out;
}

int k8s_fetch_json(struct k8s_client *c, const char *path, json_t **out, long *status, char **why) {
  struct k8s_resp r;
  *out = NULL;
  *why = NULL;
  if (status)
    *status = 0;
  if (k8s_request(c, "GET", path, NULL, NULL, 0, -1, &r) != ENGINE_OK) {
    /* no response (r.error), or no credentials: their message is set and *why
     * stays NULL so that nobody replaces it */
    *why = r.error[0] ? strdup(r.error) : NULL;
    return ENGINE_ERROR;
  }
  if (status)
    *status = r.status;
  if (r.status == 404) {
    k8s_resp_free(&r);
    return ENGINE_NOT_FOUND;
  }
  if (r.status < 200 || r.status > 299) {
    char *reason = k8s_resp_reason(&r);
    *why = k8s_strf("GET %s%s: %s%s", c->cr.server, path, reason ? reason : "error",
                    r.status == 401 ? " (the credentials were refused: check the token, "
                                      "certificate or exec plugin of the kubeconfig)"
                                    : "");
    free(reason);
    k8s_resp_free(&r);
    return ENGINE_ERROR;
  }
  json_error_t je;
  *out = json_loadb(r.body ? r.body : "", r.len, 0, &je);
  if (!*out)
    *why = k8s_strf("GET %s%s: the response is not JSON (%s, line %d)", c->cr.server, path, je.text,
                    je.line);
  k8s_resp_free(&r);
  return *out ? ENGINE_OK : ENGINE_ERROR;
}

int k8s_get_json(struct k8s_client *c, const char *path, const char *what, json_t **out,
                 long *status) {
  char *why = NULL;
  int rc = k8s_fetch_json(c, path, out, status, &why);
  if (rc == ENGINE_ERROR && why)
    c->h->set_error(c->h, "%s: %s", what, why);
  free(why);
  return rc;
}
