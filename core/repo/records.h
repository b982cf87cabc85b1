/* Operational records in the repository (docs/FORMAT.md §14c): one sealed
 * object per run outcome (runs/<id>, AAD "run") and per verification
 * (verify/<id>, AAD "verify"), so `engine status`, `engine serve` and the
 * metrics know the last run and the last check after a restart and from
 * any host. This module is their one owner: it adds the common fields,
 * stores them, lists them newest first and keeps their number bounded.
 *
 * Records are small and unreferenced: a record that cannot be read is
 * skipped (and counted), and the oldest ones of a pipeline beyond
 * RECORDS_KEEP are deleted when a new one is saved. Readers of the format
 * that do not know them ignore them (FORMAT.md §2). */
#ifndef CORE_REPO_RECORDS_H
#define CORE_REPO_RECORDS_H

#include <jansson.h>
#include <stddef.h>

#include "repo/repo.h"

#define RECORDS_KEEP 50 /* per kind and pipeline */

enum record_kind { RECORD_RUN, RECORD_VERIFY };

/* Seal and store obj (which the caller fills with the kind's fields, with
 * "pipeline" and "time") as a new record; "version", "repository",
 * "hostname", "username" and "created_ns" are added. id_hex (may be NULL)
 * receives its id. Then, now and then, the oldest records of each pipeline
 * beyond RECORDS_KEEP are deleted (a failure there is only logged).
 * Returns 0 or -1 with *err. */
int record_save(struct repo *r, enum record_kind k, json_t *obj, char id_hex[65], char **err);

/* The readable records of kind k of pipeline (NULL: every pipeline),
 * newest first (by "time", then "created_ns"), each with "id" added.
 * *unreadable (may be NULL) counts the objects that could not be read.
 * Returns 0 with *out, or -1 with *err when the listing fails. */
int record_list(struct repo *r, enum record_kind k, const char *pipeline, json_t **out,
                size_t *unreadable, char **err);

#endif
