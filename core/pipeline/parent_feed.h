/* The parent snapshot's item tree, read ahead on its own thread.
 *
 * An incremental run walks the parent's tree in step with the source (see
 * emitter.previous). Reading it means fetching, decrypting and
 * decompressing tree blobs and parsing one JSON line per item; a feeder
 * thread does that while the source thread walks, and hands over parsed
 * entries through a bounded queue (memory stays flat for any tree size). */
#ifndef CORE_PIPELINE_PARENT_FEED_H
#define CORE_PIPELINE_PARENT_FEED_H

#include <jansson.h>
#include <stddef.h>

#include "repo/repo.h"

struct parent_entry {
  json_t *item; /* the parsed line */
  char *name;   /* its name bytes (NUL-terminated) */
  size_t name_len;
  char *line; /* the line's text, as stored (canonical JSON) */
  size_t line_len;
  char *meta_text; /* item.meta as compact JSON with sorted keys */
};

struct parent_feed;

/* Start reading the tree (array of hex blob ids, borrowed: must outlive the
 * feed). */
struct parent_feed *parent_feed_start(struct repo *r, json_t *tree_ids);
/* 1: *e filled (caller owns it, free with parent_entry_clear); 0: end of the
 * tree; -1: the tree is unreadable (*err, malloc'd). */
int parent_feed_next(struct parent_feed *f, struct parent_entry *e, char **err);
/* Stop the thread and free everything (also when not read to the end). */
void parent_feed_free(struct parent_feed *f);
void parent_entry_clear(struct parent_entry *e);

#endif
