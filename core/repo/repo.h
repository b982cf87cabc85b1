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
 * (keys.h). Modules that repo.c itself uses include those directly. */
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
};

/* Open (or, with create, initialise) the repository on the sinks. Nothing is
 * written unless the location is empty and create is set. r->index is an
 * empty index (index_load fills it). */
int repo_open(const struct repo_open_opts *o, struct repo **out, char **err);
void repo_close(struct repo *r);

#endif
