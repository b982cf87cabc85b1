/* Key management: several keys/ objects wrap the same master key, so
 * adding, removing or changing a passphrase never rewrites data. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo/repo.h"
#include "util/log.h"

int repo_key_add(struct repo *r, const char *pass, size_t pass_len, char id_out[65], char **err) {
  if (r->crypto && (!pass || pass_len == 0)) {
    *err = xstrdup("the new passphrase is empty");
    return -1;
  }
  char *text = NULL;
  if (repo_key_make(r, pass, pass_len, &text, err) != 0)
    return -1;
  char name[80];
  sha256_hex(text, strlen(text), id_out);
  snprintf(name, sizeof(name), "keys/%s", id_out);
  int rc = repo_put(r, name, text, strlen(text), ENGINE_PUT_NO_OVERWRITE, err);
  free(text);
  return rc == 0 ? 0 : -1;
}

int repo_key_list(struct repo *r, json_t **out, char **err) {
  json_t *names;
  if (repo_list(r, "keys/", &names, err) != 0)
    return -1;
  json_t *arr = json_array();
  size_t i;
  json_t *o;
  json_array_foreach(names, i, o) {
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *id = name + strlen("keys/");
    void *buf;
    size_t len;
    char *e = NULL;
    json_t *k = NULL;
    if (repo_get(r, name, 0, 0, &buf, &len, &e) == 0) {
      json_error_t je;
      k = json_loadb(buf, len, 0, &je);
      free(buf);
    } else {
      log_warn("%s", e);
      free(e);
    }
    json_t *entry = json_pack("{s:s, s:b}", "id", id, "current", strcmp(id, r->key_id) == 0);
    if (k) {
      const char *fields[] = {"created", "user", "host"};
      for (size_t f = 0; f < 3; f++)
        if (json_is_string(json_object_get(k, fields[f])))
          json_object_set(entry, fields[f], json_object_get(k, fields[f]));
      json_t *kdf = json_object_get(json_object_get(k, "kdf"), "algorithm");
      if (kdf)
        json_object_set(entry, "kdf", kdf);
      json_decref(k);
    }
    json_array_append_new(arr, entry);
  }
  json_decref(names);
  *out = arr;
  return 0;
}

int repo_key_remove(struct repo *r, const char *id_prefix, int allow_current, char **err) {
  json_t *names;
  if (repo_list(r, "keys/", &names, err) != 0)
    return -1;
  size_t n = json_array_size(names), matches = 0;
  const char *match = NULL;
  for (size_t i = 0; i < n; i++) {
    const char *name = json_string_value(json_object_get(json_array_get(names, i), "name"));
    if (strncmp(name + 5, id_prefix, strlen(id_prefix)) == 0) {
      matches++;
      match = name;
    }
  }
  int rc = -1;
  if (strlen(id_prefix) < 4)
    *err = xasprintf("key id '%s' is too short: give at least 4 hex digits", id_prefix);
  else if (matches == 0)
    *err = xasprintf("no key '%s' in the repository", id_prefix);
  else if (matches > 1)
    *err = xasprintf("key id prefix '%s' is ambiguous (%zu keys match)", id_prefix, matches);
  else if (n <= 1)
    *err = xstrdup(
        "refusing to remove the repository's last key: the repository could never be opened again");
  else if (!allow_current && strcmp(match + 5, r->key_id) == 0)
    *err = xasprintf(
        "refusing to remove key %.8s: it is the key this command opened the repository with; open "
        "the repository with another key to remove it (or use 'engine key passwd')",
        r->key_id);
  else {
    rc = repo_delete(r, match, err);
  }
  json_decref(names);
  return rc;
}
