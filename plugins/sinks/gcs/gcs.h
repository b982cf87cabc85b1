/* Internal interface of the "gcs" sink plugin: the instance, the OAuth2
 * service-account token source (auth.c) and the reading of GCS error bodies
 * (errors.c); encodings, digests and the meaning of ranged reads are the
 * sinks' shared ones (objstore.h). Nothing here is part of the plugin ABI. */
#ifndef GCS_SINK_H
#define GCS_SINK_H

#include <stddef.h>
#include <stdint.h>

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

#endif
