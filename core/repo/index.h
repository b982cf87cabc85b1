/* In-memory blob index: blob id -> (pack, offset, length, raw length, type).
 * Open addressing on the first 8 bytes of the (uniformly random) keyed id.
 * Thread-safe: lookups and inserts take a mutex (they are short).
 *
 * Entries are either "stored" (in a pack the repository has) or "pending"
 * (claimed by a backup in progress: its data is being compressed, encrypted
 * or packed), so two workers never store the same new chunk twice. */
#ifndef CORE_REPO_INDEX_H
#define CORE_REPO_INDEX_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct index_entry {
  unsigned char id[32];
  uint32_t pack; /* index into the pack table; UINT32_MAX while pending */
  uint32_t offset;
  uint32_t length;     /* stored (sealed) length */
  uint32_t raw_length; /* decoded length */
  uint8_t type;        /* enum blob_type */
};

struct index {
  pthread_mutex_t lock;
  struct index_entry *entries; /* dense, in insertion order */
  size_t n_entries, cap_entries;
  uint32_t *table; /* entry number + 1 (0: empty), open addressing on the id */
  size_t n_table;
  unsigned char (*packs)[32]; /* pack ids */
  size_t n_packs, cap_packs;
  uint32_t *pack_slots; /* pack id -> number + 1 (open addressing) */
  size_t n_pack_slots;
  char **files; /* index objects loaded (names) */
  size_t n_files;
  json_t *damaged; /* index objects that could not be read: [{"name","error"}] */
};

struct index *index_new(void);
void index_free(struct index *ix);

uint32_t index_add_pack(struct index *ix, const unsigned char pack_id[32]);
/* 1 and *num set when the pack is in the table, else 0. */
int index_find_pack(struct index *ix, const unsigned char pack_id[32], uint32_t *num);
/* Insert or overwrite as stored. */
void index_put(struct index *ix, const unsigned char id[32], uint32_t pack, uint32_t offset,
               uint32_t length, uint32_t raw_length, uint8_t type);
/* 1: found (copied to *out if non-NULL). 0: absent. */
int index_get(struct index *ix, const unsigned char id[32], struct index_entry *out);
/* Atomically: if absent, insert as pending and return 1 (caller must store
 * it); if present (stored or pending), return 0. */
int index_claim(struct index *ix, const unsigned char id[32], uint8_t type);

/* Add the packs and blobs of one index object (its parsed JSON, see
 * docs/FORMAT.md) to ix. The whole object is checked first: on a problem
 * nothing is added and *err (malloc'd) names the field, e.g.
 * "packs[0].blobs[3].offset is not a whole number from 0 to 4294967295". */
int index_parse(struct index *ix, json_t *obj, char **err);
/* The same check, then cb for every blob entry (with its pack's id) instead
 * of adding it: for readers that need every location (prune). */
struct pack_entry;
int index_parse_each(json_t *obj,
                     void (*cb)(void *ud, const unsigned char pack_id[32],
                                const struct pack_entry *e),
                     void *ud, char **err);
/* Read, authenticate and parse index/<id_hex>, calling cb for each entry. */
struct repo;
int index_read_object(struct repo *r, const char *id_hex,
                      void (*cb)(void *ud, const unsigned char pack_id[32],
                                 const struct pack_entry *e),
                      void *ud, char **err);

/* Number of entries (stored and pending). */
size_t index_size(struct index *ix);
/* Calls cb for every stored entry (pending ones are skipped), in insertion
 * order, holding the index's lock: cb must not call back into the index. */
void index_foreach(struct index *ix, void (*cb)(void *ud, const struct index_entry *e), void *ud);

/* Read, authenticate and parse index/<id_hex> into ix. */
int index_load_object(struct repo *r, const char *id_hex, struct index *ix, char **err);
/* Serialise the given packs (with their blobs from the index) as one index
 * object and save it; id_hex receives its id. */
int index_save_packs(struct repo *r, const uint32_t *packs, size_t n, char id_hex[65], char **err);
/* Save one index object for the given packs, each with the entries of its
 * header (repair index). */
struct pack_entry;
struct index_pack_entries {
  unsigned char pack_id[32];
  const struct pack_entry *entries;
  size_t n;
};
int index_save_entries(struct repo *r, const struct index_pack_entries *packs, size_t n,
                       char id_hex[65], char **err);
/* An index object's JSON text written pack by pack, without a JSON tree
 * (a backup's index grows with its packs; the text is what is stored). */
struct index_text {
  char *p;
  size_t len, cap;
  size_t packs, blobs;
};
void index_text_add_pack(struct index_text *t, const unsigned char pack_id[32],
                         const struct pack_entry *entries, size_t n);
/* The complete object text (malloc'd, *len bytes); t is empty again. */
char *index_text_finish(struct index_text *t, size_t *len);

/* ---- the repository's index, loaded (index_cache.c) ---- */

/* Load every index/ object of the repository into r->index (decrypting
 * each), or the local cache built from exactly those objects. An object
 * that cannot be read does not stop the load: it is listed in
 * r->index->damaged for the caller to judge. Returns -1 only when index/
 * cannot be listed. */
int index_load(struct repo *r, char **err);
/* After a backup saved index object id_hex for the packs it wrote (and put
 * their blobs into the index): the index now stands for one more object
 * (index_cache_refresh writes the cache for the new set). */
void index_note_saved(struct repo *r, const char *id_hex);
/* Write the local index cache (if used) for the objects noted so far. */
void index_cache_refresh(struct repo *r);

#endif
