/* runs/ and verify/ records (records.h, docs/FORMAT.md §14c). */
#include "repo/records.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/encoding.h"
#include "util/log.h"
#include "util/sysinfo.h"

static const struct {
  const char *kind;   /* the AAD and the object kind of repo_save_json */
  const char *prefix; /* where the objects live */
} kinds[] = {[RECORD_RUN] = {"run", "runs/"}, [RECORD_VERIFY] = {"verify", "verify/"}};

static int is_hex64(const char *s) {
  size_t n = 0;
  for (; s[n]; n++)
    if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
      return 0;
  return n == 64;
}

/* Newest first: "time" (ISO, whole seconds: sorts as text), then
 * "created_ns", then the id. */
static int newest_first(const void *a, const void *b) {
  json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  const char *tx = json_string_value(json_object_get(x, "time"));
  const char *ty = json_string_value(json_object_get(y, "time"));
  int c = strcmp(ty ? ty : "", tx ? tx : "");
  if (c)
    return c;
  json_int_t nx = json_integer_value(json_object_get(x, "created_ns"));
  json_int_t ny = json_integer_value(json_object_get(y, "created_ns"));
  if (nx != ny)
    return ny > nx ? 1 : -1;
  return strcmp(json_string_value(json_object_get(y, "id")),
                json_string_value(json_object_get(x, "id")));
}

int record_list(struct repo *r, enum record_kind k, const char *pipeline, json_t **out,
                size_t *unreadable, char **err) {
  json_t *names;
  if (unreadable)
    *unreadable = 0;
  if (repo_list(r, kinds[k].prefix, &names, err) != 0)
    return -1;
  size_t n = json_array_size(names), got = 0;
  json_t **v = xcalloc(n ? n : 1, sizeof(*v));
  size_t i;
  json_t *e;
  json_array_foreach(names, i, e) {
    const char *id = json_string_value(json_object_get(e, "name")) + strlen(kinds[k].prefix);
    if (!is_hex64(id))
      continue;
    json_t *rec = NULL;
    char *why = NULL;
    if (repo_load_json(r, kinds[k].kind, id, &rec, &why) != 0 || !json_is_object(rec) ||
        json_integer_value(json_object_get(rec, "version")) != 1 ||
        !json_is_string(json_object_get(rec, "time")) ||
        !json_is_string(json_object_get(rec, "repository")) ||
        strcmp(json_string_value(json_object_get(rec, "repository")), r->id) != 0) {
      log_debug("%s%s is not a readable record: %s", kinds[k].prefix, id,
                why ? why : "not a version 1 record of this repository");
      free(why);
      json_decref(rec);
      if (unreadable)
        ++*unreadable;
      continue;
    }
    const char *rp = json_string_value(json_object_get(rec, "pipeline"));
    if (pipeline && (!rp || strcmp(rp, pipeline) != 0)) {
      json_decref(rec);
      continue;
    }
    json_object_set_new(rec, "id", json_string(id));
    v[got++] = rec;
  }
  json_decref(names);
  qsort(v, got, sizeof(*v), newest_first);
  *out = json_array();
  for (size_t x = 0; x < got; x++)
    json_array_append_new(*out, v[x]);
  free(v);
  return 0;
}

/* Delete the oldest records of each pipeline beyond RECORDS_KEEP. Reading
 * every record costs a request each, so this runs only once the kind has
 * more than 2 * RECORDS_KEEP objects, and then on every tenth save (a
 * repository shared by many pipelines may keep more than that). */
static void trim(struct repo *r, enum record_kind k) {
  json_t *names, *all;
  char *err = NULL;
  /* a write-only host reads no records and may not be able to delete:
   * hosts that hold the passphrase trim */
  if (r->write_only)
    return;
  if (repo_list(r, kinds[k].prefix, &names, &err) != 0) {
    log_warn("unable to list the %s records: %s", kinds[k].kind, err);
    free(err);
    return;
  }
  size_t total = json_array_size(names);
  json_decref(names);
  if (total <= 2 * RECORDS_KEEP || total % 10 != 0)
    return;
  if (record_list(r, k, NULL, &all, NULL, &err) != 0) {
    log_warn("unable to read the %s records to remove old ones: %s", kinds[k].kind, err);
    free(err);
    return;
  }
  size_t n = json_array_size(all), n_del = 0;
  char **names_del = xcalloc(n ? n : 1, sizeof(*names_del));
  json_t *seen = json_object(); /* pipeline -> records kept so far (newest first) */
  for (size_t i = 0; i < n; i++) {
    json_t *rec = json_array_get(all, i);
    const char *p = json_string_value(json_object_get(rec, "pipeline"));
    p = p ? p : "";
    json_int_t kept = json_integer_value(json_object_get(seen, p));
    if (kept < RECORDS_KEEP)
      json_object_set_new(seen, p, json_integer(kept + 1));
    else
      names_del[n_del++] =
          xasprintf("%s%s", kinds[k].prefix, json_string_value(json_object_get(rec, "id")));
  }
  if (n_del && repo_delete_many(r, (const char *const *)names_del, n_del, &err) != 0) {
    log_warn("unable to remove old %s records: %s", kinds[k].kind, err);
    free(err);
  }
  for (size_t i = 0; i < n_del; i++)
    free(names_del[i]);
  free(names_del);
  json_decref(seen);
  json_decref(all);
}

int record_save(struct repo *r, enum record_kind k, json_t *obj, char id_hex[65], char **err) {
  char host[SYS_NAME_MAX], user[SYS_NAME_MAX], id[65];
  sys_hostname(host);
  sys_username(user);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  json_object_set_new(obj, "version", json_integer(1));
  json_object_set_new(obj, "repository", json_string(r->id));
  json_object_set_new(obj, "hostname", json_string(host));
  json_object_set_new(obj, "username", json_string(user));
  json_object_set_new(obj, "created_ns",
                      json_integer((json_int_t)now.tv_sec * 1000000000 + now.tv_nsec));
  if (repo_save_json(r, kinds[k].kind, obj, id, err) != 0)
    return -1;
  if (id_hex)
    memcpy(id_hex, id, sizeof(id));
  trim(r, k);
  return 0;
}
