/* Snapshot manifests: list, find by id prefix or "latest". */
#ifndef CORE_REPO_SNAPSHOT_H
#define CORE_REPO_SNAPSHOT_H

#include <jansson.h>

#include "repo/repo.h"

/* All snapshots, oldest first: array of manifests, each with "id" added. */
int snapshot_list(struct repo *r, json_t **out, char **err);
/* "latest", a full id, or a unique prefix of at least 4 hex digits.
 * Returns the manifest with "id" added. */
int snapshot_find(struct repo *r, const char *ref, json_t **out, char **err);

#endif
