/* Snapshot manifests: load and validate one, list them all, find one by id
 * prefix or "latest".
 *
 * A snapshot object that exists but cannot be read (the sink fails after its
 * retries, the object's hash or authentication fails, the manifest is not a
 * valid version-1 manifest of this repository) is never skipped silently:
 * snapshot_list hands it back as "unreadable" for the caller to decide, and
 * every caller that decides from the list (forget, prune, check, restore
 * latest) refuses or reports it. */
#ifndef CORE_REPO_SNAPSHOT_H
#define CORE_REPO_SNAPSHOT_H

#include <jansson.h>

#include "repo/repo.h"

/* Read, authenticate and validate snapshots/<id>; the manifest gets "id"
 * added. On failure *err says why, naming the object. */
int snapshot_load(struct repo *r, const char *id, json_t **out, char **err);

/* All snapshots, oldest first: array of manifests, each with "id" added.
 * Snapshots that exist but cannot be read go to *unreadable as
 * {"id","error"} (sorted by id). With unreadable == NULL an unreadable
 * snapshot is an error (-1, *err names every one). */
int snapshot_list(struct repo *r, json_t **out, json_t **unreadable, char **err);

/* "latest", a full id, or a unique prefix of at least 4 hex digits.
 * Returns the manifest with "id" added. An id that names an unreadable
 * snapshot is an error saying why; so is "latest" while any snapshot is
 * unreadable (it might be the newest one). */
int snapshot_find(struct repo *r, const char *ref, json_t **out, char **err);

/* Before forget or prune decide from the snapshot list, every unreadable
 * snapshot must be named by the operator in `named` (an array of ids or
 * unique prefixes of at least 8 hex digits: --forget-unreadable), and
 * every name must be an unreadable snapshot. Named ones are deleted (unless
 * dry_run) and their ids appended to `dropped`. Returns 0, or -1 with *err
 * naming what is unreadable and why, and nothing deleted. */
int snapshot_forget_unreadable(struct repo *r, json_t *unreadable, json_t *named, int dry_run,
                               const char *command, json_t *dropped, char **err);

/* One line per unreadable snapshot ("snapshot ID: why"), for messages;
 * malloc'd. */
char *snapshot_unreadable_text(json_t *unreadable);

#endif
