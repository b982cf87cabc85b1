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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "s3_int.h"

/* ---- stat ------------------------------------------------------------- */

static int s3_stat(void *inst, const char *name, uint64_t *size) {
  struct s3 *s = inst;
  char *key = s3_object_key(s, name);
  if (key == NULL)
    return ENGINE_ERROR;
  int rc = s3_head_object(s, key, size, NULL);
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
    int rc = s3_call(s, &c, &r);
    if (rc != ENGINE_OK) {
      s->host->http_response_free(&r);
      return rc;
    }
    if (r.status == 200) {
      s->host->http_response_free(&r);
      return ENGINE_OK;
    }
    struct s3_error_doc e;
    s3_error_code(&c, &r, &e);
    if (no_overwrite && r.status == 412) {
      s->host->http_response_free(&r);
      /* The object was absent a moment ago. An earlier attempt of this PUT
       * may have stored it before its reply was lost (libcurl also resends
       * silently on a dead reused connection, so the attempt count cannot
       * tell): the object is ours if it holds exactly our bytes. */
      char *etag = NULL;
      uint64_t size = 0;
      if (s3_head_object(s, key, &size, &etag) == ENGINE_OK && etag != NULL && size == len &&
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
    rc = s3_fail_status(s, &c, &r);
    s->host->http_response_free(&r);
    return rc;
  }
}

static int s3_put(void *inst, const char *name, const void *buf, size_t len, unsigned flags) {
  struct s3 *s = inst;
  char *key = s3_object_key(s, name);
  if (key == NULL)
    return ENGINE_ERROR;
  int rc;
  if (flags & ENGINE_PUT_NO_OVERWRITE) {
    /* If-None-Match alone is not enough: some servers ignore it */
    rc = s3_head_object(s, key, NULL, NULL);
    if (rc == ENGINE_OK) {
      SET_ERROR(s, "PUT %s: the object already exists", key);
      rc = ENGINE_EXISTS;
      goto out;
    }
    if (rc != ENGINE_NOT_FOUND)
      goto out;
  }
  if ((uint64_t)len > s->threshold)
    rc = s3_put_multipart(s, key, buf, len, flags);
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
  char *key = s3_object_key(s, name);
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
  if (s3_call(s, &c, &r) != ENGINE_OK)
    goto out;
  enum objstore_verdict v = objstore_read_answer(&rd, r.status, why, sizeof why);
  struct s3_error_doc e = {.code = ""};
  if (v == OBJSTORE_ABSENT || v == OBJSTORE_STATUS)
    s3_error_code(&c, &r, &e);
  if (v == OBJSTORE_ABSENT && strcmp(e.code, "NoSuchBucket") == 0)
    v = OBJSTORE_STATUS;
  if (v == OBJSTORE_NEED_SIZE) {
    uint64_t size = 0;
    rc = s3_head_object(s, key, &size, NULL);
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
        rc = s3_fail_oom(s, key);
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
    rc = s3_fail_status(s, &c, &r);
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
    return s3_fail_oom(s, prefix);
  snprintf(what, sizeof what, "s3://%s/%s (list)", s->bucket, full);
  struct list_ctx l = {s, cb, ud};
  int rc = ENGINE_OK;
  for (;;) {
    const char *kv[] = {"list-type", "2",  "max-keys",           "1000",
                        "prefix",    full, "continuation-token", token};
    q = objstore_query(kv, token ? 4 : 3);
    if (q == NULL) {
      rc = s3_fail_oom(s, what);
      break;
    }
    struct call c = {.method = "GET", .key = NULL, .what = what, .query = q};
    struct engine_http_response r;
    if (s3_call(s, &c, &r) != ENGINE_OK) {
      h->http_response_free(&r);
      rc = ENGINE_ERROR;
      break;
    }
    if (r.status != 200) {
      rc = s3_fail_status(s, &c, &r);
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

/* ---- instance --------------------------------------------------------- */

static const char *s3_describe(void *inst) {
  return ((struct s3 *)inst)->where;
}

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
    .option_bounds = s3_bounds,
    .create = s3_create,
    .destroy = s3_destroy,
    .sink = &s3_ops,
};

ENGINE_PLUGIN_EXPORT const struct engine_plugin *engine_plugin_query(uint32_t host_abi_major) {
  return host_abi_major == ENGINE_ABI_MAJOR ? &s3_plugin : NULL;
}
