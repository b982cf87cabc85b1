/* --only SOURCE[/ITEM-GLOB]: which sources and items a backup or restore
 * takes. An item is selected when its name matches the glob (fnmatch,
 * without special treatment of '/'), when it is below a selected name
 * (glob + "/..."), or when it is a parent of the glob's path (so a restore
 * recreates those directories with their metadata, and a backup stores
 * them). Used by pipeline/backup*.c and pipeline/restore.c. */
#ifndef CORE_PIPELINE_SELECTION_H
#define CORE_PIPELINE_SELECTION_H

#include <stddef.h>

struct selection {
  char *source; /* the source's name */
  char *glob;   /* the item glob, or NULL: every item of the source */
};

/* Split "SOURCE[/ITEM-GLOB]"; an empty source or glob is an error. Returns
 * 0, or -1 with *err. */
int selection_parse(const char *spec, struct selection *out, char **err);
void selection_free(struct selection *s);

/* Is item `name` (NUL-terminated) selected by glob (NULL: everything)? */
int selection_item(const char *glob, const char *name);

#endif
