/* Local cache of the decoded index, outside the repository (index_cache.c,
 * docs/internals/index-cache.md). */
#ifndef CORE_REPO_INDEX_CACHE_H
#define CORE_REPO_INDEX_CACHE_H

#include <stddef.h>

struct repo;

/* Fill r->index (empty) from the cache if it was built from exactly these
 * index objects (names sorted, as listed) and authenticates. Returns 0, or
 * -1 with r->index left empty (the caller reads the index objects). */
int index_cache_load(struct repo *r, char *const *names, size_t n_names);
/* Write the cache for r->index as loaded from these index objects. Failures
 * are logged at debug level and otherwise ignored. */
void index_cache_save(struct repo *r, char *const *names, size_t n_names);

#endif
