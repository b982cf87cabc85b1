/* The repository: a set of immutable objects under a sink location.
 * See docs/FORMAT.md for the byte-level description.
 *
 *   config               plaintext JSON: format version, repository id, chunker
 *                        parameters, encryption algorithm
 *   keys/<id>            the master key wrapped by a key-encryption key
 *   data/<xx>/<pack-id>  packs: sealed blobs, then a sealed header, then trailer
 *   index/<id>           sealed JSON: which blob lives in which pack
 *   snapshots/<id>       sealed JSON manifest of one recovery point
 *   locks/<id>           sealed JSON: who holds the repository (lock.h)
 *
 * Object names are content addresses (SHA-256 of the stored bytes, hex),
 * except config and keys. Nothing is ever overwritten.
 *
 * This header opens a repository (repo.c) and brings the layers below it:
 * the handle and object I/O (objects.h), blobs (blob.h) and key objects
 * (keys.h). Modules that repo.c itself uses include those directly.
 *
 * Threads. repo_open, repo_close and the key calls (keys.h) run on one
 * thread with nothing else using the repository. While it is open, r's
 * keys, sink table and parameters do not change, and these calls may run
 * on several threads at once on the same struct repo:
 *   - object I/O (objects.h): repo_put, repo_get, repo_get_stream,
 *     repo_delete, repo_delete_many, repo_list, repo_save_text/_json,
 *     repo_load_json. The backup's pool threads store packs and index
 *     objects (pipeline/backup_store.c), the restore read-ahead reads a
 *     range per thread (prefetch.c) while the snapshot is looked up next to
 *     the index load (cli/commands.c), check --read-data reads packs on 4
 *     threads (pipeline/check.c) and the lock refresher rewrites the lock
 *     (lock.c). A sink instance is called from these threads concurrently
 *     (sink plugins must be thread-safe, docs/PLUGINS.md); the only state a
 *     call changes is repo_sink.failed (atomic) and the host's last error,
 *     which each thread reads from its own copy (plugin/host.c).
 *   - sealing and blobs (objects.h, blob.h): repo_seal/_unseal, repo_blob_id,
 *     repo_blob_encode/_compress/_seal/_decode, repo_read_blob: no state
 *     beyond r's keys; repo_blob_compress returns a buffer of the calling
 *     thread.
 *   - the in-memory index (index.h): index_get, index_claim, index_put,
 *     index_add_pack and index_find_pack take the index's mutex;
 *     index_foreach holds it for the whole walk (its callback must not call
 *     back into the index).
 * Everything else is for one thread at a time: loading the index
 * (index_load, index_note_saved: the backup calls the latter on its loop
 * thread), snapshots (snapshot.h), locks (lock.h; the refresher is the
 * lock's own), prune, check and repair outside their reader threads. */
#ifndef CORE_REPO_REPO_H
#define CORE_REPO_REPO_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "repo/blob.h"
#include "repo/keys.h"
#include "repo/objects.h"

struct repo_open_opts {
  struct repo_sink *sinks; /* borrowed */
  size_t n_sinks;
  const struct engine_plugin *crypto; /* NULL: none */
  const char *passphrase;             /* or key material from a key file */
  size_t passphrase_len;
  int create;                    /* initialise an empty location */
  struct chunker_params chunker; /* for create; zeros: defaults */
  uint64_t pack_size;            /* for create; 0: default */
  int compress_algo, compress_level;
  int dry_run; /* initialise in memory only: write nothing */
  /* restore, snapshots, show, check: a sink that is down or empty while
   * another holds the repository is skipped with a warning */
  int read_only;
  int format; /* for create: 1 or 2; 0: REPO_FORMAT_VERSION */
  /* passphrase holds a writer credential (keys2.h) instead: the host can
   * add to the repository but read nothing of it */
  int write_only;
};

/* Open (or, with create, initialise) the repository on the sinks. Nothing is
 * written unless the location is empty and create is set. r->index is an
 * empty index (index_load fills it). */
int repo_open(const struct repo_open_opts *o, struct repo **out, char **err);
void repo_close(struct repo *r);

#endif
