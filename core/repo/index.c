/* In-memory blob index and the index/ objects that persist it.
 *
 * index/<id> (sealed JSON, see docs/FORMAT.md):
 *   {"version":1,"packs":[{"id":"<hex>","blobs":[{"id":"<hex>","type":"data"|"tree",
 *     "offset":N,"length":N,"raw_length":N}, ...]}, ...]}
 */
#include "repo/index.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "repo/objects.h"
#include "repo/pack.h"
#include "util/log.h"

/* The entry array and the table live in anonymous mappings of their own,
 * grown with mremap: growing copies nothing, a freed size goes back to the
 * system at once, and they leave no holes in the allocator's heaps (which
 * stay resident: at 1,000,000 blobs the arrays' earlier sizes below the
 * allocator's mmap threshold added up to ~24 MiB). docs/internals/index.md */
static size_t page_round(size_t n) {
  static size_t pg;
  if (!pg)
    pg = (size_t)sysconf(_SC_PAGESIZE);
  return (n + pg - 1) / pg * pg;
}

static void *region_resize(void *p, size_t old_bytes, size_t new_bytes) {
  size_t o = page_round(old_bytes), n = page_round(new_bytes);
  if (p && o == n)
    return p;
  void *q = p ? mremap(p, o, n, MREMAP_MAYMOVE)
              : mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (q == MAP_FAILED)
    die_oom();
  return q;
}

static void region_free(void *p, size_t bytes) {
  if (p)
    munmap(p, page_round(bytes));
}

struct index *index_new(void) {
  struct index *ix = xcalloc(1, sizeof(*ix));
  pthread_mutex_init(&ix->lock, NULL);
  ix->damaged = json_array();
  ix->n_table = 1024;
  ix->table = region_resize(NULL, 0, ix->n_table * sizeof(*ix->table));
  return ix;
}

void index_free(struct index *ix) {
  if (!ix)
    return;
  pthread_mutex_destroy(&ix->lock);
  region_free(ix->table, ix->n_table * sizeof(*ix->table));
  region_free(ix->entries, ix->cap_entries * sizeof(*ix->entries));
  free(ix->packs);
  free(ix->pack_slots);
  for (size_t i = 0; i < ix->n_files; i++)
    free(ix->files[i]);
  free(ix->files);
  json_decref(ix->damaged);
  free(ix);
}

static uint64_t slot_hash(const unsigned char id[32]) {
  uint64_t h;
  memcpy(&h, id, sizeof(h)); /* ids are keyed MACs: uniformly distributed */
  return h;
}

/* The table holds entry numbers + 1 (0: empty), open addressing on the
 * first bytes of the (uniformly random) keyed id; entries sit densely in
 * their own array, so the table costs 4 bytes a slot and growing it moves
 * no entry (docs/internals/index.md). */
static uint32_t *find_slot(const struct index *ix, uint32_t *table, size_t n,
                           const unsigned char id[32]) {
  size_t mask = n - 1, i = (size_t)slot_hash(id) & mask;
  while (table[i] != 0 && memcmp(ix->entries[table[i] - 1].id, id, 32) != 0)
    i = (i + 1) & mask;
  return &table[i];
}

/* Double the table in place: the entries hold every id, so the table is
 * rebuilt from them in its new size and the old one is never needed beside
 * it (a copy would hold both at once, 12 MiB at ~786,000 blobs). */
static void grow(struct index *ix) {
  size_t n = ix->n_table * 2;
  ix->table = region_resize(ix->table, ix->n_table * sizeof(*ix->table), n * sizeof(*ix->table));
  memset(ix->table, 0, ix->n_table * sizeof(*ix->table)); /* the new half is zero */
  ix->n_table = n;
  for (size_t i = 0; i < ix->n_entries; i++)
    *find_slot(ix, ix->table, n, ix->entries[i].id) = (uint32_t)i + 1;
}

/* The pack table's lookup: open addressing over pack numbers + 1 (0 =
 * empty), on the first bytes of the (uniformly random) pack id. A linear
 * search made loading the index quadratic in the number of packs. */
static uint32_t *find_pack_slot(const struct index *ix, uint32_t *slots, size_t n,
                                const unsigned char pack_id[32]) {
  size_t mask = n - 1, i = (size_t)slot_hash(pack_id) & mask;
  while (slots[i] != 0 && memcmp(ix->packs[slots[i] - 1], pack_id, 32) != 0)
    i = (i + 1) & mask;
  return &slots[i];
}

uint32_t index_add_pack(struct index *ix, const unsigned char pack_id[32]) {
  pthread_mutex_lock(&ix->lock);
  if ((ix->n_packs + 1) * 2 > ix->n_pack_slots) {
    size_t n = ix->n_pack_slots ? ix->n_pack_slots * 2 : 128;
    uint32_t *slots = xcalloc(n, sizeof(*slots));
    for (size_t i = 0; i < ix->n_packs; i++)
      *find_pack_slot(ix, slots, n, ix->packs[i]) = (uint32_t)i + 1;
    free(ix->pack_slots);
    ix->pack_slots = slots;
    ix->n_pack_slots = n;
  }
  uint32_t *slot = find_pack_slot(ix, ix->pack_slots, ix->n_pack_slots, pack_id);
  if (*slot != 0) {
    uint32_t found = *slot - 1;
    pthread_mutex_unlock(&ix->lock);
    return found;
  }
  if (ix->n_packs == ix->cap_packs) {
    ix->cap_packs = ix->cap_packs ? ix->cap_packs * 2 : 64;
    ix->packs = xrealloc(ix->packs, ix->cap_packs * sizeof(*ix->packs));
  }
  memcpy(ix->packs[ix->n_packs], pack_id, 32);
  uint32_t r = (uint32_t)ix->n_packs++;
  *slot = r + 1;
  pthread_mutex_unlock(&ix->lock);
  return r;
}

int index_find_pack(struct index *ix, const unsigned char pack_id[32], uint32_t *num) {
  pthread_mutex_lock(&ix->lock);
  uint32_t slot =
      ix->n_pack_slots ? *find_pack_slot(ix, ix->pack_slots, ix->n_pack_slots, pack_id) : 0;
  pthread_mutex_unlock(&ix->lock);
  if (slot == 0)
    return 0;
  *num = slot - 1;
  return 1;
}

static void put_locked(struct index *ix, const unsigned char id[32], uint32_t pack, uint32_t offset,
                       uint32_t length, uint32_t raw_length, uint8_t type) {
  if ((ix->n_entries + 1) * 4 > ix->n_table * 3)
    grow(ix);
  uint32_t *slot = find_slot(ix, ix->table, ix->n_table, id);
  struct index_entry *e;
  if (*slot == 0) {
    if (ix->n_entries == ix->cap_entries) {
      size_t cap = ix->cap_entries ? ix->cap_entries + ix->cap_entries / 2 : 1024;
      ix->entries = region_resize(ix->entries, ix->cap_entries * sizeof(*ix->entries),
                                  cap * sizeof(*ix->entries));
      ix->cap_entries = cap;
    }
    e = &ix->entries[ix->n_entries++];
    memcpy(e->id, id, 32);
    *slot = (uint32_t)ix->n_entries;
  } else {
    e = &ix->entries[*slot - 1];
  }
  e->pack = pack;
  e->offset = offset;
  e->length = length;
  e->raw_length = raw_length;
  e->type = type;
}

void index_put(struct index *ix, const unsigned char id[32], uint32_t pack, uint32_t offset,
               uint32_t length, uint32_t raw_length, uint8_t type) {
  pthread_mutex_lock(&ix->lock);
  put_locked(ix, id, pack, offset, length, raw_length, type);
  pthread_mutex_unlock(&ix->lock);
}

int index_get(struct index *ix, const unsigned char id[32], struct index_entry *out) {
  pthread_mutex_lock(&ix->lock);
  uint32_t slot = *find_slot(ix, ix->table, ix->n_table, id);
  if (slot && out)
    *out = ix->entries[slot - 1];
  pthread_mutex_unlock(&ix->lock);
  return slot != 0;
}

int index_claim(struct index *ix, const unsigned char id[32], uint8_t type) {
  pthread_mutex_lock(&ix->lock);
  int claimed = *find_slot(ix, ix->table, ix->n_table, id) == 0;
  if (claimed)
    put_locked(ix, id, UINT32_MAX, 0, 0, 0, type);
  pthread_mutex_unlock(&ix->lock);
  return claimed;
}

size_t index_size(struct index *ix) {
  pthread_mutex_lock(&ix->lock);
  size_t n = ix->n_entries;
  pthread_mutex_unlock(&ix->lock);
  return n;
}

void index_foreach(struct index *ix, void (*cb)(void *ud, const struct index_entry *e), void *ud) {
  pthread_mutex_lock(&ix->lock);
  for (size_t i = 0; i < ix->n_entries; i++)
    if (ix->entries[i].pack != UINT32_MAX)
      cb(ud, &ix->entries[i]);
  pthread_mutex_unlock(&ix->lock);
}

/* A 32-bit field of a blob entry: an integer from 0 to 2^32 - 1 (a pack
 * offset or length beyond that would wrap). */
static int u32_field(json_t *b, const char *key, uint32_t *out) {
  json_t *v = json_object_get(b, key);
  if (!json_is_integer(v) || json_integer_value(v) < 0 ||
      (uint64_t)json_integer_value(v) > UINT32_MAX)
    return -1;
  *out = (uint32_t)json_integer_value(v);
  return 0;
}

/* Every field of blob entry b, or why not ("packs[1].blobs[4].offset ..."). */
static char *blob_problem(json_t *b, size_t i, size_t j, unsigned char bid[32], uint32_t v[3],
                          uint8_t *type) {
  static const char *const fields[3] = {"offset", "length", "raw_length"};
  if (!json_is_object(b))
    return xasprintf("packs[%zu].blobs[%zu] is not an object", i, j);
  const char *bh = json_string_value(json_object_get(b, "id"));
  if (!bh || hex_decode(bh, bid, 32) != 0)
    return xasprintf("packs[%zu].blobs[%zu].id is not 64 hex digits", i, j);
  const char *t = json_string_value(json_object_get(b, "type"));
  if (!t || (strcmp(t, "tree") != 0 && strcmp(t, "data") != 0))
    return xasprintf("packs[%zu].blobs[%zu].type is not \"data\" or \"tree\"", i, j);
  *type = strcmp(t, "tree") == 0 ? BLOB_TREE : BLOB_DATA;
  for (int f = 0; f < 3; f++)
    if (u32_field(b, fields[f], &v[f]) != 0)
      return xasprintf("packs[%zu].blobs[%zu].%s is not a whole number from 0 to 4294967295", i, j,
                       fields[f]);
  return NULL;
}

int index_parse_each(json_t *obj,
                     void (*cb)(void *ud, const unsigned char pack_id[32],
                                const struct pack_entry *e),
                     void *ud, char **err) {
  json_t *ver = json_object_get(obj, "version");
  if (!json_is_object(obj)) {
    *err = xstrdup("not a JSON object");
    return -1;
  }
  if (!json_is_integer(ver) || json_integer_value(ver) != 1) {
    *err = json_is_integer(ver) ? xasprintf("format version %lld; this engine reads version 1",
                                            (long long)json_integer_value(ver))
                                : xstrdup("no format version; this engine reads version 1");
    return -1;
  }
  json_t *packs = json_object_get(obj, "packs");
  if (!json_is_array(packs)) {
    *err = xstrdup("'packs' is not an array");
    return -1;
  }
  size_t i, j;
  json_t *p, *b;
  unsigned char id[32];
  uint32_t v[3];
  uint8_t type;
  /* check everything first: a malformed object adds nothing to the index */
  json_array_foreach(packs, i, p) {
    const char *ph = json_string_value(json_object_get(p, "id"));
    if (!ph || hex_decode(ph, id, 32) != 0) {
      *err = xasprintf("packs[%zu].id is not 64 hex digits", i);
      return -1;
    }
    json_t *blobs = json_object_get(p, "blobs");
    if (!json_is_array(blobs)) {
      *err = xasprintf("packs[%zu].blobs is not an array", i);
      return -1;
    }
    json_array_foreach(blobs, j, b) {
      *err = blob_problem(b, i, j, id, v, &type);
      if (*err != NULL)
        return -1;
    }
  }
  unsigned char pid[32];
  json_array_foreach(packs, i, p) {
    hex_decode(json_string_value(json_object_get(p, "id")), pid, 32);
    json_array_foreach(json_object_get(p, "blobs"), j, b) {
      char *e = blob_problem(b, i, j, id, v, &type);
      free(e); /* checked above: NULL */
      struct pack_entry pe = {type, {0}, v[0], v[1], v[2]};
      memcpy(pe.id, id, 32);
      cb(ud, pid, &pe);
    }
  }
  return 0;
}

static void put_entry(void *ud, const unsigned char pack_id[32], const struct pack_entry *e) {
  struct index *ix = ud;
  index_put(ix, e->id, index_add_pack(ix, pack_id), e->offset, e->length, e->raw_length, e->type);
}

int index_parse(struct index *ix, json_t *obj, char **err) {
  return index_parse_each(obj, put_entry, ix, err);
}

int index_read_object(struct repo *r, const char *id_hex,
                      void (*cb)(void *ud, const unsigned char pack_id[32],
                                 const struct pack_entry *e),
                      void *ud, char **err) {
  json_t *obj;
  if (repo_load_json(r, "index", id_hex, &obj, err) != 0)
    return -1;
  char *why = NULL;
  int rc = index_parse_each(obj, cb, ud, &why);
  json_decref(obj);
  if (rc != 0) {
    *err = xasprintf("index 'index/%s': %s", id_hex, why);
    free(why);
  }
  return rc;
}

int index_load_object(struct repo *r, const char *id_hex, struct index *ix, char **err) {
  return index_read_object(r, id_hex, put_entry, ix, err);
}

static void text_reserve(struct index_text *t, size_t more) {
  if (t->len + more + 1 <= t->cap)
    return;
  size_t c = t->cap ? t->cap : 64 * 1024;
  while (c < t->len + more + 1)
    c *= 2;
  t->p = xrealloc(t->p, c);
  t->cap = c;
}

/* Append printf-style text within the room text_reserve made. */
static void text_printf(struct index_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void text_printf(struct index_text *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= t->cap - t->len) {
    log_error("internal error: index text reserved too little room");
    abort();
  }
  t->len += (size_t)n;
}

/* Compact JSON with sorted keys, as FORMAT.md §8 writes it: a pack is
 * {"blobs":[{"id","length","offset","raw_length","type"}...],"id"}. */
void index_text_add_pack(struct index_text *t, const unsigned char pack_id[32],
                         const struct pack_entry *entries, size_t n) {
  char hex[65];
  text_reserve(t, 32 + n * 180 + 80);
  if (t->len == 0)
    text_printf(t, "{\"packs\":[");
  else
    t->p[t->len++] = ',';
  text_printf(t, "{\"blobs\":[");
  for (size_t i = 0; i < n; i++) {
    const struct pack_entry *e = &entries[i];
    hex_encode(e->id, 32, hex);
    text_printf(t,
                "%s{\"id\":\"%s\",\"length\":%u,\"offset\":%u,\"raw_length\":%u,"
                "\"type\":\"%s\"}",
                i ? "," : "", hex, e->length, e->offset, e->raw_length,
                e->type == BLOB_TREE ? "tree" : "data");
  }
  hex_encode(pack_id, 32, hex);
  text_printf(t, "],\"id\":\"%s\"}", hex);
  t->packs++;
  t->blobs += n;
}

char *index_text_finish(struct index_text *t, size_t *len) {
  text_reserve(t, 32);
  text_printf(t, "%s],\"version\":1}", t->len ? "" : "{\"packs\":[");
  char *out = t->p;
  *len = t->len;
  memset(t, 0, sizeof(*t));
  return out;
}

struct collect {
  size_t *pos; /* pack number -> position in the caller's list + 1 */
  struct index_pack_entries *out;
  size_t *cap;
};

static void collect_entry(void *ud, const struct index_entry *e) {
  struct collect *c = ud;
  size_t k = e->pack < c->cap[0] ? c->pos[e->pack] : 0;
  if (!k--)
    return;
  struct index_pack_entries *p = &c->out[k];
  struct pack_entry *es = (struct pack_entry *)p->entries;
  if (p->n == c->cap[k + 1]) {
    c->cap[k + 1] = c->cap[k + 1] ? c->cap[k + 1] * 2 : 64;
    es = xrealloc(es, c->cap[k + 1] * sizeof(*es));
    p->entries = es;
  }
  es[p->n++] = (struct pack_entry){e->type, {0}, e->offset, e->length, e->raw_length};
  memcpy(es[p->n - 1].id, e->id, 32);
}

int index_save_packs(struct repo *r, const uint32_t *packs, size_t n, char id_hex[65], char **err) {
  struct index *ix = r->index;
  size_t n_packs = ix->n_packs;
  struct collect c = {xcalloc(n_packs ? n_packs : 1, sizeof(size_t)),
                      xcalloc(n ? n : 1, sizeof(*c.out)), xcalloc(n + 1, sizeof(size_t))};
  c.cap[0] = n_packs; /* cap[0]: size of pos; cap[k + 1]: room in out[k] */
  for (size_t k = 0; k < n; k++) {
    c.pos[packs[k]] = k + 1;
    memcpy(c.out[k].pack_id, ix->packs[packs[k]], 32);
  }
  index_foreach(ix, collect_entry, &c);
  int rc = index_save_entries(r, c.out, n, id_hex, err);
  for (size_t k = 0; k < n; k++)
    free((void *)c.out[k].entries);
  free(c.out);
  free(c.pos);
  free(c.cap);
  return rc;
}

static json_t *blob_json(const unsigned char id[32], uint8_t type, uint32_t offset, uint32_t length,
                         uint32_t raw_length) {
  char hex[65];
  hex_encode(id, 32, hex);
  return json_pack("{s:s, s:s, s:I, s:I, s:I}", "id", hex, "type",
                   type == BLOB_TREE ? "tree" : "data", "offset", (json_int_t)offset, "length",
                   (json_int_t)length, "raw_length", (json_int_t)raw_length);
}

int index_save_entries(struct repo *r, const struct index_pack_entries *packs, size_t n,
                       char id_hex[65], char **err) {
  json_t *arr = json_array();
  for (size_t k = 0; k < n; k++) {
    char hex[65];
    hex_encode(packs[k].pack_id, 32, hex);
    json_t *blobs = json_array();
    for (size_t i = 0; i < packs[k].n; i++) {
      const struct pack_entry *e = &packs[k].entries[i];
      json_array_append_new(blobs, blob_json(e->id, e->type, e->offset, e->length, e->raw_length));
    }
    json_array_append_new(arr, json_pack("{s:s, s:o}", "id", hex, "blobs", blobs));
  }
  json_t *obj = json_pack("{s:i, s:o}", "version", 1, "packs", arr);
  int rc = repo_save_json(r, "index", obj, id_hex, err);
  json_decref(obj);
  return rc;
}
