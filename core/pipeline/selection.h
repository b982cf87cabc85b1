/* --only SOURCE[/GLOB]: which sources and items a backup or restore takes.
 * GLOB is an item-name glob, or, for a source that reads its own terms
 * (ABI 1.8 engine_source_ops.select_globs; mongodb: "DB.COLL"), a glob
 * without '/' that the source turns into item-name globs. An item is
 * selected when its name matches one of the item-name globs (fnmatch,
 * without special treatment of '/'), when it is below a selected name
 * (glob + "/..."), or when it is a parent of a glob's path (so a restore
 * recreates those directories with their metadata, and a backup stores
 * them). Used by pipeline/backup*.c, pipeline/restore.c and snapshots
 * --contains. */
#ifndef CORE_PIPELINE_SELECTION_H
#define CORE_PIPELINE_SELECTION_H

#include <stddef.h>

#include "engine/plugin.h"

struct selection {
  char *source;   /* the source's name */
  char *glob;     /* GLOB as given, or NULL: every item of the source */
  char **globs;   /* the item-name globs GLOB stands for (GLOB itself, or the source's) */
  size_t n_globs; /* 0 when glob is NULL */
  int translated; /* globs are the source's reading of GLOB */
};

/* Split "SOURCE[/GLOB]"; an empty source or glob is an error. globs is
 * {GLOB} until selection_translate. Returns 0, or -1 with *err. */
int selection_parse(const char *spec, struct selection *out, char **err);
void selection_free(struct selection *s);

/* Let the source read GLOB in its own terms: when ops (may be NULL, or of
 * an older ABI) has select_globs and GLOB holds no '/', globs become the
 * item-name globs it gives. Otherwise (or when it declines) nothing
 * changes. */
void selection_translate(struct selection *s, const struct engine_source_ops *ops);

/* Is item `name` (NUL-terminated) selected by s (NULL or no glob:
 * everything)? */
int selection_match(const struct selection *s, const char *name);

/* Is item `name` (NUL-terminated) selected by one item-name glob (NULL:
 * everything)? */
int selection_item(const char *glob, const char *name);

/* For messages about a translated selection: "read as the item globs 'a',
 * 'b'", or "" when GLOB is used as it is. malloc'd. */
char *selection_reading(const struct selection *s);

#endif
