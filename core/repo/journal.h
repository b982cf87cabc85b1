/* A write-only host's journal (format 2, docs/SECURITY.md "Its parent
 * snapshot"): the manifests and tree blobs of the snapshots this host wrote,
 * kept on the host itself so that its next run has a parent to compare
 * against, although it can read nothing back from the repository. It holds
 * only what the host produced (its own item names, metadata and chunk ids),
 * sealed with a key derived from the writer credential's index key.
 *
 *   DIR/snapshot-<id>   the manifest JSON, sealed (AAD "journal-snapshot")
 *   DIR/tree-<hex id>   a tree blob's raw bytes, sealed (AAD "journal-tree")
 *
 * DIR is r->journal_dir (STATE/writer/<repository id>, made 0700; files
 * 0600, written to a temporary name and renamed). Only the newest snapshot
 * of each pipeline and host is kept, with the tree blobs it names. Losing
 * the journal costs one full read, nothing else. */
#ifndef CORE_REPO_JOURNAL_H
#define CORE_REPO_JOURNAL_H

#include <jansson.h>
#include <stddef.h>

#include "repo/objects.h"

/* Keep a tree blob of the run (a pool thread may call it); failures are
 * logged once, the backup goes on. */
void journal_put_tree(struct repo *r, const unsigned char id[32], const void *data, size_t n);
/* A tree blob kept earlier, checked against its id: 0, or -1 with *err. */
int journal_get_tree(struct repo *r, const unsigned char id[32], void **out, size_t *n, char **err);
/* Keep the manifest of the snapshot just written (id), then drop older
 * snapshots of its pipeline and host and the tree blobs no kept snapshot
 * names. */
void journal_put_snapshot(struct repo *r, const char *id, json_t *manifest);
/* The manifests kept for snapshots that still exist (ids: the repository's
 * snapshot ids): JSON array of {"id", "manifest"}. */
json_t *journal_snapshots(struct repo *r, json_t *ids);

#endif
