/* One request of the s3/minio sinks: the URL (virtual-host or path-style),
 * the payload digests and the SigV4 signature (libcurl, through the host's
 * HTTP client), what an error response says and the hint that goes with it,
 * object keys under the prefix, and HEAD. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "s3_int.h"

int s3_fail_oom(const struct s3 *s, const char *what) {
  SET_ERROR(s, "out of memory while handling '%s'", what);
  return ENGINE_ERROR;
}

/* ---- requests --------------------------------------------------------- */

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
int s3_call(const struct s3 *s, struct call *c, struct engine_http_response *resp) {
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
    return s3_fail_oom(s, c->what);
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
void s3_error_code(const struct call *c, const struct engine_http_response *r,
                   struct s3_error_doc *e) {
  size_t len = 0;
  const char *body = resp_body(c, r, &len);
  if (!s3_xml_error(body, len, e))
    e->code[0] = e->message[0] = e->region[0] = '\0';
}

/* Set the message for an unexpected status: method, object, status, the S3
 * error code and message, and a hint where the cause is usually the same. */
int s3_fail_status(const struct s3 *s, const struct call *c, const struct engine_http_response *r) {
  struct s3_error_doc e;
  s3_error_code(c, r, &e);
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
char *s3_object_key(const struct s3 *s, const char *name) {
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
    s3_fail_oom(s, name);
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

/* HEAD an object: ENGINE_OK (size, and the unquoted ETag if etag != NULL),
 * ENGINE_NOT_FOUND or ENGINE_ERROR, with the message set unless OK. */
int s3_head_object(const struct s3 *s, const char *key, uint64_t *size, char **etag) {
  if (etag != NULL)
    *etag = NULL;
  struct call c = {.method = "HEAD", .key = key, .what = key};
  struct engine_http_response r;
  int rc = s3_call(s, &c, &r);
  if (rc != ENGINE_OK)
    goto out;
  if (r.status == 404) {
    SET_ERROR(s, "HEAD %s: not found (HTTP 404)", key);
    rc = ENGINE_NOT_FOUND;
    goto out;
  }
  if (r.status != 200) {
    rc = s3_fail_status(s, &c, &r);
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
