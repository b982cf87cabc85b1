/* Packs: many sealed blobs in one object so object stores see few, large
 * writes. Layout (docs/FORMAT.md):
 *
 *   blob_0 || blob_1 || ... || sealed_header || u32le(len(sealed_header)) || "EPK1"
 *
 * header plaintext: "EPH1" || u32le(count) || count * entry
 *   entry = u8 type || id[32] || u32le offset || u32le length || u32le raw_length
 * sealed with AAD "packheader". The pack id is SHA-256 of the whole object,
 * so the index can be rebuilt from packs alone and a pack verified by name.
 *
 * Format 2 (keys2.h): each pack has its own random data key, sealed to the
 * repository's public key and stored first; blobs and header are sealed
 * with that data key and the trailer magic is "EPK2":
 *
 *   sealed_data_key (100) || blob_0 || ... || sealed_header || u32le || "EPK2"
 */
#ifndef CORE_REPO_PACK_H
#define CORE_REPO_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "repo/objects.h"

#define PACK_MAGIC "EPK1"
#define PACK_MAGIC_V2 "EPK2"
#define PACK_HEADER_MAGIC "EPH1"
#define PACK_ENTRY_SIZE (1 + 32 + 4 + 4 + 4)

struct pack_entry {
  uint8_t type;
  unsigned char id[32];
  uint32_t offset, length, raw_length;
};

struct packer {
  unsigned char *buf;
  size_t len, cap;
  struct pack_entry *entries;
  size_t n, cap_entries;
  int keyed; /* format 2: dk is this pack's data key */
  unsigned char dk[32];
};

void packer_init(struct packer *p);
void packer_free(struct packer *p);
/* Size the buffer once for a whole pack instead of growing it by doubling. */
void packer_reserve(struct packer *p, size_t bytes);
/* Format 2: give the pack its own data key and write the sealed key at
 * its start (call once, before any blob; nothing to do for format 1).
 * packer_key: the key its blobs are sealed with. */
int packer_init_key(struct packer *p, const struct repo *r);
/* The same for a pack of one tenant's blobs: its data key wrapped with the
 * tenant's key (NULL: packer_init_key). */
struct repo_tenant;
int packer_init_key_tenant(struct packer *p, const struct repo *r, const struct repo_tenant *t);
const unsigned char *packer_key(const struct packer *p, const struct repo *r);
/* Record one blob of sealed_len bytes and return where its sealed bytes go
 * (the caller writes them before the pack is finished). The buffer must
 * already have room: this never moves it, so several threads may fill
 * their reserved places at once (under the caller's lock for the call). */
unsigned char *packer_reserve_blob(struct packer *p, const unsigned char id[32], uint8_t type,
                                   size_t sealed_len, uint32_t raw_length);
/* Append one sealed blob (growing the buffer as needed). */
void packer_add(struct packer *p, const unsigned char id[32], uint8_t type, const void *sealed,
                size_t sealed_len, uint32_t raw_length);
/* Seal the header and append header + trailer; computes the pack id. The
 * packer then holds the complete object in buf/len. */
int packer_finish(struct packer *p, const struct repo *r, unsigned char pack_id[32]);

/* Parse the header of a complete pack object (for check and index rebuild).
 * *entries is malloc'd; dk (NULL or 32 bytes) gets the key its blobs are
 * sealed with (format 2: its data key; format 1: the master key). */
int pack_parse(const struct repo *r, const void *pack, size_t len, struct pack_entry **entries,
               size_t *n, unsigned char *dk, char **err);

/* The same from the end of a pack only: tail is its last tail_len bytes
 * (at least the sealed header and the 8-byte trailer), pack_len the whole
 * object's length; dk as pack_parse gives it (NULL: format 1's key). */
int pack_parse_tail(const struct repo *r, const unsigned char *dk, const void *tail,
                    size_t tail_len, uint64_t pack_len, struct pack_entry **entries, size_t *n,
                    char **err);
/* Read and parse the header of pack object `name` (pack_len bytes) with
 * ranged reads of its end, without reading its blobs. */
int pack_read_header(struct repo *r, const char *name, uint64_t pack_len,
                     struct pack_entry **entries, size_t *n, unsigned char *dk, char **err);

void pack_object_name(const unsigned char pack_id[32], char name[80]);

#endif
