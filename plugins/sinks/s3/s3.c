/* The s3 and minio sink plugins: a repository in an S3 bucket (AWS S3, Ceph
 * radosgw, MinIO and other S3-compatible servers).
 *
 * Built twice from this source: S3_MINIO=0 gives "s3" (virtual-host
 * addressing by default, endpoint derived from the region), S3_MINIO=1 gives
 * "minio" (path-style addressing by default, endpoint required). Every
 * request goes through the engine's shared HTTP client (host->http_request),
 * signed with SigV4 by libcurl; the instance is immutable after create, so
 * concurrent calls from worker threads share nothing but it. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "engine/plugin.h"
#include "s3_internal.h"

#ifndef S3_MINIO
#define S3_MINIO 0
#endif

#if S3_MINIO
#define PLUGIN_NAME "minio"
#define DEFAULT_ADDRESSING "path"
#else
#define PLUGIN_NAME "s3"
#define DEFAULT_ADDRESSING "virtual"
#endif

#define MIB (1024ull * 1024)
#define S3_MIN_PART (5 * MIB)        /* AWS's minimum for all parts but the last */
#define S3_MAX_PART (5 * 1024 * MIB) /* and maximum, also of a single PUT */
#define S3_MAX_PARTS 10000
#define S3_MAX_KEY 1024
#define PART_FLOOR (64 * 1024) /* below this, multipart is pointless overhead */
#define COLLECT_MAX (64 * MIB) /* listings, error documents */
#define CONFLICT_TRIES 3

struct s3 {
  const struct engine_host *host;
  char *scheme;    /* "http" or "https" */
  char *authority; /* host[:port] of the endpoint, host lower-cased */
  char *endpoint;  /* scheme://authority, for messages */
  char *bucket;
  char *bucket_enc;
  char *prefix; /* "" or ending in '/' */
  size_t prefix_len;
  int virtual_host;
  char *sigv4; /* "aws:amz:REGION:s3" */
  char *region;
  char *storage_class_hdr; /* "x-amz-storage-class: X" or NULL */
  char *token_hdr;         /* "x-amz-security-token: T" or NULL; wiped on destroy */
  const char *ca_bundle;
  struct s3_creds creds;
  uint64_t part_size, threshold;
  int max_retries;
  int64_t timeout_ms;
  int64_t stale_upload_ms; /* cleanup aborts incomplete multipart uploads this old */
  char *where;             /* describe() */
};

#define SET_ERROR(s, ...) (s)->host->set_error((s)->host, __VA_ARGS__)

static int fail_oom(const struct s3 *s, const char *what) {
  SET_ERROR(s, "out of memory while handling '%s'", what);
  return ENGINE_ERROR;
}

/* ---- requests --------------------------------------------------------- */

struct call {
  const char *method;
  const char *key;   /* full object key (prefix included); NULL: the bucket */
  const char *what;  /* what messages name: the key, or a description */
  const char *query; /* canonical query string, or NULL */
  const void *body;
  size_t body_len;
  const char *headers[6];   /* extra header lines, NULL-terminated */
  struct objstore_body *rb; /* receive the body here instead of in the response */
  int quiet;                /* leave the error message alone (cleanup after a failure) */
  /* out */
  char md5_hex[OBJSTORE_MD5_HEX_LEN + 1]; /* of the body, for PUT and POST */
};

static char *make_url(const struct s3 *s, const char *key, const char *query) {
  char *ekey = key != NULL ? objstore_uri_encode(key, strlen(key), 1) : NULL;
  if (key != NULL && ekey == NULL)
    return NULL;
  char *url = NULL;
  int n;
  const char *q = query ? "?" : "", *qs = query ? query : "";
  if (s->virtual_host)
    n = asprintf(&url, "%s://%s.%s/%s%s%s", s->scheme, s->bucket, s->authority, ekey ? ekey : "", q,
                 qs);
  else
    n = asprintf(&url, "%s://%s/%s%s%s%s%s", s->scheme, s->authority, s->bucket_enc,
                 ekey ? "/" : "", ekey ? ekey : "", q, qs);
  free(ekey);
  return n < 0 ? NULL : url;
}

/* Send one request (with the HTTP client's retries). ENGINE_OK when a
 * response arrived, whatever its status; ENGINE_ERROR (message set) when none
 * did. Free resp with host->http_response_free in both cases. */
static int do_call(const struct s3 *s, struct call *c, struct engine_http_response *resp) {
  memset(resp, 0, sizeof *resp);
  resp->struct_size = sizeof *resp;
  const struct engine_host *h = s->host;
  int with_body = strcmp(c->method, "PUT") == 0 || strcmp(c->method, "POST") == 0;
  char sha[OBJSTORE_SHA256_HEX_LEN + 1], md5_b64[OBJSTORE_MD5_B64_LEN + 1];
  char sha_hdr[32 + OBJSTORE_SHA256_HEX_LEN], md5_hdr[16 + OBJSTORE_MD5_B64_LEN];
  const char *hdrs[16];
  size_t nh = 0;

  c->md5_hex[0] = '\0';
  if (with_body) {
    if (objstore_sha256_hex(c->body, c->body_len, sha) != 0 ||
        objstore_md5(c->body, c->body_len, c->md5_hex, md5_b64) != 0) {
      SET_ERROR(s, "%s %s: unable to compute the payload digests (OpenSSL failed)", c->method,
                c->what);
      return ENGINE_ERROR;
    }
    snprintf(md5_hdr, sizeof md5_hdr, "Content-MD5: %s", md5_b64);
    hdrs[nh++] = md5_hdr;
  } else {
    memcpy(sha, S3_EMPTY_SHA256, sizeof sha);
  }
  /* libcurl signs this header but does not compute it (it would hash an
   * empty payload for streamed bodies) */
  snprintf(sha_hdr, sizeof sha_hdr, "x-amz-content-sha256: %s", sha);
  hdrs[nh++] = sha_hdr;
  if (s->token_hdr != NULL)
    hdrs[nh++] = s->token_hdr;
  for (size_t i = 0; i < sizeof c->headers / sizeof c->headers[0] && c->headers[i]; i++)
    hdrs[nh++] = c->headers[i];
  hdrs[nh] = NULL;

  char *url = make_url(s, c->key, c->query);
  if (url == NULL)
    return fail_oom(s, c->what);
  struct engine_http_request rq = {
      .struct_size = sizeof rq,
      .method = c->method,
      .url = url,
      .headers = hdrs,
      .body = with_body ? c->body : NULL,
      .body_len = with_body ? c->body_len : 0,
      .aws_sigv4 = s->sigv4,
      .username = s->creds.access_key,
      .password = s->creds.secret_key,
      .ca_bundle = s->ca_bundle,
      .timeout_ms = s->timeout_ms,
      .max_retries = s->max_retries,
      .on_body = c->rb ? objstore_body_cb : NULL,
      .ud = c->rb,
      .max_body = COLLECT_MAX,
  };
  int rc = h->http_request(h, &rq, resp);
  free(url);
  if (rc != ENGINE_OK && c->quiet)
    return ENGINE_ERROR;
  if (rc != ENGINE_OK) {
    char why[128];
    if (c->rb != NULL && objstore_body_stopped(c->rb, why, sizeof why))
      SET_ERROR(s, "%s %s: %s (from %s)", c->method, c->what, why, s->endpoint);
    else
      SET_ERROR(s, "%s %s: no response from %s after %d attempt%s: %s", c->method, c->what,
                s->endpoint, resp->attempts, resp->attempts == 1 ? "" : "s",
                resp->error[0] ? resp->error : "unknown transport error");
    return ENGINE_ERROR;
  }
  h->log(h, ENGINE_LOG_DEBUG, "%s %s: HTTP %ld (%zu bytes sent, %d attempt%s)", c->method, c->what,
         resp->status, with_body ? c->body_len : 0, resp->attempts, resp->attempts == 1 ? "" : "s");
  return ENGINE_OK;
}

/* The body of a response, wherever the call received it. */
static const char *resp_body(const struct call *c, const struct engine_http_response *r,
                             size_t *len) {
  if (c->rb != NULL) {
    *len = c->rb->len;
    return (const char *)c->rb->p;
  }
  *len = r->body_len;
  return r->body;
}

/* The reason phrase of the final status line ("Forbidden"), into out. */
static void reason_phrase(const struct engine_http_response *r, char *out, size_t out_len) {
  out[0] = '\0';
  const char *p = r->headers;
  if (p == NULL || strncmp(p, "HTTP/", 5) != 0)
    return;
  p = strchr(p, ' ');
  if (p == NULL)
    return;
  while (*p == ' ')
    p++;
  while (*p >= '0' && *p <= '9')
    p++;
  while (*p == ' ')
    p++;
  size_t n = strcspn(p, "\r\n");
  if (n >= out_len)
    n = out_len - 1;
  memcpy(out, p, n);
  out[n] = '\0';
}

/* The S3 error code of a response ("" if none): for status decisions. */
static void error_code(const struct call *c, const struct engine_http_response *r,
                       struct s3_error_doc *e) {
  size_t len = 0;
  const char *body = resp_body(c, r, &len);
  if (!s3_xml_error(body, len, e))
    e->code[0] = e->message[0] = e->region[0] = '\0';
}

/* Set the message for an unexpected status: method, object, status, the S3
 * error code and message, and a hint where the cause is usually the same. */
static int fail_status(const struct s3 *s, const struct call *c,
                       const struct engine_http_response *r) {
  struct s3_error_doc e;
  error_code(c, r, &e);
  char hint[320] = "";
  const char *code = e.code;
  char *region_hdr = s->host->http_header(r, "x-amz-bucket-region");
  const char *region = e.region[0] ? e.region : region_hdr;
  if (strcmp(code, "NoSuchBucket") == 0 || (r->status == 404 && c->key == NULL && !code[0]))
    snprintf(hint, sizeof hint,
             " (bucket '%s' does not exist at %s; create it first: this sink never creates "
             "buckets)",
             s->bucket, s->endpoint);
  else if (strcmp(code, "SignatureDoesNotMatch") == 0)
    snprintf(hint, sizeof hint,
             " (check the secret access key, and that 'region' (%s) is the bucket's)", s->region);
  else if (strcmp(code, "InvalidAccessKeyId") == 0)
    snprintf(hint, sizeof hint, " (check the access key id)");
  else if (strcmp(code, "RequestTimeTooSkewed") == 0)
    snprintf(hint, sizeof hint, " (this system's clock is off: synchronise it)");
  else if (strcmp(code, "AccessDenied") == 0 || (r->status == 403 && !code[0]))
    snprintf(hint, sizeof hint,
             " (the credentials are wrong or lack permission for this request on bucket '%s')",
             s->bucket);
  else if (region != NULL && region[0] && strcmp(region, s->region) != 0)
    snprintf(hint, sizeof hint, " (bucket '%s' is in region '%s': set 'region: %s')", s->bucket,
             region, region);
  else if (r->status == 301 || r->status == 307)
    snprintf(hint, sizeof hint, " (bucket '%s' is served by another endpoint or region)",
             s->bucket);
  free(region_hdr);

  char attempts[48] = "";
  if (r->attempts > 1)
    snprintf(attempts, sizeof attempts, " (after %d attempts)", r->attempts);
  if (code[0] || e.message[0]) {
    SET_ERROR(s, "%s %s: HTTP %ld %s%s%s%s%s", c->method, c->what, r->status,
              code[0] ? code : "(no error code)", e.message[0] ? ": " : "", e.message, hint,
              attempts);
  } else {
    char reason[96];
    reason_phrase(r, reason, sizeof reason);
    SET_ERROR(s, "%s %s: HTTP %ld%s%s%s%s", c->method, c->what, r->status, reason[0] ? " " : "",
              reason, hint, attempts);
  }
  return ENGINE_ERROR;
}

/* ---- names ------------------------------------------------------------ */

/* The full key of an object, or NULL (message set). Names with "." or ".."
 * segments are refused: libcurl would remove them from the URL. */
static char *object_key(const struct s3 *s, const char *name) {
  if (name == NULL || name[0] == '\0') {
    SET_ERROR(s, "invalid object name: empty");
    return NULL;
  }
  if (name[0] == '/') {
    SET_ERROR(s, "invalid object name '%s': must be relative (leading '/')", name);
    return NULL;
  }
  for (const char *p = name; *p;) {
    size_t n = strcspn(p, "/");
    if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
      SET_ERROR(s, "invalid object name '%s': '.' and '..' components are not allowed", name);
      return NULL;
    }
    p += n;
    if (*p == '/')
      p++;
  }
  size_t len = strlen(name);
  if (s->prefix_len + len > S3_MAX_KEY) {
    SET_ERROR(s, "invalid object name '%s': the key would be %zu bytes, S3 allows %d", name,
              s->prefix_len + len, S3_MAX_KEY);
    return NULL;
  }
  char *key = malloc(s->prefix_len + len + 1);
  if (key == NULL) {
    fail_oom(s, name);
    return NULL;
  }
  memcpy(key, s->prefix, s->prefix_len);
  memcpy(key + s->prefix_len, name, len + 1);
  return key;
}

static void strip_quotes(char *etag) {
  size_t n = strlen(etag);
  if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"') {
    memmove(etag, etag + 1, n - 2);
    etag[n - 2] = '\0';
  }
}

/* ---- stat ------------------------------------------------------------- */

/* HEAD an object: ENGINE_OK (size, and the unquoted ETag if etag != NULL),
 * ENGINE_NOT_FOUND or ENGINE_ERROR, with the message set unless OK. */
static int head_object(const struct s3 *s, const char *key, uint64_t *size, char **etag) {
  if (etag != NULL)
    *etag = NULL;
  struct call c = {.method = "HEAD", .key = key, .what = key};
  struct engine_http_response r;
  int rc = do_call(s, &c, &r);
  if (rc != ENGINE_OK)
    goto out;
  if (r.status == 404) {
    SET_ERROR(s, "HEAD %s: not found (HTTP 404)", key);
    rc = ENGINE_NOT_FOUND;
    goto out;
  }
  if (r.status != 200) {
    rc = fail_status(s, &c, &r);
    goto out;
  }
  char *cl = s->host->http_header(&r, "Content-Length");
  uint64_t n = 0;
  if (cl == NULL || objstore_parse_u64(cl, &n) != 0) {
    SET_ERROR(s, "HEAD %s: the response has %s Content-Length", key, cl ? "an invalid" : "no");
    free(cl);
    rc = ENGINE_ERROR;
    goto out;
  }
  free(cl);
  if (size != NULL)
    *size = n;
  if (etag != NULL) {
    *etag = s->host->http_header(&r, "ETag");
    if (*etag != NULL)
      strip_quotes(*etag);
  }
out:
  s->host->http_response_free(&r);
  return rc;
}

static int s3_stat(void *inst, const char *name, uint64_t *size) {
  struct s3 *s = inst;
  char *key = object_key(s, name);
  if (key == NULL)
    return ENGINE_ERROR;
  int rc = head_object(s, key, size, NULL);
  free(key);
  return rc;
}

/* ---- put -------------------------------------------------------------- */

static int put_single(const struct s3 *s, const char *key, const void *buf, size_t len,
                      unsigned flags) {
  int no_overwrite = (flags & ENGINE_PUT_NO_OVERWRITE) != 0;
  for (int round = 0;; round++) {
    struct call c = {.method = "PUT", .key = key, .what = key, .body = buf, .body_len = len};
    size_t nh = 0;
    c.headers[nh++] = "Content-Type: application/octet-stream";
    if (s->storage_class_hdr != NULL)
      c.headers[nh++] = s->storage_class_hdr;
    if (no_overwrite)
      c.headers[nh++] = "If-None-Match: *";
    struct engine_http_response r;
    int rc = do_call(s, &c, &r);
    if (rc != ENGINE_OK) {
      s->host->http_response_free(&r);
      return rc;
    }
    if (r.status == 200) {
      s->host->http_response_free(&r);
      return ENGINE_OK;
    }
    struct s3_error_doc e;
    error_code(&c, &r, &e);
    if (no_overwrite && r.status == 412) {
      s->host->http_response_free(&r);
      /* The object was absent a moment ago. An earlier attempt of this PUT
       * may have stored it before its reply was lost (libcurl also resends
       * silently on a dead reused connection, so the attempt count cannot
       * tell): the object is ours if it holds exactly our bytes. */
      char *etag = NULL;
      uint64_t size = 0;
      if (head_object(s, key, &size, &etag) == ENGINE_OK && etag != NULL && size == len &&
          strcasecmp(etag, c.md5_hex) == 0) {
        free(etag);
        return ENGINE_OK;
      }
      free(etag);
      SET_ERROR(s, "PUT %s: the object already exists", key);
      return ENGINE_EXISTS;
    }
    if (no_overwrite && r.status == 409 && strcmp(e.code, "ConditionalRequestConflict") == 0 &&
        round + 1 < CONFLICT_TRIES) {
      /* a concurrent conditional write to the same key: S3 asks to try again */
      s->host->http_response_free(&r);
      continue;
    }
    rc = fail_status(s, &c, &r);
    s->host->http_response_free(&r);
    return rc;
  }
}

static void abort_upload(const struct s3 *s, const char *key, const char *upload_id) {
  const char *kv[] = {"uploadId", upload_id};
  char *q = objstore_query(kv, 1);
  if (q == NULL) {
    s->host->log(s->host, ENGINE_LOG_WARN,
                 "out of memory: unable to abort the multipart upload '%s' of '%s'; its parts "
                 "stay in bucket '%s' until aborted (or a lifecycle rule removes them)",
                 upload_id, key, s->bucket);
    return;
  }
  struct call c = {.method = "DELETE", .key = key, .what = key, .query = q, .quiet = 1};
  struct engine_http_response r;
  /* the failure being reported is the caller's: only log from here on */
  int rc = do_call(s, &c, &r);
  if (rc == ENGINE_OK && (r.status == 204 || r.status == 200 || r.status == 404)) {
    s->host->log(s->host, ENGINE_LOG_DEBUG, "aborted the multipart upload of '%s'", key);
  } else {
    char reason[sizeof r.error + 32] = "";
    if (rc == ENGINE_OK)
      snprintf(reason, sizeof reason, "HTTP %ld", r.status);
    else
      snprintf(reason, sizeof reason, "%s", r.error[0] ? r.error : "no response");
    s->host->log(s->host, ENGINE_LOG_WARN,
                 "unable to abort the multipart upload '%s' of '%s' (%s); its parts stay in "
                 "bucket '%s' until aborted (or a lifecycle rule removes them)",
                 upload_id, key, reason, s->bucket);
  }
  s->host->http_response_free(&r);
  free(q);
}

/* ---- multipart uploads in progress ------------------------------------ */

struct upload_list {
  const char *exact; /* keep only entries of this key (NULL: every entry) */
  char **keys, **ids;
  int64_t *initiated; /* Unix seconds, -1 if unknown */
  size_t n, cap;
  int oom;
};

static void upload_list_free(struct upload_list *l) {
  for (size_t i = 0; i < l->n; i++) {
    free(l->keys[i]);
    free(l->ids[i]);
  }
  free(l->keys);
  free(l->ids);
  free(l->initiated);
  l->keys = l->ids = NULL;
  l->initiated = NULL;
  l->n = l->cap = 0;
}

/* "2024-12-07T04:42:00.000Z" (ISO 8601 in UTC, as S3 writes <Initiated>) to
 * Unix seconds; -1 if it is not such a time. */
static int64_t parse_initiated(const char *t) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  int n = 0;
  if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
             &tm.tm_min, &tm.tm_sec, &n) != 6 ||
      n == 0)
    return -1;
  const char *rest = t + n;
  if (*rest == '.')
    for (rest++; *rest >= '0' && *rest <= '9'; rest++)
      ;
  if (strcmp(rest, "Z") != 0 && strcmp(rest, "+00:00") != 0 && *rest != '\0')
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  time_t v = timegm(&tm);
  return v == (time_t)-1 ? -1 : (int64_t)v;
}

static int upload_cb(void *ud, const char *key, const char *id, const char *initiated) {
  struct upload_list *l = ud;
  if (l->exact != NULL && strcmp(key, l->exact) != 0)
    return 0;
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 16;
    char **nk = realloc(l->keys, nc * sizeof *nk);
    if (nk != NULL)
      l->keys = nk;
    char **ni = realloc(l->ids, nc * sizeof *ni);
    if (ni != NULL)
      l->ids = ni;
    int64_t *nt = realloc(l->initiated, nc * sizeof *nt);
    if (nt != NULL)
      l->initiated = nt;
    if (nk == NULL || ni == NULL || nt == NULL) {
      l->oom = 1;
      return 1;
    }
    l->cap = nc;
  }
  char *k = strdup(key), *i = strdup(id);
  if (k == NULL || i == NULL) {
    free(k);
    free(i);
    l->oom = 1;
    return 1;
  }
  l->keys[l->n] = k;
  l->ids[l->n] = i;
  l->initiated[l->n] = parse_initiated(initiated);
  l->n++;
  return 0;
}

/* The multipart uploads in progress whose keys start with prefix, every page
 * of ListMultipartUploads, into l (entries of l->exact only, if set).
 * ENGINE_OK, or ENGINE_ERROR with the reason in why and, unless quiet (a
 * clean-up after another failure, whose message must stay), the message set. */
static int list_uploads(const struct s3 *s, const char *prefix, struct upload_list *l, int quiet,
                        char *why, size_t why_len) {
  const struct engine_host *h = s->host;
  char what[S3_MAX_KEY + 96];
  snprintf(what, sizeof what, "s3://%s/%s (list multipart uploads)", s->bucket, prefix);
  char *key_marker = NULL, *id_marker = NULL, *q = NULL;
  int rc = ENGINE_ERROR;
  why[0] = '\0';
  for (;;) {
    const char *kv[8] = {"uploads", "", "prefix", prefix};
    size_t np = 2;
    if (key_marker != NULL) {
      kv[2 * np] = "key-marker";
      kv[2 * np + 1] = key_marker;
      np++;
    }
    if (id_marker != NULL) {
      kv[2 * np] = "upload-id-marker";
      kv[2 * np + 1] = id_marker;
      np++;
    }
    /* "uploads=", not a bare "uploads": see delete_batch */
    q = objstore_query(kv, np);
    if (q == NULL) {
      snprintf(why, why_len, "out of memory");
      break;
    }
    struct call c = {.method = "GET", .key = NULL, .what = what, .query = q, .quiet = quiet};
    struct engine_http_response r;
    if (do_call(s, &c, &r) != ENGINE_OK) {
      snprintf(why, why_len, "no response after %d attempt%s: %s", r.attempts,
               r.attempts == 1 ? "" : "s", r.error[0] ? r.error : "unknown transport error");
      h->http_response_free(&r);
      break;
    }
    if (r.status != 200) {
      struct s3_error_doc e;
      error_code(&c, &r, &e);
      snprintf(why, why_len, "HTTP %ld%s%s", r.status, e.code[0] ? " " : "", e.code);
      if (!quiet)
        fail_status(s, &c, &r);
      h->http_response_free(&r);
      break;
    }
    free(key_marker);
    free(id_marker);
    key_marker = id_marker = NULL;
    int lr =
        s3_xml_uploads(r.body, r.body_len, upload_cb, l, &key_marker, &id_marker, why, why_len);
    h->http_response_free(&r);
    free(q);
    q = NULL;
    if (l->oom) {
      snprintf(why, why_len, "out of memory");
      break;
    }
    if (lr < 0) {
      if (!quiet)
        SET_ERROR(s, "GET %s: unexpected response: %s", what, why);
      break;
    }
    if (key_marker == NULL) {
      rc = ENGINE_OK;
      break;
    }
    if (h->cancelled(h)) {
      snprintf(why, why_len, "interrupted (the run is being cancelled)");
      break;
    }
  }
  if (rc != ENGINE_OK && !quiet && (l->oom || q == NULL || h->cancelled(h)))
    SET_ERROR(s, "GET %s: %s", what, why);
  free(q);
  free(key_marker);
  free(id_marker);
  return rc;
}

/* After a multipart upload of key has ended (completed, failed or aborted):
 * abort every upload of that key still in progress. A CreateMultipartUpload
 * whose reply was lost or truncated is sent again (by the HTTP client's
 * retries, or by libcurl itself on a reused connection that died, which no
 * attempt count shows), and each request the server received started an
 * upload of its own: only the last one was completed or aborted. Object
 * names are content addresses of sealed bytes, so no other writer uploads
 * this key: every upload of it still open is an orphan of ours. uncertain:
 * the creation's outcome was unknown (no usable reply, or retried), so an
 * orphan is likely and a failure to look is worth a warning. */
static void sweep_orphans(const struct s3 *s, const char *key, int uncertain) {
  const struct engine_host *h = s->host;
  struct upload_list l = {.exact = key};
  char why[512];
  if (list_uploads(s, key, &l, 1, why, sizeof why) != ENGINE_OK) {
    h->log(h, uncertain ? ENGINE_LOG_WARN : ENGINE_LOG_DEBUG,
           "unable to look for multipart uploads of '%s' left open by a retried request (%s); "
           "prune aborts those older than stale_upload_age (%" PRId64 " s)",
           key, why, s->stale_upload_ms / 1000);
    upload_list_free(&l);
    return;
  }
  for (size_t i = 0; i < l.n; i++)
    abort_upload(s, key, l.ids[i]);
  if (l.n > 0)
    h->log(h, ENGINE_LOG_INFO,
           "aborted %zu multipart upload%s of '%s' left open by a retried "
           "CreateMultipartUpload",
           l.n, l.n == 1 ? "" : "s", key);
  upload_list_free(&l);
}

/* Whether name (without the prefix) is one of the repository's objects:
 * cleanup never touches anything else that shares the bucket. */
static int repository_name(const char *name) {
  static const char *const dirs[] = {"data/", "index/", "snapshots/", "keys/", "locks/"};
  if (strcmp(name, "config") == 0)
    return 1;
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
    if (strncmp(name, dirs[i], strlen(dirs[i])) == 0)
      return 1;
  return 0;
}

/* engine_sink_ops.cleanup (prune, under the exclusive lock): abort the
 * incomplete multipart uploads of repository objects older than
 * stale_upload_age, left by runs that were killed or lost the server before
 * they could abort them. */
static int s3_cleanup(void *inst, unsigned flags) {
  struct s3 *s = inst;
  const struct engine_host *h = s->host;
  int dry_run = (flags & ENGINE_CLEANUP_DRY_RUN) != 0;
  struct upload_list l = {0};
  char why[512];
  if (list_uploads(s, s->prefix, &l, 0, why, sizeof why) != ENGINE_OK) {
    upload_list_free(&l);
    return ENGINE_ERROR;
  }
  time_t now = time(NULL);
  size_t stale = 0, young = 0, unknown = 0, failed = 0;
  for (size_t i = 0; i < l.n; i++) {
    const char *name = l.keys[i] + s->prefix_len;
    if (strncmp(l.keys[i], s->prefix, s->prefix_len) != 0 || !repository_name(name))
      continue;
    if (l.initiated[i] < 0) {
      unknown++;
      continue;
    }
    int64_t age_ms = ((int64_t)now - l.initiated[i]) * 1000;
    if (age_ms < s->stale_upload_ms) {
      young++;
      continue;
    }
    stale++;
    char when[32];
    time_t t = (time_t)l.initiated[i];
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    if (dry_run) {
      h->log(h, ENGINE_LOG_WARN,
             "would abort the incomplete multipart upload of '%s' started %s (upload id %s)",
             l.keys[i], when, l.ids[i]);
      continue;
    }
    const char *kv[] = {"uploadId", l.ids[i]};
    char *q = objstore_query(kv, 1);
    if (q == NULL) {
      upload_list_free(&l);
      return fail_oom(s, "cleanup");
    }
    struct call c = {
        .method = "DELETE", .key = l.keys[i], .what = l.keys[i], .query = q, .quiet = 1};
    struct engine_http_response r;
    int rc = do_call(s, &c, &r);
    if (rc != ENGINE_OK) {
      snprintf(why, sizeof why, "no response after %d attempt%s: %s", r.attempts,
               r.attempts == 1 ? "" : "s", r.error[0] ? r.error : "unknown transport error");
    } else if (r.status != 204 && r.status != 200 && r.status != 404) {
      struct s3_error_doc e;
      error_code(&c, &r, &e);
      snprintf(why, sizeof why, "HTTP %ld%s%s", r.status, e.code[0] ? " " : "", e.code);
      rc = ENGINE_ERROR;
    }
    h->http_response_free(&r);
    free(q);
    if (rc != ENGINE_OK) {
      failed++;
      h->log(h, ENGINE_LOG_WARN, "unable to abort the multipart upload of '%s' (upload id %s): %s",
             l.keys[i], l.ids[i], why);
      continue;
    }
    h->log(h, ENGINE_LOG_WARN,
           "aborted the incomplete multipart upload of '%s' started %s (upload id %s), left by an "
           "interrupted upload",
           l.keys[i], when, l.ids[i]);
  }
  upload_list_free(&l);
  if (unknown > 0)
    h->log(h, ENGINE_LOG_WARN,
           "%zu incomplete multipart upload%s under s3://%s/%s %s no readable start time; left "
           "alone",
           unknown, unknown == 1 ? "" : "s", s->bucket, s->prefix, unknown == 1 ? "has" : "have");
  h->log(h, ENGINE_LOG_DEBUG,
         "multipart uploads under s3://%s/%s: %zu older than %" PRId64 " s%s, %zu younger",
         s->bucket, s->prefix, stale, s->stale_upload_ms / 1000, dry_run ? " (dry run)" : "",
         young);
  if (failed > 0) {
    SET_ERROR(s,
              "%zu of %zu stale multipart upload%s under s3://%s/%s could not be aborted (see "
              "the warnings above)",
              failed, stale, stale == 1 ? "" : "s", s->bucket, s->prefix);
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

/* A growing string for the CompleteMultipartUpload document. */
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

/* Element content: an ETag is quoted hex, but escape whatever a server sends. */
static void sb_text(struct sbuf *b, const char *t) {
  for (; *t; t++) {
    switch (*t) {
    case '&':
      sb_str(b, "&amp;");
      break;
    case '<':
      sb_str(b, "&lt;");
      break;
    case '>':
      sb_str(b, "&gt;");
      break;
    default:
      sb_add(b, t, 1);
      break;
    }
  }
}

static char *complete_xml(char **etags, size_t nparts, size_t *out_len) {
  struct sbuf b = {0};
  char num[32];
  sb_str(&b, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
  for (size_t i = 0; i < nparts; i++) {
    snprintf(num, sizeof num, "%zu", i + 1);
    sb_str(&b, "<Part><PartNumber>");
    sb_str(&b, num);
    sb_str(&b, "</PartNumber><ETag>");
    sb_text(&b, etags[i]);
    sb_str(&b, "</ETag></Part>");
  }
  sb_str(&b, "</CompleteMultipartUpload>");
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  *out_len = b.len;
  return b.p;
}

static int put_multipart(const struct s3 *s, const char *key, const void *buf, size_t len,
                         unsigned flags) {
  const struct engine_host *h = s->host;
  int no_overwrite = (flags & ENGINE_PUT_NO_OVERWRITE) != 0;
  uint64_t part = s->part_size;
  if ((len + part - 1) / part > S3_MAX_PARTS) /* stay within 10000 parts, in whole MiB */
    part = ((len + S3_MAX_PARTS - 1) / S3_MAX_PARTS + MIB - 1) / MIB * MIB;
  size_t nparts = (size_t)((len + part - 1) / part);
  if (nparts == 0)
    nparts = 1;

  char *upload_id = NULL, *q = NULL, *xml = NULL;
  char **etags = calloc(nparts, sizeof *etags);
  char what[S3_MAX_KEY + 64];
  struct engine_http_response r;
  memset(&r, 0, sizeof r);
  int rc = ENGINE_ERROR;
  int sent = 0, uncertain = 0; /* CreateMultipartUpload sent; its outcome unknown */
  if (etags == NULL)
    return fail_oom(s, key);

  /* 1. CreateMultipartUpload */
  {
    const char *kv[] = {"uploads", ""};
    q = objstore_query(kv, 1);
    if (q == NULL) {
      rc = fail_oom(s, key);
      goto out;
    }
    struct call c = {.method = "POST", .key = key, .what = key, .query = q};
    size_t nh = 0;
    /* the object's type; also keeps libcurl from adding (and signing) a
     * form content type to the POST */
    c.headers[nh++] = "Content-Type: application/octet-stream";
    if (s->storage_class_hdr != NULL)
      c.headers[nh++] = s->storage_class_hdr;
    snprintf(what, sizeof what, "%s (start multipart upload)", key);
    c.what = what;
    sent = 1;
    if (do_call(s, &c, &r) != ENGINE_OK) {
      uncertain = 1; /* some attempt may have reached the server */
      goto out;
    }
    /* an attempt before the last may have started an upload whose reply
     * was lost (sweep_orphans) */
    uncertain = r.attempts > 1;
    if (r.status != 200) {
      fail_status(s, &c, &r);
      goto out;
    }
    upload_id = s3_xml_root_child(r.body, r.body_len, "InitiateMultipartUploadResult", "UploadId");
    if (upload_id == NULL || upload_id[0] == '\0') {
      SET_ERROR(s, "POST %s: the response has no <UploadId>", what);
      uncertain = 1;
      goto out;
    }
    h->http_response_free(&r);
    free(q);
    q = NULL;
  }

  /* 2. UploadPart, one after the other: other objects upload in parallel */
  for (size_t i = 0; i < nparts; i++) {
    if (h->cancelled(h)) {
      SET_ERROR(s, "PUT %s: interrupted (the run is being cancelled)", key);
      goto abort;
    }
    char num[32];
    snprintf(num, sizeof num, "%zu", i + 1);
    const char *kv[] = {"partNumber", num, "uploadId", upload_id};
    q = objstore_query(kv, 2);
    if (q == NULL) {
      fail_oom(s, key);
      goto abort;
    }
    uint64_t off = (uint64_t)i * part;
    size_t n = (size_t)(len - off < part ? len - off : part);
    snprintf(what, sizeof what, "%s (part %zu of %zu)", key, i + 1, nparts);
    struct call c = {.method = "PUT",
                     .key = key,
                     .what = what,
                     .query = q,
                     .body = (const char *)buf + off,
                     .body_len = n};
    if (do_call(s, &c, &r) != ENGINE_OK)
      goto abort;
    if (r.status != 200) {
      fail_status(s, &c, &r);
      goto abort;
    }
    etags[i] = h->http_header(&r, "ETag");
    if (etags[i] == NULL || etags[i][0] == '\0') {
      SET_ERROR(s, "PUT %s: the response has no ETag", what);
      goto abort;
    }
    h->http_response_free(&r);
    free(q);
    q = NULL;
  }

  /* 3. CompleteMultipartUpload */
  {
    size_t xml_len = 0;
    xml = complete_xml(etags, nparts, &xml_len);
    const char *kv[] = {"uploadId", upload_id};
    q = objstore_query(kv, 1);
    if (xml == NULL || q == NULL) {
      fail_oom(s, key);
      goto abort;
    }
    snprintf(what, sizeof what, "%s (complete multipart upload of %zu parts)", key, nparts);
    struct call c = {
        .method = "POST", .key = key, .what = what, .query = q, .body = xml, .body_len = xml_len};
    size_t nh = 0;
    c.headers[nh++] = "Content-Type: application/xml";
    if (no_overwrite)
      c.headers[nh++] = "If-None-Match: *";
    if (do_call(s, &c, &r) != ENGINE_OK)
      goto abort;
    struct s3_error_doc e;
    error_code(&c, &r, &e);
    if (r.status == 200 && e.code[0] == '\0') {
      rc = ENGINE_OK;
      goto out;
    }
    if (r.status == 200) {
      /* S3 may report a failed completion in the body of a 200 */
      SET_ERROR(s, "POST %s: HTTP 200 with error %s%s%s", what, e.code, e.message[0] ? ": " : "",
                e.message);
      goto abort;
    }
    if (no_overwrite && r.status == 412) {
      SET_ERROR(s, "PUT %s: the object already exists", key);
      rc = ENGINE_EXISTS;
      goto abort;
    }
    if (r.status == 404 && strcmp(e.code, "NoSuchUpload") == 0) {
      /* an earlier attempt may have completed the upload before its reply
       * was lost: then the object has our size and a multipart ETag of as
       * many parts */
      uint64_t size = 0;
      char *etag = NULL, suffix[32];
      snprintf(suffix, sizeof suffix, "-%zu", nparts);
      int ours = head_object(s, key, &size, &etag) == ENGINE_OK && size == len && etag != NULL &&
                 strlen(etag) > strlen(suffix) &&
                 strcmp(etag + strlen(etag) - strlen(suffix), suffix) == 0;
      free(etag);
      if (ours) {
        h->http_response_free(&r);
        rc = ENGINE_OK;
        goto out;
      }
    }
    fail_status(s, &c, &r);
    goto abort;
  }

abort:
  h->http_response_free(&r);
  abort_upload(s, key, upload_id);
out:
  h->http_response_free(&r);
  if (sent)
    sweep_orphans(s, key, uncertain);
  for (size_t i = 0; i < nparts; i++)
    free(etags[i]);
  free(etags);
  free(upload_id);
  free(xml);
  free(q);
  return rc;
}

static int s3_put(void *inst, const char *name, const void *buf, size_t len, unsigned flags) {
  struct s3 *s = inst;
  char *key = object_key(s, name);
  if (key == NULL)
    return ENGINE_ERROR;
  int rc;
  if (flags & ENGINE_PUT_NO_OVERWRITE) {
    /* If-None-Match alone is not enough: some servers ignore it */
    rc = head_object(s, key, NULL, NULL);
    if (rc == ENGINE_OK) {
      SET_ERROR(s, "PUT %s: the object already exists", key);
      rc = ENGINE_EXISTS;
      goto out;
    }
    if (rc != ENGINE_NOT_FOUND)
      goto out;
  }
  if ((uint64_t)len > s->threshold)
    rc = put_multipart(s, key, buf, len, flags);
  else
    rc = put_single(s, key, buf, len, flags);
out:
  free(key);
  return rc;
}

/* ---- get -------------------------------------------------------------- */

/* One ranged GET, collected into *buf (fwd NULL) or streamed to fwd. What
 * the answer means is the sinks' shared decision (objstore_read_answer). */
static int read_object(struct s3 *s, const char *name, uint64_t off, uint64_t len,
                       int (*fwd)(void *ud, const void *buf, size_t n), void *ud, void **buf,
                       size_t *out_len) {
  char *key = object_key(s, name);
  if (key == NULL)
    return ENGINE_ERROR;
  int rc = ENGINE_ERROR;
  char what[S3_MAX_KEY + 96], why[256];
  if (len > 0)
    snprintf(what, sizeof what, "%s (bytes %" PRIu64 "-%" PRIu64 ")", key, off, off + len - 1);
  else if (off > 0)
    snprintf(what, sizeof what, "%s (from byte %" PRIu64 ")", key, off);
  else
    snprintf(what, sizeof what, "%s", key);
  struct objstore_read rd;
  struct engine_http_response r = {.struct_size = sizeof r};
  if (objstore_read_init(&rd, off, len, fwd, ud, why, sizeof why) != 0) {
    SET_ERROR(s, "GET %s: %s", key, why);
    goto out;
  }
  struct call c = {.method = "GET", .key = key, .what = what, .rb = &rd.body};
  if (rd.range[0])
    c.headers[0] = rd.range;
  if (do_call(s, &c, &r) != ENGINE_OK)
    goto out;
  enum objstore_verdict v = objstore_read_answer(&rd, r.status, why, sizeof why);
  struct s3_error_doc e = {.code = ""};
  if (v == OBJSTORE_ABSENT || v == OBJSTORE_STATUS)
    error_code(&c, &r, &e);
  if (v == OBJSTORE_ABSENT && strcmp(e.code, "NoSuchBucket") == 0)
    v = OBJSTORE_STATUS;
  if (v == OBJSTORE_NEED_SIZE) {
    uint64_t size = 0;
    rc = head_object(s, key, &size, NULL);
    if (rc != ENGINE_OK)
      goto out;
    v = objstore_read_sized(&rd, size, why, sizeof why);
    rc = ENGINE_ERROR;
  }
  switch (v) {
  case OBJSTORE_DATA:
    rc = ENGINE_OK;
    if (buf != NULL) {
      *buf = objstore_read_take(&rd, out_len);
      if (*buf == NULL)
        rc = fail_oom(s, key);
    }
    break;
  case OBJSTORE_ABSENT:
    SET_ERROR(s, "GET %s: not found (HTTP 404%s%s)", key, e.code[0] ? " " : "", e.code);
    rc = ENGINE_NOT_FOUND;
    break;
  case OBJSTORE_FAILED:
    SET_ERROR(s, "GET %s: %s", what, why);
    break;
  default:
    rc = fail_status(s, &c, &r);
    break;
  }
out:
  s->host->http_response_free(&r);
  objstore_read_free(&rd);
  free(key);
  return rc;
}

static int s3_get(void *inst, const char *name, uint64_t off, uint64_t len, void **buf,
                  size_t *out_len) {
  *buf = NULL;
  *out_len = 0;
  return read_object(inst, name, off, len, NULL, NULL, buf, out_len);
}

/* ABI 1.4: a ranged read handed to on_data as it arrives (a restore
 * decodes the first blobs of a range while the rest is on its way). A
 * server that ignores Range is an error here (the host then reads the blobs
 * one by one through s3_get, which copes). */
static int s3_get_stream(void *inst, const char *name, uint64_t off, uint64_t len,
                         int (*on_data)(void *ud, const void *buf, size_t n), void *ud) {
  return read_object(inst, name, off, len, on_data, ud, NULL, NULL);
}

/* ---- list ------------------------------------------------------------- */

struct list_ctx {
  const struct s3 *s;
  int (*cb)(void *ud, const char *name, uint64_t size);
  void *ud;
};

static int list_strip(void *ud, const char *key, uint64_t size) {
  struct list_ctx *l = ud;
  /* the server filtered on the prefix; an entry outside it is not ours */
  if (strncmp(key, l->s->prefix, l->s->prefix_len) != 0 || key[l->s->prefix_len] == '\0')
    return 0;
  return l->cb(l->ud, key + l->s->prefix_len, size);
}

static int s3_list(void *inst, const char *prefix,
                   int (*cb)(void *ud, const char *name, uint64_t size), void *ud) {
  struct s3 *s = inst;
  const struct engine_host *h = s->host;
  if (prefix == NULL)
    prefix = "";
  char *full = NULL, *token = NULL, *q = NULL;
  char what[S3_MAX_KEY + 64];
  if (asprintf(&full, "%s%s", s->prefix, prefix) < 0)
    return fail_oom(s, prefix);
  snprintf(what, sizeof what, "s3://%s/%s (list)", s->bucket, full);
  struct list_ctx l = {s, cb, ud};
  int rc = ENGINE_OK;
  for (;;) {
    const char *kv[] = {"list-type", "2",  "max-keys",           "1000",
                        "prefix",    full, "continuation-token", token};
    q = objstore_query(kv, token ? 4 : 3);
    if (q == NULL) {
      rc = fail_oom(s, what);
      break;
    }
    struct call c = {.method = "GET", .key = NULL, .what = what, .query = q};
    struct engine_http_response r;
    if (do_call(s, &c, &r) != ENGINE_OK) {
      h->http_response_free(&r);
      rc = ENGINE_ERROR;
      break;
    }
    if (r.status != 200) {
      rc = fail_status(s, &c, &r);
      h->http_response_free(&r);
      break;
    }
    char why[256];
    free(token);
    token = NULL;
    int lr = s3_xml_list(r.body, r.body_len, list_strip, &l, &token, why, sizeof why);
    h->http_response_free(&r);
    free(q);
    q = NULL;
    if (lr < 0) {
      SET_ERROR(s, "GET %s: unexpected response: %s", what, why);
      rc = ENGINE_ERROR;
      break;
    }
    if (lr > 0 || token == NULL)
      break;
    if (h->cancelled(h)) {
      SET_ERROR(s, "GET %s: interrupted (the run is being cancelled)", what);
      rc = ENGINE_ERROR;
      break;
    }
  }
  free(q);
  free(token);
  free(full);
  return rc;
}

/* ---- del -------------------------------------------------------------- */

static int s3_del(void *inst, const char *name) {
  struct s3 *s = inst;
  char *key = object_key(s, name);
  if (key == NULL)
    return ENGINE_ERROR;
  /* DELETE answers 204 for missing keys too: HEAD tells them apart */
  int rc = head_object(s, key, NULL, NULL);
  if (rc != ENGINE_OK) {
    free(key);
    return rc;
  }
  struct call c = {.method = "DELETE", .key = key, .what = key};
  struct engine_http_response r;
  rc = do_call(s, &c, &r);
  if (rc == ENGINE_OK) {
    if (r.status == 404) {
      SET_ERROR(s, "DELETE %s: not found (HTTP 404)", key);
      rc = ENGINE_NOT_FOUND;
    } else if (r.status != 204 && r.status != 200) {
      rc = fail_status(s, &c, &r);
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
  int rc = do_call(s, &c, &r);
  if (rc == ENGINE_OK && r.status != 204 && r.status != 200) {
    struct s3_error_doc e;
    error_code(&c, &r, &e);
    if (r.status != 404 || strcmp(e.code, "NoSuchBucket") == 0)
      rc = fail_status(s, &c, &r);
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
    return fail_oom(s, what);
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
  int rc = do_call(s, &c, &r);
  if (rc != ENGINE_OK)
    goto out;

  struct s3_error_doc e;
  error_code(&c, &r, &e);
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
    rc = fail_status(s, &c, &r);
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
    rc = fail_oom(s, what);
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

static int s3_del_many(void *inst, const char *const *names, size_t n) {
  struct s3 *s = inst;
  const struct engine_host *h = s->host;
  if (n == 0)
    return ENGINE_OK;
  size_t cap = n < DELETE_BATCH ? n : DELETE_BATCH;
  char **keys = calloc(cap, sizeof *keys);
  if (keys == NULL)
    return fail_oom(s, names[0]);
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
      char *key = object_key(s, names[k]);
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

/* ---- instance --------------------------------------------------------- */

static const char *s3_describe(void *inst) {
  return ((struct s3 *)inst)->where;
}

static void s3_destroy(void *inst) {
  struct s3 *s = inst;
  if (s == NULL)
    return;
  s3_creds_free(&s->creds);
  objstore_wipe_free(s->token_hdr);
  free(s->scheme);
  free(s->authority);
  free(s->endpoint);
  free(s->bucket);
  free(s->bucket_enc);
  free(s->prefix);
  free(s->sigv4);
  free(s->region);
  free(s->storage_class_hdr);
  free(s->where);
  free(s);
}

static int is_dns_label_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* endpoint: scheme://host[:port][/]. Sets scheme, authority, endpoint, and
 * *ip_host when the host is an address literal (no virtual hosting then). */
static int parse_endpoint(struct s3 *s, const char *ep, int *ip_host) {
  const struct engine_host *h = s->host;
  const char *sep = strstr(ep, "://");
  size_t sl = sep ? (size_t)(sep - ep) : 0;
  if (sep == NULL || !((sl == 4 && strncasecmp(ep, "http", 4) == 0) ||
                       (sl == 5 && strncasecmp(ep, "https", 5) == 0))) {
    h->set_error(h, "option 'endpoint' must start with http:// or https:// (e.g. "
                    "https://s3.eu-west-1.amazonaws.com)");
    return ENGINE_ERROR;
  }
  const char *auth = sep + 3;
  size_t al = strcspn(auth, "/?#");
  if (memchr(auth, '@', al) != NULL) {
    /* never echo: user information is usually a credential */
    h->set_error(h, "option 'endpoint' must not contain user information ('user:password@'); "
                    "give credentials through 'credentials' or the secret options");
    return ENGINE_ERROR;
  }
  const char *rest = auth + al;
  if (!(rest[0] == '\0' || (rest[0] == '/' && rest[1] == '\0'))) {
    h->set_error(h,
                 "option 'endpoint' ('%s') must be scheme://host[:port] without a path or "
                 "query; the bucket goes in 'bucket' and key prefixes in 'prefix'",
                 ep);
    return ENGINE_ERROR;
  }
  if (al == 0) {
    h->set_error(h, "option 'endpoint' ('%s') has no host", ep);
    return ENGINE_ERROR;
  }
  s->authority = strndup(auth, al);
  s->scheme = strndup(ep, sl);
  if (s->authority == NULL || s->scheme == NULL)
    return fail_oom(s, "endpoint");
  for (char *p = s->scheme; *p; p++)
    *p = (char)(*p | 0x20);
  /* host and port */
  char *a = s->authority, *port = NULL;
  if (a[0] == '[') {
    char *close = strchr(a, ']');
    if (close == NULL || (close[1] != '\0' && close[1] != ':')) {
      h->set_error(h, "option 'endpoint' ('%s'): malformed IPv6 address", ep);
      return ENGINE_ERROR;
    }
    *ip_host = 1;
    port = close[1] == ':' ? close + 2 : NULL;
  } else {
    char *colon = strchr(a, ':');
    port = colon ? colon + 1 : NULL;
    size_t hl = colon ? (size_t)(colon - a) : strlen(a);
    int all_digits_dots = hl > 0;
    for (size_t i = 0; i < hl; i++) {
      char ch = a[i];
      if (ch >= 'A' && ch <= 'Z')
        a[i] = ch = (char)(ch | 0x20);
      if (!is_dns_label_char(ch) && ch != '.' && ch != '_') {
        h->set_error(h, "option 'endpoint' ('%s'): invalid character in the host name", ep);
        return ENGINE_ERROR;
      }
      if (!(ch >= '0' && ch <= '9') && ch != '.')
        all_digits_dots = 0;
    }
    if (hl == 0) {
      h->set_error(h, "option 'endpoint' ('%s') has no host", ep);
      return ENGINE_ERROR;
    }
    *ip_host = all_digits_dots;
  }
  if (port != NULL) {
    uint64_t pn = 0;
    if (objstore_parse_u64(port, &pn) != 0 || pn == 0 || pn > 65535) {
      h->set_error(h, "option 'endpoint' ('%s'): invalid port", ep);
      return ENGINE_ERROR;
    }
  }
  if (asprintf(&s->endpoint, "%s://%s", s->scheme, s->authority) < 0) {
    s->endpoint = NULL;
    return fail_oom(s, "endpoint");
  }
  return ENGINE_OK;
}

static int check_bucket(struct s3 *s, const char *b) {
  const struct engine_host *h = s->host;
  size_t n = strlen(b);
  if (n == 0 || n > 255) {
    h->set_error(h, "option 'bucket' must be 1 to 255 characters long");
    return ENGINE_ERROR;
  }
  for (const char *p = b; *p; p++) {
    char c = *p;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '.' || c == '_')) {
      h->set_error(h,
                   "option 'bucket' ('%s') may only contain letters, digits, '-', '.' and '_' "
                   "(give key prefixes in 'prefix')",
                   b);
      return ENGINE_ERROR;
    }
  }
  if (!s->virtual_host)
    return ENGINE_OK;
  /* the bucket becomes a DNS label of the host name */
  int ok = n >= 3 && n <= 63 && is_dns_label_char(b[0]) && b[0] != '-' &&
           is_dns_label_char(b[n - 1]) && b[n - 1] != '-' && strstr(b, "..") == NULL;
  for (const char *p = b; ok && *p; p++)
    ok = is_dns_label_char(*p) || *p == '.';
  if (!ok) {
    h->set_error(h,
                 "bucket '%s' cannot be addressed as a host name (virtual-host addressing "
                 "needs 3-63 lower-case letters, digits, '-' and '.'); set 'addressing: path'",
                 b);
    return ENGINE_ERROR;
  }
  if (strchr(b, '.') != NULL && strcmp(s->scheme, "https") == 0)
    h->log(h, ENGINE_LOG_WARN,
           "bucket '%s' contains '.', which the server's wildcard TLS certificate does not cover "
           "with virtual-host addressing; set 'addressing: path' if TLS verification fails",
           b);
  return ENGINE_OK;
}

static int s3_create(const struct engine_host *host, void **out) {
  *out = NULL;
  if (objstore_need_http(host, PLUGIN_NAME) != ENGINE_OK)
    return ENGINE_ERROR;
  s3_xml_init();
  struct s3 *s = calloc(1, sizeof *s);
  if (s == NULL) {
    host->set_error(host, "out of memory while creating the %s sink", PLUGIN_NAME);
    return ENGINE_ERROR;
  }
  s->host = host;
  const struct engine_host *h = host;

  /* region */
  const char *region = h->cfg_string(h, "region");
  if (region == NULL || region[0] == '\0')
    region = "us-east-1";
  for (const char *p = region; *p; p++) {
    if (!is_dns_label_char(*p)) {
      h->set_error(h,
                   "option 'region' ('%s') may only contain lower-case letters, digits and "
                   "'-' (e.g. eu-west-1)",
                   region);
      goto fail;
    }
  }
  s->region = strdup(region);
  if (s->region == NULL || asprintf(&s->sigv4, "aws:amz:%s:s3", region) < 0) {
    s->sigv4 = NULL;
    fail_oom(s, "region");
    goto fail;
  }

  /* endpoint */
  const char *ep = h->cfg_string(h, "endpoint");
  char *derived = NULL;
  if (ep == NULL || ep[0] == '\0') {
    if (S3_MINIO) {
      h->set_error(h, "option 'endpoint' is required for the minio sink (e.g. "
                      "http://minio.lab:9000)");
      goto fail;
    }
    if (asprintf(&derived, "https://s3.%s.amazonaws.com", region) < 0) {
      fail_oom(s, "endpoint");
      goto fail;
    }
    ep = derived;
  }
  int ip_host = 0;
  int erc = parse_endpoint(s, ep, &ip_host);
  free(derived);
  if (erc != ENGINE_OK)
    goto fail;

  /* addressing */
  const char *addressing = h->cfg_string(h, "addressing");
  if (addressing == NULL)
    addressing = DEFAULT_ADDRESSING;
  if (strcmp(addressing, "virtual") == 0) {
    if (ip_host) {
      h->set_error(h,
                   "virtual-host addressing needs a host name, but the endpoint '%s' is an IP "
                   "address; set 'addressing: path'",
                   s->endpoint);
      goto fail;
    }
    s->virtual_host = 1;
  } else if (strcmp(addressing, "path") != 0) {
    h->set_error(h, "option 'addressing' must be 'virtual' or 'path', got '%s'", addressing);
    goto fail;
  }

  /* bucket */
  const char *bucket = h->cfg_string(h, "bucket");
  if (bucket == NULL) {
    h->set_error(h, "option 'bucket' is required");
    goto fail;
  }
  if (check_bucket(s, bucket) != ENGINE_OK)
    goto fail;
  s->bucket = strdup(bucket);
  s->bucket_enc = objstore_uri_encode(bucket, strlen(bucket), 0);
  if (s->bucket == NULL || s->bucket_enc == NULL) {
    fail_oom(s, "bucket");
    goto fail;
  }

  /* prefix: no leading '/', one trailing '/' when non-empty */
  const char *prefix = h->cfg_string(h, "prefix");
  if (prefix == NULL)
    prefix = "";
  while (*prefix == '/')
    prefix++;
  size_t pl = strlen(prefix);
  while (pl > 0 && prefix[pl - 1] == '/')
    pl--;
  if (pl > 512) {
    h->set_error(h, "option 'prefix' is %zu bytes long; at most 512 leave room for object names",
                 pl);
    goto fail;
  }
  if (asprintf(&s->prefix, "%.*s%s", (int)pl, prefix, pl ? "/" : "") < 0) {
    s->prefix = NULL;
    fail_oom(s, "prefix");
    goto fail;
  }
  s->prefix_len = strlen(s->prefix);
  for (const char *p = s->prefix; *p;) {
    size_t n = strcspn(p, "/");
    if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
      h->set_error(h, "option 'prefix' ('%s') must not contain empty, '.' or '..' components",
                   prefix);
      goto fail;
    }
    p += n + (p[n] == '/');
  }

  /* storage class */
  const char *sc = h->cfg_string(h, "storage_class");
  if (sc != NULL && sc[0] != '\0') {
    for (const char *p = sc; *p; p++) {
      if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '_' || *p == '-')) {
        h->set_error(h,
                     "option 'storage_class' ('%s') must be a storage class name such as "
                     "STANDARD_IA",
                     sc);
        goto fail;
      }
    }
    if (asprintf(&s->storage_class_hdr, "x-amz-storage-class: %s", sc) < 0) {
      s->storage_class_hdr = NULL;
      fail_oom(s, "storage_class");
      goto fail;
    }
  }

  /* CA bundle: checked here so a typo is reported before any transfer */
  s->ca_bundle = h->cfg_string(h, "ca_bundle");
  if (s->ca_bundle != NULL && s->ca_bundle[0] == '\0')
    s->ca_bundle = NULL;
  if (s->ca_bundle != NULL && access(s->ca_bundle, R_OK) != 0) {
    h->set_error(h, "option 'ca_bundle': unable to read '%s': %s", s->ca_bundle, strerror(errno));
    goto fail;
  }

  /* sizes and limits */
  int64_t part = h->cfg_int(h, "part_size", (int64_t)(16 * MIB));
  int64_t thr = h->cfg_int(h, "multipart_threshold", (int64_t)(64 * MIB));
  if (part < PART_FLOOR || (uint64_t)part > S3_MAX_PART) {
    h->set_error(h, "option 'part_size' must be between 64KiB and 5GiB, got %" PRId64 " bytes",
                 part);
    goto fail;
  }
  if ((uint64_t)part < S3_MIN_PART)
    h->log(h, ENGINE_LOG_WARN,
           "part_size %" PRId64 " bytes is below S3's 5 MiB minimum: only servers configured "
           "for smaller parts (radosgw's 'rgw multipart min part size') accept it",
           part);
  if (thr < 1 || (uint64_t)thr > S3_MAX_PART) {
    h->set_error(h,
                 "option 'multipart_threshold' must be between 1 byte and 5GiB (the largest "
                 "single PUT), got %" PRId64 " bytes",
                 thr);
    goto fail;
  }
  s->part_size = (uint64_t)part;
  s->threshold = (uint64_t)thr;
  int64_t retries = h->cfg_int(h, "max_retries", 6);
  if (retries < 0 || retries > 100) {
    h->set_error(h, "option 'max_retries' must be between 0 and 100, got %" PRId64, retries);
    goto fail;
  }
  s->max_retries = (int)retries;
  s->timeout_ms = h->cfg_int(h, "timeout", 600000);
  if (s->timeout_ms < 1000) {
    h->set_error(h, "option 'timeout' must be at least 1s, got %" PRId64 " ms", s->timeout_ms);
    goto fail;
  }
  s->stale_upload_ms = h->cfg_int(h, "stale_upload_age", (int64_t)24 * 3600 * 1000);
  if (s->stale_upload_ms < 0) {
    h->set_error(h, "option 'stale_upload_age' must not be negative, got %" PRId64 " ms",
                 s->stale_upload_ms);
    goto fail;
  }

  /* credentials last: nothing else may fail while they are held */
  if (s3_creds_load(h, &s->creds) != ENGINE_OK)
    goto fail;
  if (s->creds.token != NULL &&
      asprintf(&s->token_hdr, "x-amz-security-token: %s", s->creds.token) < 0) {
    s->token_hdr = NULL;
    fail_oom(s, "session token");
    goto fail;
  }

  if (asprintf(&s->where, "s3://%s/%s at %s", s->bucket, s->prefix, s->endpoint) < 0) {
    s->where = NULL;
    fail_oom(s, "describe");
    goto fail;
  }
  h->log(h, ENGINE_LOG_DEBUG,
         "%s (%s addressing, region %s, multipart above %" PRIu64 " bytes in parts of %" PRIu64 ")",
         s->where, s->virtual_host ? "virtual-host" : "path-style", s->region, s->threshold,
         s->part_size);
  *out = s;
  return ENGINE_OK;

fail:
  s3_destroy(s);
  return ENGINE_ERROR;
}

static const struct engine_option s3_options[] = {
    {.name = "endpoint",
     .type = ENGINE_OPT_STRING,
     .required = S3_MINIO,
#if S3_MINIO
     .description = "Server URL, scheme://host[:port], e.g. http://minio.lab:9000."
#else
     .description = "Server URL, scheme://host[:port]; default https://s3.REGION.amazonaws.com."
#endif
    },
    {.name = "region",
     .type = ENGINE_OPT_STRING,
     .default_value = "us-east-1",
     .description = "Region the requests are signed for (SigV4)."},
    {.name = "bucket",
     .type = ENGINE_OPT_STRING,
     .required = 1,
     .description = "Bucket holding the repository; it must exist (never created)."},
    {.name = "prefix",
     .type = ENGINE_OPT_STRING,
     .description = "Key prefix of the repository inside the bucket, e.g. engine/ (default: none, "
                    "the bucket's root)."},
    {.name = "credentials",
     .type = ENGINE_OPT_STRING,
     .default_value = "env",
     .description = "'env' (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) or "
                    "'file:/path' (an AWS shared-credentials file, section 'profile')."},
    {.name = "profile",
     .type = ENGINE_OPT_STRING,
     .default_value = "default",
     .description = "Section of the credentials file to use."},
    {.name = "access_key_id",
     .type = ENGINE_OPT_SECRET,
     .description = "Access key id (env:NAME or file:/path); instead of 'credentials'."},
    {.name = "secret_access_key",
     .type = ENGINE_OPT_SECRET,
     .description = "Secret access key (env:NAME or file:/path); with access_key_id."},
    {.name = "session_token",
     .type = ENGINE_OPT_SECRET,
     .description = "Session token of temporary credentials (env:NAME or file:/path); optional."},
    {.name = "storage_class",
     .type = ENGINE_OPT_STRING,
     .description = "Storage class of new objects (x-amz-storage-class), e.g. STANDARD_IA."},
    {.name = "addressing",
     .type = ENGINE_OPT_ENUM,
     .default_value = DEFAULT_ADDRESSING,
     .enum_values = "virtual|path",
     .description = "virtual: BUCKET.host/key; path: host/BUCKET/key."},
    {.name = "ca_bundle",
     .type = ENGINE_OPT_STRING,
     .description = "CA certificates file (PEM) to verify the server with, instead of the "
                    "system's."},
    {.name = "part_size",
     .type = ENGINE_OPT_SIZE,
     .default_value = "16MiB",
     .description = "Part size of multipart uploads (S3 needs at least 5MiB)."},
    {.name = "multipart_threshold",
     .type = ENGINE_OPT_SIZE,
     .default_value = "64MiB",
     .description = "Objects larger than this are uploaded in parts."},
    {.name = "max_retries",
     .type = ENGINE_OPT_INT,
     .default_value = "6",
     .description = "Retries of a request after transport errors, 408, 429 and 5xx (with "
                    "exponential backoff and jitter)."},
    {.name = "timeout",
     .type = ENGINE_OPT_DURATION,
     .default_value = "10m",
     .description = "Time limit of one request (each attempt)."},
    {.name = "stale_upload_age",
     .type = ENGINE_OPT_DURATION,
     .default_value = "24h",
     .description = "prune aborts the incomplete multipart uploads of repository objects under "
                    "the prefix that are at least this old (left by killed runs)."},
    {.name = NULL},
};

static const struct engine_sink_ops s3_ops = {
    .struct_size = sizeof(struct engine_sink_ops),
    .put = s3_put,
    .get = s3_get,
    .stat = s3_stat,
    .list = s3_list,
    .del = s3_del,
    .describe = s3_describe,
    .del_many = s3_del_many,
    .cleanup = s3_cleanup,
    .get_stream = s3_get_stream,
};

static const struct engine_plugin s3_plugin = {
    ENGINE_PLUGIN_HEADER,
    .kind = ENGINE_PLUGIN_SINK,
    .name = PLUGIN_NAME,
    .version = "0.1.0",
    .license = "MIT",
#if S3_MINIO
    .description = "Repository in a bucket of a MinIO or other S3-compatible server (path-style "
                   "addressing, custom endpoint).",
#else
    .description = "Repository in an Amazon S3 (or S3-compatible) bucket.",
#endif
    .options = s3_options,
    .create = s3_create,
    .destroy = s3_destroy,
    .sink = &s3_ops,
};

ENGINE_PLUGIN_EXPORT const struct engine_plugin *engine_plugin_query(uint32_t host_abi_major) {
  return host_abi_major == ENGINE_ABI_MAJOR ? &s3_plugin : NULL;
}
