/* A write-only host's journal of its own snapshots (journal.h). */
#include "repo/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "repo/blob.h"
#include "repo/keys2.h"
#include "util/log.h"

#define JOURNAL_INFO "engine-v2 writer journal"

static int journal_key(const struct repo *r, unsigned char key[32]) {
  return k2_hkdf(r->enc_key, REPO_KEY_LEN, (const unsigned char *)r->id, strlen(r->id),
                 JOURNAL_INFO, key, 32);
}

/* mkdir -p with mode 0700 for what it creates. */
static int make_dirs(const char *path) {
  char *p = xstrdup(path);
  int rc = 0;
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != '\0')
      continue;
    char c = *s;
    *s = '\0';
    if (mkdir(p, 0700) != 0 && errno != EEXIST)
      rc = -1;
    *s = c;
    if (c == '\0' || rc)
      break;
  }
  free(p);
  return rc;
}

/* Seal and write DIR/name atomically; 0 or -1 (errno-style message in *err). */
static int write_sealed(struct repo *r, const char *name, const char *aad, const void *data,
                        size_t n, char **err) {
  if (make_dirs(r->journal_dir) != 0) {
    *err = xasprintf("unable to create '%s': %s", r->journal_dir, strerror(errno));
    return -1;
  }
  unsigned char key[32];
  size_t sl = repo_sealed_len(r, n);
  unsigned char *sealed = xmalloc(sl);
  int ok = journal_key(r, key) == 0 &&
           repo_seal_key(r->crypto, key, aad, strlen(aad), data, n, sealed) == 0;
  OPENSSL_cleanse(key, sizeof(key));
  if (!ok) {
    free(sealed);
    *err = xstrdup("encryption failed");
    return -1;
  }
  char *path = xasprintf("%s/%s", r->journal_dir, name);
  char *tmp = xasprintf("%s.tmp-%d", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int rc = fd >= 0 && write(fd, sealed, sl) == (ssize_t)sl && fsync(fd) == 0 ? 0 : -1;
  if (rc != 0)
    *err = xasprintf("unable to write '%s': %s", tmp, strerror(errno));
  if (fd >= 0)
    close(fd);
  if (rc == 0 && rename(tmp, path) != 0) {
    *err = xasprintf("unable to rename '%s': %s", tmp, strerror(errno));
    rc = -1;
  }
  if (rc != 0)
    unlink(tmp);
  free(tmp);
  free(path);
  free(sealed);
  return rc;
}

/* Read and open DIR/name: 0 (*out, *n), 1 absent, -1 damaged (*err). */
static int read_sealed(struct repo *r, const char *name, const char *aad, void **out, size_t *n,
                       char **err) {
  char *path = xasprintf("%s/%s", r->journal_dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) {
    int absent = errno == ENOENT;
    if (!absent)
      *err = xasprintf("unable to open '%s': %s", path, strerror(errno));
    free(path);
    return absent ? 1 : -1;
  }
  size_t cap = 1 << 16, len = 0;
  unsigned char *buf = xmalloc(cap);
  size_t got;
  while ((got = fread(buf + len, 1, cap - len, f)) > 0) {
    len += got;
    if (len == cap)
      buf = xrealloc(buf, cap *= 2);
  }
  fclose(f);
  unsigned char key[32];
  void *plain = xmalloc(len + 1);
  int ok = journal_key(r, key) == 0 &&
           repo_unseal_key(r->crypto, key, aad, strlen(aad), buf, len, plain, n) == 0;
  OPENSSL_cleanse(key, sizeof(key));
  free(buf);
  if (!ok) {
    free(plain);
    *err = xasprintf("'%s' does not authenticate (damaged, or made with another credential)", path);
    free(path);
    return -1;
  }
  free(path);
  ((char *)plain)[*n] = '\0';
  *out = plain;
  return 0;
}

void journal_put_tree(struct repo *r, const unsigned char id[32], const void *data, size_t n) {
  static atomic_int warned;
  if (!r->journal_dir)
    return;
  char hex[65], name[80], *err = NULL;
  hex_encode(id, 32, hex);
  snprintf(name, sizeof(name), "tree-%s", hex);
  if (write_sealed(r, name, "journal-tree", data, n, &err) != 0 && atomic_exchange(&warned, 1) == 0)
    log_warn("write-only journal: %s; the next run of this host reads every item in full", err);
  free(err);
}

int journal_get_tree(struct repo *r, const unsigned char id[32], void **out, size_t *n,
                     char **err) {
  char hex[65], name[80];
  hex_encode(id, 32, hex);
  snprintf(name, sizeof(name), "tree-%s", hex);
  char *e = NULL;
  int rc = r->journal_dir ? read_sealed(r, name, "journal-tree", out, n, &e) : 1;
  if (rc == 1) {
    *err = xasprintf("tree blob %s is not in this host's journal: a write-only host reads only "
                     "the trees of its own snapshots",
                     hex);
    return -1;
  }
  if (rc != 0) {
    *err = e;
    return -1;
  }
  unsigned char check[32];
  repo_blob_id(r, *out, *n, check);
  if (memcmp(check, id, 32) != 0) {
    free(*out);
    *out = NULL;
    *err = xasprintf("tree blob %s in this host's journal does not match its id", hex);
    return -1;
  }
  return 0;
}

/* The journal's snapshot files: names "snapshot-<id>". */
static json_t *list_names(struct repo *r, const char *prefix) {
  json_t *a = json_array();
  DIR *d = opendir(r->journal_dir);
  if (!d)
    return a;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && !strstr(e->d_name, ".tmp-"))
      json_array_append_new(a, json_string(e->d_name));
  closedir(d);
  return a;
}

static json_t *load_manifest(struct repo *r, const char *file) {
  void *text = NULL;
  size_t n = 0;
  char *err = NULL;
  json_t *m = NULL;
  if (read_sealed(r, file, "journal-snapshot", &text, &n, &err) == 0) {
    json_error_t je;
    m = json_loadb(text, n, 0, &je);
    OPENSSL_cleanse(text, n);
    free(text);
  } else if (err) {
    log_warn("write-only journal: %s", err);
  }
  free(err);
  if (m && !json_is_object(m)) {
    json_decref(m);
    m = NULL;
  }
  return m;
}

static int same_group(json_t *a, json_t *b) {
  return json_equal(json_object_get(a, "pipeline"), json_object_get(b, "pipeline")) &&
         json_equal(json_object_get(a, "hostname"), json_object_get(b, "hostname"));
}

void journal_put_snapshot(struct repo *r, const char *id, json_t *manifest) {
  if (!r->journal_dir)
    return;
  char name[96], *err = NULL;
  snprintf(name, sizeof(name), "snapshot-%s", id);
  char *text = json_dumps(manifest, JSON_COMPACT | JSON_SORT_KEYS);
  int rc = write_sealed(r, name, "journal-snapshot", text, strlen(text), &err);
  free(text);
  if (rc != 0) {
    log_warn("write-only journal: %s; the next run of this host reads every item in full", err);
    free(err);
    return;
  }
  /* keep the newest of this pipeline and host, and what the others name */
  json_t *files = list_names(r, "snapshot-"), *keep_trees = json_object();
  size_t i;
  json_t *f;
  json_array_foreach(files, i, f) {
    const char *file = json_string_value(f);
    char *path = xasprintf("%s/%s", r->journal_dir, file);
    json_t *m = strcmp(file, name) == 0 ? json_incref(manifest) : load_manifest(r, file);
    if (strcmp(file, name) != 0 && (!m || same_group(m, manifest))) {
      unlink(path);
    } else if (m) {
      size_t k, t;
      json_t *s, *h;
      json_array_foreach(json_object_get(m, "sources"), k, s)
          json_array_foreach(json_object_get(s, "tree"), t, h) if (json_is_string(h))
              json_object_set_new(keep_trees, json_string_value(h), json_true());
    }
    json_decref(m);
    free(path);
  }
  json_decref(files);
  /* a tree no kept snapshot names goes once it is two days old: a run of
   * another pipeline of this host may be writing the trees it will name */
  files = list_names(r, "tree-");
  time_t now = time(NULL);
  json_array_foreach(files, i, f) {
    const char *file = json_string_value(f);
    char *path = xasprintf("%s/%s", r->journal_dir, file);
    struct stat st;
    if (!json_object_get(keep_trees, file + strlen("tree-")) && stat(path, &st) == 0 &&
        now - st.st_mtime > 2 * 86400)
      unlink(path);
    free(path);
  }
  json_decref(files);
  json_decref(keep_trees);
}

json_t *journal_snapshots(struct repo *r, json_t *ids) {
  json_t *out = json_array();
  if (!r->journal_dir)
    return out;
  size_t i;
  json_t *v;
  json_array_foreach(ids, i, v) {
    char name[96];
    snprintf(name, sizeof(name), "snapshot-%s", json_string_value(v));
    char *path = xasprintf("%s/%s", r->journal_dir, name);
    int exists = access(path, F_OK) == 0;
    free(path);
    json_t *m = exists ? load_manifest(r, name) : NULL;
    if (m)
      json_array_append_new(out, json_pack("{s:O, s:o}", "id", v, "manifest", m));
  }
  return out;
}
