/* The repository handle and its objects over the sinks: writing, reading,
 * listing and deleting objects on every configured sink, sealing with the
 * repository key, and sealed JSON objects (index, snapshots). Everything
 * else in core/repo builds on this; repo.h adds opening a repository.
 * See docs/FORMAT.md for the byte formats. */
#ifndef CORE_REPO_OBJECTS_H
#define CORE_REPO_OBJECTS_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "chunker/fastcdc.h"
#include "engine/plugin.h"
#include "plugin/host.h"
#include "util/encoding.h"

/* The format new repositories get, and the versions this engine reads
 * (docs/FORMAT.md: version 1, and version 2's key hierarchy, keys2.h). */
#define REPO_FORMAT_VERSION 1
#define REPO_FORMAT_MAX 2
#define REPO_ID_LEN 32
#define REPO_KEY_LEN 32
#define REPO_DEFAULT_PACK_SIZE (16u * 1024u * 1024u)
#define REPO_MIN_PACK_SIZE (1024u * 1024u)
#define REPO_MAX_PACK_SIZE (1024u * 1024u * 1024u)

/* The kinds of blob a pack holds (the type byte of docs/FORMAT.md §6). */
enum blob_type { BLOB_DATA = 0, BLOB_TREE = 1 };

struct repo_sink {
  struct plugin_instance *pi;
  int required;
  /* A non-required sink that failed during this run. Atomic: repo_put runs
   * on the backup's pool threads, which set it while others read it. */
  atomic_int failed;
};

struct index;         /* core/repo/index.h */
struct repo_dk_cache; /* core/repo/keys2.c */

/* Format 2: one X25519 key pair of the keyring (keys2.h). A write-only
 * host has the current one's public half only. */
struct repo_keypair {
  unsigned char id[8]; /* first 8 bytes of SHA-256(pub) */
  unsigned char pub[32], priv[32];
  int has_priv;
  char *created;
};

/* Format 2: a tenant's keys (keys2.h, per_tenant). key is the tenant
 * secret in the keyring; idk (chunk ids) and wrap (its packs' data keys)
 * derive from it. A shredded tenant keeps its name, key id and dates,
 * never a key. Created on the backup's source thread; never moves once
 * created (r->tenants holds pointers). */
struct repo_tenant {
  char *name;
  unsigned char kid[8];
  unsigned char key[32], idk[32], wrap[32];
  char *created;
  uint64_t gen;   /* the keyring generation that added it: the newest is current */
  char *shredded; /* when its key was destroyed, or NULL */
  int retired;    /* destroyed by key rotate --rewrite (its data moved to its successor) */
  /* key rotate --rewrite: the entry this one replaces (its data is moved
   * under this one) and keeps the chunk-id key of */
  unsigned char replaces[8];
  int has_replaces, idk_explicit;
  int unsaved; /* added by this backup, not in a stored keyring yet */
};

struct repo {
  struct repo_sink *sinks;
  size_t n_sinks;
  const struct engine_plugin *crypto; /* NULL: encryption none */
  size_t nonce_len, tag_len;
  /* Format 1: the master encryption key. Format 2: the index key (index
   * objects and locks, which writers read too); blobs and pack headers are
   * sealed with each pack's data key, everything else to the public key. */
  unsigned char enc_key[REPO_KEY_LEN];
  unsigned char mac_key[REPO_KEY_LEN]; /* blob id (HMAC) key */
  int format;                          /* config.version: 1 or 2 */
  /* Format 2 (keys2.h): a host opened with a writer credential holds no
   * private key: it can add data and snapshots but read neither. */
  int write_only;
  unsigned char master_secret[REPO_KEY_LEN]; /* format 2, not write_only */
  struct repo_keypair *kps;                  /* format 2: the keyring's key pairs */
  size_t n_kps, cur_kp;                      /* cur_kp: the one new data is sealed to */
  uint64_t keyring_generation;
  char keyring_name[80];
  struct repo_dk_cache *dkc;    /* pack data keys already opened */
  struct repo_tenant **tenants; /* format 2: the keyring's tenants, live and shredded */
  /* key rotate --rewrite in progress (the keyring's "rewrite" object), or
   * NULL; meanwhile index objects and locks sealed with an older index key
   * still open */
  json_t *rewrite;
  unsigned char (*old_index_keys)[REPO_KEY_LEN];
  size_t n_old_index_keys;
  size_t n_tenants;
  /* keyring objects this host read or wrote whose content the current
   * keyring holds (deleted once a newer one is stored) */
  char **keyring_old;
  size_t n_keyring_old;
  /* a write-only host's journal of its own snapshots (journal.h), set by
   * the CLI; NULL: none */
  char *journal_dir;
  uint64_t chunker_seed;
  char id[2 * REPO_ID_LEN + 1];
  char key_id[65]; /* the key object that opened the repository */
  struct chunker_params chunker;
  uint64_t pack_size;
  int compress_algo, compress_level;
  struct index *index; /* created by repo_open, freed by repo_close */
  int created;         /* initialised by this open */
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

/* One sink: its name in the pipeline, where it stores ("describe"), a
 * message "sink 'NAME' (WHERE): WHAT 'OBJECT': the sink's last error"
 * (malloc'd), and the listing of that sink alone (as repo_list). */
const char *repo_sink_name(const struct repo_sink *s);
const char *repo_sink_where(const struct repo_sink *s);
char *repo_sink_error(const struct repo_sink *s, const char *what, const char *object);
int repo_sink_list(struct repo_sink *s, const char *prefix, json_t **out, char **err);

/* Sealing: nonce || AEAD(ct) || tag with the repository key and aad; with
 * encryption none the plaintext is stored as is. */
size_t repo_sealed_len(const struct repo *r, size_t plain_len);
/* Format 2: sealing to the repository's current public key (keys2.h) has
 * this much overhead instead. */
#define REPO_SEALPUB_OVERHEAD (8 + 32 + 12 + 16)
int repo_seal(const struct repo *r, const void *aad, size_t aad_len, const void *in, size_t n,
              void *out);
/* out gets plain_len = n - overhead bytes; returns -1 if authentication fails. */
int repo_unseal(const struct repo *r, const void *aad, size_t aad_len, const void *in, size_t n,
                void *out, size_t *out_len);
/* The same with an explicit AEAD plugin and key (key objects wrap the
 * master keys under a key derived from the passphrase). */
int repo_seal_key(const struct engine_plugin *crypto, const unsigned char *key, const void *aad,
                  size_t aad_len, const void *in, size_t n, void *out);
int repo_unseal_key(const struct engine_plugin *crypto, const unsigned char *key, const void *aad,
                    size_t aad_len, const void *in, size_t n, void *out, size_t *out_len);

/* Sealed JSON objects (index, snapshots): serialise, seal with aad = kind,
 * name = <kind>s/<sha256 of stored bytes>. */
int repo_save_json(struct repo *r, const char *kind, json_t *obj, char id_hex[65], char **err);
/* A message of repo_load_json is UTF-8 (bytes of a damaged object it
 * quotes are escaped), so it can go into JSON reports. */
int repo_load_json(struct repo *r, const char *kind, const char *id_hex, json_t **out, char **err);
/* The same for an object whose JSON text the caller wrote (compact, sorted
 * keys): seal and store it. */
int repo_save_text(struct repo *r, const char *kind, const char *text, size_t n, char id_hex[65],
                   char **err);

#endif
