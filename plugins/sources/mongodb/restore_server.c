/* Restore into a server, as mongorestore does: each collection is created
 * with its options first, its documents go in through unordered bulk
 * inserts of at most batch_size bytes, its indexes are built after the
 * data; views are created at the end, after the collections they read;
 * users and roles go through admin.tempusers / admin.temproles and the
 * server's _mergeAuthzCollections.
 *
 * A collection that holds documents is never touched without
 * --drop-existing. A restore that fails part-way says what the collection
 * holds now.
 *
 * The restore test (engine check --restore-test) restores every
 * collection as DB.COLL into a scratch database on the source server, reads
 * each back and compares its document count and digest (the sum of the
 * SHA-256 of every document, as the backup recorded it) and its index
 * names with the manifest, then drops the scratch database. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "restore_int.h"

#define MAX_BULK_DOCS 100000
#define ERR_NAMESPACE_EXISTS 48
#define ERR_NAMESPACE_NOT_FOUND 26

static int oom(const struct engine_host *h) {
  h->set_error(h, "out of memory");
  return ENGINE_ERROR;
}

static char *err_text(struct rs *r, const bson_error_t *e) {
  char *m = mg_error_text(&r->c, e);
  return m ? m : strdup(e->message);
}

/* ---- small commands ----------------------------------------------------------------- */

static int run(struct rs *r, const char *db, const bson_t *cmd, int write, bson_t *reply_out,
               bson_error_t *e) {
  bson_t reply;
  int ok = mg_command(&r->c, db, cmd, !write, &reply, e);
  if (reply_out != NULL)
    bson_copy_to(&reply, reply_out);
  bson_destroy(&reply);
  return ok;
}

/* *type: "" when absent, else the listed type (collection, view,
 * timeseries). */
static int lookup(struct rs *r, const char *db, const char *coll, char type[32], bson_error_t *e) {
  type[0] = '\0';
  bson_t cmd = BSON_INITIALIZER, filter, reply;
  BSON_APPEND_INT32(&cmd, "listCollections", 1);
  BSON_APPEND_DOCUMENT_BEGIN(&cmd, "filter", &filter);
  BSON_APPEND_UTF8(&filter, "name", coll);
  bson_append_document_end(&cmd, &filter);
  int ok = run(r, db, &cmd, 0, &reply, e);
  bson_destroy(&cmd);
  if (ok) {
    bson_iter_t it;
    if (bson_iter_init(&it, &reply) && bson_iter_find_descendant(&it, "cursor.firstBatch.0", &it) &&
        BSON_ITER_HOLDS_DOCUMENT(&it)) {
      bson_iter_t d;
      snprintf(type, 32, "collection");
      if (bson_iter_recurse(&it, &d) && bson_iter_find(&d, "type") && BSON_ITER_HOLDS_UTF8(&d))
        snprintf(type, 32, "%s", bson_iter_utf8(&d, NULL));
    }
  }
  bson_destroy(&reply);
  return ok;
}

static int has_documents(struct rs *r, const char *db, const char *coll, int *nonempty,
                         bson_error_t *e) {
  bson_t cmd = BSON_INITIALIZER, proj, filter, reply;
  BSON_APPEND_UTF8(&cmd, "find", coll);
  BSON_APPEND_DOCUMENT_BEGIN(&cmd, "filter", &filter);
  bson_append_document_end(&cmd, &filter);
  BSON_APPEND_DOCUMENT_BEGIN(&cmd, "projection", &proj);
  BSON_APPEND_INT32(&proj, "_id", 1);
  bson_append_document_end(&cmd, &proj);
  BSON_APPEND_INT32(&cmd, "limit", 1);
  BSON_APPEND_INT32(&cmd, "batchSize", 1);
  BSON_APPEND_BOOL(&cmd, "singleBatch", true);
  int ok = run(r, db, &cmd, 0, &reply, e);
  bson_destroy(&cmd);
  bson_iter_t it;
  *nonempty = ok && bson_iter_init(&it, &reply) &&
              bson_iter_find_descendant(&it, "cursor.firstBatch.0", &it);
  bson_destroy(&reply);
  return ok;
}

static int drop(struct rs *r, const char *db, const char *coll, bson_error_t *e) {
  bson_t cmd = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&cmd, "drop", coll);
  int ok = run(r, db, &cmd, 1, NULL, e);
  bson_destroy(&cmd);
  if (!ok && mg_is_server_error(e) && e->code == ERR_NAMESPACE_NOT_FOUND)
    ok = 1;
  return ok;
}

/* create: the name, then every option as listCollections reported it;
 * view_prefix (restore test) is put before viewOn. */
static int create(struct rs *r, const char *db, const char *coll, const bson_t *md,
                  const char *view_prefix, bson_error_t *e) {
  bson_t cmd = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&cmd, "create", coll);
  bson_iter_t it, o;
  if (bson_iter_init_find(&it, md, "options") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
      bson_iter_recurse(&it, &o))
    while (bson_iter_next(&o)) {
      if (view_prefix != NULL && strcmp(bson_iter_key(&o), "viewOn") == 0 &&
          BSON_ITER_HOLDS_UTF8(&o)) {
        char *on = mg_strdupf("%s%s", view_prefix, bson_iter_utf8(&o, NULL));
        if (on != NULL)
          BSON_APPEND_UTF8(&cmd, "viewOn", on);
        free(on);
      } else {
        bson_append_iter(&cmd, NULL, 0, &o);
      }
    }
  int ok = run(r, db, &cmd, 1, NULL, e);
  bson_destroy(&cmd);
  return ok;
}

/* The index specifications of the metadata, without _id's (the server makes
 * it) and without the "ns" of servers before 4.4. */
static int index_specs(const bson_t *md, bson_t *out, size_t *n) {
  bson_iter_t it, arr;
  *n = 0;
  if (!bson_iter_init_find(&it, md, "indexes") || !BSON_ITER_HOLDS_ARRAY(&it) ||
      !bson_iter_recurse(&it, &arr))
    return 0;
  while (bson_iter_next(&arr)) {
    bson_iter_t f;
    if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &f))
      continue;
    bson_iter_t probe = f;
    if (bson_iter_find(&probe, "name") && BSON_ITER_HOLDS_UTF8(&probe) &&
        strcmp(bson_iter_utf8(&probe, NULL), "_id_") == 0)
      continue;
    probe = f;
    if (bson_iter_find(&probe, "clustered") && bson_iter_as_bool(&probe))
      continue;
    char key[16];
    const char *k;
    bson_uint32_to_string((uint32_t)*n, &k, key, sizeof(key));
    bson_t spec;
    BSON_APPEND_DOCUMENT_BEGIN(out, k, &spec);
    while (bson_iter_next(&f))
      if (strcmp(bson_iter_key(&f), "ns") != 0)
        bson_append_iter(&spec, NULL, 0, &f);
    bson_append_document_end(out, &spec);
    (*n)++;
  }
  return 0;
}

/* NULL on success, else a malloc'd message. */
static char *build_indexes(struct rs *r, const char *db, const char *coll, const bson_t *md,
                           size_t *n_out) {
  bson_t cmd = BSON_INITIALIZER, arr;
  BSON_APPEND_UTF8(&cmd, "createIndexes", coll);
  BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &arr);
  size_t n = 0;
  index_specs(md, &arr, &n);
  bson_append_array_end(&cmd, &arr);
  *n_out = n;
  char *msg = NULL;
  if (n > 0) {
    bson_error_t e;
    if (!run(r, db, &cmd, 1, NULL, &e)) {
      char *m = err_text(r, &e);
      msg = mg_strdupf("building its %zu index(es) failed: %s", n, m ? m : e.message);
      free(m);
      if (msg == NULL)
        msg = strdup("building its indexes failed");
    }
  }
  bson_destroy(&cmd);
  return msg;
}

/* ---- documents ------------------------------------------------------------------------- */

struct ins {
  uint64_t read, inserted, refused;
  char first_refusal[512];
  char *fatal; /* the server or the connection failed: nothing more went in */
  int read_failed, corrupt, cancelled;
};

static void bulk_account(struct rs *r, struct ins *s, uint32_t ok, const bson_t *reply,
                         const bson_error_t *e) {
  bson_iter_t it, arr;
  if (bson_iter_init_find(&it, reply, "nInserted"))
    s->inserted += (uint64_t)bson_iter_as_int64(&it);
  uint64_t errs = 0;
  if (bson_iter_init_find(&it, reply, "writeErrors") && BSON_ITER_HOLDS_ARRAY(&it) &&
      bson_iter_recurse(&it, &arr))
    while (bson_iter_next(&arr)) {
      if (errs == 0 && s->refused == 0) {
        bson_iter_t d;
        if (BSON_ITER_HOLDS_DOCUMENT(&arr) && bson_iter_recurse(&arr, &d) &&
            bson_iter_find(&d, "errmsg") && BSON_ITER_HOLDS_UTF8(&d))
          snprintf(s->first_refusal, sizeof(s->first_refusal), "%s", bson_iter_utf8(&d, NULL));
      }
      errs++;
    }
  s->refused += errs;
  if (!ok && errs == 0 && s->fatal == NULL)
    s->fatal = err_text(r, e);
}

static mongoc_bulk_operation_t *new_bulk(struct rs *r, mongoc_collection_t *col) {
  bson_t opts = BSON_INITIALIZER;
  BSON_APPEND_BOOL(&opts, "ordered", false);
  if (r->c.session != NULL)
    mongoc_client_session_append(r->c.session, &opts, NULL);
  mongoc_bulk_operation_t *b = mongoc_collection_create_bulk_operation_with_opts(col, &opts);
  bson_destroy(&opts);
  if (b != NULL) {
    mongoc_bulk_operation_set_hint(b, r->c.server_id);
    /* the documents were in the collection: the validator they met then is
     * not asked again (mongorestore --bypassDocumentValidation) */
    mongoc_bulk_operation_set_bypass_document_validation(b, true);
  }
  return b;
}

static void bulk_run(struct rs *r, mongoc_bulk_operation_t *b, struct ins *s) {
  bson_t reply;
  bson_error_t e;
  uint32_t ok = mongoc_bulk_operation_execute(b, &reply, &e);
  bulk_account(r, s, ok, &reply, &e);
  bson_destroy(&reply);
}

static void insert_stream(struct rs *r, const char *db, const char *coll,
                          const struct engine_reader *data, struct ins *s) {
  const struct engine_host *h = r->h;
  struct rs_stream st;
  bson_reader_t *br = rs_bson_reader(&st, data);
  mongoc_collection_t *col = mongoc_client_get_collection(r->c.client, db, coll);
  if (br == NULL || col == NULL) {
    s->fatal = strdup("out of memory");
    goto out;
  }
  bson_t io = BSON_INITIALIZER;
  BSON_APPEND_BOOL(&io, "validate", false); /* the server decides, as it did before */
  mongoc_bulk_operation_t *b = NULL;
  uint64_t bytes = 0, docs = 0;
  const bson_t *doc;
  bool eof = false;
  while (s->fatal == NULL && (doc = bson_reader_read(br, &eof)) != NULL) {
    s->read++;
    if (b == NULL) {
      b = new_bulk(r, col);
      if (b == NULL) {
        s->fatal = strdup("out of memory");
        break;
      }
    }
    bson_error_t e;
    if (!mongoc_bulk_operation_insert_with_opts(b, doc, &io, &e)) {
      s->refused++;
      if (s->first_refusal[0] == '\0')
        snprintf(s->first_refusal, sizeof(s->first_refusal), "document %llu: %.400s",
                 (unsigned long long)s->read, e.message);
      continue;
    }
    bytes += doc->len;
    docs++;
    if (bytes >= (uint64_t)r->in->batch_size || docs >= MAX_BULK_DOCS) {
      bulk_run(r, b, s);
      mongoc_bulk_operation_destroy(b);
      b = NULL;
      bytes = docs = 0;
    }
    if ((s->read & 1023) == 0 && h->cancelled(h)) {
      s->cancelled = 1;
      break;
    }
  }
  if (b != NULL) {
    if (s->fatal == NULL && !s->cancelled && docs > 0)
      bulk_run(r, b, s);
    mongoc_bulk_operation_destroy(b);
  }
  bson_destroy(&io);
  if (s->fatal == NULL && !s->cancelled && !eof) {
    if (st.failed)
      s->read_failed = 1;
    else
      s->corrupt = 1;
  } else if (s->fatal == NULL && !s->cancelled && st.got != data->size) {
    s->read_failed = 1;
  }
out:
  if (col)
    mongoc_collection_destroy(col);
  if (br)
    bson_reader_destroy(br);
}

/* ---- the restore test's checks --------------------------------------------------------- */

static int read_back(struct rs *r, const char *db, const char *coll, uint64_t *count,
                     char digest[80], char **err) {
  struct mg_digest dg;
  *count = 0;
  if (mg_digest_init(&dg) != 0) {
    *err = strdup("out of memory");
    return -1;
  }
  mongoc_collection_t *col = mongoc_client_get_collection(r->c.client, db, coll);
  bson_t opts = BSON_INITIALIZER, filter = BSON_INITIALIZER;
  bson_error_t e;
  mg_append_opts(&r->c, &opts, &e);
  int64_t per = r->in->batch_size / 1024;
  BSON_APPEND_INT32(&opts, "batchSize", (int32_t)(per < 16 ? 16 : per > 10000 ? 10000 : per));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(col, &filter, &opts, NULL);
  const bson_t *doc;
  int rc = 0;
  while (mongoc_cursor_next(cur, &doc)) {
    mg_digest_add(&dg, bson_get_data(doc), doc->len);
    (*count)++;
  }
  if (mongoc_cursor_error(cur, &e)) {
    *err = err_text(r, &e);
    rc = -1;
  }
  mg_digest_text(&dg, digest);
  mongoc_cursor_destroy(cur);
  bson_destroy(&opts);
  bson_destroy(&filter);
  mongoc_collection_destroy(col);
  mg_digest_free(&dg);
  return rc;
}

/* The index names of the metadata missing on the restored collection;
 * malloc'd list ("" when none), NULL on error (*err). */
static char *missing_indexes(struct rs *r, const char *db, const char *coll, const bson_t *md,
                             char **err) {
  bson_t cmd = BSON_INITIALIZER, reply;
  BSON_APPEND_UTF8(&cmd, "listIndexes", coll);
  bson_error_t e;
  int ok = run(r, db, &cmd, 0, &reply, &e);
  bson_destroy(&cmd);
  if (!ok) {
    bson_destroy(&reply);
    *err = err_text(r, &e);
    return NULL;
  }
  bson_t specs = BSON_INITIALIZER;
  size_t n = 0;
  index_specs(md, &specs, &n);
  size_t cap = 1, len = 0;
  char *out = calloc(1, 1);
  bson_iter_t it, s;
  if (out != NULL && bson_iter_init(&it, &specs))
    while (bson_iter_next(&it)) {
      if (!bson_iter_recurse(&it, &s) || !bson_iter_find(&s, "name") || !BSON_ITER_HOLDS_UTF8(&s))
        continue;
      const char *name = bson_iter_utf8(&s, NULL);
      int found = 0;
      bson_iter_t b, arr, d;
      if (bson_iter_init(&b, &reply) && bson_iter_find_descendant(&b, "cursor.firstBatch", &b) &&
          bson_iter_recurse(&b, &arr))
        while (!found && bson_iter_next(&arr))
          found = bson_iter_recurse(&arr, &d) && bson_iter_find(&d, "name") &&
                  BSON_ITER_HOLDS_UTF8(&d) && strcmp(bson_iter_utf8(&d, NULL), name) == 0;
      if (!found) {
        size_t need = len + strlen(name) + 3;
        if (need > cap) {
          char *np = realloc(out, need * 2);
          if (np == NULL)
            break;
          out = np;
          cap = need * 2;
        }
        len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? ", " : "", name);
      }
    }
  bson_destroy(&specs);
  bson_destroy(&reply);
  if (out == NULL)
    *err = strdup("out of memory");
  return out;
}

static int verify(struct rs *r, const struct rs_item *it, const char *data_coll, const bson_t *md) {
  const struct engine_host *h = r->h;
  uint64_t count = 0;
  char digest[80];
  char *err = NULL;
  char *ns = mg_strdupf("%s.%s", it->db, it->coll);
  if (ns == NULL)
    return oom(h);
  int rc = ENGINE_OK;
  if (read_back(r, it->final_db, data_coll, &count, digest, &err) != 0) {
    h->set_error(h, "restore test of %s: reading it back from scratch database '%s' failed: %s", ns,
                 r->scratch, err ? err : "?");
    rc = ENGINE_ERROR;
    goto out;
  }
  char *missing = missing_indexes(r, it->final_db, it->final_coll, md, &err);
  if (missing == NULL) {
    h->set_error(h, "restore test of %s: listing its indexes in scratch database '%s' failed: %s",
                 ns, r->scratch, err ? err : "?");
    rc = ENGINE_ERROR;
    goto out;
  }
  int bad_count = it->has_count && count != (uint64_t)it->count;
  int bad_digest = it->digest != NULL && strcmp(digest, it->digest) != 0;
  if (bad_count || bad_digest || missing[0] != '\0') {
    char cnt[160] = "", dig[300] = "", idx[600] = "";
    if (bad_count)
      snprintf(cnt, sizeof(cnt), "%llu documents read back, the manifest records %lld",
               (unsigned long long)count, (long long)it->count);
    if (bad_digest)
      snprintf(dig, sizeof(dig), "%sthe documents' digest is %s, the manifest records %s",
               bad_count ? "; " : "", digest, it->digest);
    if (missing[0])
      snprintf(idx, sizeof(idx), "%sindex(es) missing: %s", bad_count || bad_digest ? "; " : "",
               missing);
    h->set_error(h, "restore test of %s FAILED in scratch database '%s': %s%s%s", ns, r->scratch,
                 cnt, dig, idx);
    rc = ENGINE_ERROR;
  } else {
    h->log(h, ENGINE_LOG_INFO, "restore test of %s: %llu documents, digest and indexes verified",
           ns, (unsigned long long)count);
  }
  free(missing);
out:
  free(err);
  free(ns);
  return rc;
}

/* ---- one collection ---------------------------------------------------------------------- */

static const char *md_type(const bson_t *md) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, md, "type") && BSON_ITER_HOLDS_UTF8(&it))
    return bson_iter_utf8(&it, NULL);
  return "collection";
}

/* Make sure db.coll exists and may receive the backup's documents: refuse
 * one holding documents (unless --drop-existing), create it with its
 * options. ENGINE_ERROR with *msg (malloc'd) saying why; nothing changed. */
static int prepare_collection(struct rs *r, const char *ns_src, const char *db, const char *coll,
                              const bson_t *md, char **msg) {
  const struct engine_host *h = r->h;
  *msg = NULL;
  char type[32];
  bson_error_t e;
  char *m = NULL;
  if (!lookup(r, db, coll, type, &e)) {
    m = err_text(r, &e);
    *msg = mg_strdupf("restoring %s: looking up %s.%s on %s failed: %s", ns_src, db, coll,
                      r->c.hosts, m ? m : "?");
    goto fail;
  }
  if (type[0] != '\0') {
    int nonempty = 0;
    if (strcmp(type, "view") != 0 && !has_documents(r, db, coll, &nonempty, &e)) {
      m = err_text(r, &e);
      *msg = mg_strdupf("restoring %s: reading %s.%s on %s failed: %s", ns_src, db, coll,
                        r->c.hosts, m ? m : "?");
      goto fail;
    }
    if (r->drop_existing) {
      if (!drop(r, db, coll, &e)) {
        m = err_text(r, &e);
        *msg = mg_strdupf("restoring %s: dropping the existing %s.%s on %s failed: %s", ns_src, db,
                          coll, r->c.hosts, m ? m : "?");
        goto fail;
      }
      h->log(h, ENGINE_LOG_INFO, "dropped the existing %s %s.%s (--drop-existing)", type, db, coll);
      type[0] = '\0';
    } else if (strcmp(type, "view") == 0 || nonempty || strcmp(type, md_type(md)) != 0) {
      *msg = mg_strdupf("%s %s.%s already exists on %s%s; nothing was changed. Restore under "
                        "another name with --as NEWDB[.NEWCOLL], or replace it with "
                        "--drop-existing",
                        strcmp(type, "view") == 0 ? "a view" : "collection", db, coll, r->c.hosts,
                        nonempty ? " and holds documents" : "");
      goto fail;
    } else {
      h->log(h, ENGINE_LOG_INFO,
             "%s.%s exists and is empty: the documents go into it and it keeps its options", db,
             coll);
    }
  }
  if (type[0] == '\0' && !create(r, db, coll, md, NULL, &e)) {
    m = err_text(r, &e);
    *msg = mg_strdupf("restoring %s: creating %s.%s on %s with the backup's options failed: %s; "
                      "nothing was changed",
                      ns_src, db, coll, r->c.hosts, m ? m : "?");
    goto fail;
  }
  return ENGINE_OK;
fail:
  free(m);
  if (*msg == NULL)
    *msg = strdup("out of memory");
  return ENGINE_ERROR;
}

int rs_server_collection(struct rs *r, const struct rs_item *it, const bson_t *md,
                         const struct engine_reader *data) {
  const struct engine_host *h = r->h;
  char *ns = mg_strdupf("%s.%s", it->db, it->coll);
  int ts = strcmp(md_type(md), "timeseries") == 0;
  char *dcoll = ts ? mg_strdupf("system.buckets.%s", it->final_coll) : strdup(it->final_coll);
  if (ns == NULL || dcoll == NULL) {
    free(ns);
    free(dcoll);
    return oom(h);
  }
  char *pmsg = NULL;
  int rc = prepare_collection(r, ns, it->final_db, it->final_coll, md, &pmsg);
  if (rc != ENGINE_OK) {
    h->set_error(h, "%s", pmsg ? pmsg : "out of memory");
    free(pmsg);
    goto out;
  }
  struct ins s = {0};
  insert_stream(r, it->final_db, dcoll, data, &s);
  size_t n_idx = 0;
  char *idx_err =
      s.fatal || s.cancelled ? NULL : build_indexes(r, it->final_db, it->final_coll, md, &n_idx);
  char where[256];
  snprintf(where, sizeof(where), "%s.%s on %s", it->final_db, it->final_coll, r->c.hosts);
  if (s.fatal || s.cancelled || s.read_failed || s.corrupt || s.refused > 0 || idx_err) {
    char why[1024];
    if (s.fatal)
      snprintf(why, sizeof(why), "inserting failed: %s", s.fatal);
    else if (s.cancelled)
      snprintf(why, sizeof(why), "the restore was cancelled");
    else if (s.read_failed)
      snprintf(why, sizeof(why), "reading the documents from the repository failed");
    else if (s.corrupt)
      snprintf(why, sizeof(why), "the stored stream is not BSON after document %llu",
               (unsigned long long)s.read);
    else if (s.refused > 0)
      snprintf(why, sizeof(why), "the server refused %llu document(s) (first: %s)",
               (unsigned long long)s.refused, s.first_refusal);
    else
      snprintf(why, sizeof(why), "%s", idx_err);
    char total[64] = "";
    if (it->has_count)
      snprintf(total, sizeof(total), " of the backup's %lld", (long long)it->count);
    h->set_error(h,
                 "restoring %s into %s is INCOMPLETE: %s; %llu document(s)%s were inserted%s. "
                 "The collection holds them now: drop it, or restore again with --drop-existing",
                 ns, where, why, (unsigned long long)s.inserted, total,
                 idx_err ? "" : ", no index was built");
    rc = ENGINE_ERROR;
  } else if (it->has_count && s.inserted != (uint64_t)it->count) {
    h->set_error(h,
                 "restoring %s into %s: %llu documents inserted, the manifest records %lld; the "
                 "collection holds what was inserted",
                 ns, where, (unsigned long long)s.inserted, (long long)it->count);
    rc = ENGINE_ERROR;
  } else if (r->mode == RS_TEST) {
    rc = verify(r, it, dcoll, md);
  } else {
    h->log(h, ENGINE_LOG_INFO, "%s restored into %s: %llu documents, %zu index(es)", ns, where,
           (unsigned long long)s.inserted, n_idx);
  }
  free(idx_err);
  free(s.fatal);
out:
  free(ns);
  free(dcoll);
  return rc;
}

/* ---- users and roles ------------------------------------------------------------------------ */

int rs_server_auth(struct rs *r, const struct rs_item *it, const struct engine_reader *data) {
  const struct engine_host *h = r->h;
  if (strcmp(it->coll, "system.version") == 0) {
    /* as mongorestore: the auth schema version of the users and roles,
     * checked, never written into a server's admin.system.version */
    h->log(h, ENGINE_LOG_DEBUG,
           "admin.system.version (the backup's auth schema version) is not restored into a server");
    return ENGINE_OK;
  }
  int users = strcmp(it->coll, "system.users") == 0;
  if (r->mode == RS_TEST) {
    h->log(h, ENGINE_LOG_INFO, "restore test: %s are not restored into the scratch database",
           users ? "users" : "roles");
    return ENGINE_OK;
  }
  const char *tmp = users ? "tempusers" : "temproles";
  bson_error_t e;
  if (!drop(r, "admin", tmp, &e)) {
    char *m = err_text(r, &e);
    h->set_error(h, "restoring %s: dropping admin.%s on %s failed: %s", users ? "users" : "roles",
                 tmp, r->c.hosts, m ? m : "?");
    free(m);
    return ENGINE_ERROR;
  }
  struct ins s = {0};
  insert_stream(r, "admin", tmp, data, &s);
  if (s.fatal || s.cancelled || s.read_failed || s.corrupt || s.refused > 0) {
    h->set_error(h,
                 "loading the backup's %s into admin.%s on %s failed (%s); the server's %s "
                 "are unchanged",
                 users ? "users" : "roles", tmp, r->c.hosts,
                 s.fatal         ? s.fatal
                 : s.refused > 0 ? s.first_refusal
                                 : "reading the repository failed",
                 users ? "users" : "roles");
    free(s.fatal);
    drop(r, "admin", tmp, &e);
    return ENGINE_ERROR;
  }
  if (users)
    r->have_users = 1;
  else
    r->have_roles = 1;
  return ENGINE_OK;
}

static int merge_auth(struct rs *r) {
  const struct engine_host *h = r->h;
  bson_error_t e;
  /* as mongorestore: only what was restored is named, so that users
   * restored alone with --drop-existing do not replace the server's roles
   * with none (and the other way round) */
  bson_t cmd = BSON_INITIALIZER;
  BSON_APPEND_INT32(&cmd, "_mergeAuthzCollections", 1);
  if (r->have_users)
    BSON_APPEND_UTF8(&cmd, "tempUsersCollection", "admin.tempusers");
  if (r->have_roles)
    BSON_APPEND_UTF8(&cmd, "tempRolesCollection", "admin.temproles");
  BSON_APPEND_BOOL(&cmd, "drop", r->drop_existing != 0);
  BSON_APPEND_UTF8(&cmd, "db", "");
  int ok = run(r, "admin", &cmd, 1, NULL, &e);
  bson_destroy(&cmd);
  char *m = ok ? NULL : err_text(r, &e);
  if (r->have_users)
    drop(r, "admin", "tempusers", &e);
  if (r->have_roles)
    drop(r, "admin", "temproles", &e);
  if (!ok) {
    h->set_error(h, "merging the backup's users and roles into %s failed: %s", r->c.hosts,
                 m ? m : "?");
    free(m);
    return ENGINE_ERROR;
  }
  h->log(h, ENGINE_LOG_INFO, "users and roles restored into %s (%s)", r->c.hosts,
         r->drop_existing ? "replacing the server's" : "merged with the server's");
  return ENGINE_OK;
}

/* ---- the end ----------------------------------------------------------------------------------
 */

static void add_failure(char **list, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_failure(char **list, const char *fmt, ...) {
  char *one = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&one, fmt, ap) < 0)
    one = NULL;
  va_end(ap);
  char *n = mg_strdupf("%s%s%s", *list ? *list : "", *list ? "; " : "", one ? one : "?");
  free(one);
  if (n != NULL) {
    free(*list);
    *list = n;
  }
}

/* Collections whose metadata came without data: created empty, with
 * their indexes. */
static void finish_empty(struct rs *r, struct rs_pending *p, char **failures) {
  const struct engine_host *h = r->h;
  char *msg = NULL;
  if (prepare_collection(r, p->src_ns, p->db, p->coll, p->md, &msg) != ENGINE_OK) {
    add_failure(failures, "%s", msg ? msg : "out of memory");
    free(msg);
    return;
  }
  size_t n = 0;
  char *err = build_indexes(r, p->db, p->coll, p->md, &n);
  if (err != NULL) {
    add_failure(failures, "%s.%s: %s", p->db, p->coll, err);
    free(err);
    return;
  }
  h->log(h, ENGINE_LOG_INFO, "%s.%s created (no documents selected) with %zu index(es)", p->db,
         p->coll, n);
}

static void finish_view(struct rs *r, struct rs_pending *p, char **failures) {
  const struct engine_host *h = r->h;
  bson_error_t e;
  char type[32];
  if (!lookup(r, p->db, p->coll, type, &e)) {
    char *m = err_text(r, &e);
    add_failure(failures, "view %s.%s: %s", p->db, p->coll, m ? m : "?");
    free(m);
    return;
  }
  if (type[0] != '\0') {
    if (!r->drop_existing) {
      add_failure(failures,
                  "view %s.%s: a %s of that name exists (nothing was changed; use "
                  "--drop-existing or --as)",
                  p->db, p->coll, type);
      return;
    }
    if (!drop(r, p->db, p->coll, &e)) {
      char *m = err_text(r, &e);
      add_failure(failures, "view %s.%s: dropping the existing one failed: %s", p->db, p->coll,
                  m ? m : "?");
      free(m);
      return;
    }
  }
  char *prefix = NULL;
  if (r->mode == RS_TEST) {
    const char *dot = strchr(p->src_ns, '.');
    prefix = dot ? strndup(p->src_ns, (size_t)(dot - p->src_ns + 1)) : NULL;
  }
  if (!create(r, p->db, p->coll, p->md, prefix, &e)) {
    char *m = err_text(r, &e);
    add_failure(failures, "view %s.%s: %s", p->db, p->coll, m ? m : "?");
    free(m);
  } else if (r->mode == RS_TEST) {
    int ok = lookup(r, p->db, p->coll, type, &e) && strcmp(type, "view") == 0;
    if (!ok)
      add_failure(failures, "restore test: view %s is missing after its creation", p->src_ns);
    else
      h->log(h, ENGINE_LOG_INFO, "restore test of view %s: created", p->src_ns);
  } else {
    h->log(h, ENGINE_LOG_INFO, "view %s.%s restored", p->db, p->coll);
  }
  free(prefix);
}

int rs_server_finish(struct rs *r, int status) {
  const struct engine_host *h = r->h;
  (void)status;
  char *failures = NULL;
  for (size_t i = 0; i < r->n_pend; i++)
    if (!r->pend[i].is_view && !r->pend[i].done && !h->cancelled(h))
      finish_empty(r, &r->pend[i], &failures);
  /* views last: after the collections they read */
  for (size_t i = 0; i < r->n_pend; i++)
    if (r->pend[i].is_view && !h->cancelled(h))
      finish_view(r, &r->pend[i], &failures);
  int rc = ENGINE_OK;
  if ((r->have_users || r->have_roles) && merge_auth(r) != ENGINE_OK)
    add_failure(&failures, "users and roles not restored");
  if (r->mode == RS_TEST && r->scratch != NULL) {
    bson_t cmd = BSON_INITIALIZER;
    bson_error_t e;
    BSON_APPEND_INT32(&cmd, "dropDatabase", 1);
    if (!run(r, r->scratch, &cmd, 1, NULL, &e)) {
      char *m = err_text(r, &e);
      add_failure(&failures, "dropping the scratch database '%s' failed: %s", r->scratch,
                  m ? m : "?");
      free(m);
    } else {
      h->log(h, ENGINE_LOG_INFO, "restore test: scratch database '%s' dropped", r->scratch);
    }
    bson_destroy(&cmd);
  }
  if (failures != NULL) {
    h->set_error(h, "%s", failures);
    rc = ENGINE_ERROR;
  }
  free(failures);
  return rc;
}
