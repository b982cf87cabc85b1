/* Internal interface of the s3/minio sink plugins: the XML and credential
 * helpers and the parts of the sink; encodings, digests and the meaning of
 * ranged reads are the sinks' shared ones (objstore.h). Nothing here is
 * exported from the plugin. */
#ifndef ENGINE_S3_INT_H
#define ENGINE_S3_INT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/plugin.h"
#include "objstore.h"

/* The hex SHA-256 of the empty string: the payload hash of body-less requests. */
#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* ---- XML (s3_xml.c, libxml2) ---- */

/* Initialise libxml2 once, before any thread parses. */
void s3_xml_init(void);

struct s3_error_doc {
  char code[128];    /* the S3 error <Code>, "" if none */
  char message[512]; /* the S3 error <Message>, "" if none */
  char region[64];   /* <Region> of a redirect / AuthorizationHeaderMalformed, "" if none */
};
/* Parse an S3 <Error> document; returns 1 if one was found. */
int s3_xml_error(const char *body, size_t len, struct s3_error_doc *out);

/* The text of the child element `name` of the root element, if the root is
 * called `root`: e.g. ("InitiateMultipartUploadResult", "UploadId").
 * malloc'd; NULL if absent, malformed or on OOM. */
char *s3_xml_root_child(const char *body, size_t len, const char *root, const char *name);

/* One page of ListObjectsV2: calls cb for each <Contents> entry in document
 * order. Returns 0 on success, 1 when cb asked to stop, -1 if the document is
 * not a ListBucketResult (why says why). *next_token is the malloc'd
 * NextContinuationToken when IsTruncated is true, else NULL. */
int s3_xml_list(const char *body, size_t len, int (*cb)(void *ud, const char *key, uint64_t size),
                void *ud, char **next_token, char *why, size_t why_len);

/* Whether a key can be carried in an XML 1.0 document: strictly valid UTF-8
 * of characters XML allows (not below 0x20 but tab, LF and CR; not U+FFFE or
 * U+FFFF). Other keys must be addressed through the URL alone. */
int s3_xml_key_ok(const char *key);

/* The body of a DeleteObjects request in quiet mode for n keys (each must
 * pass s3_xml_key_ok): <Delete><Quiet>true</Quiet><Object><Key>..., keys
 * escaped by libxml2. malloc'd, NULL on OOM. */
char *s3_xml_delete_doc(const char *const *keys, size_t n, size_t *out_len);

/* The body of a CompleteMultipartUpload request for the parts' ETags
 * (part i + 1 has etags[i]), escaped by libxml2. malloc'd, NULL on OOM. */
char *s3_xml_complete_doc(char *const *etags, size_t n, size_t *out_len);

/* A DeleteObjects response: calls cb for each <Error> entry (key, code,
 * message; "" where absent) in document order. Returns 0 on success, 1 when
 * cb asked to stop, -1 if the document is not a DeleteResult (why says why). */
int s3_xml_delete_errors(const char *body, size_t len,
                         int (*cb)(void *ud, const char *key, const char *code,
                                   const char *message),
                         void *ud, char *why, size_t why_len);

/* One page of ListMultipartUploads: calls cb for each <Upload> entry in
 * document order with its key, upload id and <Initiated> text ("" if
 * absent). Returns 0 on success, 1 when cb asked to stop, -1 if the document
 * is not a ListMultipartUploadsResult (why says why). When IsTruncated is
 * true, *next_key and *next_upload_id are the malloc'd NextKeyMarker and
 * NextUploadIdMarker (the latter may be NULL), else both NULL. */
int s3_xml_uploads(const char *body, size_t len,
                   int (*cb)(void *ud, const char *key, const char *upload_id,
                             const char *initiated),
                   void *ud, char **next_key, char **next_upload_id, char *why, size_t why_len);

/* ---- credentials (s3_creds.c) ---- */

struct s3_creds {
  char *access_key;
  char *secret_key;
  char *token; /* session token, or NULL */
};

/* Resolve the credentials from the instance's configuration: the secret
 * options access_key_id/secret_access_key[/session_token] if given, else
 * `credentials` ("env" or "file:/path" with `profile`). On failure the
 * message is set through host->set_error, without any secret value. */
int s3_creds_load(const struct engine_host *h, struct s3_creds *c);
/* Wipe and free. */
void s3_creds_free(struct s3_creds *c);

/* ---- the sink: s3.c (the sink's operations), s3_request.c (one signed
 * request, its errors, object keys), s3_multipart.c (uploads in parts and
 * the incomplete ones prune removes), s3_delete.c (del, del_many), s3_config.c
 * (the options, create, destroy) ---- */

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
#define S3_MIN_PART (5 * MIB) /* AWS's minimum for all parts but the last */
#define S3_MAX_PARTS 10000
#define S3_MAX_KEY 1024
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

/* One request to the bucket (s3_call). */
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

int s3_fail_oom(const struct s3 *s, const char *what);
/* Send one request (with the HTTP client's retries). ENGINE_OK when a
 * response arrived, whatever its status; ENGINE_ERROR (message set) when none
 * did. Free resp with host->http_response_free in both cases. */
int s3_call(const struct s3 *s, struct call *c, struct engine_http_response *resp);
/* The S3 error code of a response ("" if none): for status decisions. */
void s3_error_code(const struct call *c, const struct engine_http_response *r,
                   struct s3_error_doc *e);
/* Set the message for an unexpected status; returns ENGINE_ERROR. */
int s3_fail_status(const struct s3 *s, const struct call *c, const struct engine_http_response *r);
/* The full key of an object, or NULL (message set). */
char *s3_object_key(const struct s3 *s, const char *name);
/* HEAD an object: ENGINE_OK (size, and the unquoted ETag if etag != NULL),
 * ENGINE_NOT_FOUND or ENGINE_ERROR, with the message set unless OK. */
int s3_head_object(const struct s3 *s, const char *key, uint64_t *size, char **etag);

/* A PUT of more than `threshold` bytes, in parts (s3_multipart.c). */
int s3_put_multipart(const struct s3 *s, const char *key, const void *buf, size_t len,
                     unsigned flags);
/* engine_sink_ops.cleanup: abort stale incomplete multipart uploads. */
int s3_cleanup(void *inst, unsigned flags);

/* engine_sink_ops.del and .del_many (s3_delete.c). */
int s3_del(void *inst, const char *name);
int s3_del_many(void *inst, const char *const *names, size_t n);

/* The options, create and destroy (s3_config.c). */
extern const struct engine_option s3_options[];
extern const struct engine_option_bounds s3_bounds[];
int s3_create(const struct engine_host *host, void **out);
void s3_destroy(void *inst);

#endif
