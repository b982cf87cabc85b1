/* The repository: a set of immutable objects under a sink location.
 * See docs/FORMAT.md for the byte-level description.
 *
 *   config               plaintext JSON: format version, repository id, chunker
 *                        parameters, encryption algorithm
 *   keys/<id>            the master key wrapped by a key-encryption key
 *   data/<xx>/<pack-id>  packs: sealed blobs, then a sealed header, then trailer
 *   index/<id>           sealed JSON: which blob lives in which pack
 *   snapshots/<id>       sealed JSON manifest of one recovery point
 *   locks/<id>           (reserved for locking)
 *
 * Object names are content addresses (SHA-256 of the stored bytes, hex),
 * except config and keys. Nothing is ever overwritten.
 */
#ifndef CORE_REPO_REPO_H
#define CORE_REPO_REPO_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "chunker/fastcdc.h"
#include "engine/plugin.h"
#include "plugin/host.h"
#include "util/encoding.h"

#define REPO_FORMAT_VERSION 1
#define REPO_ID_LEN 32
#define REPO_KEY_LEN 32
#define REPO_DEFAULT_PACK_SIZE (16u * 1024u * 1024u)
#define REPO_MIN_PACK_SIZE (1024u * 1024u)
#define REPO_MAX_PACK_SIZE (1024u * 1024u * 1024u)
/* Largest blob plaintext we ever accept when decoding (max chunk + slack). */
#define REPO_MAX_BLOB (64u * 1024u * 1024u + 4096u)

enum blob_type { BLOB_DATA = 0, BLOB_TREE = 1 };

struct repo_sink {
  struct plugin_instance *pi;
  int required;
  /* A non-required sink that failed during this run. Atomic: repo_put runs
   * on the backup's pool threads, which set it while others read it. */
  atomic_int failed;
};

struct index; /* core/repo/index.h */

struct repo {
  struct repo_sink *sinks;
  size_t n_sinks;
  const struct engine_plugin *crypto; /* NULL: encryption none */
  size_t nonce_len, tag_len;
  unsigned char enc_key[REPO_KEY_LEN];
  unsigned char mac_key[REPO_KEY_LEN];
  uint64_t chunker_seed;
  char id[2 * REPO_ID_LEN + 1];
  char key_id[65]; /* the key object that opened the repository */
  struct chunker_params chunker;
  uint64_t pack_size;
  int compress_algo, compress_level;
  struct index *index;
  int created; /* initialised by this open */
  /* Restores skip recomputing each blob's keyed id and verifying zstd's
   * content checksum: with encryption the AEAD already authenticates (id,
   * type, ciphertext) together, the id being the associated data, and an
   * authenticated frame decodes to what the backup compressed. check
   * --read-data and encryption none always verify both. */
  int trust_aead_ids;
  /* index_load may use the local index cache (repo/index_cache.c): set by
   * run and restore; check, prune and forget read the index objects. */
  int use_index_cache;
};

struct repo_open_opts {
  struct repo_sink *sinks; /* borrowed */
  size_t n_sinks;
  const struct engine_plugin *crypto; /* NULL: none */
  const char *passphrase;             /* or key material from a key file */
  size_t passphrase_len;
  int create;                    /* initialise an empty location */
  struct chunker_params chunker; /* for create; zeros: defaults */
  uint64_t pack_size;            /* for create; 0: default */
  int compress_algo, compress_level;
  int dry_run; /* initialise in memory only: write nothing */
  /* restore, snapshots, show, check: a sink that is down or empty while
   * another holds the repository is skipped with a warning */
  int read_only;
};

/* Open (or, with create, initialise) the repository on the sinks. Nothing is
 * written unless the location is empty and create is set. */
int repo_open(const struct repo_open_opts *o, struct repo **out, char **err);
void repo_close(struct repo *r);

/* Keys (core/repo/keys.c). repo_key_make wraps the open repository's master
 * key under a new passphrase and returns the keys/ object text. */
int repo_key_make(const struct repo *r, const char *pass, size_t pass_len, char **text_out,
                  char **err);
/* Unwrap one key object: text is the content of keys/NAME (name is
 * "keys/<id>"), which is untrusted input. 0: opened, r's master keys and
 * chunker seed are now the object's; 1: intact, but the passphrase does not
 * open it; -1: damaged or unusable with this pipeline (*err, malloc'd, names
 * the object and says why). scrypt's N must be at most max_n
 * (REPO_KDF_MAX_N when a repository is opened). */
#define REPO_KDF_MAX_N (1u << 22)
int repo_key_object_open(struct repo *r, const char *name, const char *text, size_t len,
                         const char *pass, size_t pass_len, uint64_t max_n, char **err);
/* Check a key object without a passphrase (no key derivation, r unchanged):
 * 0 when it is sound as far as that can tell (fields, base64, scrypt
 * parameters, its bytes match its name; with kdf none, the master key
 * inside), -1 with *err when it is damaged or unusable with this pipeline. */
int repo_key_object_check(struct repo *r, const char *name, const char *text, size_t len,
                          char **err);
/* Store a new key object; id_out gets its id. */
int repo_key_add(struct repo *r, const char *pass, size_t pass_len, char id_out[65], char **err);
/* Array of {"id","created","user","host","current"} */
int repo_key_list(struct repo *r, json_t **out, char **err);
/* Remove a key by id or unique prefix; refuses the last key and, unless
 * allow_current (passwd), the key that opened the repository. */
int repo_key_remove(struct repo *r, const char *id_prefix, int allow_current, char **err);

/* Object I/O over all sinks. put writes every sink (a failing non-required
 * sink is marked failed and warned about); get reads the first sink that
 * answers, falling back to the next. */
int repo_put(struct repo *r, const char *name, const void *buf, size_t len, unsigned flags,
             char **err);
int repo_get(struct repo *r, const char *name, uint64_t off, uint64_t len, void **buf, size_t *n,
             char **err);
/* repo_get with the bytes handed to on_data as they arrive (see
 * engine_sink_ops.get_stream); on_data(ud, NULL, 0): start over. */
int repo_get_stream(struct repo *r, const char *name, uint64_t off, uint64_t len,
                    int (*on_data)(void *ud, const void *buf, size_t n), void *ud, char **err);
/* Delete an object from every sink (absent is fine). */
int repo_delete(struct repo *r, const char *name, char **err);
/* Delete many objects, in batches where a sink supports it (del_many). */
int repo_delete_many(struct repo *r, const char *const *names, size_t n, char **err);
/* List names under prefix from the first sink that answers. Returns a JSON
 * array of {"name":..,"size":..} sorted by name. */
int repo_list(struct repo *r, const char *prefix, json_t **out, char **err);

/* Sealing: nonce || AEAD(ct) || tag with the repository key and aad; with
 * encryption none the plaintext is stored as is. */
size_t repo_sealed_len(const struct repo *r, size_t plain_len);
int repo_seal(const struct repo *r, const void *aad, size_t aad_len, const void *in, size_t n,
              void *out);
/* out gets plain_len = n - overhead bytes; returns -1 if authentication fails. */
int repo_unseal(const struct repo *r, const void *aad, size_t aad_len, const void *in, size_t n,
                void *out, size_t *out_len);

/* Keyed chunk id: HMAC-SHA-256(mac_key, data). */
void repo_blob_id(const struct repo *r, const void *data, size_t n, unsigned char id[32]);

/* Blob encoding: compress (algorithm byte + payload) then seal with the id
 * and type as AAD. decode checks everything (auth, size, id) and returns the
 * raw bytes. */
int repo_blob_encode(const struct repo *r, const unsigned char id[32], enum blob_type type,
                     const void *data, size_t n, void **out, size_t *out_len);
/* The two halves of repo_blob_encode, for a caller that seals into a buffer
 * of its own (the backup seals straight into the pack being filled):
 * compress gives the plaintext in a buffer of the calling thread, valid until
 * its next repo_blob_compress or repo_blob_encode (compress_encode_scratch);
 * seal writes repo_sealed_len(plain_len) bytes to out. */
int repo_blob_compress(const struct repo *r, const void *data, size_t n, const void **plain,
                       size_t *plain_len);
int repo_blob_seal(const struct repo *r, const unsigned char id[32], enum blob_type type,
                   const void *plain, size_t plain_len, void *out);
int repo_blob_decode(const struct repo *r, const unsigned char id[32], enum blob_type type,
                     const void *enc, size_t enc_len, void **out, size_t *out_len, char **err);

/* Sealed JSON objects (index, snapshots): serialise, seal with aad = kind,
 * name = <kind>s/<sha256 of stored bytes>. */
int repo_save_json(struct repo *r, const char *kind, json_t *obj, char id_hex[65], char **err);
int repo_load_json(struct repo *r, const char *kind, const char *id_hex, json_t **out, char **err);
/* The same for an object whose JSON text the caller wrote (compact, sorted
 * keys): seal and store it. */
int repo_save_text(struct repo *r, const char *kind, const char *text, size_t n, char id_hex[65],
                   char **err);

/* scrypt(pass, salt, N, r, p) into kek[kek_len]; -1 for parameters that are
 * invalid or need more than 256 MiB. */
int repo_derive_kek(const char *pass, size_t pass_len, const unsigned char *salt, size_t salt_len,
                    uint64_t N, uint64_t rr, uint64_t p, unsigned char *kek, size_t kek_len);

/* Read one blob by id through the index. */
int repo_read_blob(struct repo *r, const unsigned char id[32], enum blob_type type, void **out,
                   size_t *n, char **err);

#endif
