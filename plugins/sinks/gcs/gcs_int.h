/* Internal interface of the "gcs" sink plugin: the instance, the OAuth2
 * service-account token source (auth.c), the reading of GCS error bodies
 * (errors.c) and the parts of the sink; encodings, digests and the meaning of ranged reads are the
 * sinks' shared ones (objstore.h). Nothing here is part of the plugin ABI. */
#ifndef GCS_INT_H
#define GCS_INT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "engine/plugin.h"
#include "objstore.h"

#define GCS_DEFAULT_ENDPOINT "https://storage.googleapis.com"
#define GCS_SCOPE "https://www.googleapis.com/auth/devstorage.read_write"

struct gcs_auth;

struct gcs_sink {
  const struct engine_host *host;
  char *bucket;
  char *prefix;    /* object name prefix ("" or e.g. "engine/"), prepended verbatim */
  char *endpoint;  /* scheme://host[:port] without a trailing '/' */
  char *ca_bundle; /* NULL: the system's CA store */
  char *where;     /* "gs://bucket/prefix", for describe() and messages */
  char *bucket_enc;
  uint64_t resumable_threshold;
  uint64_t chunk_size;
  int max_retries;
  struct gcs_auth *auth; /* NULL: requests are sent without credentials */
};

#define GCS_ERROR(s, ...) (s)->host->set_error((s)->host, __VA_ARGS__)

/* ---- errors.c ---- */

/* The "error.message" of a GCS JSON error body, else a short, printable
 * excerpt of the body; "" when there is none. Written into buf. */
const char *gcs_error_text(const char *body, size_t len, char *buf, size_t buflen);

/* ---- auth.c ---- */

/* Parses a service-account JSON key (type, client_email, private_key,
 * token_uri) and prepares to sign JWTs. token_uri_override may be NULL.
 * Sets the host error and returns ENGINE_ERROR on failure; the messages
 * never contain key material. */
int gcs_auth_create(const struct engine_host *host, const char *key_json, size_t key_len,
                    const char *token_uri_override, const char *ca_bundle, int max_retries,
                    struct gcs_auth **out);
void gcs_auth_destroy(struct gcs_auth *a);
/* A valid access token (malloc'd; release with objstore_wipe_free) and the
 * generation it belongs to; fetches a new one when the cached token is
 * missing or about to expire. Thread-safe. */
int gcs_auth_token(struct gcs_auth *a, char **token, uint64_t *generation);
/* The token of `generation` was refused (HTTP 401): forget it unless a newer
 * one was fetched meanwhile. */
void gcs_auth_invalidate(struct gcs_auth *a, uint64_t generation);
const char *gcs_auth_email(const struct gcs_auth *a);

/* ---- the sink: gcs.c (get, stat, list, del), request.c (one request,
 * its errors, object names and URLs, object metadata), upload.c (put: media
 * and resumable uploads), config.c (the options, create, destroy) ---- */

#define KIB ((uint64_t)1024)
#define MIB (KIB * 1024)
#define CHUNK_GRANULE (256 * KIB) /* resumable chunks must be multiples of this */
#define MAX_OBJECT_NAME 1024      /* bytes, GCS limit */
#define LIST_PAGE 1000
#define SESSION_BACKOFF_MS 500
#define SESSION_BACKOFF_MAX_MS 30000
#define MAX_SESSION_RESTARTS 3

/* One request (gcs_send). */
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
 * `object` (NULL for bucket-level requests). */
int gcs_send(struct gcs_sink *s, const struct call *c, const char *verb, const char *object,
             struct engine_http_response *resp);
/* Sets the error for an unexpected HTTP status (with the message of the
 * error body) and returns ENGINE_ERROR. */
int gcs_fail_http(struct gcs_sink *s, const char *verb, const char *object, long status,
                  const char *body, size_t body_len);
int gcs_fail_oom(struct gcs_sink *s, const char *what, const char *name);
/* Sets "object gs://bucket/full not found" and returns ENGINE_NOT_FOUND. */
int gcs_not_found(struct gcs_sink *s, const char *full);

/* The full object name (prefix + name), malloc'd; NULL with the error set
 * when the name cannot be a GCS object name. */
char *gcs_full_name(struct gcs_sink *s, const char *name, int allow_empty);
/* {endpoint}/storage/v1/b/{bucket}/o/{object}[?query], malloc'd. */
char *gcs_object_url(struct gcs_sink *s, const char *full, const char *query);
/* {endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=T&name=N[&ifGenerationMatch=0] */
char *gcs_upload_url(struct gcs_sink *s, const char *full, const char *type, int no_overwrite);

struct meta {
  uint64_t size;
  char md5[32]; /* base64 MD5 as GCS reports it, "" when absent (composite objects) */
};

/* A uint64 field of a JSON resource (GCS writes strings, emulators numbers). */
int gcs_parse_size(json_t *v, uint64_t *out);
/* Reads size and md5Hash from an object resource. */
int gcs_parse_meta(const char *body, size_t len, struct meta *m);
/* Metadata of `full`: ENGINE_OK, ENGINE_NOT_FOUND (message set) or ENGINE_ERROR. */
int gcs_get_meta(struct gcs_sink *s, const char *full, struct meta *m);

/* engine_sink_ops.put (upload.c). */
int gcs_put(void *inst, const char *name, const void *buf, size_t len, unsigned flags);

/* The options, create and destroy (config.c). */
extern const struct engine_option gcs_options[];
extern const struct engine_option_bounds gcs_bounds[];
int gcs_create(const struct engine_host *host, void **out);
void gcs_destroy(void *inst);

#endif
