/* Header-only helpers for plugin authors. Everything here is static inline
 * and built on the host table, so it adds nothing to the ABI. */
#ifndef ENGINE_HELPERS_H
#define ENGINE_HELPERS_H

#include <stdlib.h>
#include <string.h>

#include "engine/host.h"

/* Free an array of n malloc'd strings and the array. */
static inline void engine_strv_free(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

/* Copy a STRING_LIST option into a malloc'd array of malloc'd strings;
 * *out stays NULL for an empty list. Empty entries are refused. Errors go
 * through host->set_error and return ENGINE_ERROR. */
static inline int engine_cfg_strv(const struct engine_host *h, const char *opt, char ***out,
                                  size_t *n) {
  size_t count = h->cfg_list_count(h, opt);
  *out = NULL;
  *n = 0;
  if (count == 0)
    return ENGINE_OK;
  char **v = (char **)calloc(count, sizeof(*v));
  if (v == NULL) {
    h->set_error(h, "unable to read option '%s': out of memory", opt);
    return ENGINE_ERROR;
  }
  for (size_t i = 0; i < count; i++) {
    const char *s = h->cfg_list_item(h, opt, i);
    if (s == NULL || s[0] == '\0') {
      h->set_error(h, "option '%s': entry %zu is empty", opt, i + 1);
      engine_strv_free(v, i);
      return ENGINE_ERROR;
    }
    v[i] = strdup(s);
    if (v[i] == NULL) {
      h->set_error(h, "unable to read option '%s': out of memory", opt);
      engine_strv_free(v, i);
      return ENGINE_ERROR;
    }
  }
  *out = v;
  *n = count;
  return ENGINE_OK;
}

#endif
