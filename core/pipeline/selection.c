/* --only selections (selection.h). */
#include "pipeline/selection.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

static void set_globs(struct selection *s, char **globs, size_t n) {
  for (size_t i = 0; i < s->n_globs; i++)
    free(s->globs[i]);
  free(s->globs);
  s->globs = globs;
  s->n_globs = n;
}

int selection_parse(const char *spec, struct selection *out, char **err) {
  const char *slash = strchr(spec, '/');
  *out = (struct selection){0};
  out->source = slash ? xasprintf("%.*s", (int)(slash - spec), spec) : xstrdup(spec);
  out->glob = slash ? xstrdup(slash + 1) : NULL;
  if (!out->source[0] || (out->glob && !out->glob[0])) {
    *err = xasprintf("--only '%s': expected SOURCE or SOURCE/ITEM-GLOB", spec);
    selection_free(out);
    return -1;
  }
  if (out->glob) {
    char **g = xmalloc(sizeof(*g));
    g[0] = xstrdup(out->glob);
    set_globs(out, g, 1);
  }
  return 0;
}

void selection_free(struct selection *s) {
  set_globs(s, NULL, 0);
  free(s->source);
  free(s->glob);
  s->source = s->glob = NULL;
  s->translated = 0;
}

struct collect {
  char **v;
  size_t n;
};

static int add_glob(void *ud, const char *item_glob) {
  struct collect *c = ud;
  if (!item_glob || !item_glob[0])
    return ENGINE_OK; /* an empty glob selects nothing: ignored */
  c->v = xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
  c->v[c->n++] = xstrdup(item_glob);
  return ENGINE_OK;
}

void selection_translate(struct selection *s, const struct engine_source_ops *ops) {
  if (!s->glob || strchr(s->glob, '/') || !ops ||
      !ENGINE_HAS_FIELD(ops, struct engine_source_ops, select_globs) || !ops->select_globs)
    return;
  struct collect c = {0};
  int rc = ops->select_globs(s->glob, add_glob, &c);
  if (rc != ENGINE_OK || c.n == 0) { /* declined: GLOB is an item-name glob */
    for (size_t i = 0; i < c.n; i++)
      free(c.v[i]);
    free(c.v);
    return;
  }
  set_globs(s, c.v, c.n);
  s->translated = 1;
}

int selection_match(const struct selection *s, const char *name) {
  if (!s || !s->glob)
    return 1;
  for (size_t i = 0; i < s->n_globs; i++)
    if (selection_item(s->globs[i], name))
      return 1;
  return 0;
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

char *selection_reading(const struct selection *s) {
  if (!s->translated)
    return xstrdup("");
  char *out = xstrdup("read as the item globs ");
  for (size_t i = 0; i < s->n_globs; i++) {
    char *n = xasprintf("%s%s'%s'", out, i ? ", " : "", s->globs[i]);
    free(out);
    out = n;
  }
  return out;
}
