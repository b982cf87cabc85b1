/* `--only SOURCE/GLOB` in the source's own terms (ABI 1.8 select_globs):
 * "DB" or a database glob selects those databases, "DB.COLL" with a glob on
 * either side those collections (docs/sources/mongodb.md). Database names
 * hold no '.', so the first '.' ends the database part; collection names
 * may hold dots. */
#include <stdlib.h>
#include <string.h>

#include "mongo.h"

/* Appends s[0..n) to *out (len, cap). 0, or -1 out of memory. */
static int put(char **out, size_t *len, size_t *cap, const char *s, size_t n) {
  if (*len + n + 1 > *cap) {
    size_t nc = (*len + n + 1) * 2;
    char *p = realloc(*out, nc);
    if (p == NULL)
      return -1;
    *out = p;
    *cap = nc;
  }
  memcpy(*out + *len, s, n);
  *len += n;
  (*out)[*len] = '\0';
  return 0;
}

/* A literal byte as it appears in an item name (mongodump's escaping). */
static int put_literal(char **out, size_t *len, size_t *cap, char c) {
  char one[2] = {c, '\0'};
  char *e = mg_escape(one);
  int rc = e ? put(out, len, cap, e, strlen(e)) : -1;
  free(e);
  return rc;
}

/* A collection-name glob as a glob over escaped names: '*' and '?' stay
 * wildcards, a bracket expression is kept as it is (it matches one byte of
 * the escaped name, so only characters that are not escaped), "\\c" and every
 * other character is the literal character, escaped as in item names.
 * malloc'd, or NULL out of memory. */
static char *escape_glob(const char *g) {
  char *out = NULL;
  size_t len = 0, cap = 0;
  if (put(&out, &len, &cap, "", 0) != 0)
    return NULL;
  for (const char *p = g; *p; p++) {
    int rc;
    const char *end = NULL; /* the ']' closing a bracket expression at p */
    if (*p == '[') {
      const char *q = p + 1;
      q += *q == '!' || *q == '^';
      q += *q == ']'; /* a ']' first is a member */
      end = strchr(q, ']');
    }
    if (*p == '*' || *p == '?') {
      rc = put(&out, &len, &cap, p, 1);
    } else if (end != NULL) {
      rc = put(&out, &len, &cap, p, (size_t)(end - p + 1));
      p = end;
    } else if (*p == '\\' && p[1] != '\0') {
      rc = put_literal(&out, &len, &cap, *++p);
    } else {
      rc = put_literal(&out, &len, &cap, *p);
    }
    if (rc != 0) {
      free(out);
      return NULL;
    }
  }
  return out;
}

int mg_select_globs(const char *glob, int (*add)(void *ud, const char *item_glob), void *ud) {
  const char *dot = strchr(glob, '.');
  if (dot == NULL) { /* databases: everything in them */
    char *g = mg_strdupf("%s/*", glob);
    if (g == NULL)
      return ENGINE_ERROR;
    int rc = add(ud, g);
    free(g);
    return rc;
  }
  if (dot == glob || dot[1] == '\0')
    return ENGINE_NOT_FOUND; /* ".x" or "db.": not DB.COLL */
  char *coll = escape_glob(dot + 1);
  if (coll == NULL)
    return ENGINE_ERROR;
  int n = (int)(dot - glob);
  /* metadata, data, and a time-series collection's data (its buckets) */
  char *g[3] = {mg_strdupf("%.*s/%s.metadata.json", n, glob, coll),
                mg_strdupf("%.*s/%s.bson", n, glob, coll),
                mg_strdupf("%.*s/system.buckets.%s.bson", n, glob, coll)};
  int rc = g[0] && g[1] && g[2] ? ENGINE_OK : ENGINE_ERROR;
  for (size_t i = 0; i < 3 && rc == ENGINE_OK; i++)
    rc = add(ud, g[i]);
  for (size_t i = 0; i < 3; i++)
    free(g[i]);
  free(coll);
  return rc;
}
