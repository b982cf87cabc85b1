/* Objects over the sinks (objects.h): put/get/list/delete on every
 * configured sink with fallback between them, sealing, and sealed JSON
 * objects. The byte formats are documented in docs/FORMAT.md. */
#include "repo/objects.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo/keys2.h"
#include "util/log.h"

const char *repo_sink_name(const struct repo_sink *s) {
  return s->pi->name;
}

const char *repo_sink_where(const struct repo_sink *s) {
  return s->pi->plugin->sink->describe(s->pi->inst);
}

char *repo_sink_error(const struct repo_sink *s, const char *what, const char *name) {
  return xasprintf("sink '%s' (%s): %s '%s': %s", repo_sink_name(s), repo_sink_where(s), what, name,
                   host_last_error(s->pi->host)[0] ? host_last_error(s->pi->host) : "failed");
}

int repo_put(struct repo *r, const char *name, const void *buf, size_t len, unsigned flags,
             char **err) {
  int ok = 0;
  for (size_t i = 0; i < r->n_sinks; i++) {
    struct repo_sink *s = &r->sinks[i];
    if (s->failed)
      continue;
    host_clear_error(s->pi->host);
    int rc = s->pi->plugin->sink->put(s->pi->inst, name, buf, len, flags);
    if (rc == ENGINE_OK) {
      ok++;
      continue;
    }
    char *msg = rc == ENGINE_EXISTS
                    ? xasprintf("sink '%s': object '%s' already exists", repo_sink_name(s), name)
                    : repo_sink_error(s, "unable to write", name);
    if (s->required || rc == ENGINE_EXISTS) {
      *err = msg;
      return rc == ENGINE_EXISTS ? ENGINE_EXISTS : -1;
    }
    /* concurrent puts may fail on the same sink: the first one warns */
    if (atomic_exchange(&s->failed, 1) == 0)
      log_warn("%s; sink '%s' is not required, it will miss this snapshot", msg, repo_sink_name(s));
    free(msg);
  }
  if (!ok) {
    *err = xasprintf("unable to write '%s': no sink accepted it", name);
    return -1;
  }
  return 0;
}

/* Read from the first sink that answers: attempt(sink, ctx) returns
 * ENGINE_OK, ENGINE_NOT_FOUND or an error. When an earlier sink failed and a
 * later one answered, the failure is a warning; when none answered, *err
 * names the first failure, and ENGINE_NOT_FOUND means no sink has it. */
static int read_first(struct repo *r, const char *name,
                      int (*attempt)(struct repo_sink *s, void *ctx), void *ctx, char **err) {
  char *first_err = NULL;
  int not_found = 0;
  for (size_t i = 0; i < r->n_sinks; i++) {
    struct repo_sink *s = &r->sinks[i];
    if (s->failed)
      continue;
    host_clear_error(s->pi->host);
    int rc = attempt(s, ctx);
    if (rc == ENGINE_OK) {
      if (i > 0 && first_err)
        log_warn("%s; read it from sink '%s' instead", first_err, repo_sink_name(s));
      free(first_err);
      return 0;
    }
    if (rc == ENGINE_NOT_FOUND)
      not_found++;
    if (!first_err)
      first_err = rc == ENGINE_NOT_FOUND ? xasprintf("sink '%s' (%s): object '%s' not found",
                                                     repo_sink_name(s), repo_sink_where(s), name)
                                         : repo_sink_error(s, "unable to read", name);
  }
  *err = first_err ? first_err : xasprintf("unable to read '%s': no sink configured", name);
  return not_found == (int)r->n_sinks ? ENGINE_NOT_FOUND : -1;
}

struct get_req {
  const char *name;
  uint64_t off, len;
  void **buf;
  size_t *n;
  /* get_stream: */
  int (*on_data)(void *ud, const void *buf, size_t n);
  void *ud;
  int tried;
};

static int get_attempt(struct repo_sink *s, void *ctx) {
  struct get_req *q = ctx;
  return s->pi->plugin->sink->get(s->pi->inst, q->name, q->off, q->len, q->buf, q->n);
}

int repo_get(struct repo *r, const char *name, uint64_t off, uint64_t len, void **buf, size_t *n,
             char **err) {
  struct get_req q = {.name = name, .off = off, .len = len, .buf = buf, .n = n};
  return read_first(r, name, get_attempt, &q, err);
}

static int stream_attempt(struct repo_sink *s, void *ctx) {
  struct get_req *q = ctx;
  if (q->tried++)
    q->on_data(q->ud, NULL, 0); /* the next sink starts from the beginning */
  const struct engine_sink_ops *ops = s->pi->plugin->sink;
  if (ENGINE_HAS_FIELD(ops, struct engine_sink_ops, get_stream) && ops->get_stream)
    return ops->get_stream(s->pi->inst, q->name, q->off, q->len, q->on_data, q->ud);
  void *buf = NULL;
  size_t n = 0;
  int rc = ops->get(s->pi->inst, q->name, q->off, q->len, &buf, &n);
  if (rc == ENGINE_OK && q->on_data(q->ud, buf, n) != 0)
    rc = ENGINE_ERROR;
  free(buf);
  return rc;
}

int repo_get_stream(struct repo *r, const char *name, uint64_t off, uint64_t len,
                    int (*on_data)(void *ud, const void *buf, size_t n), void *ud, char **err) {
  struct get_req q = {.name = name, .off = off, .len = len, .on_data = on_data, .ud = ud};
  return read_first(r, name, stream_attempt, &q, err);
}

int repo_delete(struct repo *r, const char *name, char **err) {
  for (size_t i = 0; i < r->n_sinks; i++) {
    struct repo_sink *s = &r->sinks[i];
    if (s->failed)
      continue;
    host_clear_error(s->pi->host);
    int rc = s->pi->plugin->sink->del(s->pi->inst, name);
    if (rc != ENGINE_OK && rc != ENGINE_NOT_FOUND) {
      *err = repo_sink_error(s, "unable to delete", name);
      return -1;
    }
  }
  return 0;
}

int repo_delete_many(struct repo *r, const char *const *names, size_t n, char **err) {
  for (size_t i = 0; i < r->n_sinks; i++) {
    struct repo_sink *s = &r->sinks[i];
    if (s->failed)
      continue;
    const struct engine_sink_ops *ops = s->pi->plugin->sink;
    int batch = ENGINE_HAS_FIELD(ops, struct engine_sink_ops, del_many) && ops->del_many != NULL;
    for (size_t k = 0; k < n;) {
      size_t m = batch ? (n - k > 1000 ? 1000 : n - k) : 1; /* S3 allows 1000 keys per request */
      host_clear_error(s->pi->host);
      int rc = batch ? ops->del_many(s->pi->inst, names + k, m) : ops->del(s->pi->inst, names[k]);
      if (rc != ENGINE_OK && rc != ENGINE_NOT_FOUND) {
        *err = batch && m > 1
                   ? xasprintf("sink '%s' (%s): unable to delete %zu objects from '%s' on: %s",
                               repo_sink_name(s), repo_sink_where(s), m, names[k],
                               host_last_error(s->pi->host))
                   : repo_sink_error(s, "unable to delete", names[k]);
        return -1;
      }
      k += m;
    }
  }
  return 0;
}

struct list_ctx {
  json_t *arr;
};

static int list_cb(void *ud, const char *name, uint64_t size) {
  struct list_ctx *c = ud;
  json_t *o = json_pack("{s:s, s:I}", "name", name, "size", (json_int_t)size);
  json_array_append_new(c->arr, o);
  return 0;
}

static int cmp_names(const void *a, const void *b) {
  const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  return strcmp(json_string_value(json_object_get(x, "name")),
                json_string_value(json_object_get(y, "name")));
}

static void sort_listing(json_t *arr) {
  size_t n = json_array_size(arr);
  json_t **v = xcalloc(n, sizeof(*v));
  for (size_t i = 0; i < n; i++)
    v[i] = json_incref(json_array_get(arr, i));
  qsort(v, n, sizeof(*v), cmp_names);
  json_array_clear(arr);
  for (size_t i = 0; i < n; i++)
    json_array_append_new(arr, v[i]);
  free(v);
}

int repo_sink_list(struct repo_sink *s, const char *prefix, json_t **out, char **err) {
  struct list_ctx c = {json_array()};
  host_clear_error(s->pi->host);
  if (s->pi->plugin->sink->list(s->pi->inst, prefix, list_cb, &c) != ENGINE_OK) {
    json_decref(c.arr);
    *err = repo_sink_error(s, "unable to list", prefix);
    return -1;
  }
  sort_listing(c.arr);
  *out = c.arr;
  return 0;
}

int repo_list(struct repo *r, const char *prefix, json_t **out, char **err) {
  char *first_err = NULL;
  for (size_t i = 0; i < r->n_sinks; i++) {
    char *e = NULL;
    if (r->sinks[i].failed)
      continue;
    if (repo_sink_list(&r->sinks[i], prefix, out, &e) == 0) {
      if (first_err) {
        log_warn("%s; listed sink '%s' instead", first_err, repo_sink_name(&r->sinks[i]));
        free(first_err);
      }
      return 0;
    }
    if (!first_err)
      first_err = e;
    else
      free(e);
  }
  *err = first_err;
  return -1;
}

/* ---- sealing ---------------------------------------------------------- */

size_t repo_sealed_len(const struct repo *r, size_t plain_len) {
  return r->crypto ? r->nonce_len + plain_len + r->tag_len : plain_len;
}

/* Nonces are drawn from OpenSSL's CSPRNG in batches of NONCE_BATCH bytes
 * per thread: one RAND_bytes call per blob cost ~4 % of a backup of small
 * files. A forked child starts a new batch (the generation moves on in
 * pthread_atfork's child handler), so parent and child never share bytes. */
#define NONCE_BATCH 1024u
static __thread unsigned char nonce_buf[NONCE_BATCH];
static __thread size_t nonce_left;
static __thread unsigned nonce_gen_seen;
static unsigned nonce_gen = 1;
static pthread_once_t nonce_once = PTHREAD_ONCE_INIT;

static void nonce_forked(void) {
  __atomic_add_fetch(&nonce_gen, 1, __ATOMIC_SEQ_CST);
}
static void nonce_init(void) {
  pthread_atfork(NULL, NULL, nonce_forked);
}

static int nonce_bytes(unsigned char *o, size_t n) {
  pthread_once(&nonce_once, nonce_init);
  unsigned gen = __atomic_load_n(&nonce_gen, __ATOMIC_SEQ_CST);
  if (n > NONCE_BATCH / 4)
    return RAND_bytes(o, (int)n) == 1 ? 0 : -1;
  if (nonce_gen_seen != gen || nonce_left < n) {
    OPENSSL_cleanse(nonce_buf, sizeof(nonce_buf));
    nonce_left = 0;
    if (RAND_bytes(nonce_buf, NONCE_BATCH) != 1)
      return -1;
    nonce_left = NONCE_BATCH;
    nonce_gen_seen = gen;
  }
  unsigned char *p = nonce_buf + NONCE_BATCH - nonce_left;
  memcpy(o, p, n);
  OPENSSL_cleanse(p, n); /* each byte is handed out once */
  nonce_left -= n;
  return 0;
}

int repo_seal_key(const struct engine_plugin *crypto, const unsigned char *key, const void *aad,
                  size_t aad_len, const void *in, size_t n, void *out) {
  const struct engine_crypto_ops *c = crypto->crypto;
  unsigned char *o = out;
  if (nonce_bytes(o, c->nonce_len) != 0)
    return -1;
  return c->seal(key, o, aad, aad_len, in, n, o + c->nonce_len) == ENGINE_OK ? 0 : -1;
}

int repo_unseal_key(const struct engine_plugin *crypto, const unsigned char *key, const void *aad,
                    size_t aad_len, const void *in, size_t n, void *out, size_t *out_len) {
  const struct engine_crypto_ops *c = crypto->crypto;
  const unsigned char *i = in;
  if (n < c->nonce_len + c->tag_len)
    return -1;
  if (c->open(key, i, aad, aad_len, i + c->nonce_len, n - c->nonce_len, out) != ENGINE_OK)
    return -1;
  *out_len = n - c->nonce_len - c->tag_len;
  return 0;
}

int repo_seal(const struct repo *r, const void *aad, size_t aad_len, const void *in, size_t n,
              void *out) {
  if (!r->crypto) {
    memcpy(out, in, n);
    return 0;
  }
  return repo_seal_key(r->crypto, r->enc_key, aad, aad_len, in, n, out);
}

int repo_unseal(const struct repo *r, const void *aad, size_t aad_len, const void *in, size_t n,
                void *out, size_t *out_len) {
  if (!r->crypto) {
    memcpy(out, in, n);
    *out_len = n;
    return 0;
  }
  int rc = repo_unseal_key(r->crypto, r->enc_key, aad, aad_len, in, n, out, out_len);
  /* during key rotate --rewrite: an object not sealed again yet */
  for (size_t i = 0; rc != 0 && i < r->n_old_index_keys; i++)
    rc = repo_unseal_key(r->crypto, r->old_index_keys[i], aad, aad_len, in, n, out, out_len);
  return rc;
}

/* ---- sealed JSON objects ---------------------------------------------- */

/* "index" objects live under index/, "verify" objects under verify/, the
 * others ("snapshot", "run") under their kind with an s: snapshots/, runs/. */
static void object_name(const char *kind, const char *id_hex, char name[128]) {
  int plural = strcmp(kind, "index") != 0 && strcmp(kind, "verify") != 0;
  snprintf(name, 128, "%s%s/%s", kind, plural ? "s" : "", id_hex);
}

int repo_save_json(struct repo *r, const char *kind, json_t *obj, char id_hex[65], char **err) {
  char *text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
  if (!text) {
    *err = xasprintf("unable to serialise %s", kind);
    return -1;
  }
  size_t n = strlen(text);
  int rc = repo_save_text(r, kind, text, n, id_hex, err);
  OPENSSL_cleanse(text, n);
  free(text);
  return rc;
}

/* Format 2: index objects are sealed with the index key, which writers
 * hold too (they deduplicate against the index); every other kind to the
 * public key, so that only a holder of the private key reads it. */
static int kind_public(const struct repo *r, const char *kind) {
  return r->format >= 2 && r->crypto && strcmp(kind, "index") != 0;
}

int repo_save_text(struct repo *r, const char *kind, const char *text, size_t n, char id_hex[65],
                   char **err) {
  int pub = kind_public(r, kind);
  size_t sl = pub ? n + REPO_SEALPUB_OVERHEAD : repo_sealed_len(r, n);
  unsigned char *sealed = xmalloc(sl);
  int rc = pub ? repo_seal_pub(r, kind, strlen(kind), text, n, sealed)
               : repo_seal(r, kind, strlen(kind), text, n, sealed);
  if (rc != 0) {
    free(sealed);
    *err = xasprintf("unable to encrypt %s", kind);
    return -1;
  }
  sha256_hex(sealed, sl, id_hex);
  char name[128];
  object_name(kind, id_hex, name);
  rc = repo_put(r, name, sealed, sl, ENGINE_PUT_NO_OVERWRITE, err);
  free(sealed);
  if (rc == ENGINE_EXISTS) { /* same content, same name: already durable */
    free(*err);
    *err = NULL;
    return 0;
  }
  return rc;
}

static int load_json(struct repo *r, const char *kind, const char *id_hex, json_t **out,
                     char **err) {
  char name[128];
  object_name(kind, id_hex, name);
  void *buf;
  size_t n;
  int rc = repo_get(r, name, 0, 0, &buf, &n, err);
  if (rc != 0)
    return rc;
  char check[65];
  sha256_hex(buf, n, check);
  if (strcmp(check, id_hex) != 0) {
    free(buf);
    *err = xasprintf("%s '%s' is corrupted: its content hash is %s", kind, name, check);
    return -1;
  }
  char *plain = xmalloc(n + 1);
  size_t pl;
  int u = kind_public(r, kind) ? repo_unseal_pub(r, kind, strlen(kind), buf, n, plain, &pl)
                               : repo_unseal(r, kind, strlen(kind), buf, n, plain, &pl);
  if (u != 0) {
    free(buf);
    free(plain);
    *err = u == -2 && r->write_only
               ? xasprintf("%s '%s' is sealed to the repository's public key: this host holds a "
                           "write-only credential, which cannot read it",
                           kind, name)
           : u == -2
               ? xasprintf("%s '%s' is sealed to a key pair the keyring does not hold", kind, name)
               : xasprintf("%s '%s': authentication failed (wrong key or tampered object)", kind,
                           name);
    return -1;
  }
  free(buf);
  json_error_t je;
  *out = json_loadb(plain, pl, 0, &je);
  OPENSSL_cleanse(plain, pl);
  free(plain);
  if (!*out) {
    *err = xasprintf("%s '%s': invalid JSON: %s", kind, name, je.text);
    return -1;
  }
  return 0;
}

/* A message that ends up in JSON (the lists of damaged objects, --json
 * output) must be UTF-8, but one quoting the bytes of a damaged object (the
 * JSON parser's does) may not be: then its bytes are escaped. A JSON string
 * that cannot be made would drop the damage from those lists silently. */
static void make_utf8(char **msg) {
  json_t *s = *msg ? json_string(*msg) : NULL;
  if (s || !*msg) {
    json_decref(s);
    return;
  }
  char *p = printable_name(*msg, strlen(*msg));
  free(*msg);
  *msg = p;
}

int repo_load_json(struct repo *r, const char *kind, const char *id_hex, json_t **out, char **err) {
  int rc = load_json(r, kind, id_hex, out, err);
  if (rc != 0)
    make_utf8(err);
  return rc;
}
