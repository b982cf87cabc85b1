/* One request of the gcs sink: sent with the instance's access token (a
 * refused token is renewed once), the message for an unexpected status,
 * object names and their URLs, and object metadata (size, MD5). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gcs_int.h"

/* ---- requests --------------------------------------------------------- */

/* Sends one request (with the client's retries) and, when the access token
 * was refused, once more with a fresh one. ENGINE_OK: a response arrived,
 * whatever its status. ENGINE_ERROR: none did; the error names `verb` and
 * `object`. The object may be NULL for bucket-level requests. */
int gcs_send(struct gcs_sink *s, const struct call *c, const char *verb, const char *object,
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
int gcs_fail_http(struct gcs_sink *s, const char *verb, const char *object, long status,
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

int gcs_not_found(struct gcs_sink *s, const char *full) {
  GCS_ERROR(s, "object gs://%s/%s not found", s->bucket, full);
  return ENGINE_NOT_FOUND;
}

int gcs_fail_oom(struct gcs_sink *s, const char *what, const char *name) {
  GCS_ERROR(s, "out of memory while %s '%s' in %s", what, name, s->where);
  return ENGINE_ERROR;
}

/* ---- names and URLs --------------------------------------------------- */

/* The full object name (prefix + name), malloc'd; NULL with the error set
 * when the name cannot be a GCS object name. */
char *gcs_full_name(struct gcs_sink *s, const char *name, int allow_empty) {
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
    gcs_fail_oom(s, "naming object", name);
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
char *gcs_object_url(struct gcs_sink *s, const char *full, const char *query) {
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
char *gcs_upload_url(struct gcs_sink *s, const char *full, const char *type, int no_overwrite) {
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

/* GCS encodes uint64 fields as JSON strings; emulators sometimes as numbers. */
int gcs_parse_size(json_t *v, uint64_t *out) {
  if (json_is_integer(v) && json_integer_value(v) >= 0) {
    *out = (uint64_t)json_integer_value(v);
    return 0;
  }
  return json_is_string(v) ? objstore_parse_u64(json_string_value(v), out) : -1;
}

/* Reads size and md5Hash from an object resource. */
int gcs_parse_meta(const char *body, size_t len, struct meta *m) {
  memset(m, 0, sizeof *m);
  json_t *root = json_loadb(body, len, 0, NULL);
  if (root == NULL)
    return -1;
  int rc = gcs_parse_size(json_object_get(root, "size"), &m->size);
  const char *md5 = json_string_value(json_object_get(root, "md5Hash"));
  if (md5 != NULL && strlen(md5) < sizeof m->md5)
    snprintf(m->md5, sizeof m->md5, "%s", md5);
  json_decref(root);
  return rc;
}

/* Metadata of `full`: ENGINE_OK, ENGINE_NOT_FOUND (message set) or ENGINE_ERROR. */
int gcs_get_meta(struct gcs_sink *s, const char *full, struct meta *m) {
  char *url = gcs_object_url(s, full, "fields=size%2Cmd5Hash");
  if (url == NULL)
    return gcs_fail_oom(s, "naming object", full);
  static const char *const headers[] = {"Accept: application/json", NULL};
  struct call c = {.method = "GET", .url = url, .headers = headers, .max_body = MIB};
  struct engine_http_response resp;
  int rc = gcs_send(s, &c, "stat", full, &resp);
  free(url);
  if (rc != ENGINE_OK)
    return rc;
  if (resp.status == 200) {
    if (gcs_parse_meta(resp.body, resp.body_len, m) != 0) {
      GCS_ERROR(s, "stat gs://%s/%s: the server's answer has no valid 'size'", s->bucket, full);
      rc = ENGINE_ERROR;
    }
  } else if (resp.status == 404) {
    rc = gcs_not_found(s, full);
  } else {
    rc = gcs_fail_http(s, "stat", full, resp.status, resp.body, resp.body_len);
  }
  s->host->http_response_free(&resp);
  return rc;
}
