/* A small open-addressing hash map keyed by a pair of 64-bit integers: the
 * backup uses it for (st_dev, st_ino) -> first name (hard links) and for
 * uid/gid -> name caches. Linear probing, grows at 50% load, no deletion. */
#include <stdlib.h>

#include "files.h"

static uint64_t map_hash(uint64_t a, uint64_t b) {
  /* splitmix64 finaliser over both halves: inode numbers are dense and
   * sequential, so the identity would cluster badly with linear probing. */
  uint64_t x = a * 0x9e3779b97f4a7c15ull ^ (b + 0x632be59bd9b4e019ull);
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

static struct files_map_slot *map_find(struct files_map_slot *slots, size_t cap, uint64_t a,
                                       uint64_t b) {
  size_t mask = cap - 1;
  size_t i = (size_t)map_hash(a, b) & mask;
  while (slots[i].used && !(slots[i].a == a && slots[i].b == b))
    i = (i + 1) & mask;
  return &slots[i];
}

struct files_map_slot *files_map_get(struct files_map *m, uint64_t a, uint64_t b) {
  if (m->cap == 0)
    return NULL;
  struct files_map_slot *s = map_find(m->slots, m->cap, a, b);
  return s->used ? s : NULL;
}

static int map_grow(struct files_map *m) {
  size_t ncap = m->cap ? m->cap * 2 : 64;
  struct files_map_slot *ns = calloc(ncap, sizeof(*ns));
  if (ns == NULL)
    return -1;
  for (size_t i = 0; i < m->cap; i++) {
    if (m->slots[i].used)
      *map_find(ns, ncap, m->slots[i].a, m->slots[i].b) = m->slots[i];
  }
  free(m->slots);
  m->slots = ns;
  m->cap = ncap;
  return 0;
}

int files_map_put(struct files_map *m, uint64_t a, uint64_t b, void *value) {
  if ((m->count + 1) * 2 > m->cap && map_grow(m) != 0)
    return -1;
  struct files_map_slot *s = map_find(m->slots, m->cap, a, b);
  s->a = a;
  s->b = b;
  s->value = value;
  s->used = 1;
  m->count++;
  return 0;
}

void files_map_free(struct files_map *m, void (*free_value)(void *)) {
  if (free_value != NULL) {
    for (size_t i = 0; i < m->cap; i++) {
      if (m->slots[i].used)
        free_value(m->slots[i].value);
    }
  }
  free(m->slots);
  m->slots = NULL;
  m->cap = 0;
  m->count = 0;
}
