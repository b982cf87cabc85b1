/* The "gcs" sink: a repository in a Google Cloud Storage bucket, through the
 * JSON API. Small objects are sent in one media upload, large ones through a
 * resumable session in chunks; downloads use alt=media with a Range header.
 * Every request goes through the engine's shared HTTP client
 * (host->http_request), which reuses connections and retries transport
 * errors, 408, 429 and 5xx with backoff. Authentication is an OAuth2 access
 * token obtained with a service-account key (auth.c), or nothing at all for
 * emulators. */
#include <inttypes.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gcs.h"

#define KIB ((uint64_t)1024)
#define MIB (KIB * 1024)
#define CHUNK_GRANULE (256 * KIB) /* resumable chunks must be multiples of this */
#define MAX_OBJECT_NAME 1024      /* bytes, GCS limit */
#define LIST_PAGE 1000
#define SESSION_BACKOFF_MS 500
#define SESSION_BACKOFF_MAX_MS 30000
#define MAX_SESSION_RESTARTS 3

/* ---- requests --------------------------------------------------------- */

struct call {
  const char *method;
  const char *url;
  const char *const *headers; /* NULL-terminated, may be NULL */
  const void *body;
  size_t body_len;
  int (*on_body)(void *ud, const void *data, size_t len);
  void *ud;
  int no_retry;       /* the caller retries itself (resumable sessions) */
  uint64_t max_body;  /* 0: the client's default */
  int64_t timeout_ms; /* 0: the client's default */
};

/* Sends one request (with the client's retries) and, when the access token
 * was refused, once more with a fresh one. ENGINE_OK: a response arrived,
 * whatever its status. ENGINE_ERROR: none did; the error names `verb` and
 * `object`. The object may be NULL for bucket-level requests. */
static int send_call(struct gcs_sink *s, const struct call *c, const char *verb, const char *object,
                     struct engine_http_response *resp) {
  const struct engine_host *h = s->host;
  for (int auth_try = 0;; auth_try++) {
    char *token = NULL;
    uint64_t gen = 0;
    if (s->auth != NULL && gcs_auth_token(s->auth, &token, &gen) != ENGINE_OK)
      return ENGINE_ERROR; /* the message names the account and the token endpoint */
    struct engine_http_request req = {
        .struct_size = sizeof req,
        .method = c->method,
        .url = c->url,
        .headers = c->headers,
        .body = c->body,
        .body_len = c->body_len,
        .bearer_token = token,
        .ca_bundle = s->ca_bundle,
        .timeout_ms = c->timeout_ms,
        .max_retries = c->no_retry ? 0 : s->max_retries,
        .on_body = c->on_body,
        .ud = c->ud,
        .max_body = c->max_body,
    };
    memset(resp, 0, sizeof *resp);
    resp->struct_size = sizeof *resp;
    int rc = h->http_request(h, &req, resp);
    objstore_wipe_free(token);
    if (rc != ENGINE_OK) {
      GCS_ERROR(s, "%s gs://%s%s%s: no response after %d attempt(s): %s", verb, s->bucket,
                object != NULL ? "/" : "", object != NULL ? object : "", resp->attempts,
                resp->error[0] ? resp->error : "unknown transport error");
      h->http_response_free(resp);
      return ENGINE_ERROR;
    }
    if (resp->status == 401 && s->auth != NULL && auth_try == 0) {
      /* tokens can be revoked or expire early; one fresh token settles it */
      h->log(h, ENGINE_LOG_DEBUG, "%s gs://%s/%s: HTTP 401, renewing the access token", verb,
             s->bucket, object != NULL ? object : "");
      gcs_auth_invalidate(s->auth, gen);
      h->http_response_free(resp);
      if (c->on_body != NULL)
        c->on_body(c->ud, NULL, 0);
      continue;
    }
    return ENGINE_OK;
  }
}

/* Sets the error for an unexpected HTTP status and returns ENGINE_ERROR.
 * `body` is the response body (the collected one, or what on_body got). */
static int fail_http(struct gcs_sink *s, const char *verb, const char *object, long status,
                     const char *body, size_t body_len) {
  char msg[512];
  gcs_error_text(body, body_len, msg, sizeof msg);
  const char *hint = "";
  if (status == 401)
    hint = s->auth != NULL ? " (the access token was refused)"
                           : " (no credentials are configured: set option 'credentials')";
  else if (status == 403)
    hint = s->auth != NULL ? " (check the service account's IAM role on the bucket)" : "";
  GCS_ERROR(s, "%s gs://%s%s%s: HTTP %ld%s%s%s", verb, s->bucket, object != NULL ? "/" : "",
            object != NULL ? object : "", status, msg[0] ? ": " : "", msg, hint);
  return ENGINE_ERROR;
}

static int fail_oom(struct gcs_sink *s, const char *what, const char *name) {
  GCS_ERROR(s, "out of memory while %s '%s' in %s", what, name, s->where);
  return ENGINE_ERROR;
}

/* ---- names and URLs --------------------------------------------------- */

/* The full object name (prefix + name), malloc'd; NULL with the error set
 * when the name cannot be a GCS object name. */
static char *full_name(struct gcs_sink *s, const char *name, int allow_empty) {
  if (name == NULL || (name[0] == '\0' && !allow_empty)) {
    GCS_ERROR(s, "invalid object name '': names must not be empty (%s)", s->where);
    return NULL;
  }
  for (const char *p = name; *p; p++) {
    if (*p == '\r' || *p == '\n') {
      GCS_ERROR(s, "invalid object name '%s': GCS object names cannot contain CR or LF (%s)", name,
                s->where);
      return NULL;
    }
  }
  char *full = NULL;
  if (asprintf(&full, "%s%s", s->prefix, name) < 0) {
    fail_oom(s, "naming object", name);
    return NULL;
  }
  if (strlen(full) > MAX_OBJECT_NAME) {
    GCS_ERROR(s, "invalid object name '%s': with the prefix it is longer than %d bytes (%s)", name,
              MAX_OBJECT_NAME, s->where);
    free(full);
    return NULL;
  }
  return full;
}

/* {endpoint}/storage/v1/b/{bucket}/o/{object}[?query] */
static char *object_url(struct gcs_sink *s, const char *full, const char *query) {
  char *enc = objstore_uri_encode(full, strlen(full), 0);
  if (enc == NULL)
    return NULL;
  char *url = NULL;
  if (asprintf(&url, "%s/storage/v1/b/%s/o/%s%s%s", s->endpoint, s->bucket_enc, enc,
               query != NULL ? "?" : "", query != NULL ? query : "") < 0)
    url = NULL;
  free(enc);
  return url;
}

/* {endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=T&name=N[&ifGenerationMatch=0] */
static char *upload_url(struct gcs_sink *s, const char *full, const char *type, int no_overwrite) {
  char *enc = objstore_uri_encode(full, strlen(full), 0);
  if (enc == NULL)
    return NULL;
  char *url = NULL;
  if (asprintf(&url, "%s/upload/storage/v1/b/%s/o?uploadType=%s&name=%s%s", s->endpoint,
               s->bucket_enc, type, enc, no_overwrite ? "&ifGenerationMatch=0" : "") < 0)
    url = NULL;
  free(enc);
  return url;
}

/* ---- object metadata -------------------------------------------------- */

struct meta {
  uint64_t size;
  char md5[32]; /* base64 MD5 as GCS reports it, "" when absent (composite objects) */
};

/* GCS encodes uint64 fields as JSON strings; emulators sometimes as numbers. */
static int parse_size(json_t *v, uint64_t *out) {
  if (json_is_integer(v) && json_integer_value(v) >= 0) {
    *out = (uint64_t)json_integer_value(v);
    return 0;
  }
  return json_is_string(v) ? objstore_parse_u64(json_string_value(v), out) : -1;
}

/* Reads size and md5Hash from an object resource. */
static int parse_meta(const char *body, size_t len, struct meta *m) {
  memset(m, 0, sizeof *m);
  json_t *root = json_loadb(body, len, 0, NULL);
  if (root == NULL)
    return -1;
  int rc = parse_size(json_object_get(root, "size"), &m->size);
  const char *md5 = json_string_value(json_object_get(root, "md5Hash"));
  if (md5 != NULL && strlen(md5) < sizeof m->md5)
    snprintf(m->md5, sizeof m->md5, "%s", md5);
  json_decref(root);
  return rc;
}

/* Metadata of `full`: ENGINE_OK, ENGINE_NOT_FOUND (message set) or ENGINE_ERROR. */
static int get_meta(struct gcs_sink *s, const char *full, struct meta *m) {
  char *url = object_url(s, full, "fields=size%2Cmd5Hash");
  if (url == NULL)
    return fail_oom(s, "naming object", full);
  static const char *const headers[] = {"Accept: application/json", NULL};
  struct call c = {.method = "GET", .url = url, .headers = headers, .max_body = MIB};
  struct engine_http_response resp;
  int rc = send_call(s, &c, "stat", full, &resp);
  free(url);
  if (rc != ENGINE_OK)
    return rc;
  if (resp.status == 200) {
    if (parse_meta(resp.body, resp.body_len, m) != 0) {
      GCS_ERROR(s, "stat gs://%s/%s: the server's answer has no valid 'size'", s->bucket, full);
      rc = ENGINE_ERROR;
    }
  } else if (resp.status == 404) {
    GCS_ERROR(s, "object gs://%s/%s not found", s->bucket, full);
    rc = ENGINE_NOT_FOUND;
  } else {
    rc = fail_http(s, "stat", full, resp.status, resp.body, resp.body_len);
  }
  s->host->http_response_free(&resp);
  return rc;
}

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
    if (get_meta(s, full, &m) == ENGINE_OK && m.size == (uint64_t)len && m.md5[0] != '\0' &&
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
    if (parse_meta(r->body, r->body_len, &m) != 0) {
      GCS_ERROR(s, "upload gs://%s/%s: HTTP %ld but the answer is not an object resource",
                s->bucket, full, r->status);
      return ENGINE_ERROR;
    }
    return verify_stored(s, full, &m, md5, len);
  }
  if (r->status == 412)
    return precondition_failed(s, full, md5, len, maybe_ours);
  return fail_http(s, "upload", full, r->status, r->body, r->body_len);
}

static int media_upload(struct gcs_sink *s, const char *full, const void *buf, size_t len,
                        int no_overwrite, const char *md5) {
  char *url = upload_url(s, full, "media", no_overwrite);
  if (url == NULL)
    return fail_oom(s, "uploading", full);
  static const char *const headers[] = {"Content-Type: application/octet-stream",
                                        "Accept: application/json", NULL};
  struct call c = {.method = "POST",
                   .url = url,
                   .headers = headers,
                   .body = buf,
                   .body_len = len,
                   .max_body = MIB};
  struct engine_http_response resp;
  int rc = send_call(s, &c, "upload", full, &resp);
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
  char *url = upload_url(s, full, "resumable", no_overwrite);
  char *xlen = NULL;
  if (url == NULL || asprintf(&xlen, "X-Upload-Content-Length: %zu", len) < 0) {
    free(url);
    return fail_oom(s, "uploading", full);
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
  int rc = send_call(s, &c, "upload", full, &resp);
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
    rc = fail_http(s, "upload", full, resp.status, resp.body, resp.body_len);
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
  *rc = fail_http(s, "upload", full, r->status, r->body, r->body_len);
  return CHUNK_FAIL;
}

/* Asks how much of the upload the server holds (PUT, Content-Range: bytes STAR/len). */
static enum chunk_outcome session_query(struct gcs_sink *s, const char *session, const char *full,
                                        const char *md5, size_t len, uint64_t *offset, int *rc) {
  char *cr = NULL;
  if (asprintf(&cr, "Content-Range: bytes */%zu", len) < 0) {
    *rc = fail_oom(s, "uploading", full);
    return CHUNK_FAIL;
  }
  const char *headers[] = {cr, "Accept: application/json", NULL};
  struct call c = {
      .method = "PUT", .url = session, .headers = headers, .no_retry = 1, .max_body = MIB};
  struct engine_http_response resp;
  int hrc = send_call(s, &c, "upload", full, &resp);
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
  if (send_call(s, &c, "cancel upload", full, &resp) == ENGINE_OK)
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
      rc = fail_oom(s, "uploading", full);
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
    int hrc = send_call(s, &c, "upload", full, &resp);
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
        fail_http(s, "upload", full, resp.status, resp.body, resp.body_len);
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

static int gcs_put(void *inst, const char *name, const void *buf, size_t len, unsigned flags) {
  struct gcs_sink *s = inst;
  if (buf == NULL && len > 0) {
    GCS_ERROR(s, "put '%s': no data buffer for %zu bytes", name != NULL ? name : "", len);
    return ENGINE_ERROR;
  }
  char *full = full_name(s, name, 0);
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
    rc = get_meta(s, full, &m);
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

/* ---- get / stat ------------------------------------------------------- */

/* One ranged download (alt=media); what the answer means is the sinks'
 * shared decision (objstore_read_answer). */
static int gcs_get(void *inst, const char *name, uint64_t off, uint64_t len, void **buf,
                   size_t *out_len) {
  struct gcs_sink *s = inst;
  *buf = NULL;
  *out_len = 0;
  char why[256];
  struct objstore_read rd;
  if (objstore_read_init(&rd, off, len, NULL, NULL, why, sizeof why) != 0) {
    GCS_ERROR(s, "unable to read object '%s': %s", name != NULL ? name : "", why);
    return ENGINE_ERROR;
  }
  char *full = full_name(s, name, 0);
  char *url = full != NULL ? object_url(s, full, "alt=media") : NULL;
  int rc = ENGINE_ERROR;
  if (full == NULL)
    goto out;
  if (url == NULL) {
    rc = fail_oom(s, "reading", full);
    goto out;
  }
  const char *headers[] = {rd.range, NULL};
  struct call c = {.method = "GET",
                   .url = url,
                   .headers = rd.range[0] ? headers : NULL,
                   .on_body = objstore_body_cb,
                   .ud = &rd.body};
  struct engine_http_response resp;
  if (send_call(s, &c, "download", full, &resp) != ENGINE_OK) {
    if (objstore_body_stopped(&rd.body, why, sizeof why))
      GCS_ERROR(s, "download gs://%s/%s: %s", s->bucket, full, why);
    goto out;
  }
  enum objstore_verdict v = objstore_read_answer(&rd, resp.status, why, sizeof why);
  if (v == OBJSTORE_NEED_SIZE) {
    struct meta m;
    rc = get_meta(s, full, &m);
    if (rc == ENGINE_OK)
      v = objstore_read_sized(&rd, m.size, why, sizeof why);
    rc = rc == ENGINE_OK ? ENGINE_ERROR : rc;
  }
  switch (v) {
  case OBJSTORE_DATA:
    *buf = objstore_read_take(&rd, out_len);
    rc = *buf != NULL ? ENGINE_OK : fail_oom(s, "reading", full);
    break;
  case OBJSTORE_ABSENT:
    GCS_ERROR(s, "object gs://%s/%s not found", s->bucket, full);
    rc = ENGINE_NOT_FOUND;
    break;
  case OBJSTORE_FAILED:
    GCS_ERROR(s, "unable to read object gs://%s/%s: %s", s->bucket, full, why);
    break;
  case OBJSTORE_STATUS:
    rc = fail_http(s, "download", full, resp.status, (const char *)rd.body.p, rd.body.len);
    break;
  case OBJSTORE_NEED_SIZE:
    break; /* get_meta's message stands */
  }
  s->host->http_response_free(&resp);
out:
  objstore_read_free(&rd);
  free(url);
  free(full);
  return rc;
}

static int gcs_stat(void *inst, const char *name, uint64_t *size) {
  struct gcs_sink *s = inst;
  char *full = full_name(s, name, 0);
  if (full == NULL)
    return ENGINE_ERROR;
  struct meta m;
  int rc = get_meta(s, full, &m);
  if (rc == ENGINE_OK && size != NULL)
    *size = m.size;
  free(full);
  return rc;
}

/* ---- list ------------------------------------------------------------- */

/* One page; *next is the nextPageToken (malloc'd) or NULL at the end.
 * *stopped is set when the callback asked to stop. */
static int list_page(struct gcs_sink *s, const char *full_prefix, const char *token,
                     int (*cb)(void *ud, const char *name, uint64_t size), void *ud, char **next,
                     int *stopped) {
  *next = NULL;
  char *penc = objstore_uri_encode(full_prefix, strlen(full_prefix), 0);
  char *tenc = token != NULL ? objstore_uri_encode(token, strlen(token), 0) : NULL;
  char *url = NULL;
  if (penc == NULL || (token != NULL && tenc == NULL) ||
      asprintf(&url,
               "%s/storage/v1/b/%s/o?prefix=%s&maxResults=%d"
               "&fields=items%%28name%%2Csize%%29%%2CnextPageToken%s%s",
               s->endpoint, s->bucket_enc, penc, LIST_PAGE, tenc != NULL ? "&pageToken=" : "",
               tenc != NULL ? tenc : "") < 0) {
    free(penc);
    free(tenc);
    return fail_oom(s, "listing", full_prefix);
  }
  free(penc);
  free(tenc);
  static const char *const headers[] = {"Accept: application/json", NULL};
  struct call c = {.method = "GET", .url = url, .headers = headers, .max_body = 64 * MIB};
  struct engine_http_response resp;
  int rc = send_call(s, &c, "list", full_prefix, &resp);
  free(url);
  if (rc != ENGINE_OK)
    return rc;
  if (resp.status != 200) {
    if (resp.status == 404)
      GCS_ERROR(s, "list gs://%s/%s: HTTP 404: bucket '%s' not found", s->bucket, full_prefix,
                s->bucket);
    else
      fail_http(s, "list", full_prefix, resp.status, resp.body, resp.body_len);
    s->host->http_response_free(&resp);
    return ENGINE_ERROR;
  }
  json_t *root = json_loadb(resp.body, resp.body_len, 0, NULL);
  s->host->http_response_free(&resp);
  json_t *items = json_object_get(root, "items");
  if (root == NULL || (items != NULL && !json_is_array(items))) {
    GCS_ERROR(s, "list gs://%s/%s: the server's answer is not an object listing", s->bucket,
              full_prefix);
    json_decref(root);
    return ENGINE_ERROR;
  }
  size_t plen = strlen(s->prefix);
  size_t i;
  json_t *it;
  json_array_foreach(items, i, it) {
    const char *nm = json_string_value(json_object_get(it, "name"));
    uint64_t size = 0;
    if (nm == NULL || parse_size(json_object_get(it, "size"), &size) != 0) {
      GCS_ERROR(s, "list gs://%s/%s: an entry of the listing has no valid name or size", s->bucket,
                full_prefix);
      rc = ENGINE_ERROR;
      break;
    }
    size_t nl = strlen(nm);
    /* "folder/" placeholders (made by consoles) are not repository objects */
    if (nl <= plen || strncmp(nm, s->prefix, plen) != 0 || nm[nl - 1] == '/')
      continue;
    if (cb(ud, nm + plen, size) != 0) {
      *stopped = 1;
      break;
    }
  }
  const char *tok = json_string_value(json_object_get(root, "nextPageToken"));
  if (rc == ENGINE_OK && !*stopped && tok != NULL && tok[0] != '\0') {
    *next = strdup(tok);
    if (*next == NULL)
      rc = fail_oom(s, "listing", full_prefix);
  }
  json_decref(root);
  return rc;
}

static int gcs_list(void *inst, const char *prefix,
                    int (*cb)(void *ud, const char *name, uint64_t size), void *ud) {
  struct gcs_sink *s = inst;
  char *full = full_name(s, prefix != NULL ? prefix : "", 1);
  if (full == NULL)
    return ENGINE_ERROR;
  int rc = ENGINE_OK, stopped = 0;
  char *token = NULL;
  do {
    char *next = NULL;
    if (s->host->cancelled(s->host)) {
      GCS_ERROR(s, "list gs://%s/%s: cancelled", s->bucket, full);
      rc = ENGINE_ERROR;
      break;
    }
    rc = list_page(s, full, token, cb, ud, &next, &stopped);
    free(token);
    token = next;
  } while (rc == ENGINE_OK && token != NULL);
  free(token);
  free(full);
  return rc;
}

/* ---- del -------------------------------------------------------------- */

static int gcs_del(void *inst, const char *name) {
  struct gcs_sink *s = inst;
  char *full = full_name(s, name, 0);
  if (full == NULL)
    return ENGINE_ERROR;
  char *url = object_url(s, full, NULL);
  if (url == NULL) {
    int rc = fail_oom(s, "deleting", full);
    free(full);
    return rc;
  }
  struct call c = {.method = "DELETE", .url = url, .max_body = MIB};
  struct engine_http_response resp;
  int rc = send_call(s, &c, "delete", full, &resp);
  free(url);
  if (rc == ENGINE_OK) {
    if (resp.status == 200 || resp.status == 204) {
      rc = ENGINE_OK;
    } else if (resp.status == 404 && resp.attempts > 1) {
      /* an earlier attempt whose answer was lost deleted it */
      rc = ENGINE_OK;
    } else if (resp.status == 404) {
      GCS_ERROR(s, "object gs://%s/%s not found", s->bucket, full);
      rc = ENGINE_NOT_FOUND;
    } else {
      rc = fail_http(s, "delete", full, resp.status, resp.body, resp.body_len);
    }
    s->host->http_response_free(&resp);
  }
  free(full);
  return rc;
}

/* ---- instance --------------------------------------------------------- */

static const char *gcs_describe(void *inst) {
  return ((struct gcs_sink *)inst)->where;
}

static void gcs_destroy(void *inst) {
  struct gcs_sink *s = inst;
  if (s == NULL)
    return;
  gcs_auth_destroy(s->auth);
  free(s->bucket);
  free(s->bucket_enc);
  free(s->prefix);
  free(s->endpoint);
  free(s->ca_bundle);
  free(s->where);
  free(s);
}

static int valid_bucket(const char *b) {
  size_t n = strlen(b);
  if (n < 3 || n > 222)
    return 0;
  for (const char *p = b; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
          *p == '.'))
      return 0;
  return 1;
}

static int is_loopback(const char *endpoint) {
  const char *h = strstr(endpoint, "://");
  h = h != NULL ? h + 3 : endpoint;
  return strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost", 9) == 0 ||
         strncmp(h, "[::1]", 5) == 0;
}

static int configure(struct gcs_sink *s) {
  const struct engine_host *h = s->host;
  const char *bucket = h->cfg_string(h, "bucket");
  const char *prefix = h->cfg_string(h, "prefix");
  const char *endpoint = h->cfg_string(h, "endpoint");
  const char *ca = h->cfg_string(h, "ca_bundle");

  if (bucket == NULL || !valid_bucket(bucket)) {
    h->set_error(h,
                 "option 'bucket': '%s' is not a GCS bucket name (3 to 222 characters of "
                 "a-z, 0-9, '-', '_' and '.')",
                 bucket != NULL ? bucket : "");
    return ENGINE_ERROR;
  }
  /* a prefix names a "directory": "engine" and "engine/" both mean engine/... */
  if (prefix == NULL)
    prefix = "";
  while (prefix[0] == '/')
    prefix++;
  size_t pl = strlen(prefix);
  if (pl > 0 && prefix[pl - 1] != '/') {
    if (asprintf(&s->prefix, "%s/", prefix) < 0)
      s->prefix = NULL;
  } else {
    s->prefix = strdup(prefix);
  }
  if (endpoint == NULL || endpoint[0] == '\0')
    endpoint = GCS_DEFAULT_ENDPOINT;
  if (strncmp(endpoint, "https://", 8) != 0 && strncmp(endpoint, "http://", 7) != 0) {
    h->set_error(h, "option 'endpoint': '%s' is not an http:// or https:// URL", endpoint);
    return ENGINE_ERROR;
  }
  s->endpoint = strdup(endpoint);
  s->bucket = strdup(bucket);
  s->bucket_enc = objstore_uri_encode(bucket, strlen(bucket), 0);
  s->ca_bundle = ca != NULL && ca[0] != '\0' ? strdup(ca) : NULL;
  if (s->prefix == NULL || s->endpoint == NULL || s->bucket == NULL || s->bucket_enc == NULL ||
      (ca != NULL && ca[0] != '\0' && s->ca_bundle == NULL) ||
      asprintf(&s->where, "gs://%s/%s", bucket, s->prefix) < 0) {
    s->where = NULL;
    h->set_error(h, "out of memory while creating the gcs sink for bucket '%s'", bucket);
    return ENGINE_ERROR;
  }
  size_t el = strlen(s->endpoint);
  while (el > 0 && s->endpoint[el - 1] == '/')
    s->endpoint[--el] = '\0';
  if (strlen(s->prefix) >= MAX_OBJECT_NAME) {
    h->set_error(h, "option 'prefix': longer than %d bytes", MAX_OBJECT_NAME - 1);
    return ENGINE_ERROR;
  }

  int64_t threshold = h->cfg_int(h, "resumable_threshold", (int64_t)(32 * MIB));
  int64_t chunk = h->cfg_int(h, "chunk_size", (int64_t)(16 * MIB));
  int64_t retries = h->cfg_int(h, "max_retries", 6);
  if (threshold < 0) {
    h->set_error(h, "option 'resumable_threshold': must not be negative");
    return ENGINE_ERROR;
  }
  if (chunk <= 0 || chunk % (int64_t)CHUNK_GRANULE != 0 || (uint64_t)chunk > 4096 * MIB) {
    h->set_error(h,
                 "option 'chunk_size': %" PRId64 " bytes is not a positive multiple of 256KiB "
                 "(at most 4GiB), as GCS requires for resumable upload chunks",
                 chunk);
    return ENGINE_ERROR;
  }
  if (retries < 0 || retries > 100) {
    h->set_error(h, "option 'max_retries': %" PRId64 " is not between 0 and 100", retries);
    return ENGINE_ERROR;
  }
  s->resumable_threshold = (uint64_t)threshold;
  s->chunk_size = (uint64_t)chunk;
  s->max_retries = (int)retries;

  const char *cred = h->cfg_string(h, "credentials");
  if (cred == NULL) {
    if (h->cfg_string(h, "token_uri") != NULL)
      h->log(h, ENGINE_LOG_WARN, "option 'token_uri' is ignored: no 'credentials' are set");
    if (strcmp(s->endpoint, GCS_DEFAULT_ENDPOINT) == 0)
      h->log(h, ENGINE_LOG_WARN,
             "no 'credentials': requests to %s are sent unauthenticated and "
             "only work on a publicly writable bucket",
             s->endpoint);
    else
      h->log(h, ENGINE_LOG_INFO,
             "no 'credentials': requests to %s are sent unauthenticated "
             "(emulator)",
             s->endpoint);
    return ENGINE_OK;
  }
  char *key = NULL;
  size_t key_len = 0;
  if (h->secret(h, "credentials", &key, &key_len) != ENGINE_OK)
    return ENGINE_ERROR;
  int rc = gcs_auth_create(h, key, key_len, h->cfg_string(h, "token_uri"), s->ca_bundle,
                           s->max_retries, &s->auth);
  h->secret_free(key, key_len);
  if (rc != ENGINE_OK)
    return rc;
  if (strncmp(s->endpoint, "http://", 7) == 0 && !is_loopback(s->endpoint))
    h->log(h, ENGINE_LOG_WARN, "endpoint %s is plain http: access tokens travel unencrypted",
           s->endpoint);
  h->log(h, ENGINE_LOG_DEBUG, "authenticating to %s as '%s'", s->endpoint, gcs_auth_email(s->auth));
  return ENGINE_OK;
}

static int gcs_create(const struct engine_host *host, void **out) {
  *out = NULL;
  if (objstore_need_http(host, "gcs") != ENGINE_OK)
    return ENGINE_ERROR;
  struct gcs_sink *s = calloc(1, sizeof *s);
  if (s == NULL) {
    host->set_error(host, "out of memory while creating the gcs sink");
    return ENGINE_ERROR;
  }
  s->host = host;
  if (configure(s) != ENGINE_OK) {
    gcs_destroy(s);
    return ENGINE_ERROR;
  }
  *out = s;
  return ENGINE_OK;
}

static const struct engine_option gcs_options[] = {
    {.name = "bucket",
     .type = ENGINE_OPT_STRING,
     .required = 1,
     .description = "Name of the GCS bucket that holds the repository (it must exist)."},
    {.name = "prefix",
     .type = ENGINE_OPT_STRING,
     .default_value = "",
     .description = "Object name prefix of the repository inside the bucket, e.g. engine/ (a "
                    "trailing '/' is added if missing)."},
    {.name = "credentials",
     .type = ENGINE_OPT_SECRET,
     .description = "Service-account JSON key: file:/path or env:NAME holding the JSON; leave it "
                    "out to send requests unauthenticated (emulators)."},
    {.name = "endpoint",
     .type = ENGINE_OPT_STRING,
     .default_value = GCS_DEFAULT_ENDPOINT,
     .description = "Base URL of the JSON API, e.g. http://127.0.0.1:9199 for an emulator."},
    {.name = "token_uri",
     .type = ENGINE_OPT_STRING,
     .description = "OAuth2 token endpoint; default: the key file's token_uri."},
    {.name = "ca_bundle",
     .type = ENGINE_OPT_STRING,
     .description = "CA certificates file for TLS; default: the system's."},
    {.name = "resumable_threshold",
     .type = ENGINE_OPT_SIZE,
     .default_value = "32MiB",
     .description = "Objects of at least this size are sent through a resumable upload session."},
    {.name = "chunk_size",
     .type = ENGINE_OPT_SIZE,
     .default_value = "16MiB",
     .description = "Chunk size of resumable uploads; a multiple of 256KiB."},
    {.name = "max_retries",
     .type = ENGINE_OPT_INT,
     .default_value = "6",
     .description = "Retries of a failed request (transport errors, 408, 429, 5xx) with "
                    "exponential backoff and jitter."},
    {.name = NULL},
};

static const struct engine_sink_ops gcs_ops = {
    .struct_size = sizeof(struct engine_sink_ops),
    .put = gcs_put,
    .get = gcs_get,
    .stat = gcs_stat,
    .list = gcs_list,
    .del = gcs_del,
    .describe = gcs_describe,
};

static const struct engine_plugin gcs_plugin = {
    ENGINE_PLUGIN_HEADER,
    .kind = ENGINE_PLUGIN_SINK,
    .name = "gcs",
    .version = "0.1.0",
    .license = "MIT",
    .description =
        "Repository in a Google Cloud Storage bucket (JSON API, OAuth2 service account).",
    .options = gcs_options,
    .create = gcs_create,
    .destroy = gcs_destroy,
    .sink = &gcs_ops,
};

ENGINE_PLUGIN_EXPORT const struct engine_plugin *engine_plugin_query(uint32_t host_abi_major) {
  return host_abi_major == ENGINE_ABI_MAJOR ? &gcs_plugin : NULL;
}
