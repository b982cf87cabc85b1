/* Blobs: the keyed id of a chunk, and a blob's encoding (compress, then seal
 * with its id and type as associated data), docs/FORMAT.md §6. Reading a
 * blob by id goes through the index. */
#ifndef CORE_REPO_BLOB_H
#define CORE_REPO_BLOB_H

#include <stddef.h>

#include "repo/objects.h"

/* Largest blob plaintext we ever accept when decoding (max chunk + slack). */
#define REPO_MAX_BLOB (64u * 1024u * 1024u + 4096u)

/* Keyed chunk id: HMAC-SHA-256(mac_key, data). */
void repo_blob_id(const struct repo *r, const void *data, size_t n, unsigned char id[32]);

/* Blob encoding: compress (algorithm byte + payload) then seal with the id
 * and type as AAD, under key: the pack's (packer_key, pack_parse,
 * repo_pack_key), which is the master key in format 1 and the pack's data
 * key in format 2. decode checks everything (auth, size, id) and returns
 * the raw bytes. */
int repo_blob_encode(const struct repo *r, const unsigned char *key, const unsigned char id[32],
                     enum blob_type type, const void *data, size_t n, void **out, size_t *out_len);
/* The two halves of repo_blob_encode, for a caller that seals into a buffer
 * of its own (the backup seals straight into the pack being filled):
 * compress gives the plaintext in a buffer of the calling thread, valid until
 * its next repo_blob_compress or repo_blob_encode (compress_encode_scratch);
 * seal writes repo_sealed_len(plain_len) bytes to out. */
int repo_blob_compress(const struct repo *r, const void *data, size_t n, const void **plain,
                       size_t *plain_len);
int repo_blob_seal(const struct repo *r, const unsigned char *key, const unsigned char id[32],
                   enum blob_type type, const void *plain, size_t plain_len, void *out);
int repo_blob_decode(const struct repo *r, const unsigned char *key, const unsigned char id[32],
                     enum blob_type type, const void *enc, size_t enc_len, void **out,
                     size_t *out_len, char **err);
/* The same, checking the id with the chunk-id key idk (a tenant's, from
 * repo_pack_key_t; NULL: the repository's). */
int repo_blob_decode_idk(const struct repo *r, const unsigned char *key, const unsigned char *idk,
                         const unsigned char id[32], enum blob_type type, const void *enc,
                         size_t enc_len, void **out, size_t *out_len, char **err);
/* repo_blob_decode_idk into out, whose length must be the blob's decoded
 * length (from the index; another length fails), with scratch (enc_len
 * bytes) for the plaintext: nothing is allocated (the restore's read-ahead
 * decodes into its window). */
int repo_blob_decode_into(const struct repo *r, const unsigned char *key, const unsigned char *idk,
                          const unsigned char id[32], enum blob_type type, const void *enc,
                          size_t enc_len, void *scratch, void *out, size_t out_len, char **err);
/* A blob id under the chunk-id key idk (NULL: the repository's). */
void repo_blob_id_key(const struct repo *r, const unsigned char *idk, const void *data, size_t n,
                      unsigned char id[32]);

/* Read one blob by id: its place from r->index, its bytes from the pack. */
int repo_read_blob(struct repo *r, const unsigned char id[32], enum blob_type type, void **out,
                   size_t *n, char **err);

#endif
