/* Restore: where the items go (the source's server, another server given
 * as --target mongodb://..., a mongodump directory given as --target DIR,
 * stdout, or the restore test's scratch database), --as renames, and the
 * items themselves. The server side is restore_server.c.
 *
 * Items arrive in manifest order: a collection's metadata item before its
 * data. The data item carries the metadata too, so a selection of the data
 * alone still creates the collection with its options and indexes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "restore_int.h"

static const char META_SUFFIX[] = ".metadata.json";
static const char BSON_SUFFIX[] = ".bson";

static int oom(const struct engine_host *h) {
  h->set_error(h, "out of memory");
  return ENGINE_ERROR;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* ---- the content as a bson_reader_t ------------------------------------------- */

static ssize_t stream_read(void *handle, void *buf, size_t count) {
  struct rs_stream *s = handle;
  if (s->failed)
    return -1;
  ssize_t n = s->data->read(s->data, buf, count);
  if (n < 0) {
    s->failed = 1;
    return -1;
  }
  s->got += (uint64_t)n;
  return n;
}

static void stream_destroy(void *handle) {
  (void)handle;
}

bson_reader_t *rs_bson_reader(struct rs_stream *s, const struct engine_reader *data) {
  memset(s, 0, sizeof(*s));
  s->data = data;
  return bson_reader_new_from_handle(s, stream_read, stream_destroy);
}

/* ---- begin ---------------------------------------------------------------------- */

static void rs_free(struct rs *r) {
  if (r == NULL)
    return;
  if (r->connected)
    mg_conn_close(&r->c);
  if (r->dirfd >= 0)
    close(r->dirfd);
  for (size_t i = 0; i < r->n_pend; i++) {
    free(r->pend[i].db);
    free(r->pend[i].coll);
    free(r->pend[i].src_ns);
    if (r->pend[i].md)
      bson_destroy(r->pend[i].md);
  }
  free(r->pend);
  free(r->as_db);
  free(r->as_coll);
  free(r->as_src_db);
  free(r->as_src_ns);
  free(r->dir);
  free(r->scratch);
  free(r->buf);
  free(r);
}

static int parse_as(struct rs *r, const char *as) {
  const struct engine_host *h = r->h;
  const char *dot = strchr(as, '.');
  r->as_db = dot ? strndup(as, (size_t)(dot - as)) : strdup(as);
  if (r->as_db == NULL)
    return oom(h);
  if (dot != NULL) {
    r->as_coll = strdup(dot + 1);
    if (r->as_coll == NULL)
      return oom(h);
  }
  if (!mg_valid_db_name(r->as_db)) {
    h->set_error(h,
                 "--as %s: '%s' is not a valid database name (1 to 63 bytes, none of / \\ . space "
                 "\" $)",
                 as, r->as_db);
    return ENGINE_ERROR;
  }
  if (r->as_coll != NULL &&
      (!mg_valid_coll_name(r->as_coll) || strncmp(r->as_coll, "system.", 7) == 0)) {
    h->set_error(h,
                 "--as %s: '%s' is not a valid collection name (not empty, no '$', not starting "
                 "with '.' or 'system.')",
                 as, r->as_coll);
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

static int parse_extra(struct rs *r, const struct engine_restore_opts *opts, int *to_stdout,
                       int *test) {
  const struct engine_host *h = r->h;
  *to_stdout = *test = 0;
  for (size_t i = 0; opts->extra != NULL && opts->extra[i] != NULL; i++) {
    const char *e = opts->extra[i];
    if (strncmp(e, "as=", 3) == 0) {
      if (parse_as(r, e + 3) != ENGINE_OK)
        return ENGINE_ERROR;
    } else if (strcmp(e, "drop_existing=1") == 0) {
      r->drop_existing = 1;
    } else if (strcmp(e, "to_stdout=1") == 0) {
      *to_stdout = 1;
    } else if (strcmp(e, "restore_test=1") == 0) {
      *test = 1;
    } else {
      h->log(h, ENGINE_LOG_DEBUG, "ignoring restore flag '%s' (not used by mongodb)", e);
    }
  }
  return ENGINE_OK;
}

static int is_server_uri(const char *t) {
  return strncmp(t, "mongodb://", 10) == 0 || strncmp(t, "mongodb+srv://", 14) == 0;
}

static int dir_is_empty(int fd) {
  int dup_fd = dup(fd);
  if (dup_fd < 0)
    return 0;
  DIR *d = fdopendir(dup_fd);
  if (d == NULL) {
    close(dup_fd);
    return 0;
  }
  int empty = 1;
  struct dirent *de;
  while ((de = readdir(d)) != NULL)
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
      empty = 0;
      break;
    }
  closedir(d);
  return empty;
}

static int begin_dir(struct rs *r, const char *target) {
  const struct engine_host *h = r->h;
  if (r->drop_existing) {
    h->set_error(h, "--drop-existing applies to a server target; a mongodump directory is "
                    "written file by file (a non-empty one needs --yes)");
    return ENGINE_ERROR;
  }
  r->dir = strdup(target);
  if (r->dir == NULL)
    return oom(h);
  if (mkdir(target, 0755) != 0 && errno != EEXIST) {
    h->set_error(h, "unable to create the target directory '%s': %s", target, strerror(errno));
    return ENGINE_ERROR;
  }
  r->dirfd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (r->dirfd < 0) {
    h->set_error(h, "unable to open the target directory '%s': %s", target, strerror(errno));
    return ENGINE_ERROR;
  }
  if (!r->yes && !dir_is_empty(r->dirfd)) {
    h->set_error(h,
                 "the target directory '%s' is not empty: restored files replace files of the "
                 "same name",
                 target);
    return ENGINE_EXISTS;
  }
  h->log(h, ENGINE_LOG_INFO, "writing a mongodump directory into '%s'", target);
  return ENGINE_OK;
}

static int begin_server(struct rs *r, const char *target) {
  const struct engine_host *h = r->h;
  if (mg_connect(r->in, target, 1, &r->c) != ENGINE_OK)
    return ENGINE_ERROR;
  r->connected = 1;
  if (r->mode == RS_TEST) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r->scratch = mg_strdupf("engine_restore_test_%ld_%d", (long)ts.tv_sec, (int)getpid());
    if (r->scratch == NULL)
      return oom(h);
    h->log(h, ENGINE_LOG_INFO, "restore test: into scratch database '%s' on %s", r->scratch,
           r->c.describe);
    return ENGINE_OK;
  }
  if (r->drop_existing && !r->yes) {
    if (r->as_db != NULL)
      h->set_error(h,
                   "--drop-existing drops each restored collection that exists in database '%s' "
                   "on %s and replaces it with the backup",
                   r->as_db, r->c.describe);
    else
      h->set_error(h,
                   "--drop-existing drops each restored collection that exists on %s and "
                   "replaces it with the backup",
                   r->c.describe);
    return ENGINE_EXISTS;
  }
  h->log(h, ENGINE_LOG_INFO, "restoring into %s", r->c.describe);
  return ENGINE_OK;
}

int mg_restore_begin(void *inst, const struct engine_restore_opts *opts, void **rctx) {
  struct mg_inst *in = inst;
  const struct engine_host *h = in->host;
  *rctx = NULL;
  struct rs *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return oom(h);
  r->in = in;
  r->h = h;
  r->dirfd = -1;
  r->yes = opts->yes;
  r->buf = malloc(MG_IO_BLOCK);
  int to_stdout = 0, test = 0;
  if (r->buf == NULL) {
    rs_free(r);
    return oom(h);
  }
  if (parse_extra(r, opts, &to_stdout, &test) != ENGINE_OK) {
    rs_free(r);
    return ENGINE_ERROR;
  }
  int rc;
  if (test) {
    r->mode = RS_TEST;
    rc = begin_server(r, NULL);
  } else if (to_stdout) {
    r->mode = RS_STDOUT;
    rc = ENGINE_OK;
    if (r->as_db != NULL || r->drop_existing) {
      h->set_error(h, "--to-stdout writes one collection's BSON and nothing else; it cannot be "
                      "combined with --as or --drop-existing");
      rc = ENGINE_ERROR;
    } else if (opts->target != NULL) {
      h->set_error(h, "--to-stdout and --target exclude each other");
      rc = ENGINE_ERROR;
    }
  } else if (opts->target != NULL && !is_server_uri(opts->target)) {
    r->mode = RS_DIR;
    rc = begin_dir(r, opts->target);
  } else {
    r->mode = RS_SERVER;
    rc = begin_server(r, opts->target);
  }
  if (rc != ENGINE_OK) {
    rs_free(r);
    return rc;
  }
  *rctx = r;
  return ENGINE_OK;
}

/* ---- one item: what it is and where it goes --------------------------------------- */

static void item_free(struct rs_item *it) {
  free(it->db);
  free(it->coll);
  free(it->type);
  free(it->data_coll);
  free(it->metadata_json);
  free(it->digest);
  free(it->final_db);
  free(it->final_coll);
}

static char *json_str_dup(json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return s ? strdup(s) : NULL;
}

/* Parse the item's name and metadata and check that they agree: the name
 * must be DB/ESCAPED.metadata.json or DB/ESCAPED.bson for the database and
 * collection its metadata names. */
static int parse_item(struct rs *r, const struct engine_item *item, struct rs_item *it) {
  const struct engine_host *h = r->h;
  memset(it, 0, sizeof(*it));
  it->name = item->name;
  if (item->type != ENGINE_ITEM_STREAM) {
    h->set_error(h, "item '%s' is not a mongodb stream (type %d)", item->name, (int)item->type);
    return ENGINE_ERROR;
  }
  json_error_t je;
  json_t *m = json_loads(item->meta_json ? item->meta_json : "{}", 0, &je);
  if (!json_is_object(m)) {
    json_decref(m);
    h->set_error(h, "item '%s': its metadata is not a JSON object (%s)", item->name, je.text);
    return ENGINE_ERROR;
  }
  it->db = json_str_dup(m, "db");
  it->coll = json_str_dup(m, "collection");
  it->type = json_str_dup(m, "type");
  it->data_coll = json_str_dup(m, "data_collection");
  it->metadata_json = json_str_dup(m, "metadata_json");
  it->digest = json_str_dup(m, "digest");
  json_t *cnt = json_object_get(m, "count");
  if (json_is_integer(cnt)) {
    it->count = json_integer_value(cnt);
    it->has_count = 1;
  }
  it->size = json_integer_value(json_object_get(m, "size"));
  json_decref(m);
  if (it->db == NULL || it->coll == NULL) {
    h->set_error(h, "item '%s' names no database and collection in its metadata", item->name);
    return ENGINE_ERROR;
  }
  if (it->type == NULL) {
    it->type = strdup("collection");
    if (it->type == NULL)
      return oom(h);
  }
  if (!mg_valid_db_name(it->db) || !mg_valid_coll_name(it->coll) ||
      (it->data_coll != NULL && !mg_valid_coll_name(it->data_coll))) {
    h->set_error(h, "item '%s': the database or collection name in its metadata is not valid",
                 item->name);
    return ENGINE_ERROR;
  }
  it->is_meta = ends_with(item->name, META_SUFFIX);
  if (!it->is_meta && !ends_with(item->name, BSON_SUFFIX)) {
    h->set_error(h, "item '%s' is neither a .bson nor a .metadata.json item", item->name);
    return ENGINE_ERROR;
  }
  if (!it->is_meta && it->data_coll == NULL) {
    h->set_error(h, "item '%s' names no data collection in its metadata", item->name);
    return ENGINE_ERROR;
  }
  char *esc = mg_escape(it->is_meta ? it->coll : it->data_coll);
  char *want =
      esc ? mg_strdupf("%s/%s%s", it->db, esc, it->is_meta ? META_SUFFIX : BSON_SUFFIX) : NULL;
  free(esc);
  if (want == NULL)
    return oom(h);
  int agree = strcmp(want, item->name) == 0;
  free(want);
  if (!agree) {
    h->set_error(h, "item '%s' does not match the collection %s.%s its metadata names", item->name,
                 it->db, it->coll);
    return ENGINE_ERROR;
  }
  it->is_auth = strcmp(it->db, "admin") == 0 &&
                (strcmp(it->coll, "system.users") == 0 || strcmp(it->coll, "system.roles") == 0 ||
                 strcmp(it->coll, "system.version") == 0);
  return ENGINE_OK;
}

/* Where the item goes: --as, or the scratch database of the restore test
 * (collection DB.COLL there). */
static int place_item(struct rs *r, struct rs_item *it) {
  const struct engine_host *h = r->h;
  if (r->mode == RS_TEST) {
    it->final_db = strdup(r->scratch);
    it->final_coll = mg_strdupf("%s.%s", it->db, it->coll);
    return it->final_db && it->final_coll ? ENGINE_OK : oom(h);
  }
  if (r->as_db == NULL || r->mode == RS_STDOUT) {
    it->final_db = strdup(it->db);
    it->final_coll = strdup(it->coll);
    return it->final_db && it->final_coll ? ENGINE_OK : oom(h);
  }
  if (it->is_auth) {
    h->set_error(h,
                 "users and roles (item '%s') cannot be restored under another name with --as; "
                 "restore them without --as",
                 it->name);
    return ENGINE_ERROR;
  }
  if (r->as_src_db == NULL) {
    r->as_src_db = strdup(it->db);
    if (r->as_src_db == NULL)
      return oom(h);
  }
  if (strcmp(r->as_src_db, it->db) != 0) {
    h->set_error(h,
                 "--as renames database '%s', but the selection also holds '%s' (item '%s'); "
                 "restore each database with its own --only",
                 r->as_src_db, it->db, it->name);
    return ENGINE_ERROR;
  }
  if (r->as_coll != NULL) {
    char *ns = mg_strdupf("%s.%s", it->db, it->coll);
    if (ns == NULL)
      return oom(h);
    if (r->as_src_ns == NULL)
      r->as_src_ns = ns;
    else if (strcmp(r->as_src_ns, ns) != 0) {
      h->set_error(h,
                   "--as %s.%s renames one collection (%s), but the selection also holds %s; "
                   "select one collection with --only SOURCE/DB.COLL",
                   r->as_db, r->as_coll, r->as_src_ns, ns);
      free(ns);
      return ENGINE_ERROR;
    } else {
      free(ns);
    }
  }
  it->final_db = strdup(r->as_db);
  it->final_coll = strdup(r->as_coll ? r->as_coll : it->coll);
  return it->final_db && it->final_coll ? ENGINE_OK : oom(h);
}

/* The whole content of a small item (a metadata file). malloc'd,
 * NUL-terminated. */
static char *read_small(struct rs *r, const struct rs_item *it, const struct engine_reader *data,
                        size_t *len_out) {
  const struct engine_host *h = r->h;
  if (data == NULL || data->size > MG_MAX_METADATA) {
    h->set_error(h, "item '%s' is not a metadata file (%llu bytes)", it->name,
                 data ? (unsigned long long)data->size : 0ull);
    return NULL;
  }
  size_t cap = (size_t)data->size + 1, len = 0;
  char *s = malloc(cap);
  if (s == NULL) {
    oom(h);
    return NULL;
  }
  for (;;) {
    ssize_t n = len < cap - 1 ? data->read(data, s + len, cap - 1 - len) : 0;
    if (n < 0) {
      free(s);
      h->set_error(h, "reading item '%s' from the repository failed", it->name);
      return NULL;
    }
    if (n == 0)
      break;
    len += (size_t)n;
  }
  if (len != data->size) {
    free(s);
    h->set_error(h, "item '%s': read %zu of %llu bytes from the repository", it->name, len,
                 (unsigned long long)data->size);
    return NULL;
  }
  s[len] = '\0';
  if (len_out)
    *len_out = len;
  return s;
}

static bson_t *parse_metadata(struct rs *r, const struct rs_item *it, const char *text) {
  bson_error_t e;
  bson_t *md = bson_new_from_json((const uint8_t *)text, -1, &e);
  if (md == NULL)
    r->h->set_error(r->h, "item '%s': mongodump metadata that does not parse: %s", it->name,
                    e.message);
  return md;
}

/* mongodump's metadata with collectionName replaced (for --as). */
static bson_t *renamed_metadata(const bson_t *md, const char *coll) {
  bson_t *out = bson_new();
  bson_iter_t it;
  int set = 0;
  if (bson_iter_init(&it, md))
    while (bson_iter_next(&it)) {
      if (strcmp(bson_iter_key(&it), "collectionName") == 0) {
        BSON_APPEND_UTF8(out, "collectionName", coll);
        set = 1;
      } else {
        bson_append_iter(out, NULL, 0, &it);
      }
    }
  if (!set)
    BSON_APPEND_UTF8(out, "collectionName", coll);
  return out;
}

/* ---- mongodump directory ------------------------------------------------------------ */

/* Write one file DIR/DB/STEM+suffix: from data, or the bytes text. Through a
 * temporary name, fsynced, renamed into place; nothing outside DIR (no
 * symlink followed). */
static int dir_write(struct rs *r, const struct rs_item *it, const char *stem, const char *suffix,
                     const struct engine_reader *data, const char *text, size_t text_len) {
  const struct engine_host *h = r->h;
  const char *db = it->final_db;
  if (mkdirat(r->dirfd, db, 0755) != 0 && errno != EEXIST) {
    h->set_error(h, "unable to create '%s/%s': %s", r->dir, db, strerror(errno));
    return ENGINE_ERROR;
  }
  int dfd = openat(r->dirfd, db, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0) {
    h->set_error(h, "unable to open '%s/%s': %s", r->dir, db, strerror(errno));
    return ENGINE_ERROR;
  }
  char *file = mg_strdupf("%s%s", stem, suffix);
  /* not derived from the file's name, which may already be as long as a
   * name can be (mongodump's 238 bytes and ".metadata.json") */
  char *tmp = file ? mg_strdupf(".engine-tmp.%d.%u", (int)getpid(), r->n_tmp++) : NULL;
  if (tmp == NULL) {
    close(dfd);
    free(file);
    return oom(h);
  }
  int rc = ENGINE_ERROR;
  int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    h->set_error(h, "unable to create '%s/%s/%s': %s", r->dir, db, tmp, strerror(errno));
    goto out;
  }
  uint64_t total = 0;
  int werr = 0, rerr = 0;
  if (text != NULL) {
    werr = mg_write_all(fd, text, text_len) != 0 ? errno : 0;
    total = text_len;
  } else {
    for (;;) {
      if (h->cancelled(h)) {
        rerr = 1;
        break;
      }
      ssize_t n = data->read(data, r->buf, MG_IO_BLOCK);
      if (n < 0) {
        rerr = 1;
        break;
      }
      if (n == 0)
        break;
      if (mg_write_all(fd, r->buf, (size_t)n) != 0) {
        werr = errno;
        break;
      }
      total += (uint64_t)n;
    }
    if (!rerr && !werr && total != data->size)
      rerr = 1;
  }
  if (!werr && !rerr && fsync(fd) != 0)
    werr = errno;
  if (close(fd) != 0 && !werr && !rerr)
    werr = errno;
  if (rerr) {
    h->set_error(h,
                 "reading item '%s' from the repository failed after %llu bytes; '%s/%s/%s' "
                 "was not written",
                 it->name, (unsigned long long)total, r->dir, db, file);
  } else if (werr) {
    h->set_error(h, "writing '%s/%s/%s' failed after %llu bytes: %s", r->dir, db, tmp,
                 (unsigned long long)total, strerror(werr));
  } else if (renameat(dfd, tmp, dfd, file) != 0) {
    h->set_error(h, "unable to rename '%s/%s/%s' to '%s': %s", r->dir, db, tmp, file,
                 strerror(errno));
  } else {
    rc = ENGINE_OK;
  }
  if (rc != ENGINE_OK)
    unlinkat(dfd, tmp, 0);
out:
  close(dfd);
  free(file);
  free(tmp);
  return rc;
}

static int restore_to_dir(struct rs *r, const struct rs_item *it,
                          const struct engine_reader *data) {
  const struct engine_host *h = r->h;
  int renamed = strcmp(it->final_coll, it->coll) != 0;
  /* a time-series collection's data is system.buckets.NAME */
  char *data_name = it->is_meta ? strdup(it->final_coll)
                    : strcmp(it->type, "timeseries") == 0
                        ? mg_strdupf("system.buckets.%s", it->final_coll)
                        : strdup(renamed ? it->final_coll : it->data_coll);
  char *esc = data_name ? mg_escape(data_name) : NULL;
  char *stem = esc ? mg_dir_stem(esc, data_name) : NULL;
  free(esc);
  if (stem == NULL) {
    free(data_name);
    return oom(h);
  }
  int rc;
  if (it->is_meta && renamed) {
    char *text = read_small(r, it, data, NULL);
    bson_t *md = text ? parse_metadata(r, it, text) : NULL;
    free(text);
    bson_t *nm = md ? renamed_metadata(md, it->final_coll) : NULL;
    char *out = nm ? mg_ext_json(nm) : NULL;
    rc = out ? dir_write(r, it, stem, META_SUFFIX, NULL, out, strlen(out)) : ENGINE_ERROR;
    if (md && !out)
      oom(h);
    bson_free(out);
    if (nm)
      bson_destroy(nm);
    if (md)
      bson_destroy(md);
  } else {
    rc = dir_write(r, it, stem, it->is_meta ? META_SUFFIX : BSON_SUFFIX, data, NULL, 0);
  }
  if (rc == ENGINE_OK)
    h->log(h, ENGINE_LOG_DEBUG, "wrote %s/%s/%s%s", r->dir, it->final_db, stem,
           it->is_meta ? META_SUFFIX : BSON_SUFFIX);
  free(stem);
  free(data_name);
  return rc;
}

/* ---- stdout --------------------------------------------------------------------------- */

static int restore_to_stdout(struct rs *r, const struct rs_item *it,
                             const struct engine_reader *data) {
  const struct engine_host *h = r->h;
  if (it->is_meta) {
    h->log(h, ENGINE_LOG_DEBUG, "--to-stdout: metadata item '%s' not written", it->name);
    return ENGINE_OK;
  }
  if (r->wrote_stdout) {
    h->set_error(h,
                 "--to-stdout writes one collection's BSON, but the selection holds a second "
                 "one (item '%s'); select one with --only 'SOURCE/DB/COLL.bson'",
                 it->name);
    return ENGINE_ERROR;
  }
  if (isatty(STDOUT_FILENO)) {
    h->set_error(h,
                 "refusing to write the BSON of '%s' to a terminal; redirect standard output "
                 "to a file or a pipe (e.g. | bsondump)",
                 it->name);
    return ENGINE_ERROR;
  }
  r->wrote_stdout = 1;
  uint64_t total = 0;
  for (;;) {
    ssize_t n = data->read(data, r->buf, MG_IO_BLOCK);
    if (n < 0) {
      h->set_error(h, "reading '%s' from the repository failed after %llu bytes", it->name,
                   (unsigned long long)total);
      return ENGINE_ERROR;
    }
    if (n == 0)
      break;
    if (mg_write_all(STDOUT_FILENO, r->buf, (size_t)n) != 0) {
      h->set_error(h, "writing '%s' to standard output failed after %llu bytes: %s", it->name,
                   (unsigned long long)total, strerror(errno));
      return ENGINE_ERROR;
    }
    total += (uint64_t)n;
  }
  if (total != data->size) {
    h->set_error(h, "reading '%s' from the repository gave %llu of %llu bytes", it->name,
                 (unsigned long long)total, (unsigned long long)data->size);
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

/* ---- server: metadata items ------------------------------------------------------------- */

static struct rs_pending *find_pending(struct rs *r, const char *db, const char *coll) {
  for (size_t i = 0; i < r->n_pend; i++)
    if (strcmp(r->pend[i].db, db) == 0 && strcmp(r->pend[i].coll, coll) == 0)
      return &r->pend[i];
  return NULL;
}

static int server_metadata(struct rs *r, const struct rs_item *it,
                           const struct engine_reader *data) {
  const struct engine_host *h = r->h;
  if (it->is_auth)
    return ENGINE_OK; /* users and roles have no collection options worth restoring */
  char *text = read_small(r, it, data, NULL);
  if (text == NULL)
    return ENGINE_ERROR;
  bson_t *md = parse_metadata(r, it, text);
  free(text);
  if (md == NULL)
    return ENGINE_ERROR;
  if (find_pending(r, it->final_db, it->final_coll) != NULL) {
    bson_destroy(md);
    h->set_error(h, "item '%s': the selection restores two collections as %s.%s", it->name,
                 it->final_db, it->final_coll);
    return ENGINE_ERROR;
  }
  if (r->n_pend == r->cap_pend) {
    size_t nc = r->cap_pend ? r->cap_pend * 2 : 16;
    struct rs_pending *np = realloc(r->pend, nc * sizeof(*np));
    if (np == NULL) {
      bson_destroy(md);
      return oom(h);
    }
    r->pend = np;
    r->cap_pend = nc;
  }
  struct rs_pending *p = &r->pend[r->n_pend];
  memset(p, 0, sizeof(*p));
  p->db = strdup(it->final_db);
  p->coll = strdup(it->final_coll);
  p->src_ns = mg_strdupf("%s.%s", it->db, it->coll);
  p->md = md;
  p->is_view = strcmp(it->type, "view") == 0;
  r->n_pend++;
  if (p->db == NULL || p->coll == NULL || p->src_ns == NULL)
    return oom(h);
  return ENGINE_OK;
}

static int server_data(struct rs *r, const struct rs_item *it, const struct engine_reader *data) {
  const struct engine_host *h = r->h;
  if (it->is_auth)
    return rs_server_auth(r, it, data);
  struct rs_pending *p = find_pending(r, it->final_db, it->final_coll);
  bson_t *own = NULL;
  const bson_t *md = p ? p->md : NULL;
  if (md == NULL) {
    if (it->metadata_json == NULL) {
      h->set_error(h, "item '%s' carries no collection metadata", it->name);
      return ENGINE_ERROR;
    }
    own = parse_metadata(r, it, it->metadata_json);
    if (own == NULL)
      return ENGINE_ERROR;
    md = own;
  }
  if (p != NULL)
    p->done = 1;
  int rc = rs_server_collection(r, it, md, data);
  if (own)
    bson_destroy(own);
  return rc;
}

int mg_restore_item(void *rctx, const struct engine_item *item, const struct engine_reader *data) {
  struct rs *r = rctx;
  struct rs_item it;
  int rc = parse_item(r, item, &it);
  if (rc == ENGINE_OK)
    rc = place_item(r, &it);
  if (rc == ENGINE_OK && data == NULL) {
    r->h->set_error(r->h, "item '%s' has no content", item->name);
    rc = ENGINE_ERROR;
  }
  if (rc == ENGINE_OK) {
    switch (r->mode) {
    case RS_STDOUT:
      rc = restore_to_stdout(r, &it, data);
      break;
    case RS_DIR:
      rc = restore_to_dir(r, &it, data);
      break;
    case RS_SERVER:
    case RS_TEST:
      rc = it.is_meta ? server_metadata(r, &it, data) : server_data(r, &it, data);
      break;
    }
  }
  item_free(&it);
  return rc;
}

int mg_restore_end(void *rctx, int status) {
  struct rs *r = rctx;
  if (r == NULL)
    return ENGINE_OK;
  int rc = ENGINE_OK;
  if (r->mode == RS_SERVER || r->mode == RS_TEST)
    rc = rs_server_finish(r, status);
  else if (r->mode == RS_STDOUT && !r->wrote_stdout && status == ENGINE_OK) {
    r->h->set_error(r->h, "--to-stdout: the selection holds no collection data (.bson item); "
                          "select one with --only SOURCE/DB.COLL");
    rc = ENGINE_ERROR;
  }
  rs_free(r);
  return rc;
}
