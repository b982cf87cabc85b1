/* An item tree read ahead on its own thread.
 *
 * Reading a tree means fetching, decrypting and decompressing tree blobs
 * and parsing one JSON line per item. A feeder thread does that while the
 * consumer works -- an incremental backup walking the parent snapshot's
 * tree in step with the source (emitter.previous), a restore writing
 * items -- and hands over parsed entries through a bounded queue (memory
 * stays flat for any tree size). */
#ifndef CORE_PIPELINE_TREE_FEED_H
#define CORE_PIPELINE_TREE_FEED_H

#include <jansson.h>
#include <stddef.h>

#include "repo/repo.h"

struct tree_entry {
  json_t *item; /* the parsed line */
  /* TREE_FEED_FULL only: */
  char *name; /* its name bytes (NUL-terminated) */
  size_t name_len;
  char *line; /* the line's text, as stored (canonical JSON) */
  size_t line_len;
  char *meta_text; /* item.meta as compact JSON with sorted keys */
};

/* Also fill name, line and meta_text (lines without a name are skipped). */
#define TREE_FEED_FULL 1

struct tree_feed;

/* Start reading the tree (its n blob ids, borrowed: they must outlive the
 * feed). */
struct tree_feed *tree_feed_start(struct repo *r, const unsigned char (*ids)[32], size_t n,
                                  int flags);
/* 1: *e filled (caller owns it: give it back with tree_feed_release, or
 * free it with tree_entry_clear); 0: end of the tree; -1: the tree is
 * unreadable (*err, malloc'd). */
int tree_feed_next(struct tree_feed *f, struct tree_entry *e, char **err);
/* Hand an entry of this feed back to be freed by the feeder's thread (where
 * it was allocated); *e is cleared. */
void tree_feed_release(struct tree_feed *f, struct tree_entry *e);
/* Stop the thread and free everything (also when not read to the end). */
void tree_feed_free(struct tree_feed *f);
void tree_entry_clear(struct tree_entry *e);

/* tree_foreach (repo/tree.h) with the reading and parsing done ahead on the
 * feed's thread: the callback's own work overlaps with them. */
int tree_feed_foreach(struct repo *r, const unsigned char (*ids)[32], size_t n,
                      int (*cb)(void *ud, json_t *item), void *ud, char **err);

#endif
