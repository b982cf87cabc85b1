/* Snapshot listing and lookup. Manifests are small; listing loads them all
 * (a repository holds thousands, not millions). */
#include "repo/snapshot.h"

#include <stdlib.h>
#include <string.h>

#include "util/log.h"

static int by_time(const void *a, const void *b) {
  json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  const char *tx = json_string_value(json_object_get(x, "time"));
  const char *ty = json_string_value(json_object_get(y, "time"));
  int64_t x_t = 0, y_t = 0;
  if (tx)
    parse_iso_time(tx, &x_t);
  if (ty)
    parse_iso_time(ty, &y_t);
  if (x_t != y_t)
    return x_t < y_t ? -1 : 1;
  json_int_t xc = json_integer_value(json_object_get(x, "created_ns"));
  json_int_t yc = json_integer_value(json_object_get(y, "created_ns"));
  if (xc != yc)
    return xc < yc ? -1 : 1;
  return strcmp(json_string_value(json_object_get(x, "id")),
                json_string_value(json_object_get(y, "id")));
}

int snapshot_list(struct repo *r, json_t **out, char **err) {
  json_t *names;
  if (repo_list(r, "snapshots/", &names, err) != 0)
    return -1;
  size_t n = json_array_size(names), k = 0;
  json_t **v = xcalloc(n ? n : 1, sizeof(*v));
  for (size_t i = 0; i < n; i++) {
    const char *name = json_string_value(json_object_get(json_array_get(names, i), "name"));
    const char *id = name + strlen("snapshots/");
    json_t *m;
    char *e = NULL;
    if (repo_load_json(r, "snapshot", id, &m, &e) != 0) {
      log_warn("skipping unreadable snapshot: %s", e);
      free(e);
      continue;
    }
    json_object_set_new(m, "id", json_string(id));
    v[k++] = m;
  }
  json_decref(names);
  qsort(v, k, sizeof(*v), by_time);
  json_t *arr = json_array();
  for (size_t i = 0; i < k; i++)
    json_array_append_new(arr, v[i]);
  free(v);
  *out = arr;
  return 0;
}

int snapshot_find(struct repo *r, const char *ref, json_t **out, char **err) {
  json_t *all;
  if (snapshot_list(r, &all, err) != 0)
    return -1;
  size_t n = json_array_size(all);
  json_t *found = NULL;
  if (strcmp(ref, "latest") == 0) {
    if (n > 0)
      found = json_incref(json_array_get(all, n - 1));
    else
      *err = xstrdup("the repository has no snapshots yet");
  } else if (strlen(ref) < 4 || strspn(ref, "0123456789abcdef") != strlen(ref)) {
    *err = xasprintf("'%s' is not a snapshot id: give 'latest' or at least 4 hex digits of an id",
                     ref);
  } else {
    size_t matches = 0;
    for (size_t i = 0; i < n; i++) {
      json_t *m = json_array_get(all, i);
      if (strncmp(json_string_value(json_object_get(m, "id")), ref, strlen(ref)) == 0) {
        matches++;
        found = m;
      }
    }
    if (matches == 1)
      json_incref(found);
    else {
      found = NULL;
      *err =
          matches
              ? xasprintf(
                    "snapshot id prefix '%s' is ambiguous (%zu snapshots match); give more digits",
                    ref, matches)
              : xasprintf("no snapshot '%s' in the repository", ref);
    }
  }
  json_decref(all);
  if (!found)
    return -1;
  *out = found;
  return 0;
}
