/* The configuration of the gcs sink: the options, and create (bucket,
 * prefix, endpoint, sizes, the service-account key) and destroy. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gcs_int.h"

void gcs_destroy(void *inst) {
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

  /* within gcs_bounds: the engine checked the pipeline against them */
  int64_t chunk = h->cfg_int(h, "chunk_size", (int64_t)(16 * MIB));
  if (chunk % (int64_t)CHUNK_GRANULE != 0) {
    h->set_error(h,
                 "option 'chunk_size': %" PRId64 " bytes is not a multiple of 256KiB, as GCS "
                 "requires for resumable upload chunks",
                 chunk);
    return ENGINE_ERROR;
  }
  s->resumable_threshold = (uint64_t)h->cfg_int(h, "resumable_threshold", (int64_t)(32 * MIB));
  s->chunk_size = (uint64_t)chunk;
  s->max_retries = (int)h->cfg_int(h, "max_retries", 6);

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

int gcs_create(const struct engine_host *host, void **out) {
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

const struct engine_option gcs_options[] = {
    {.name = "bucket",
     .type = ENGINE_OPT_STRING,
     .required = 1,
     .description = "Name of the GCS bucket that holds the repository (it must exist)."},
    {.name = "prefix",
     .type = ENGINE_OPT_STRING,
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

/* Checked by the engine against the pipeline (ABI 1.5), so create() need
 * not; chunk sizes must also be multiples of 256 KiB (checked in create). */
const struct engine_option_bounds gcs_bounds[] = {
    {.name = "chunk_size", .min = "256KiB", .max = "4GiB"},
    {.name = "max_retries", .min = "0", .max = "100"},
    {.name = NULL},
};
