/* Secret references a run could not resolve (see preflight.h). */
#include "ops/preflight.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

json_t *preflight_secret_warnings(const struct pipeline *p) {
  json_t *warnings = json_array(), *refs = pipeline_secret_refs(p);
  size_t k;
  json_t *ref;
  json_array_foreach(refs, k, ref) {
    const char *r = json_string_value(json_object_get(ref, "ref"));
    const char *opt = json_string_value(json_object_get(ref, "option"));
    if (!r || !opt)
      continue;
    char *w = NULL;
    if (strncmp(r, "env:", 4) == 0 && !getenv(r + 4))
      w = xasprintf("%s: environment variable %s is not set; a run would fail", opt, r + 4);
    else if (strncmp(r, "file:", 5) == 0 && access(r + 5, R_OK) != 0)
      w = xasprintf("%s: file %s cannot be read (%s); a run would fail", opt, r + 5,
                    strerror(errno));
    if (w) {
      json_array_append_new(warnings, json_string(w));
      free(w);
    }
  }
  json_decref(refs);
  return warnings;
}
