/* Snapshot manifests: load with validation, list, find. Manifests are small;
 * listing loads them all (a repository holds thousands, not millions). */
#include "repo/snapshot.h"

#include <stdlib.h>
#include <string.h>

#include "repo/tree.h"
#include "util/log.h"

static int is_hex64(const char *s) {
  return s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* What restore, check and prune rely on; anything else is informational. */
static const char *manifest_problem(const struct repo *r, json_t *m) {
  if (!json_is_object(m))
    return "the manifest is not a JSON object";
  json_t *v = json_object_get(m, "version");
  if (!json_is_integer(v))
    return "the manifest has no format version";
  if (json_integer_value(v) != REPO_FORMAT_VERSION)
    return "the manifest has a format version this engine does not read";
  const char *repo = json_string_value(json_object_get(m, "repository"));
  if (!repo || strcmp(repo, r->id) != 0)
    return "the manifest belongs to another repository";
  int64_t t;
  const char *time = json_string_value(json_object_get(m, "time"));
  if (!time || parse_iso_time(time, &t) != 0)
    return "the manifest has no valid time";
  json_t *srcs = json_object_get(m, "sources");
  if (!json_is_array(srcs))
    return "the manifest has no sources array";
  size_t i, k;
  json_t *s, *id;
  json_array_foreach(srcs, i, s) {
    if (!json_is_string(json_object_get(s, "name")) || !json_is_string(json_object_get(s, "type")))
      return "a source of the manifest has no name or type";
    json_t *tree = json_object_get(s, "tree");
    if (!json_is_array(tree))
      return "a source of the manifest has no tree";
    json_array_foreach(tree, k, id) {
      if (!is_hex64(json_string_value(id)))
        return "a source's tree holds a malformed blob id";
    }
  }
  return NULL;
}

/* A message that ends up in JSON (the lists of damaged objects, --json
 * output) must be UTF-8, but one quoting the bytes of a damaged object (the
 * JSON parser's does) may not be: then its bytes are escaped. A JSON string
 * that cannot be made would drop the damage from those lists silently. */
static void make_utf8(char **msg) {
  json_t *s = *msg ? json_string(*msg) : NULL;
  if (s || !*msg) {
    json_decref(s);
    return;
  }
  char *p = printable_name(*msg, strlen(*msg));
  free(*msg);
  *msg = p;
}

int snapshot_load(struct repo *r, const char *id, json_t **out, char **err) {
  json_t *m;
  if (repo_load_json(r, "snapshot", id, &m, err) != 0) {
    make_utf8(err);
    return -1;
  }
  const char *why = manifest_problem(r, m);
  if (why) {
    json_decref(m);
    *err = xasprintf("snapshot 'snapshots/%s': %s", id, why);
    return -1;
  }
  json_object_set_new(m, "id", json_string(id));
  *out = m;
  return 0;
}

static int by_time(const void *a, const void *b) {
  json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  int64_t x_t = 0, y_t = 0;
  parse_iso_time(json_string_value(json_object_get(x, "time")), &x_t);
  parse_iso_time(json_string_value(json_object_get(y, "time")), &y_t);
  if (x_t != y_t)
    return x_t < y_t ? -1 : 1;
  json_int_t xc = json_integer_value(json_object_get(x, "created_ns"));
  json_int_t yc = json_integer_value(json_object_get(y, "created_ns"));
  if (xc != yc)
    return xc < yc ? -1 : 1;
  return strcmp(json_string_value(json_object_get(x, "id")),
                json_string_value(json_object_get(y, "id")));
}

/* The ids of snapshots/ objects (other names are not snapshots). */
static int list_ids(struct repo *r, json_t **ids, char **err) {
  json_t *names;
  if (repo_list(r, "snapshots/", &names, err) != 0)
    return -1;
  *ids = json_array();
  size_t i;
  json_t *v;
  json_array_foreach(names, i, v) {
    const char *id = json_string_value(json_object_get(v, "name")) + strlen("snapshots/");
    if (is_hex64(id))
      json_array_append_new(*ids, json_string(id));
  }
  json_decref(names);
  return 0;
}

char *snapshot_unreadable_text(json_t *unreadable) {
  char *text = xstrdup("");
  size_t i;
  json_t *u;
  json_array_foreach(unreadable, i, u) {
    /* the error names the object (snapshots/<id>) */
    char *t =
        xasprintf("%s%s  %s", text, i ? "\n" : "", json_string_value(json_object_get(u, "error")));
    free(text);
    text = t;
  }
  return text;
}

int snapshot_list(struct repo *r, json_t **out, json_t **unreadable, char **err) {
  json_t *ids;
  if (list_ids(r, &ids, err) != 0)
    return -1;
  size_t n = json_array_size(ids), k = 0;
  json_t **v = xcalloc(n ? n : 1, sizeof(*v));
  json_t *bad = json_array();
  for (size_t i = 0; i < n; i++) {
    const char *id = json_string_value(json_array_get(ids, i));
    json_t *m;
    char *e = NULL;
    if (snapshot_load(r, id, &m, &e) != 0) {
      json_array_append_new(bad, json_pack("{s:s, s:s}", "id", id, "error", e ? e : "unreadable"));
      free(e);
      continue;
    }
    v[k++] = m;
  }
  json_decref(ids);
  qsort(v, k, sizeof(*v), by_time);
  json_t *arr = json_array();
  for (size_t i = 0; i < k; i++)
    json_array_append_new(arr, v[i]);
  free(v);
  if (!unreadable && json_array_size(bad) > 0) {
    char *text = snapshot_unreadable_text(bad);
    *err = xasprintf("%zu snapshot(s) exist but cannot be read:\n%s\n(run 'engine check'; a "
                     "snapshot that stays unreadable can be dropped with --forget-unreadable)",
                     json_array_size(bad), text);
    free(text);
    json_decref(bad);
    json_decref(arr);
    return -1;
  }
  if (unreadable)
    *unreadable = bad;
  else
    json_decref(bad);
  *out = arr;
  return 0;
}

static int find_latest(struct repo *r, json_t **out, char **err) {
  json_t *all, *bad;
  if (snapshot_list(r, &all, &bad, err) != 0)
    return -1;
  size_t n = json_array_size(all);
  int rc = -1;
  if (json_array_size(bad) > 0) {
    char *text = snapshot_unreadable_text(bad);
    json_t *newest = n ? json_array_get(all, n - 1) : NULL;
    char *hint = newest ? xasprintf("the newest readable snapshot is %.8s of %s; restore it by id "
                                    "if that is what you want, ",
                                    json_string_value(json_object_get(newest, "id")),
                                    json_string_value(json_object_get(newest, "time")))
                        : xstrdup("");
    *err = xasprintf("'latest' cannot be decided: %zu snapshot(s) cannot be read, and any of them "
                     "may be the newest:\n%s\n(%sor run 'engine check')",
                     json_array_size(bad), text, hint);
    free(hint);
    free(text);
  } else if (n == 0) {
    *err = xstrdup("the repository has no snapshots yet");
  } else {
    *out = json_incref(json_array_get(all, n - 1));
    rc = 0;
  }
  json_decref(all);
  json_decref(bad);
  return rc;
}

int snapshot_find(struct repo *r, const char *ref, json_t **out, char **err) {
  if (strcmp(ref, "latest") == 0)
    return find_latest(r, out, err);
  size_t rl = strlen(ref);
  if (rl < 4 || rl > 64 || strspn(ref, "0123456789abcdef") != rl) {
    *err = xasprintf("'%s' is not a snapshot id: give 'latest' or at least 4 hex digits of an id",
                     ref);
    return -1;
  }
  json_t *ids;
  if (list_ids(r, &ids, err) != 0)
    return -1;
  size_t matches = 0, i;
  json_t *v;
  const char *found = NULL;
  json_array_foreach(ids, i, v) {
    if (strncmp(json_string_value(v), ref, rl) == 0) {
      matches++;
      found = json_string_value(v);
    }
  }
  int rc = -1;
  if (matches == 1) {
    rc = snapshot_load(r, found, out, err);
  } else if (matches > 1) {
    *err = xasprintf("snapshot id prefix '%s' is ambiguous (%zu snapshots match); give more digits",
                     ref, matches);
  } else {
    *err = xasprintf("no snapshot '%s' in the repository", ref);
  }
  json_decref(ids);
  return rc;
}

int snapshot_forget_unreadable(struct repo *r, json_t *unreadable, json_t *named, int dry_run,
                               const char *command, json_t *dropped, char **err) {
  size_t nu = json_array_size(unreadable), i, k;
  json_t *v, *u;
  int *chosen = xcalloc(nu ? nu : 1, sizeof(int));
  int rc = -1;
  json_array_foreach(named, i, v) {
    const char *ref = json_string_value(v);
    size_t rl = ref ? strlen(ref) : 0;
    size_t matches = 0, at = 0;
    if (rl < 8 || rl > 64 || strspn(ref, "0123456789abcdef") != rl) {
      *err = xasprintf("--forget-unreadable '%s': expected a snapshot id (at least 8 hex digits)",
                       ref ? ref : "");
      goto out;
    }
    json_array_foreach(unreadable, k, u) {
      if (strncmp(json_string_value(json_object_get(u, "id")), ref, rl) == 0) {
        matches++;
        at = k;
      }
    }
    if (matches != 1) {
      *err = matches ? xasprintf("--forget-unreadable '%s' is ambiguous; give more digits", ref)
                     : xasprintf("--forget-unreadable '%s': no unreadable snapshot has this id "
                                 "(it is readable, or does not exist); it only drops snapshots "
                                 "that cannot be read",
                                 ref);
      goto out;
    }
    chosen[at] = 1;
  }
  json_t *left = json_array();
  json_array_foreach(unreadable, k, u) if (!chosen[k]) json_array_append(left, u);
  if (json_array_size(left) > 0) {
    char *text = snapshot_unreadable_text(left);
    *err = xasprintf(
        "%s refuses to run: %zu snapshot(s) exist but cannot be read, so what they reference is "
        "unknown and could be deleted:\n%s\nNothing was changed. If the sink was failing, run "
        "again once it answers; run 'engine check' to see the damage; to drop snapshots that are "
        "lost for good, name them with --forget-unreadable ID",
        command, json_array_size(left), text);
    free(text);
    json_decref(left);
    goto out;
  }
  json_decref(left);
  json_array_foreach(unreadable, k, u) {
    const char *id = json_string_value(json_object_get(u, "id"));
    if (!dry_run) {
      char *name = xasprintf("snapshots/%s", id);
      int d = repo_delete(r, name, err);
      free(name);
      if (d != 0)
        goto out;
      log_warn("forgot unreadable snapshot %s (%s)", id,
               json_string_value(json_object_get(u, "error")));
    }
    json_array_append_new(dropped, json_string(id));
  }
  rc = 0;
out:
  free(chosen);
  return rc;
}
