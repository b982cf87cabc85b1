/* The backup pipeline's state, shared by backup.c (setup, the source
 * thread, the loop, the manifest), backup_emit.c (the emitter the source
 * plugins call) and backup_store.c (chunk jobs, packs, the run's index,
 * item finalisation). backup.c uses the other two, backup_emit.c uses
 * backup_store.c. Private to core/pipeline/backup*.c. */
#ifndef CORE_PIPELINE_BACKUP_INT_H
#define CORE_PIPELINE_BACKUP_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "pipeline/backup.h"
#include "pipeline/selection.h"
#include "pipeline/tree_feed.h"
#include "repo/index.h"
#include "repo/pack.h"
#include "repo/snapshot.h"
#include "util/progress.h"

/* Chunk buffers kept for reuse: allocating a fresh max-size buffer per chunk
 * costs page faults on every chunk. */
#define SPARE_BUFFERS 4

/* per_tenant: packs being filled at once, one tenant each */
#define BK_TENANT_PACKS 4

struct bk;

struct bk_item {
  struct bk_item *next;
  char *name;
  size_t name_len;
  int type;
  json_t *meta;
  uint64_t size;
  unsigned char (*ids)[32];
  size_t ids_cap;
  size_t n_submitted; /* chunks handed to the pool */
  size_t n_done;      /* chunks whose job finished */
  int closed;
  int failed;
  int is_tree;
  int source;
  int meta_from_parent; /* meta is the parent item's (same text) */
  /* per_tenant: the tenant key its chunks are under (NULL: the
   * repository's keys) */
  const struct repo_tenant *tenant;
  char *line; /* reused unchanged: the parent's tree line, written verbatim */
  /* meta as the plugin wrote it (NULL: none given), when its text is that
   * of a JSON object on one line (checked: meta is parsed from it) */
  char *meta_text;
};

struct bk_source {
  struct plugin_instance *pi;
  /* --only: is the source backed up at all, and which of its items (globs
   * NULL: every item); matched[i] counts the items globs[i] selected */
  int selected;
  const struct selection **globs;
  size_t n_globs;
  uint64_t *matched;
  FILE *tree;
  struct bk_item *head, *tail;
  struct snapshot_note *warnings; /* under bk.lock */
  size_t n_warnings;
  json_t *marks;
  json_t *tenants;               /* per_tenant: names of the tenants of its items (source thread) */
  unsigned char (*tree_ids)[32]; /* the tree's blobs, once it is stored */
  size_t n_tree_ids;
  uint64_t tree_size;
  uint64_t items, bytes, failed_items;
  int source_error;
  char *error;
  /* the parent snapshot's tree of this source, read in step with the walk */
  int has_parent, parent_done;
  uint64_t parent_bytes; /* size of this source in the parent snapshot (progress estimate) */
  json_t *parent_marks;  /* marks of this source in the parent snapshot (borrowed) */
  char *pmark;
  struct tree_feed *parent;
  struct tree_entry pe; /* the parent's item at the cursor (pe.item NULL: none) */
};

/* A pack: filled by the pool threads, each sealing its blob straight into
 * the place it reserved, then stored by an upload job. */
struct bk_upload {
  struct bk *bk;
  struct packer pk;
  size_t writers; /* blobs being sealed into pk (under pack_mu) */
  int closed;     /* full: no more reservations; stored once writers is 0 */
  int failed;     /* a blob could not be sealed: the pack is not stored */
  unsigned char pack_id[32];
  char *err;
  const struct repo_tenant *tenant; /* per_tenant: whose blobs it holds */
};

struct bk {
  const struct backup_opts *o;
  struct repo *repo;
  uv_loop_t loop;
  uv_async_t finish;
  uv_timer_t timer;
  int timer_on;

  pthread_mutex_t lock;
  pthread_cond_t cond;
  uint64_t inflight, limit;
  size_t jobs_outstanding, uploads_outstanding;
  int flushed;
  char *fatal;

  pthread_mutex_t pack_mu;   /* guards `filling` and every pack's writers/closed/failed */
  struct bk_upload *filling; /* the pack taking blobs, NULL until the next one */
  /* per_tenant: the packs taking one tenant's blobs each (a pack holds one
   * tenant's blobs only); the least recently used is closed when another
   * tenant needs a place (under pack_mu) */
  struct bk_tenant_pack {
    const struct repo_tenant *tenant;
    struct bk_upload *u;
    uint64_t used;
  } tfill[BK_TENANT_PACKS];
  uint64_t tfill_clock;
  /* the index of this run's packs, written as they are stored; saved as an
   * index object whenever it grows past INDEX_BATCH_BYTES (loop thread) */
  struct index_text itext;
  json_t *index_ids; /* index objects saved by this run, in order (loop thread) */

  struct bk_source *sources;
  size_t n_sources;

  /* emitter state (source thread only) */
  struct chunker *chunker;
  unsigned char *chunk_buf;
  unsigned char *spare[SPARE_BUFFERS]; /* reusable chunk buffers (under lock) */
  size_t n_spare;
  size_t chunk_len;
  struct bk_item *cur;
  /* the plugin's current item was refused (invalid name or type): its
   * content is discarded and its end accepted, so the source goes on with
   * the next item */
  int refusing;
  /* ... or is not selected (--only): it is not stored and not counted, and
   * its content is not needed (item_reuse accepts at once) */
  int skipping;
  size_t cur_source;
  struct selection *only; /* parsed backup_opts.only */
  size_t n_only;

  /* statistics (under lock) */
  uint64_t items, bytes_read, chunks, new_chunks, new_bytes, stored_bytes, packs;
  uint64_t reused_items, reused_bytes;
  int64_t started_ms;
  struct progress *progress;
};

/* backup_store.c */
void bk_set_fatal(struct bk *b, char *msg);
int bk_is_stopping(struct bk *b);
/* Hand the buffered chunk of the current item to the pool (source thread). */
int bk_submit_chunk(struct bk *b);
/* Write the items at the head of s that are complete (b->lock held). */
void bk_finalize_ready(struct bk *b, struct bk_source *s);
void bk_item_free(struct bk_item *it);
/* A copy of a plugin's metadata text for bk_item.meta_text, or NULL when it
 * cannot stand in a tree line as it is. */
char *bk_meta_text(const char *text);
/* Once every chunk job is done: store the last pack (unless the run
 * failed), then set b->flushed. */
void bk_flush(struct bk *b);

/* backup_emit.c */
/* The emitter the source plugins call, for the source b->cur_source. */
void bk_emitter(struct bk *b, struct engine_emitter *em);
/* A new item of the current source, queued as b->cur (is_tree: the
 * source's item tree, stored as tree blobs). */
struct bk_item *bk_item_begin(struct bk *b, const char *name, size_t name_len, int type,
                              int is_tree);
/* Content of b->cur through the chunker (emitter.item_write). */
int bk_item_write(struct bk *b, const void *buf, size_t len);
/* Is the item selected by the source's --only globs? (counts the match) */
int bk_wanted(struct bk_source *s, const char *name, size_t name_len);
/* per_tenant: the tenant of the current item b->cur (its metadata's
 * "tenant", else the pipeline's tenant_of rules), its key fetched or made;
 * -1 with a fatal error when a new tenant key cannot be stored. */
int bk_item_tenant(struct bk *b, struct bk_source *s, struct bk_item *it);
/* Let go of the parent tree's item at the cursor. */
void bk_parent_drop(struct bk_source *s);

#endif
