/* --only selections (selection.h). */
#include "pipeline/selection.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

int selection_parse(const char *spec, struct selection *out, char **err) {
  const char *slash = strchr(spec, '/');
  out->source = slash ? xasprintf("%.*s", (int)(slash - spec), spec) : xstrdup(spec);
  out->glob = slash ? xstrdup(slash + 1) : NULL;
  if (!out->source[0] || (out->glob && !out->glob[0])) {
    *err = xasprintf("--only '%s': expected SOURCE or SOURCE/ITEM-GLOB", spec);
    selection_free(out);
    return -1;
  }
  return 0;
}

void selection_free(struct selection *s) {
  free(s->source);
  free(s->glob);
  s->source = s->glob = NULL;
}

int selection_item(const char *glob, const char *name) {
  if (!glob)
    return 1;
  if (fnmatch(glob, name, 0) == 0)
    return 1;
  /* an item below a selected directory is selected too */
  size_t gl = strlen(glob);
  if (strncmp(name, glob, gl) == 0 && name[gl] == '/')
    return 1;
  /* and so are the parents of a selected path, so they are recreated with
   * their metadata */
  size_t nl = strlen(name);
  if (strncmp(glob, name, nl) == 0 && glob[nl] == '/')
    return 1;
  return 0;
}
