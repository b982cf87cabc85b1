/* Uploads of the gcs sink: small objects in one media upload, large ones
 * through a resumable session in chunks (resumed from what the server holds
 * after a failure, started over when the session is lost), each checked
 * against the stored object's size and MD5; ifGenerationMatch=0 for
 * no-overwrite puts, where a 412 after a resent request may be our own. */
#include <inttypes.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gcs_int.h"

/* After an upload: the stored object must be what we sent. GCS reports the
 * MD5 of non-composite objects; emulators may leave it out, then only the
 * size is compared. */
static int verify_stored(struct gcs_sink *s, const char *full, const struct meta *m,
                         const char *md5, size_t len) {
  if (m->size != (uint64_t)len) {
    GCS_ERROR(s, "upload gs://%s/%s: the server stored %" PRIu64 " bytes, %zu were sent", s->bucket,
              full, m->size, len);
    return ENGINE_ERROR;
  }
  if (m->md5[0] != '\0' && md5[0] != '\0' && strcmp(m->md5, md5) != 0) {
    GCS_ERROR(s,
              "upload gs://%s/%s: the server's MD5 %s differs from the data's %s (corrupted "
              "in transit)",
              s->bucket, full, m->md5, md5);
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

/* A 412 for ifGenerationMatch=0 after the client resent the request may be
 * our own earlier attempt having succeeded: that is not a conflict. */
static int precondition_failed(struct gcs_sink *s, const char *full, const char *md5, size_t len,
                               int maybe_ours) {
  if (maybe_ours) {
    struct meta m;
    if (gcs_get_meta(s, full, &m) == ENGINE_OK && m.size == (uint64_t)len && m.md5[0] != '\0' &&
        strcmp(m.md5, md5) == 0) {
      s->host->log(s->host, ENGINE_LOG_DEBUG,
                   "upload gs://%s/%s: 412 after a resent request, but the stored object is ours",
                   s->bucket, full);
      return ENGINE_OK;
    }
  }
  GCS_ERROR(s, "object gs://%s/%s already exists", s->bucket, full);
  return ENGINE_EXISTS;
}

/* ---- put -------------------------------------------------------------- */

/* Interprets the final answer of an upload (media, or the last chunk). */
static int upload_done(struct gcs_sink *s, const char *full, const struct engine_http_response *r,
                       const char *md5, size_t len, int maybe_ours) {
  if (r->status == 200 || r->status == 201) {
    struct meta m;
    if (gcs_parse_meta(r->body, r->body_len, &m) != 0) {
      GCS_ERROR(s, "upload gs://%s/%s: HTTP %ld but the answer is not an object resource",
                s->bucket, full, r->status);
      return ENGINE_ERROR;
    }
    return verify_stored(s, full, &m, md5, len);
  }
  if (r->status == 412)
    return precondition_failed(s, full, md5, len, maybe_ours);
  return gcs_fail_http(s, "upload", full, r->status, r->body, r->body_len);
}

static int media_upload(struct gcs_sink *s, const char *full, const void *buf, size_t len,
                        int no_overwrite, const char *md5) {
  char *url = gcs_upload_url(s, full, "media", no_overwrite);
  if (url == NULL)
    return gcs_fail_oom(s, "uploading", full);
  static const char *const headers[] = {"Content-Type: application/octet-stream",
                                        "Accept: application/json", NULL};
  struct call c = {.method = "POST",
                   .url = url,
                   .headers = headers,
                   .body = buf,
                   .body_len = len,
                   .max_body = MIB};
  struct engine_http_response resp;
  int rc = gcs_send(s, &c, "upload", full, &resp);
  free(url);
  if (rc != ENGINE_OK)
    return rc;
  rc = upload_done(s, full, &resp, md5, len, resp.attempts > 1);
  s->host->http_response_free(&resp);
  return rc;
}

/* Backoff with full jitter for the resumable-session retries, which the
 * shared client must not do blindly (a resent chunk may be half stored). */
static int session_backoff(struct gcs_sink *s, int failures) {
  int64_t ms = SESSION_BACKOFF_MS;
  for (int i = 1; i < failures && ms < SESSION_BACKOFF_MAX_MS; i++)
    ms *= 2;
  if (ms > SESSION_BACKOFF_MAX_MS)
    ms = SESSION_BACKOFF_MAX_MS;
  uint32_t rnd = 0;
  if (RAND_bytes((unsigned char *)&rnd, sizeof rnd) != 1)
    rnd = 0;
  ms = ms / 2 + (int64_t)(rnd % (uint32_t)(ms / 2 + 1));
  return s->host->sleep_ms(s->host, ms);
}

/* Starts a resumable session; *session is the Location it returned. */
static int session_start(struct gcs_sink *s, const char *full, size_t len, int no_overwrite,
                         const char *md5, char **session) {
  *session = NULL;
  char *url = gcs_upload_url(s, full, "resumable", no_overwrite);
  char *xlen = NULL;
  if (url == NULL || asprintf(&xlen, "X-Upload-Content-Length: %zu", len) < 0) {
    free(url);
    return gcs_fail_oom(s, "uploading", full);
  }
  const char *headers[] = {"Content-Type: application/json; charset=UTF-8",
                           "X-Upload-Content-Type: application/octet-stream", xlen,
                           "Accept: application/json", NULL};
  struct call c = {.method = "POST",
                   .url = url,
                   .headers = headers,
                   .body = "{}",
                   .body_len = 2,
                   .max_body = MIB};
  struct engine_http_response resp;
  int rc = gcs_send(s, &c, "upload", full, &resp);
  free(url);
  free(xlen);
  if (rc != ENGINE_OK)
    return rc;
  if (resp.status == 200 || resp.status == 201) {
    *session = s->host->http_header(&resp, "Location");
    if (*session == NULL || (*session)[0] == '\0') {
      free(*session);
      *session = NULL;
      GCS_ERROR(s, "upload gs://%s/%s: the server started no resumable session (no Location)",
                s->bucket, full);
      rc = ENGINE_ERROR;
    }
  } else if (resp.status == 412) {
    rc = precondition_failed(s, full, md5, len, 0);
  } else {
    rc = gcs_fail_http(s, "upload", full, resp.status, resp.body, resp.body_len);
  }
  s->host->http_response_free(&resp);
  return rc;
}

/* Bytes the server holds according to a 308's Range header ("bytes=0-N");
 * no header means none. -1 if it cannot be understood. */
static int64_t persisted_bytes(struct gcs_sink *s, const struct engine_http_response *r) {
  char *range = s->host->http_header(r, "Range");
  if (range == NULL)
    return 0;
  int64_t out = -1;
  unsigned long long a, b;
  int n = 0;
  if (sscanf(range, "bytes=%llu-%llu%n", &a, &b, &n) == 2 && range[n] == '\0' && a == 0)
    out = (int64_t)b + 1;
  free(range);
  return out;
}

enum chunk_outcome { CHUNK_MORE, CHUNK_DONE, CHUNK_RETRY, CHUNK_RESTART, CHUNK_FAIL };

/* Classifies the answer to a chunk or a status query; *offset is updated
 * from a 308. *rc is the result for CHUNK_DONE / CHUNK_FAIL. */
static enum chunk_outcome chunk_answer(struct gcs_sink *s, const char *full,
                                       const struct engine_http_response *r, const char *md5,
                                       size_t len, int maybe_ours, uint64_t *offset, int *rc) {
  if (r->status == 308) {
    int64_t held = persisted_bytes(s, r);
    if (held < 0 || (uint64_t)held > len) {
      GCS_ERROR(s, "upload gs://%s/%s: the server reports an invalid committed range", s->bucket,
                full);
      *rc = ENGINE_ERROR;
      return CHUNK_FAIL;
    }
    *offset = (uint64_t)held;
    return CHUNK_MORE;
  }
  if (r->status == 200 || r->status == 201 || r->status == 412) {
    *rc = upload_done(s, full, r, md5, len, maybe_ours);
    return r->status == 412 || *rc == ENGINE_OK ? CHUNK_DONE : CHUNK_FAIL;
  }
  if (r->status == 404 || r->status == 410)
    return CHUNK_RESTART; /* the session expired or was cancelled */
  if (engine_http_retryable(r->status))
    return CHUNK_RETRY;
  *rc = gcs_fail_http(s, "upload", full, r->status, r->body, r->body_len);
  return CHUNK_FAIL;
}

/* Asks how much of the upload the server holds (PUT, Content-Range: bytes STAR/len). */
static enum chunk_outcome session_query(struct gcs_sink *s, const char *session, const char *full,
                                        const char *md5, size_t len, uint64_t *offset, int *rc) {
  char *cr = NULL;
  if (asprintf(&cr, "Content-Range: bytes */%zu", len) < 0) {
    *rc = gcs_fail_oom(s, "uploading", full);
    return CHUNK_FAIL;
  }
  const char *headers[] = {cr, "Accept: application/json", NULL};
  struct call c = {
      .method = "PUT", .url = session, .headers = headers, .no_retry = 1, .max_body = MIB};
  struct engine_http_response resp;
  int hrc = gcs_send(s, &c, "upload", full, &resp);
  free(cr);
  if (hrc != ENGINE_OK)
    return CHUNK_RETRY;
  enum chunk_outcome o = chunk_answer(s, full, &resp, md5, len, 1, offset, rc);
  s->host->http_response_free(&resp);
  return o;
}

/* Best effort: a failed upload should not leave a session holding data. */
static void session_cancel(struct gcs_sink *s, const char *session, const char *full) {
  struct call c = {
      .method = "DELETE", .url = session, .no_retry = 1, .max_body = MIB, .timeout_ms = 30000};
  struct engine_http_response resp;
  if (gcs_send(s, &c, "cancel upload", full, &resp) == ENGINE_OK)
    s->host->http_response_free(&resp);
}

static int resumable_upload(struct gcs_sink *s, const char *full, const unsigned char *buf,
                            size_t len, int no_overwrite, const char *md5) {
  const struct engine_host *h = s->host;
  char *session = NULL;
  int rc = ENGINE_ERROR;
  int restarts = 0, failures = 0, chunks = 0;
  uint64_t offset = 0;

  rc = session_start(s, full, len, no_overwrite, md5, &session);
  if (rc != ENGINE_OK)
    return rc;
  for (;;) {
    if (h->cancelled(h)) {
      GCS_ERROR(s, "upload gs://%s/%s: cancelled", s->bucket, full);
      rc = ENGINE_ERROR;
      break;
    }
    size_t n = len - (size_t)offset;
    if (n > s->chunk_size)
      n = (size_t)s->chunk_size;
    char *cr = NULL;
    if (asprintf(&cr, "Content-Range: bytes %" PRIu64 "-%" PRIu64 "/%zu", offset, offset + n - 1,
                 len) < 0) {
      rc = gcs_fail_oom(s, "uploading", full);
      break;
    }
    const char *headers[] = {cr, "Content-Type: application/octet-stream",
                             "Accept: application/json", NULL};
    struct call c = {.method = "PUT",
                     .url = session,
                     .headers = headers,
                     .body = buf + offset,
                     .body_len = n,
                     .no_retry = 1,
                     .max_body = MIB};
    struct engine_http_response resp;
    uint64_t before = offset;
    int hrc = gcs_send(s, &c, "upload", full, &resp);
    free(cr);
    chunks++;
    enum chunk_outcome o;
    if (hrc != ENGINE_OK) {
      o = CHUNK_RETRY;
    } else {
      o = chunk_answer(s, full, &resp, md5, len, failures > 0 || restarts > 0, &offset, &rc);
      if (o == CHUNK_MORE && offset == before && n > 0) {
        /* a 308 without progress: treat like a transient failure */
        o = CHUNK_RETRY;
        GCS_ERROR(s, "upload gs://%s/%s: the server accepted none of the chunk at offset %" PRIu64,
                  s->bucket, full, before);
      } else if (o == CHUNK_RETRY) {
        gcs_fail_http(s, "upload", full, resp.status, resp.body, resp.body_len);
      }
      h->http_response_free(&resp);
    }

    while (o == CHUNK_RETRY) {
      if (++failures > s->max_retries) {
        rc = ENGINE_ERROR; /* the last failure's message stands */
        o = CHUNK_FAIL;
        break;
      }
      h->log(h, ENGINE_LOG_INFO, "upload gs://%s/%s: chunk at offset %" PRIu64 " failed; resuming",
             s->bucket, full, before);
      if (session_backoff(s, failures) != ENGINE_OK) {
        GCS_ERROR(s, "upload gs://%s/%s: cancelled", s->bucket, full);
        rc = ENGINE_ERROR;
        o = CHUNK_FAIL;
        break;
      }
      o = session_query(s, session, full, md5, len, &offset, &rc);
    }
    if (o == CHUNK_MORE) {
      if (offset > before)
        failures = 0;
      continue;
    }
    if (o == CHUNK_RESTART) {
      if (++restarts > MAX_SESSION_RESTARTS) {
        GCS_ERROR(s, "upload gs://%s/%s: the resumable session was lost %d times", s->bucket, full,
                  restarts);
        rc = ENGINE_ERROR;
        break;
      }
      h->log(h, ENGINE_LOG_INFO, "upload gs://%s/%s: the resumable session expired; starting over",
             s->bucket, full);
      free(session);
      session = NULL;
      offset = 0;
      failures = 0;
      rc = session_start(s, full, len, no_overwrite, md5, &session);
      if (rc != ENGINE_OK)
        break;
      continue;
    }
    if (o == CHUNK_FAIL && session != NULL)
      session_cancel(s, session, full);
    break; /* CHUNK_DONE or CHUNK_FAIL, rc set */
  }
  if (rc == ENGINE_OK)
    h->log(h, ENGINE_LOG_DEBUG, "upload gs://%s/%s: %zu bytes in %d chunk request(s)", s->bucket,
           full, len, chunks);
  free(session);
  return rc;
}

int gcs_put(void *inst, const char *name, const void *buf, size_t len, unsigned flags) {
  struct gcs_sink *s = inst;
  if (buf == NULL && len > 0) {
    GCS_ERROR(s, "put '%s': no data buffer for %zu bytes", name != NULL ? name : "", len);
    return ENGINE_ERROR;
  }
  char *full = gcs_full_name(s, name, 0);
  if (full == NULL)
    return ENGINE_ERROR;
  int no_overwrite = (flags & ENGINE_PUT_NO_OVERWRITE) != 0;
  int rc = ENGINE_OK;
  char md5[OBJSTORE_MD5_B64_LEN + 1];
  if (objstore_md5(buf, len, NULL, md5) != 0)
    md5[0] = '\0'; /* then only the size is compared */
  if (no_overwrite) {
    /* ifGenerationMatch=0 makes the upload itself conditional on GCS, but
     * emulators ignore it: an explicit check keeps them honest too. */
    struct meta m;
    rc = gcs_get_meta(s, full, &m);
    if (rc == ENGINE_OK) {
      GCS_ERROR(s, "object gs://%s/%s already exists", s->bucket, full);
      rc = ENGINE_EXISTS;
    } else if (rc == ENGINE_NOT_FOUND) {
      rc = ENGINE_OK;
    }
  }
  if (rc == ENGINE_OK) {
    if (len > 0 && (uint64_t)len >= s->resumable_threshold)
      rc = resumable_upload(s, full, buf, len, no_overwrite, md5);
    else
      rc = media_upload(s, full, buf != NULL ? buf : "", len, no_overwrite, md5);
  }
  free(full);
  return rc;
}
