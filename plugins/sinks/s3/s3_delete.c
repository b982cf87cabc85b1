/* Deleting in the s3/minio sinks: del (HEAD first: DELETE answers 204 for
 * missing keys too) and del_many (DeleteObjects in batches of 1000, one
 * DELETE per key for servers without it and for keys XML cannot carry). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3_int.h"

/* A growing string for the message that names the keys not deleted. */
struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
};

static void sb_add(struct sbuf *b, const char *t, size_t n) {
  if (b->oom)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t nc = b->cap ? b->cap : 1024;
    while (nc < b->len + n + 1)
      nc *= 2;
    char *np = realloc(b->p, nc);
    if (np == NULL) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = nc;
  }
  memcpy(b->p + b->len, t, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *t) {
  sb_add(b, t, strlen(t));
}

/* ---- del -------------------------------------------------------------- */

int s3_del(void *inst, const char *name) {
  struct s3 *s = inst;
  char *key = s3_object_key(s, name);
  if (key == NULL)
    return ENGINE_ERROR;
  /* DELETE answers 204 for missing keys too: HEAD tells them apart */
  int rc = s3_head_object(s, key, NULL, NULL);
  if (rc != ENGINE_OK) {
    free(key);
    return rc;
  }
  struct call c = {.method = "DELETE", .key = key, .what = key};
  struct engine_http_response r;
  rc = s3_call(s, &c, &r);
  if (rc == ENGINE_OK) {
    if (r.status == 404) {
      SET_ERROR(s, "DELETE %s: not found (HTTP 404)", key);
      rc = ENGINE_NOT_FOUND;
    } else if (r.status != 204 && r.status != 200) {
      rc = s3_fail_status(s, &c, &r);
    }
  }
  s->host->http_response_free(&r);
  free(key);
  return rc;
}

/* ---- del_many (DeleteObjects) ----------------------------------------- */

#define DELETE_BATCH 1000     /* S3's limit of keys in one DeleteObjects request */
#define DELETE_ERRORS_NAMED 3 /* failed keys a message names; the rest are logged */

/* DELETE one key, for what DeleteObjects cannot carry. A missing key is
 * fine: S3 answers 204 for it too, other servers 404. */
static int delete_key(const struct s3 *s, const char *key) {
  struct call c = {.method = "DELETE", .key = key, .what = key};
  struct engine_http_response r;
  int rc = s3_call(s, &c, &r);
  if (rc == ENGINE_OK && r.status != 204 && r.status != 200) {
    struct s3_error_doc e;
    s3_error_code(&c, &r, &e);
    if (r.status != 404 || strcmp(e.code, "NoSuchBucket") == 0)
      rc = s3_fail_status(s, &c, &r);
  }
  s->host->http_response_free(&r);
  return rc;
}

/* The <Error> entries of a DeleteObjects result. */
struct del_errors {
  const struct s3 *s;
  const char *what;
  size_t failed;
  struct sbuf msg; /* "'key': Code: message; ..." of the first few */
};

static int del_error_cb(void *ud, const char *key, const char *code, const char *message) {
  struct del_errors *d = ud;
  /* only an explicit NoSuchKey means "already gone" (S3 itself reports
   * deleted-or-absent alike, without an entry) */
  if (strcmp(code, "NoSuchKey") == 0)
    return 0;
  d->failed++;
  if (d->failed <= DELETE_ERRORS_NAMED) {
    if (d->failed > 1)
      sb_str(&d->msg, "; ");
    sb_str(&d->msg, "'");
    sb_str(&d->msg, key);
    sb_str(&d->msg, "': ");
    sb_str(&d->msg, code[0] ? code : "(no error code)");
    if (message[0] && strcmp(message, code) != 0) {
      sb_str(&d->msg, ": ");
      sb_str(&d->msg, message);
    }
  } else {
    int same = strcmp(message, code) == 0;
    d->s->host->log(d->s->host, ENGINE_LOG_WARN, "POST %s: '%s' was not deleted: %s%s%s", d->what,
                    key, code[0] ? code : "(no error code)", message[0] && !same ? ": " : "",
                    same ? "" : message);
  }
  return 0;
}

/* One DeleteObjects request for 1..DELETE_BATCH keys that XML can carry. */
static int delete_batch(const struct s3 *s, char *const *keys, size_t n) {
  const struct engine_host *h = s->host;
  char what[1024];
  snprintf(what, sizeof what, "s3://%s/%s (delete %zu object%s)", s->bucket, s->prefix, n,
           n == 1 ? "" : "s");
  size_t body_len = 0;
  const char *kv[] = {"delete", ""};
  /* "delete=", not a bare "delete": libcurl's SigV4 signer mishandles a
   * value-less subresource (objstore_query writes it so) */
  char *q = objstore_query(kv, 1);
  char *body = s3_xml_delete_doc((const char *const *)keys, n, &body_len);
  if (q == NULL || body == NULL) {
    free(q);
    free(body);
    return s3_fail_oom(s, what);
  }
  /* Content-MD5 (required by S3 for DeleteObjects) and x-amz-content-sha256
   * come from do_call, as for every request with a body; the content type
   * also keeps libcurl from adding (and signing) a form type to the POST.
   * Deleting is idempotent, so the HTTP client's retries are safe: a key an
   * earlier attempt removed is simply absent the second time. */
  struct call c = {
      .method = "POST", .key = NULL, .what = what, .query = q, .body = body, .body_len = body_len};
  c.headers[0] = "Content-Type: application/xml";
  struct engine_http_response r;
  int rc = s3_call(s, &c, &r);
  if (rc != ENGINE_OK)
    goto out;

  struct s3_error_doc e;
  s3_error_code(&c, &r, &e);
  if (r.status == 501 || strcmp(e.code, "NotImplemented") == 0) {
    /* a server without DeleteObjects: one DELETE per key does the same */
    h->log(h, ENGINE_LOG_INFO,
           "POST %s: the server does not implement DeleteObjects (HTTP %ld); "
           "deleting the %zu objects one by one",
           what, r.status, n);
    for (size_t i = 0; i < n && rc == ENGINE_OK; i++)
      rc = delete_key(s, keys[i]);
    goto out;
  }
  if (r.status != 200) {
    rc = s3_fail_status(s, &c, &r);
    goto out;
  }
  if (e.code[0]) {
    /* S3 may report a failure of the whole request in the body of a 200 */
    SET_ERROR(s, "POST %s: HTTP 200 with error %s%s%s", what, e.code, e.message[0] ? ": " : "",
              e.message);
    rc = ENGINE_ERROR;
    goto out;
  }
  struct del_errors d = {.s = s, .what = what};
  char why[256];
  if (s3_xml_delete_errors(r.body, r.body_len, del_error_cb, &d, why, sizeof why) < 0) {
    SET_ERROR(s, "POST %s: unexpected response: %s", what, why);
    rc = ENGINE_ERROR;
  } else if (d.msg.oom) {
    rc = s3_fail_oom(s, what);
  } else if (d.failed > 0) {
    char more[96] = "";
    if (d.failed > DELETE_ERRORS_NAMED)
      snprintf(more, sizeof more, "; and %zu more (logged)", d.failed - DELETE_ERRORS_NAMED);
    SET_ERROR(s, "POST %s: %zu of %zu object%s not deleted: %s%s", what, d.failed, n,
              n == 1 ? "" : "s", d.msg.p, more);
    rc = ENGINE_ERROR;
  } else {
    h->log(h, ENGINE_LOG_DEBUG, "deleted %zu object%s in bucket '%s'", n, n == 1 ? "" : "s",
           s->bucket);
  }
  free(d.msg.p);
out:
  h->http_response_free(&r);
  free(body);
  free(q);
  return rc;
}

int s3_del_many(void *inst, const char *const *names, size_t n) {
  struct s3 *s = inst;
  const struct engine_host *h = s->host;
  if (n == 0)
    return ENGINE_OK;
  size_t cap = n < DELETE_BATCH ? n : DELETE_BATCH;
  char **keys = calloc(cap, sizeof *keys);
  if (keys == NULL)
    return s3_fail_oom(s, names[0]);
  int rc = ENGINE_OK;
  for (size_t k = 0; k < n && rc == ENGINE_OK;) {
    if (k > 0 && h->cancelled(h)) {
      SET_ERROR(s,
                "deleting objects in bucket '%s': interrupted after %zu of %zu (the run is "
                "being cancelled)",
                s->bucket, k, n);
      rc = ENGINE_ERROR;
      break;
    }
    size_t m = 0;
    for (; k < n && m < cap; k++) {
      char *key = s3_object_key(s, names[k]);
      if (key == NULL) {
        rc = ENGINE_ERROR;
        break;
      }
      if (s3_xml_key_ok(key)) {
        keys[m++] = key;
        continue;
      }
      /* XML 1.0 cannot carry this key, but a URL can */
      rc = delete_key(s, key);
      free(key);
      if (rc != ENGINE_OK)
        break;
    }
    if (rc == ENGINE_OK && m > 0)
      rc = delete_batch(s, keys, m);
    for (size_t i = 0; i < m; i++) {
      free(keys[i]);
      keys[i] = NULL;
    }
  }
  free(keys);
  return rc;
}
