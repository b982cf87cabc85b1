/* Connections (one single-threaded libmongoc client pinned to one server),
 * error messages that name the server and the cause, mongodump's naming of
 * files, the documents' digest and small helpers. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "mongo.h"

char *mg_strdupf(const char *fmt, ...) {
  char *s = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&s, fmt, ap) < 0)
    s = NULL;
  va_end(ap);
  return s;
}

int mg_write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

char *mg_json_dump(json_t *j) {
  return j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
}

char *mg_ext_json(const bson_t *b) {
  return bson_as_canonical_extended_json(b, NULL);
}

char *mg_printable(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(n * 4 + 1);
  if (out == NULL)
    return NULL;
  char *o = out;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p < 0x20 || *p == 0x7f) {
      static const char hex[] = "0123456789abcdef";
      *o++ = '\\';
      *o++ = 'x';
      *o++ = hex[*p >> 4];
      *o++ = hex[*p & 15];
    } else {
      *o++ = (char)*p;
    }
  }
  *o = '\0';
  return out;
}

/* ---- mongodump's names ------------------------------------------------------ */

/* Go's url.PathEscape (shouldEscape with encodePathSegment). */
static int path_unreserved(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return 1;
  return strchr("-_.~$&+:=@", c) != NULL && c != '\0';
}

char *mg_escape(const char *name) {
  size_t n = strlen(name);
  char *out = malloc(n * 3 + 1);
  if (out == NULL)
    return NULL;
  static const char hex[] = "0123456789ABCDEF";
  char *o = out;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
    if (path_unreserved(*p)) {
      *o++ = (char)*p;
    } else {
      *o++ = '%';
      *o++ = hex[*p >> 4];
      *o++ = hex[*p & 15];
    }
  }
  *o = '\0';
  return out;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

char *mg_unescape(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(n + 1);
  if (out == NULL)
    return NULL;
  char *o = out;
  for (const char *p = s; *p; p++) {
    if (*p != '%') {
      *o++ = *p;
      continue;
    }
    int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
      free(out);
      return NULL;
    }
    *o++ = (char)(hi << 4 | lo);
    p += 2;
  }
  *o = '\0';
  return out;
}

char *mg_dir_stem(const char *escaped, const char *coll) {
  size_t n = strlen(escaped);
  if (n <= 238)
    return strdup(escaped);
  /* first 208 bytes, "%24", base64url (no padding) of the name's SHA-1 */
  unsigned char sha[20];
  unsigned int sl = 0;
  if (EVP_Digest(coll, strlen(coll), sha, &sl, EVP_sha1(), NULL) != 1 || sl != 20)
    return NULL;
  unsigned char b64[32];
  int bl = EVP_EncodeBlock(b64, sha, 20); /* 28 with one '=' */
  while (bl > 0 && b64[bl - 1] == '=')
    bl--;
  for (int i = 0; i < bl; i++)
    b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
  return mg_strdupf("%.208s%%24%.*s", escaped, bl, (const char *)b64);
}

int mg_valid_db_name(const char *db) {
  size_t n = strlen(db);
  if (n == 0 || n >= 64)
    return 0;
  return strpbrk(db, "/\\. \"$") == NULL;
}

int mg_valid_coll_name(const char *coll) {
  if (coll[0] == '\0' || coll[0] == '.' || strlen(coll) > 255)
    return 0;
  return strchr(coll, '$') == NULL;
}

/* ---- digest ------------------------------------------------------------------ */

int mg_digest_init(struct mg_digest *d) {
  memset(d, 0, sizeof(*d));
  d->md = EVP_MD_fetch(NULL, "SHA256", NULL);
  d->ctx = EVP_MD_CTX_new();
  if (d->md == NULL || d->ctx == NULL) {
    mg_digest_free(d);
    return -1;
  }
  return 0;
}

int mg_digest_add(struct mg_digest *d, const uint8_t *doc, size_t len) {
  unsigned char h[32];
  if (EVP_DigestInit_ex(d->ctx, d->md, NULL) != 1 || EVP_DigestUpdate(d->ctx, doc, len) != 1 ||
      EVP_DigestFinal_ex(d->ctx, h, NULL) != 1)
    return -1;
  /* h as a big-endian 256-bit number added to the sum */
  unsigned carry = 0;
  for (int l = 0; l < 4; l++) {
    uint64_t v = 0;
    for (int k = 0; k < 8; k++)
      v = v << 8 | h[31 - (l * 8 + 7 - k)];
    uint64_t s = d->limb[l] + v;
    unsigned c1 = s < v;
    uint64_t s2 = s + carry;
    unsigned c2 = s2 < s;
    d->limb[l] = s2;
    carry = c1 | c2;
  }
  return 0;
}

void mg_digest_text(const struct mg_digest *d, char out[80]) {
  int n = snprintf(out, 80, "sha256-sum:");
  for (int l = 3; l >= 0; l--)
    n += snprintf(out + n, (size_t)(80 - n), "%016llx", (unsigned long long)d->limb[l]);
}

void mg_digest_free(struct mg_digest *d) {
  EVP_MD_CTX_free(d->ctx);
  EVP_MD_free(d->md);
  d->ctx = NULL;
  d->md = NULL;
}

/* ---- connections ---------------------------------------------------------------- */

static char *uri_hosts(const mongoc_uri_t *u) {
  const char *srv = mongoc_uri_get_srv_hostname(u);
  if (srv != NULL)
    return mg_strdupf("mongodb+srv://%s", srv);
  size_t cap = 1, len = 0;
  for (const mongoc_host_list_t *h = mongoc_uri_get_hosts(u); h; h = h->next)
    cap += strlen(h->host_and_port) + 1;
  char *s = calloc(1, cap);
  if (s == NULL)
    return NULL;
  for (const mongoc_host_list_t *h = mongoc_uri_get_hosts(u); h; h = h->next)
    len += (size_t)snprintf(s + len, cap - len, "%s%s", len ? "," : "", h->host_and_port);
  return s;
}

int mg_is_server_error(const bson_error_t *e) {
  return e->domain == MONGOC_ERROR_SERVER || e->domain == MONGOC_ERROR_WRITE_CONCERN;
}

static int contains_ci(const char *s, const char *needle) {
  return strcasestr(s, needle) != NULL;
}

char *mg_error_text(const struct mg_conn *c, const bson_error_t *e) {
  const char *hosts = c && c->hosts ? c->hosts : "the server";
  const char *user = c && c->uri ? mongoc_uri_get_username(c->uri) : NULL;
  int tls = c && c->uri && mongoc_uri_get_tls(c->uri);
  const char *m = e->message;
  if ((e->domain == MONGOC_ERROR_CLIENT && e->code == MONGOC_ERROR_CLIENT_AUTHENTICATE) ||
      (e->domain == MONGOC_ERROR_SERVER && e->code == 18) ||
      (e->domain == MONGOC_ERROR_SERVER_SELECTION && contains_ci(m, "authenticat")))
    return mg_strdupf("authentication failed for user '%s' on %s; check the user, the password "
                      "(option 'password') and authSource (%s)",
                      user ? user : "(none)", hosts, m);
  if (e->domain == MONGOC_ERROR_SERVER_SELECTION || e->domain == MONGOC_ERROR_STREAM) {
    if (tls || contains_ci(m, "TLS") || contains_ci(m, "SSL") || contains_ci(m, "certificate"))
      return mg_strdupf("TLS connection to %s failed: %s; check tls_ca_file and tls_cert_key_file, "
                        "and that the server speaks TLS",
                        hosts, m);
    if (e->domain == MONGOC_ERROR_SERVER_SELECTION) {
      double s = c && c->in ? (double)c->in->timeout_ms / 1000.0 : 0;
      return mg_strdupf("unable to reach MongoDB at %s within %g s (option 'timeout', or "
                        "serverSelectionTimeoutMS/connectTimeoutMS in the uri): %s",
                        hosts, s, m);
    }
    return mg_strdupf("the connection to MongoDB at %s failed: %s", hosts, m);
  }
  if (e->domain == MONGOC_ERROR_SERVER && e->code == 13)
    return mg_strdupf("not authorized on %s: %s (the backup needs the 'backup' role, a restore "
                      "the 'restore' role)",
                      hosts, m);
  if (mg_is_server_error(e))
    return mg_strdupf("%s (server error %u)", m, e->code);
  return strdup(m);
}

/* The configured uri, resolved when it is a secret reference; wiped by the
 * caller. */
static char *configured_uri(struct mg_inst *in) {
  const struct engine_host *h = in->host;
  if (!in->uri_is_secret)
    return strdup(in->uri);
  char *s = NULL;
  size_t n = 0;
  if (h->secret(h, "uri", &s, &n) != ENGINE_OK)
    return NULL;
  char *copy = strdup(s);
  h->secret_free(s, n);
  if (copy == NULL)
    h->set_error(h, "out of memory");
  return copy;
}

static void wipe_free(char *s) {
  if (s != NULL) {
    explicit_bzero(s, strlen(s));
    free(s);
  }
}

static mongoc_uri_t *parse_uri(struct mg_inst *in, char *text, const char *what) {
  const struct engine_host *h = in->host;
  bson_error_t e;
  mongoc_uri_t *u = mongoc_uri_new_with_error(text, &e);
  if (u == NULL)
    h->set_error(h,
                 "%s is not a valid MongoDB connection string (mongodb://HOST[:PORT]/... or "
                 "mongodb+srv://HOST/...)%s%s",
                 what, strchr(text, '@') ? "" : ": ", strchr(text, '@') ? "" : e.message);
  return u;
}

/* Credentials: the configured uri's user (and its password, when the uri is
 * a secret), else the `password` option. A --target uri without a user
 * takes the configured user, authSource and mechanism. */
static int set_credentials(struct mg_inst *in, mongoc_uri_t *u, const char *override) {
  const struct engine_host *h = in->host;
  if (override != NULL) {
    if (mongoc_uri_get_password(u) != NULL) {
      h->set_error(h, "--target contains a password, which would be visible to every user of "
                      "this machine (ps): give the target without it; the pipeline's user and "
                      "'password' option are used");
      return ENGINE_ERROR;
    }
    if (mongoc_uri_get_username(u) == NULL) {
      char *text = configured_uri(in);
      if (text == NULL)
        return ENGINE_ERROR;
      mongoc_uri_t *cu = parse_uri(in, text, "option 'uri'");
      wipe_free(text);
      if (cu == NULL)
        return ENGINE_ERROR;
      int ok = 1;
      if (mongoc_uri_get_username(cu) != NULL) {
        ok &= mongoc_uri_set_username(u, mongoc_uri_get_username(cu));
        if (mongoc_uri_get_password(cu) != NULL)
          ok &= mongoc_uri_set_password(u, mongoc_uri_get_password(cu));
        if (mongoc_uri_get_auth_source(cu) != NULL)
          ok &= mongoc_uri_set_auth_source(u, mongoc_uri_get_auth_source(cu));
        if (mongoc_uri_get_auth_mechanism(cu) != NULL)
          ok &= mongoc_uri_set_auth_mechanism(u, mongoc_uri_get_auth_mechanism(cu));
      }
      mongoc_uri_destroy(cu);
      if (!ok) {
        h->set_error(h, "unable to apply the pipeline's credentials to --target");
        return ENGINE_ERROR;
      }
    }
  }
  if (mongoc_uri_get_username(u) != NULL && mongoc_uri_get_password(u) == NULL &&
      in->have_password) {
    char *pw = NULL;
    size_t n = 0;
    if (h->secret(h, "password", &pw, &n) != ENGINE_OK)
      return ENGINE_ERROR;
    int ok = mongoc_uri_set_password(u, pw);
    h->secret_free(pw, n);
    if (!ok) {
      h->set_error(h, "option 'password': the password is not valid UTF-8");
      return ENGINE_ERROR;
    }
  }
  return ENGINE_OK;
}

static int set_tls(struct mg_inst *in, mongoc_uri_t *u) {
  const struct engine_host *h = in->host;
  const char *files[2] = {in->tls_ca_file, in->tls_cert_key_file};
  const char *opts[2] = {"tls_ca_file", "tls_cert_key_file"};
  const char *keys[2] = {MONGOC_URI_TLSCAFILE, MONGOC_URI_TLSCERTIFICATEKEYFILE};
  for (int i = 0; i < 2; i++) {
    if (files[i] == NULL)
      continue;
    if (access(files[i], R_OK) != 0) {
      h->set_error(h, "option '%s': unable to read '%s': %s", opts[i], files[i], strerror(errno));
      return ENGINE_ERROR;
    }
    if (!mongoc_uri_set_option_as_bool(u, MONGOC_URI_TLS, true) ||
        !mongoc_uri_set_option_as_utf8(u, keys[i], files[i])) {
      h->set_error(h, "option '%s': unable to set it on the connection", opts[i]);
      return ENGINE_ERROR;
    }
  }
  return ENGINE_OK;
}

static void set_default_int(mongoc_uri_t *u, const char *key, int32_t v) {
  if (!mongoc_uri_has_option(u, key))
    mongoc_uri_set_option_as_int32(u, key, v);
}

static int probe_server(struct mg_conn *c, int for_restore) {
  const struct engine_host *h = c->in->host;
  bson_error_t e;
  mongoc_server_description_t *sd =
      mongoc_client_select_server(c->client, for_restore != 0, for_restore ? NULL : c->rp, &e);
  if (sd == NULL) {
    char *m = mg_error_text(c, &e);
    h->set_error(h, "%s", m ? m : e.message);
    free(m);
    return ENGINE_ERROR;
  }
  c->server_id = mongoc_server_description_id(sd);
  const char *type = mongoc_server_description_type(sd);
  const bson_t *hello = mongoc_server_description_hello_response(sd);
  bson_iter_t it;
  if (strcmp(type, "Mongos") == 0) {
    c->topology = MG_SHARDED;
  } else if (strncmp(type, "RS", 2) == 0 || strcmp(type, "PossiblePrimary") == 0) {
    c->topology = MG_REPLICA_SET;
    if (bson_iter_init_find(&it, hello, "setName") && BSON_ITER_HOLDS_UTF8(&it))
      snprintf(c->set_name, sizeof(c->set_name), "%s", bson_iter_utf8(&it, NULL));
  } else {
    c->topology = MG_STANDALONE;
  }
  free(c->hosts);
  c->hosts = strdup(mongoc_server_description_host(sd)->host_and_port);
  mongoc_server_description_destroy(sd);
  if (c->hosts == NULL) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  /* the first command authenticates */
  bson_t cmd = BSON_INITIALIZER, reply;
  BSON_APPEND_INT32(&cmd, "buildInfo", 1);
  int ok = mg_command(c, "admin", &cmd, 1, &reply, &e);
  bson_destroy(&cmd);
  if (!ok) {
    bson_destroy(&reply);
    char *m = mg_error_text(c, &e);
    h->set_error(h, "%s", m ? m : e.message);
    free(m);
    return ENGINE_ERROR;
  }
  if (bson_iter_init_find(&it, &reply, "version") && BSON_ITER_HOLDS_UTF8(&it))
    snprintf(c->server_version, sizeof(c->server_version), "%s", bson_iter_utf8(&it, NULL));
  else
    snprintf(c->server_version, sizeof(c->server_version), "unknown");
  bson_destroy(&reply);
  const char *topo = c->topology == MG_SHARDED       ? "sharded cluster, mongos"
                     : c->topology == MG_REPLICA_SET ? "replica set "
                                                     : "standalone";
  c->describe = mg_strdupf("MongoDB %s at %s (%s%s)", c->server_version, c->hosts, topo,
                           c->topology == MG_REPLICA_SET ? c->set_name : "");
  if (c->describe == NULL) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

int mg_connect(struct mg_inst *in, const char *override, int for_restore, struct mg_conn *c) {
  const struct engine_host *h = in->host;
  memset(c, 0, sizeof(*c));
  c->in = in;
  char *text = override ? strdup(override) : configured_uri(in);
  if (text == NULL) {
    if (override)
      h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  c->uri = parse_uri(in, text,
                     override            ? "--target"
                     : in->uri_is_secret ? "the secret in option 'uri'"
                                         : "option 'uri'");
  wipe_free(text);
  if (c->uri == NULL)
    return ENGINE_ERROR;
  c->hosts = uri_hosts(c->uri);
  if (set_credentials(in, c->uri, override) != ENGINE_OK || set_tls(in, c->uri) != ENGINE_OK)
    goto fail;
  set_default_int(c->uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, (int32_t)in->timeout_ms);
  set_default_int(c->uri, MONGOC_URI_CONNECTTIMEOUTMS, (int32_t)in->timeout_ms);
  /* an index build on a large collection takes as long as it takes */
  if (for_restore)
    set_default_int(c->uri, MONGOC_URI_SOCKETTIMEOUTMS, 24 * 3600 * 1000);
  if (mongoc_uri_get_appname(c->uri) == NULL)
    mongoc_uri_set_appname(c->uri, "engine-mongodb");
  if (for_restore && !mongoc_uri_has_option(c->uri, MONGOC_URI_W)) {
    mongoc_write_concern_t *wc = mongoc_write_concern_new();
    mongoc_write_concern_set_w(wc, MONGOC_WRITE_CONCERN_W_MAJORITY);
    mongoc_uri_set_write_concern(c->uri, wc);
    mongoc_write_concern_destroy(wc);
  }
  bson_error_t e;
  c->client = mongoc_client_new_from_uri_with_error(c->uri, &e);
  if (c->client == NULL) {
    h->set_error(h, "unable to set up a MongoDB client for %s: %s", c->hosts ? c->hosts : "?",
                 e.message);
    goto fail;
  }
  mongoc_client_set_error_api(c->client, MONGOC_ERROR_API_VERSION_2);
  c->rp = mongoc_read_prefs_new(for_restore ? MONGOC_READ_PRIMARY : in->read_mode);
  if (c->rp == NULL || probe_server(c, for_restore) != ENGINE_OK)
    goto fail;
  mongoc_session_opt_t *so = mongoc_session_opts_new();
  mongoc_session_opts_set_causal_consistency(so, false);
  c->session = mongoc_client_start_session(c->client, so, &e);
  mongoc_session_opts_destroy(so);
  if (c->session == NULL)
    h->log(h, ENGINE_LOG_DEBUG, "no session on %s (%s): cursors run without one", c->hosts,
           e.message);
  return ENGINE_OK;
fail:
  mg_conn_close(c);
  return ENGINE_ERROR;
}

void mg_conn_close(struct mg_conn *c) {
  if (c->session != NULL)
    mongoc_client_session_destroy(c->session);
  if (c->client != NULL)
    mongoc_client_destroy(c->client);
  if (c->rp != NULL)
    mongoc_read_prefs_destroy(c->rp);
  if (c->uri != NULL)
    mongoc_uri_destroy(c->uri);
  free(c->describe);
  free(c->hosts);
  memset(c, 0, sizeof(*c));
}

int mg_append_opts(struct mg_conn *c, bson_t *opts, bson_error_t *e) {
  if (c->server_id != 0 && !BSON_APPEND_INT32(opts, "serverId", (int32_t)c->server_id)) {
    bson_set_error(e, MONGOC_ERROR_BSON, MONGOC_ERROR_BSON_INVALID, "unable to append serverId");
    return 0;
  }
  if (c->session != NULL && !mongoc_client_session_append(c->session, opts, e))
    return 0;
  return 1;
}

int mg_command(struct mg_conn *c, const char *db, const bson_t *cmd, int read, bson_t *reply,
               bson_error_t *e) {
  bson_t opts = BSON_INITIALIZER;
  if (!mg_append_opts(c, &opts, e)) {
    bson_init(reply);
    bson_destroy(&opts);
    return 0;
  }
  bool ok = read ? mongoc_client_read_command_with_opts(c->client, db, cmd, c->rp, &opts, reply, e)
                 : mongoc_client_write_command_with_opts(c->client, db, cmd, &opts, reply, e);
  bson_destroy(&opts);
  return ok;
}
