/* Internal interface of the s3/minio sink plugins: the XML and credential
 * helpers of s3.c (the sink itself); encodings, digests and the meaning of
 * ranged reads are the sinks' shared ones (objstore.h). Nothing here is
 * exported from the plugin. */
#ifndef ENGINE_S3_INTERNAL_H
#define ENGINE_S3_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/host.h"
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

#endif
