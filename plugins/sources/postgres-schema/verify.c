/* The restore test's checks (engine check --restore-test), on threads of
 * their own: while the next schema is being restored into the scratch
 * database, the schemas restored before it are compared with what the
 * backup recorded:
 *
 *  - every table and materialized view of the manifest exists;
 *  - each table holds the rows the backup dumped: the rows are read back
 *    with COPY ... TO STDOUT in the session settings pg_dump uses (and the
 *    time zone, bytea_output and lc_monetary of the backup's session), and
 *    their count and order-independent digest (archive.c) must equal those
 *    computed from the dump's COPY data at backup time. A row whose content
 *    changed, even with the count unchanged, fails the test;
 *  - the schema definition: pg_dump -s of the restored schema gives the same
 *    definition digest as the backup's archive (types, tables, columns,
 *    indexes, constraints, views, functions, triggers, sequences, comments),
 *    and the same ownership digest (owners and grants) unless the restore
 *    had to drop ownership (--no-owner --no-acl). When they differ, the
 *    objects that differ are named, from the archive restored.
 *
 * Manifests of earlier plugin versions have row counts without digests:
 * their tables are counted (count(*)). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pgschema.h"

struct vjob {
  struct vjob *next;
  char *schema;
  json_t *meta;
  int no_owner;
  unsigned char *archive; /* the start of the restored archive (header and table of contents) */
  size_t archive_len;
};

struct vworker {
  struct pgs_verify *v;
  PGconn *c;
  pthread_t th;
  int started;
};

struct pgs_verify {
  struct pgs_inst *in;
  const struct pgs_target *t;
  char *scratch;
  char *conninfo; /* of the scratch database, for pg_dump -s */
  struct pgs_tool dump;
  struct vworker *w;
  size_t n;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct vjob *head, *tail;
  size_t queued;
  int closing;
  size_t ok, failed;
  struct pgs_buf failures; /* "schema 'x': why; ..." */
};

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
  char *s = NULL;
  va_list ap;
  va_start(ap, f);
  if (vasprintf(&s, f, ap) < 0)
    s = NULL;
  va_end(ap);
  return s;
}

/* A message of c on one line. */
static char *conn_err(PGconn *c, PGresult *r) {
  const char *m = r ? PQresultErrorMessage(r) : NULL;
  char *s = m && m[0] ? strdup(m) : pgs_conn_message(c);
  if (s != NULL) {
    size_t l = strlen(s);
    while (l > 0 && (s[l - 1] == '\n' || s[l - 1] == ' '))
      s[--l] = '\0';
    for (char *p = s; *p; p++)
      if (*p == '\n')
        *p = ' ';
  }
  return s;
}

/* A query on the worker's connection; NULL and *err on failure. */
static PGresult *vq(PGconn *c, const char *sql, int n, const char *const *params, const char *what,
                    char **err) {
  PGresult *r = n > 0 ? PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0) : PQexec(c, sql);
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
    return r;
  char *m = conn_err(c, r);
  *err = fmt("%s failed: %s", what, m ? m : "?");
  free(m);
  PQclear(r);
  return NULL;
}

/* pg_dump's session settings (and the backup's own time zone, bytea
 * format and monetary locale), so COPY writes the text pg_dump wrote. */
static char *session(PGconn *c, json_t *meta) {
  char *err = NULL;
  PGresult *r = vq(c,
                   "SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3; "
                   "SET row_security = off; SELECT pg_catalog.set_config('client_encoding', "
                   "pg_catalog.current_setting('server_encoding'), false)",
                   0, NULL, "setting up the session", &err);
  if (r == NULL)
    return err;
  PQclear(r);
  json_t *set = json_object_get(meta, "copy_settings");
  const char *k;
  json_t *v;
  json_object_foreach(set, k, v) {
    if (!json_is_string(v))
      continue;
    const char *params[] = {k, json_string_value(v)};
    r = vq(c, "SELECT pg_catalog.set_config($1, $2, false)", 2, params, "setting", &err);
    if (r == NULL)
      return err;
    PQclear(r);
  }
  return NULL;
}

/* COPY sch.tab (columns pg_dump writes) TO STDOUT into a digest. */
static char *copy_digest(PGconn *c, const char *schema, const char *table, struct pgs_rows *rows,
                         int *missing) {
  char *err = NULL;
  *missing = 0;
  const char *params[] = {schema, table};
  PGresult *r =
      vq(c,
         "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), (SELECT "
         "pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM "
         "pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT "
         "a.attisdropped AND a.attgenerated = '') FROM pg_catalog.pg_class c JOIN "
         "pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname "
         "= $2",
         2, params, "looking up a restored table", &err);
  if (r == NULL)
    return err;
  if (PQntuples(r) == 0) {
    PQclear(r);
    *missing = 1;
    return NULL;
  }
  char *sql = PQgetisnull(r, 0, 1)
                  ? fmt("COPY %s TO STDOUT", PQgetvalue(r, 0, 0))
                  : fmt("COPY %s (%s) TO STDOUT", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
  PQclear(r);
  if (sql == NULL)
    return strdup("out of memory");
  r = PQexec(c, sql);
  free(sql);
  if (r == NULL || PQresultStatus(r) != PGRES_COPY_OUT) {
    char *m = conn_err(c, r);
    PQclear(r);
    err = fmt("reading table '%s' failed: %s", table, m ? m : "?");
    free(m);
    return err;
  }
  PQclear(r);
  int bad = 0;
  for (;;) {
    char *buf = NULL;
    int n = PQgetCopyData(c, &buf, 0);
    if (n < 0)
      break;
    if (pgs_rows_feed(rows, buf, (size_t)n) != 0)
      bad = 1;
    PQfreemem(buf);
  }
  while ((r = PQgetResult(c)) != NULL) {
    if (PQresultStatus(r) != PGRES_COMMAND_OK && err == NULL) {
      char *m = conn_err(c, r);
      err = fmt("reading table '%s' failed: %s", table, m ? m : "?");
      free(m);
    }
    PQclear(r);
  }
  if (err == NULL && (bad || pgs_rows_done(rows) != 0))
    err = fmt("reading table '%s' gave rows that do not end with a newline", table);
  return err;
}

static ssize_t fd_read(void *ctx, void *buf, size_t len) {
  return read(*(int *)ctx, buf, len);
}

/* pg_dump -s of the restored schema: its table of contents. */
static char *dump_schema(struct pgs_verify *v, const char *schema, struct pgs_arc_head *h,
                         struct pgs_toc *toc) {
  const struct engine_host *host = v->in->host;
  char *q = pgs_quote_ident(schema);
  char *sarg = q ? fmt("--schema=%s", q) : NULL;
  char *darg = fmt("--dbname=%s", v->conninfo);
  free(q);
  if (sarg == NULL || darg == NULL) {
    free(sarg);
    free(darg);
    return strdup("out of memory");
  }
  const char *argv[] = {
      v->dump.path, "--format=custom", "--compress=0", "--schema-only", "--no-password", sarg, darg,
      NULL};
  struct engine_spawn_opts o = {.struct_size = sizeof(o),
                                .file = v->dump.path,
                                .argv = argv,
                                .stdin_mode = ENGINE_STDIO_NULL,
                                .stdout_mode = ENGINE_STDIO_PIPE,
                                .stderr_mode = ENGINE_STDIO_PIPE};
  pgs_target_spawn_opts(v->t, &o);
  struct engine_child *child = NULL;
  int rc = host->spawn(host, &o, &child);
  free(sarg);
  free(darg);
  if (rc != ENGINE_OK)
    return fmt("unable to start '%s' for the schema's definition", v->dump.path);
  struct pgs_in in;
  pgs_in_init(&in, fd_read, &child->stdout_fd, 256 * 1024);
  char *err = NULL;
  int ok = in.buf != NULL && pgs_arc_read_head(&in, h, &err) == 0 &&
           pgs_arc_read_toc(&in, h, toc, &err) == 0;
  if (ok) { /* a schema-only archive has no data: drain to the end */
    const unsigned char *p;
    size_t n;
    while ((n = pgs_in_avail(&in, &p)) > 0)
      pgs_in_consume(&in, n);
  }
  pgs_in_free(&in);
  if (!ok)
    host->child_kill(host, child, SIGTERM);
  close(child->stdout_fd);
  child->stdout_fd = -1;
  int status = 0;
  int wrc = host->child_wait(host, child, &status);
  if (wrc != ENGINE_OK || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    char st[96];
    pgs_describe_status(status, st, sizeof(st));
    free(err);
    err =
        fmt("pg_dump -s of the restored schema failed (%s): %s", st, pgs_stderr_tail(v->in, child));
    ok = 0;
  }
  host->child_free(host, child);
  if (!ok) {
    pgs_toc_free(toc);
    pgs_arc_head_free(h);
    return err ? err : strdup("pg_dump -s of the restored schema could not be read");
  }
  free(err);
  return NULL;
}

static int one_group(void *ud, const char *schema) {
  return strcmp(ud, schema) == 0 ? 0 : -1;
}

struct ehash {
  XXH128_hash_t h;
  const struct pgs_toc_entry *e;
};

static int ehash_cmp(const void *a, const void *b) {
  const struct ehash *x = a, *y = b;
  if (x->h.high64 != y->h.high64)
    return x->h.high64 < y->h.high64 ? -1 : 1;
  if (x->h.low64 != y->h.low64)
    return x->h.low64 < y->h.low64 ? -1 : 1;
  return 0;
}

static size_t entry_hashes(const struct pgs_toc *toc, int ownership, struct ehash *out) {
  size_t n = 0;
  for (size_t i = 0; i < toc->n; i++)
    if (toc->e[i].group == 0 && pgs_toc_entry_hash(&toc->e[i], ownership, &out[n].h)) {
      out[n].e = &toc->e[i];
      n++;
    }
  qsort(out, n, sizeof(*out), ehash_cmp);
  return n;
}

static void describe_entry(struct pgs_buf *b, const struct pgs_toc_entry *e, size_t *count) {
  if (*count >= 5) {
    if (*count == 5)
      pgs_buf_add(b, ", ...", 5);
    (*count)++;
    return;
  }
  char *s = fmt("%s%s %s%s%s", *count ? ", " : "", e->desc ? e->desc : "?",
                e->nspname && e->nspname[0] ? e->nspname : "",
                e->nspname && e->nspname[0] ? "." : "", e->tag ? e->tag : "?");
  if (s != NULL)
    pgs_buf_add(b, s, strlen(s));
  free(s);
  (*count)++;
}

/* Which objects differ between the restored archive and pg_dump -s of the
 * restored schema. */
static char *name_differences(struct vjob *j, const struct pgs_toc *now, int ownership) {
  if (j->archive == NULL)
    return NULL;
  struct pgs_in in;
  pgs_in_mem(&in, j->archive, j->archive_len);
  struct pgs_arc_head h;
  struct pgs_toc was;
  char *err = NULL;
  if (pgs_arc_read_head(&in, &h, &err) != 0) {
    free(err);
    return NULL;
  }
  if (pgs_arc_read_toc(&in, &h, &was, &err) != 0) {
    free(err);
    pgs_arc_head_free(&h);
    return NULL;
  }
  pgs_toc_assign(&was, one_group, j->schema);
  struct ehash *a = calloc(was.n + 1, sizeof(*a)), *b = calloc(now->n + 1, sizeof(*b));
  char *out = NULL;
  if (a != NULL && b != NULL) {
    size_t na = entry_hashes(&was, ownership, a), nb = entry_hashes(now, ownership, b), i = 0,
           k = 0, c1 = 0, c2 = 0;
    struct pgs_buf gone = {0}, extra = {0};
    while (i < na || k < nb) {
      int c = i == na ? 1 : k == nb ? -1 : ehash_cmp(&a[i], &b[k]);
      if (c == 0) {
        i++;
        k++;
      } else if (c < 0) {
        describe_entry(&gone, a[i++].e, &c1);
      } else {
        describe_entry(&extra, b[k++].e, &c2);
      }
    }
    pgs_buf_add(&gone, "", 1);
    pgs_buf_add(&extra, "", 1);
    if (c1 || c2)
      out = fmt("%s%s%s%s%s", c1 ? "as backed up but not as restored: " : "",
                c1 ? (char *)gone.p : "", c1 && c2 ? "; " : "",
                c2 ? "as restored but not in the backup: " : "", c2 ? (char *)extra.p : "");
    pgs_buf_free(&gone);
    pgs_buf_free(&extra);
  }
  free(a);
  free(b);
  pgs_toc_free(&was);
  pgs_arc_head_free(&h);
  return out;
}

static char *check_definition(struct pgs_verify *v, struct vjob *j) {
  const char *want_def = json_string_value(json_object_get(j->meta, "schema_digest"));
  const char *want_own = json_string_value(json_object_get(j->meta, "ownership_digest"));
  if (want_def == NULL)
    return NULL; /* plain format, or an older manifest: nothing recorded */
  struct pgs_arc_head h;
  struct pgs_toc toc;
  char *err = dump_schema(v, j->schema, &h, &toc);
  if (err != NULL)
    return err;
  pgs_toc_assign(&toc, one_group, j->schema);
  char def[64], own[64];
  size_t objects = 0;
  pgs_toc_digests(&toc, 0, def, own, sizeof(def), &objects);
  int def_ok = strcmp(def, want_def) == 0;
  int own_ok = j->no_owner || want_own == NULL || strcmp(own, want_own) == 0;
  if (!def_ok || !own_ok) {
    char *names = name_differences(j, &toc, def_ok);
    json_int_t want_n = json_integer_value(json_object_get(j->meta, "schema_objects"));
    if (!def_ok)
      err = fmt("its definition differs from the backup's (pg_dump -s of the restored schema: %zu "
                "object(s), the manifest records %lld)%s%s",
                objects, (long long)want_n, names ? ": " : "", names ? names : "");
    else
      err = fmt("its owners or grants differ from the backup's (pg_dump -s of the restored "
                "schema)%s%s",
                names ? ": " : "", names ? names : "");
    free(names);
  }
  pgs_toc_free(&toc);
  pgs_arc_head_free(&h);
  return err;
}

/* NULL when the restored schema matches the manifest; else why not. */
static char *verify_one(struct vworker *vw, struct vjob *j, size_t *n_tables, long long *n_rows) {
  PGconn *c = vw->c;
  char *err = session(c, j->meta);
  if (err != NULL)
    return err;
  json_t *tables = json_object_get(j->meta, "tables");
  if (!json_is_array(tables))
    return strdup("the manifest has no table list to verify against");
  struct pgs_buf bad = {0};
  int n_bad = 0;
  size_t i;
  json_t *t;
  json_array_foreach(tables, i, t) {
    const char *name = json_string_value(json_object_get(t, "name"));
    const char *kind = json_string_value(json_object_get(t, "kind"));
    json_t *want = json_object_get(t, "rows");
    const char *digest = json_string_value(json_object_get(t, "digest"));
    if (name == NULL)
      continue;
    (*n_tables)++;
    char *msg = NULL;
    if (json_is_integer(want) && digest != NULL) {
      struct pgs_rows rows;
      pgs_rows_init(&rows);
      int missing = 0;
      err = copy_digest(c, j->schema, name, &rows, &missing);
      char got[64];
      pgs_rows_text(&rows, got, sizeof(got));
      pgs_rows_free(&rows);
      if (err != NULL) {
        pgs_buf_free(&bad);
        return err;
      }
      *n_rows += (long long)rows.rows;
      if (missing)
        msg = fmt("%s '%s' is missing", kind ? kind : "table", name);
      else if ((long long)rows.rows != (long long)json_integer_value(want))
        msg = fmt("'%s' has %llu rows, the manifest records %lld", name,
                  (unsigned long long)rows.rows, (long long)json_integer_value(want));
      else if (strcmp(got, digest) != 0)
        msg = fmt("'%s' has the %llu rows the manifest records, but their content differs (digest "
                  "%s, the manifest records %s)",
                  name, (unsigned long long)rows.rows, got, digest);
    } else {
      /* existence (and, for an older manifest, the row count) */
      const char *params[] = {j->schema, name};
      PGresult *r = vq(c,
                       "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM "
                       "pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = "
                       "c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
                       2, params, "looking up a restored table", &err);
      if (r == NULL) {
        pgs_buf_free(&bad);
        return err;
      }
      char *qn = PQntuples(r) > 0 ? strdup(PQgetvalue(r, 0, 0)) : NULL;
      PQclear(r);
      if (qn == NULL) {
        msg = fmt("%s '%s' is missing", kind ? kind : "table", name);
      } else if (json_is_integer(want)) {
        char *sql = fmt("SELECT count(*) FROM ONLY %s", qn);
        r = sql ? vq(c, sql, 0, NULL, "counting the rows of a restored table", &err) : NULL;
        free(sql);
        if (r == NULL) {
          free(qn);
          pgs_buf_free(&bad);
          return err ? err : strdup("out of memory");
        }
        long long got = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        *n_rows += got;
        if (got != (long long)json_integer_value(want))
          msg = fmt("'%s' has %lld rows, the manifest records %lld", name, got,
                    (long long)json_integer_value(want));
      }
      free(qn);
    }
    if (msg != NULL) {
      if (n_bad++)
        pgs_buf_add(&bad, "; ", 2);
      pgs_buf_add(&bad, msg, strlen(msg));
      free(msg);
    }
  }
  char *def = check_definition(vw->v, j);
  if (def != NULL) {
    if (n_bad++)
      pgs_buf_add(&bad, "; ", 2);
    pgs_buf_add(&bad, def, strlen(def));
    free(def);
  }
  if (n_bad == 0) {
    pgs_buf_free(&bad);
    return NULL;
  }
  pgs_buf_add(&bad, "", 1);
  if (bad.oom) {
    pgs_buf_free(&bad);
    return strdup("mismatch (out of memory describing it)");
  }
  return (char *)bad.p;
}

static void job_free(struct vjob *j) {
  free(j->schema);
  json_decref(j->meta);
  free(j->archive);
  free(j);
}

static void *vmain(void *arg) {
  struct vworker *vw = arg;
  struct pgs_verify *v = vw->v;
  const struct engine_host *h = v->in->host;
  for (;;) {
    pthread_mutex_lock(&v->mu);
    while (v->head == NULL && !v->closing)
      pthread_cond_wait(&v->cv, &v->mu);
    struct vjob *j = v->head;
    if (j == NULL) {
      pthread_mutex_unlock(&v->mu);
      break;
    }
    v->head = j->next;
    if (v->head == NULL)
      v->tail = NULL;
    pthread_mutex_unlock(&v->mu);
    size_t tables = 0;
    long long rows = 0;
    char *err =
        h->cancelled(h) ? strdup("the run was cancelled") : verify_one(vw, j, &tables, &rows);
    char *ps = pgs_printable(j->schema);
    if (err == NULL)
      h->log(h, ENGINE_LOG_INFO,
             "restore test of schema '%s': %zu table(s), %lld row(s) and their content verified%s",
             ps ? ps : "?", tables, rows,
             json_string_value(json_object_get(j->meta, "schema_digest")) ? ", definition equal"
                                                                          : "");
    else
      h->log(h, ENGINE_LOG_ERROR, "restore test of schema '%s' FAILED in scratch database '%s': %s",
             ps ? ps : "?", v->scratch, err);
    pthread_mutex_lock(&v->mu);
    v->queued--;
    if (err == NULL) {
      v->ok++;
    } else {
      char *line = fmt("%sschema '%s': %s", v->failed ? "; " : "", ps ? ps : "?", err);
      if (line != NULL)
        pgs_buf_add(&v->failures, line, strlen(line));
      free(line);
      v->failed++;
    }
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
    free(ps);
    free(err);
    job_free(j);
  }
  return NULL;
}

struct pgs_verify *pgs_verify_new(struct pgs_inst *in, const struct pgs_target *t,
                                  const char *scratch, size_t n) {
  const struct engine_host *h = in->host;
  struct pgs_verify *v = calloc(1, sizeof(*v));
  if (v == NULL) {
    h->set_error(h, "out of memory");
    return NULL;
  }
  v->in = in;
  v->t = t;
  pthread_mutex_init(&v->mu, NULL);
  pthread_cond_init(&v->cv, NULL);
  v->scratch = strdup(scratch);
  v->conninfo = pgs_target_conninfo(t, scratch);
  v->w = calloc(n, sizeof(*v->w));
  if (v->scratch == NULL || v->conninfo == NULL || v->w == NULL) {
    h->set_error(h, "out of memory");
    pgs_verify_free(v);
    return NULL;
  }
  if (pgs_tool_probe(in, in->pg_dump, "pg_dump", &v->dump) != ENGINE_OK) {
    pgs_verify_free(v);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    v->w[i].v = v;
    v->w[i].c = pgs_connect(in, t, scratch);
    if (v->w[i].c == NULL) {
      pgs_verify_free(v);
      return NULL;
    }
    v->n++;
    int e = pthread_create(&v->w[i].th, NULL, vmain, &v->w[i]);
    if (e != 0) {
      h->set_error(h, "unable to start a restore test thread: %s", strerror(e));
      pgs_verify_free(v);
      return NULL;
    }
    v->w[i].started = 1;
  }
  return v;
}

int pgs_verify_submit(struct pgs_verify *v, const char *schema, json_t *meta, int no_owner,
                      unsigned char *archive, size_t archive_len) {
  struct vjob *j = calloc(1, sizeof(*j));
  char *name = strdup(schema);
  if (j == NULL || name == NULL) {
    free(j);
    free(name);
    free(archive);
    return ENGINE_ERROR;
  }
  j->schema = name;
  j->meta = json_incref(meta);
  j->no_owner = no_owner;
  j->archive = archive;
  j->archive_len = archive_len;
  pthread_mutex_lock(&v->mu);
  /* a bounded queue: the restores wait for the checks rather than keep
   * every table of contents in memory */
  while (v->queued >= 2 * v->n)
    pthread_cond_wait(&v->cv, &v->mu);
  if (v->tail)
    v->tail->next = j;
  else
    v->head = j;
  v->tail = j;
  v->queued++;
  pthread_cond_broadcast(&v->cv);
  pthread_mutex_unlock(&v->mu);
  return ENGINE_OK;
}

int pgs_verify_finish(struct pgs_verify *v, size_t *ok, size_t *failed, char **failures) {
  pthread_mutex_lock(&v->mu);
  v->closing = 1;
  pthread_cond_broadcast(&v->cv);
  pthread_mutex_unlock(&v->mu);
  for (size_t i = 0; i < v->n; i++)
    if (v->w[i].started) {
      pthread_join(v->w[i].th, NULL);
      v->w[i].started = 0;
    }
  *ok = v->ok;
  *failed = v->failed;
  pgs_buf_add(&v->failures, "", 1);
  *failures = v->failed && !v->failures.oom ? strdup((char *)v->failures.p) : NULL;
  return v->failed ? ENGINE_ERROR : ENGINE_OK;
}

void pgs_verify_free(struct pgs_verify *v) {
  if (v == NULL)
    return;
  pthread_mutex_lock(&v->mu);
  v->closing = 1;
  pthread_cond_broadcast(&v->cv);
  pthread_mutex_unlock(&v->mu);
  for (size_t i = 0; i < v->n; i++) {
    if (v->w[i].started)
      pthread_join(v->w[i].th, NULL);
    if (v->w[i].c != NULL)
      PQfinish(v->w[i].c);
  }
  struct vjob *j = v->head;
  while (j != NULL) {
    struct vjob *n = j->next;
    job_free(j);
    j = n;
  }
  free(v->w);
  free(v->scratch);
  free(v->conninfo);
  pgs_buf_free(&v->failures);
  pthread_mutex_destroy(&v->mu);
  pthread_cond_destroy(&v->cv);
  free(v);
}
