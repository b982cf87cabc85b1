/* Multipart uploads of the s3/minio sinks: an object larger than the
 * threshold goes up in parts (CreateMultipartUpload, UploadPart,
 * CompleteMultipartUpload), a failed one is aborted, uploads left open by a
 * retried creation are swept, and prune's cleanup aborts the incomplete
 * uploads of repository objects older than stale_upload_age. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "s3_int.h"

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
  int rc = s3_call(s, &c, &r);
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
    if (s3_call(s, &c, &r) != ENGINE_OK) {
      snprintf(why, why_len, "no response after %d attempt%s: %s", r.attempts,
               r.attempts == 1 ? "" : "s", r.error[0] ? r.error : "unknown transport error");
      h->http_response_free(&r);
      break;
    }
    if (r.status != 200) {
      struct s3_error_doc e;
      s3_error_code(&c, &r, &e);
      snprintf(why, why_len, "HTTP %ld%s%s", r.status, e.code[0] ? " " : "", e.code);
      if (!quiet)
        s3_fail_status(s, &c, &r);
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
int s3_cleanup(void *inst, unsigned flags) {
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
      return s3_fail_oom(s, "cleanup");
    }
    struct call c = {
        .method = "DELETE", .key = l.keys[i], .what = l.keys[i], .query = q, .quiet = 1};
    struct engine_http_response r;
    int rc = s3_call(s, &c, &r);
    if (rc != ENGINE_OK) {
      snprintf(why, sizeof why, "no response after %d attempt%s: %s", r.attempts,
               r.attempts == 1 ? "" : "s", r.error[0] ? r.error : "unknown transport error");
    } else if (r.status != 204 && r.status != 200 && r.status != 404) {
      struct s3_error_doc e;
      s3_error_code(&c, &r, &e);
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

int s3_put_multipart(const struct s3 *s, const char *key, const void *buf, size_t len,
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
    return s3_fail_oom(s, key);

  /* 1. CreateMultipartUpload */
  {
    const char *kv[] = {"uploads", ""};
    q = objstore_query(kv, 1);
    if (q == NULL) {
      rc = s3_fail_oom(s, key);
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
    if (s3_call(s, &c, &r) != ENGINE_OK) {
      uncertain = 1; /* some attempt may have reached the server */
      goto out;
    }
    /* an attempt before the last may have started an upload whose reply
     * was lost (sweep_orphans) */
    uncertain = r.attempts > 1;
    if (r.status != 200) {
      s3_fail_status(s, &c, &r);
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
      s3_fail_oom(s, key);
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
    if (s3_call(s, &c, &r) != ENGINE_OK)
      goto abort;
    if (r.status != 200) {
      s3_fail_status(s, &c, &r);
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
    xml = s3_xml_complete_doc(etags, nparts, &xml_len);
    const char *kv[] = {"uploadId", upload_id};
    q = objstore_query(kv, 1);
    if (xml == NULL || q == NULL) {
      s3_fail_oom(s, key);
      goto abort;
    }
    snprintf(what, sizeof what, "%s (complete multipart upload of %zu parts)", key, nparts);
    struct call c = {
        .method = "POST", .key = key, .what = what, .query = q, .body = xml, .body_len = xml_len};
    size_t nh = 0;
    c.headers[nh++] = "Content-Type: application/xml";
    if (no_overwrite)
      c.headers[nh++] = "If-None-Match: *";
    if (s3_call(s, &c, &r) != ENGINE_OK)
      goto abort;
    struct s3_error_doc e;
    s3_error_code(&c, &r, &e);
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
      int ours = s3_head_object(s, key, &size, &etag) == ENGINE_OK && size == len && etag != NULL &&
                 strlen(etag) > strlen(suffix) &&
                 strcmp(etag + strlen(etag) - strlen(suffix), suffix) == 0;
      free(etag);
      if (ours) {
        h->http_response_free(&r);
        rc = ENGINE_OK;
        goto out;
      }
    }
    s3_fail_status(s, &c, &r);
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
