/* Restore of schema dumps, and the restore test.
 *
 * One schema is restored inside ONE transaction:
 *
 *     repository -> pg_restore --exit-on-error --file=- -> psql (our BEGIN ... COMMIT)
 *
 * pg_restore turns the archive read from its stdin into SQL; psql applies it
 * after a preamble we write first (BEGIN, DROP SCHEMA ... CASCADE for
 * --drop-existing, moving an existing schema of the dump's name aside for
 * --as, CREATE EXTENSION IF NOT EXISTS) and before a postamble (the renames
 * and COMMIT). COMMIT is only written once every byte was read from the
 * repository and pg_restore exited 0; on any failure psql is killed, so the
 * server rolls the whole transaction back and the target is untouched. (psql
 * --single-transaction is not used: at end of input it commits, which would
 * commit a truncated stream.) Plain-format dumps skip pg_restore.
 *
 * The restore test (engine check --restore-test) restores every item into a
 * scratch database created for it and has verify.c compare each schema with
 * what the backup recorded (row digests, the schema's definition) on
 * threads of their own while the next one is restored; then it drops the
 * scratch database. The globals item is only checked there, not applied
 * (roles and tablespaces are cluster-wide). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pgschema.h"

enum rs_mode { RS_NORMAL = 0, RS_STDOUT = 1, RS_TEST = 2 };

struct rs {
  struct pgs_inst *in;
  const struct engine_host *h;
  enum rs_mode mode;
  char *as_name;
  int drop_existing;
  int yes;
  int no_owner;
  struct pgs_target t;
  int have_target;
  PGconn *c;     /* the database restored into (the scratch database when testing) */
  PGconn *admin; /* restore test: creates and drops the scratch database */
  char *scratch;
  char *conninfo; /* psql's connection, without password */
  struct pgs_tool restore_tool, psql_tool;
  int have_restore_tool, have_psql_tool;
  unsigned tmp_seq;
  struct pgs_verify *verify; /* restore test: the checks running */
};

/* ---- small helpers --------------------------------------------------------- */

static char *xasprintf_or_null(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf_or_null(const char *fmt, ...) {
  char *s = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&s, fmt, ap) < 0)
    s = NULL;
  va_end(ap);
  return s;
}

/* A growing SQL script. */
struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
};

static void sb_add(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(struct sbuf *b, const char *fmt, ...) {
  if (b->oom)
    return;
  char *s = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&s, fmt, ap);
  va_end(ap);
  if (n < 0) {
    b->oom = 1;
    return;
  }
  if (b->len + (size_t)n + 1 > b->cap) {
    size_t nc = b->cap ? b->cap * 2 : 1024;
    while (nc < b->len + (size_t)n + 1)
      nc *= 2;
    char *np = realloc(b->p, nc);
    if (np == NULL) {
      free(s);
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = nc;
  }
  memcpy(b->p + b->len, s, (size_t)n + 1);
  b->len += (size_t)n;
  free(s);
}

/* Does a schema of this name exist? 1 / 0, -1 on error (message set).
 * *oid (if non-NULL) receives its oid as text (malloc'd). */
static int schema_exists(struct rs *r, const char *name, char **oid) {
  const char *params[] = {name};
  PGresult *res =
      pgs_query(r->in, r->c, "SELECT oid::text FROM pg_catalog.pg_namespace WHERE nspname = $1", 1,
                params, "looking up the target schema");
  if (res == NULL)
    return -1;
  int found = PQntuples(res) > 0;
  if (found && oid != NULL) {
    *oid = strdup(PQgetvalue(res, 0, 0));
    if (*oid == NULL) {
      PQclear(res);
      r->h->set_error(r->h, "out of memory");
      return -1;
    }
  }
  PQclear(res);
  return found;
}

static int valid_schema_name(const struct engine_host *h, const char *name, const char *what) {
  if (name[0] == '\0') {
    h->set_error(h, "%s: the schema name is empty", what);
    return 0;
  }
  if (strlen(name) > 63) {
    h->set_error(h, "%s: schema name '%s' is longer than PostgreSQL's 63 bytes", what, name);
    return 0;
  }
  if (strncmp(name, "pg_", 3) == 0) {
    h->set_error(h, "%s: schema names starting with 'pg_' are reserved by PostgreSQL ('%s')", what,
                 name);
    return 0;
  }
  return 1;
}

static void rs_free(struct rs *r) {
  if (r == NULL)
    return;
  pgs_verify_free(r->verify);
  if (r->c != NULL)
    PQfinish(r->c);
  if (r->admin != NULL)
    PQfinish(r->admin);
  if (r->have_target)
    pgs_target_free(&r->t);
  free(r->scratch);
  free(r->conninfo);
  free(r->as_name);
  free(r);
}

/* ---- begin ----------------------------------------------------------------- */

static int parse_extra(struct rs *r, const struct engine_restore_opts *opts) {
  const struct engine_host *h = r->h;
  int to_stdout = 0, test = 0;
  for (size_t i = 0; opts->extra != NULL && opts->extra[i] != NULL; i++) {
    const char *e = opts->extra[i];
    if (strncmp(e, "as=", 3) == 0) {
      free(r->as_name);
      r->as_name = strdup(e + 3);
      if (r->as_name == NULL) {
        h->set_error(h, "out of memory");
        return ENGINE_ERROR;
      }
    } else if (strcmp(e, "drop_existing=1") == 0) {
      r->drop_existing = 1;
    } else if (strcmp(e, "to_stdout=1") == 0) {
      to_stdout = 1;
    } else if (strcmp(e, "restore_test=1") == 0) {
      test = 1;
    } else if (strcmp(e, "no_owner=1") == 0) {
      r->no_owner = 1;
    } else {
      h->log(h, ENGINE_LOG_DEBUG, "ignoring restore flag '%s' (not used by postgres-schema)", e);
    }
  }
  if (test) {
    /* the scratch database is the test's own: a schema there (the default
     * public schema of a new database) is replaced without asking */
    r->mode = RS_TEST;
    r->drop_existing = 1;
    r->yes = 1;
    return ENGINE_OK;
  }
  if (to_stdout) {
    if (r->as_name != NULL || r->drop_existing) {
      h->set_error(h, "--to-stdout writes the raw dump and nothing else; it cannot be combined "
                      "with --as or --drop-existing");
      return ENGINE_ERROR;
    }
    r->mode = RS_STDOUT;
    return ENGINE_OK;
  }
  if (r->as_name != NULL && !valid_schema_name(h, r->as_name, "--as"))
    return ENGINE_ERROR;
  return ENGINE_OK;
}

static int begin_test(struct rs *r) {
  const struct engine_host *h = r->h;
  r->admin = pgs_connect(r->in, &r->t, NULL);
  if (r->admin == NULL)
    return ENGINE_ERROR;
  PGresult *res =
      pgs_query(r->in, r->admin,
                "SELECT pg_catalog.pg_encoding_to_char(encoding), datcollate, datctype FROM "
                "pg_catalog.pg_database WHERE datname = pg_catalog.current_database()",
                0, NULL, "reading the database's encoding");
  if (res == NULL)
    return ENGINE_ERROR;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  r->scratch = xasprintf_or_null("engine_restore_test_%ld_%d", (long)ts.tv_sec, (int)getpid());
  char *qd = r->scratch ? pgs_quote_ident(r->scratch) : NULL;
  char *enc = PQescapeLiteral(r->admin, PQgetvalue(res, 0, 0), strlen(PQgetvalue(res, 0, 0)));
  char *coll = PQescapeLiteral(r->admin, PQgetvalue(res, 0, 1), strlen(PQgetvalue(res, 0, 1)));
  char *ctype = PQescapeLiteral(r->admin, PQgetvalue(res, 0, 2), strlen(PQgetvalue(res, 0, 2)));
  PQclear(res);
  char *sql =
      qd && enc && coll && ctype
          ? xasprintf_or_null(
                "CREATE DATABASE %s TEMPLATE template0 ENCODING %s LC_COLLATE %s LC_CTYPE %s", qd,
                enc, coll, ctype)
          : NULL;
  PQfreemem(enc);
  PQfreemem(coll);
  PQfreemem(ctype);
  free(qd);
  if (sql == NULL) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  char *what = xasprintf_or_null(
      "creating the scratch database '%s' for the restore test (the user needs CREATEDB)",
      r->scratch);
  int rc = pgs_exec(r->in, r->admin, sql, what ? what : "creating the scratch database");
  free(what);
  free(sql);
  if (rc != ENGINE_OK) {
    free(r->scratch);
    r->scratch = NULL;
    return ENGINE_ERROR;
  }
  h->log(h, ENGINE_LOG_INFO, "restore test: scratch database '%s' created on %s", r->scratch,
         r->t.describe);
  r->c = pgs_connect(r->in, &r->t, r->scratch);
  if (r->c == NULL)
    return ENGINE_ERROR;
  r->conninfo = pgs_target_conninfo(&r->t, r->scratch);
  if (r->conninfo == NULL) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  size_t n = r->in->jobs > 0 ? (size_t)r->in->jobs : 0;
  if (n == 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    n = cpus > 4 ? 4 : cpus > 0 ? (size_t)cpus : 1;
  }
  r->verify = pgs_verify_new(r->in, &r->t, r->scratch, n);
  return r->verify != NULL ? ENGINE_OK : ENGINE_ERROR;
}

static int drop_scratch(struct rs *r) {
  if (r->scratch == NULL || r->admin == NULL)
    return ENGINE_OK;
  if (r->c != NULL) {
    PQfinish(r->c);
    r->c = NULL;
  }
  char *qd = pgs_quote_ident(r->scratch);
  char *sql = qd ? xasprintf_or_null("DROP DATABASE IF EXISTS %s%s", qd,
                                     PQserverVersion(r->admin) >= 130000 ? " WITH (FORCE)" : "")
                 : NULL;
  free(qd);
  if (sql == NULL) {
    r->h->set_error(r->h, "out of memory");
    return ENGINE_ERROR;
  }
  char *what = xasprintf_or_null("dropping the scratch database '%s'", r->scratch);
  int rc = pgs_exec(r->in, r->admin, sql, what ? what : "dropping the scratch database");
  free(what);
  free(sql);
  if (rc == ENGINE_OK)
    r->h->log(r->h, ENGINE_LOG_INFO, "restore test: scratch database '%s' dropped", r->scratch);
  return rc;
}

int pgs_restore_begin(void *inst, const struct engine_restore_opts *opts, void **rctx) {
  struct pgs_inst *in = inst;
  const struct engine_host *h = in->host;
  *rctx = NULL;
  struct rs *r = calloc(1, sizeof(*r));
  if (r == NULL) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  r->in = in;
  r->h = h;
  r->yes = opts->yes;
  r->no_owner = in->no_owner;
  if (parse_extra(r, opts) != ENGINE_OK) {
    rs_free(r);
    return ENGINE_ERROR;
  }
  if (r->mode == RS_STDOUT) {
    *rctx = r;
    return ENGINE_OK;
  }
  if (pgs_target_init(in, opts->target, &r->t) != ENGINE_OK) {
    rs_free(r);
    return ENGINE_ERROR;
  }
  r->have_target = 1;
  if (r->mode == RS_TEST) {
    if (begin_test(r) != ENGINE_OK) {
      drop_scratch(r);
      rs_free(r);
      return ENGINE_ERROR;
    }
    *rctx = r;
    return ENGINE_OK;
  }
  r->c = pgs_connect(in, &r->t, NULL);
  r->conninfo = r->c ? pgs_target_conninfo(&r->t, NULL) : NULL;
  if (r->c == NULL || r->conninfo == NULL) {
    if (r->c != NULL)
      h->set_error(h, "out of memory");
    rs_free(r);
    return ENGINE_ERROR;
  }
  if (r->drop_existing && !r->yes) {
    int exists = 1;
    if (r->as_name != NULL) {
      exists = schema_exists(r, r->as_name, NULL);
      if (exists < 0) {
        rs_free(r);
        return ENGINE_ERROR;
      }
    }
    if (exists) {
      if (r->as_name != NULL)
        h->set_error(h,
                     "--drop-existing would drop schema '%s' in %s (DROP SCHEMA ... CASCADE) and "
                     "replace it with the backup",
                     r->as_name, r->t.describe);
      else
        h->set_error(h,
                     "--drop-existing drops each restored schema that exists in %s (DROP SCHEMA "
                     "... CASCADE) and replaces it with the backup, one transaction per schema",
                     r->t.describe);
      rs_free(r);
      return ENGINE_EXISTS;
    }
  }
  h->log(h, ENGINE_LOG_INFO, "restoring into %s", r->t.describe);
  *rctx = r;
  return ENGINE_OK;
}

/* ---- the data path --------------------------------------------------------- */

struct pump {
  const struct engine_host *h;
  int in_fd, out_fd;
  struct engine_child *src; /* killed when out_fd breaks, so it stops writing */
  int err;                  /* errno of the failure, 0 if none */
  int write_failed;
};

static void *pump_main(void *arg) {
  struct pump *p = arg;
  char *buf = malloc(PGS_IO_BLOCK);
  if (buf == NULL) {
    p->err = ENOMEM;
    p->h->child_kill(p->h, p->src, SIGTERM);
    return NULL;
  }
  for (;;) {
    ssize_t n = read(p->in_fd, buf, PGS_IO_BLOCK);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      p->err = errno;
      break;
    }
    if (n == 0)
      break;
    if (pgs_write_all(p->out_fd, buf, (size_t)n) != 0) {
      p->err = errno;
      p->write_failed = 1;
      p->h->child_kill(p->h, p->src, SIGTERM);
      break;
    }
  }
  free(buf);
  return NULL;
}

static struct engine_child *spawn_child(struct rs *r, const char *file, const char *const *argv,
                                        int out_pipe) {
  struct engine_spawn_opts o = {.struct_size = sizeof(o),
                                .file = file,
                                .argv = argv,
                                .stdin_mode = ENGINE_STDIO_PIPE,
                                .stdout_mode = out_pipe ? ENGINE_STDIO_PIPE : ENGINE_STDIO_NULL,
                                .stderr_mode = ENGINE_STDIO_PIPE};
  pgs_target_spawn_opts(&r->t, &o);
  struct engine_child *c = NULL;
  if (r->h->spawn(r->h, &o, &c) != ENGINE_OK)
    return NULL;
  (void)fcntl(c->stdin_fd, F_SETPIPE_SZ, (int)PGS_IO_BLOCK);
  if (c->stdout_fd >= 0)
    (void)fcntl(c->stdout_fd, F_SETPIPE_SZ, (int)PGS_IO_BLOCK);
  return c;
}

/* What went wrong in the data path, in order of who failed first. */
struct flow {
  uint64_t bytes;
  int reader_failed;
  int reader_short;
  int dest_err; /* errno writing into pg_restore / psql */
  /* restore test: the first bytes of the archive (its table of contents) */
  struct pgs_buf capture;
  size_t capture_max;
};

/* How much of an archive the restore test keeps to name what differs. */
#define PGS_CAPTURE_MAX (16u * 1024u * 1024u)

/* Copy the item's content into fd; stops at EOF, a reader error or a
 * write error. */
static void copy_in(struct rs *r, const struct engine_reader *data, int fd, struct flow *f) {
  char *buf = malloc(PGS_IO_BLOCK);
  if (buf == NULL) {
    f->reader_failed = 1;
    return;
  }
  for (;;) {
    if (r->h->cancelled(r->h)) {
      f->reader_failed = 1;
      break;
    }
    ssize_t n = data->read(data, buf, PGS_IO_BLOCK);
    if (n < 0) {
      f->reader_failed = 1;
      break;
    }
    if (n == 0)
      break;
    if (pgs_write_all(fd, buf, (size_t)n) != 0) {
      f->dest_err = errno;
      break;
    }
    if (f->capture.len < f->capture_max) {
      size_t k = f->capture_max - f->capture.len;
      pgs_buf_add(&f->capture, buf, (size_t)n < k ? (size_t)n : k);
    }
    f->bytes += (uint64_t)n;
  }
  free(buf);
  if (!f->reader_failed && !f->dest_err && data->size > 0 && f->bytes != data->size)
    f->reader_short = 1;
}

static int exited_ok(int status) {
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* ---- checks before a restore ------------------------------------------------ */

struct plan {
  const char *schema; /* as dumped */
  const char *final;  /* as restored */
  char *ps;           /* printable schema */
  int final_exists;
  char *final_oid;
  int schema_exists; /* for --as: the dump's own name exists on the target */
  char *tmp_name;    /* where the existing schema of the dump's name waits during --as */
  int no_owner;
  struct sbuf pre, post;
};

static void plan_free(struct plan *p) {
  free(p->ps);
  free(p->final_oid);
  free(p->tmp_name);
  free(p->pre.p);
  free(p->post.p);
}

/* Objects outside the schema that depend on objects inside it: DROP SCHEMA
 * ... CASCADE would silently drop them too (a view in another tenant's
 * schema, a foreign key from another schema). */
static int check_outside_dependents(struct rs *r, struct plan *p) {
  /* clang-format off */
  static const char sql[] =
      "WITH dep AS (SELECT d.classid, d.objid FROM pg_catalog.pg_depend d WHERE d.deptype IN ('n', 'a') AND ("
      " (d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid IN"
      "   (SELECT oid FROM pg_catalog.pg_class WHERE relnamespace = $1::oid)) OR"
      " (d.refclassid = 'pg_catalog.pg_type'::regclass AND d.refobjid IN"
      "   (SELECT oid FROM pg_catalog.pg_type WHERE typnamespace = $1::oid)) OR"
      " (d.refclassid = 'pg_catalog.pg_proc'::regclass AND d.refobjid IN"
      "   (SELECT oid FROM pg_catalog.pg_proc WHERE pronamespace = $1::oid)))"
      " AND d.classid <> 'pg_catalog.pg_namespace'::regclass) "
      /* a view's dependency is its _RETURN rule: name the view */
      "SELECT DISTINCT CASE WHEN classid = 'pg_catalog.pg_rewrite'::regclass THEN pg_catalog.pg_describe_object("
      "'pg_catalog.pg_class'::regclass, (SELECT ev_class FROM pg_catalog.pg_rewrite WHERE oid = objid), 0) "
      "ELSE pg_catalog.pg_describe_object(classid, objid, 0) END FROM dep WHERE "
      "(CASE classid"
      " WHEN 'pg_catalog.pg_class'::regclass THEN (SELECT relnamespace FROM pg_catalog.pg_class WHERE oid = objid)"
      " WHEN 'pg_catalog.pg_type'::regclass THEN (SELECT typnamespace FROM pg_catalog.pg_type WHERE oid = objid)"
      " WHEN 'pg_catalog.pg_proc'::regclass THEN (SELECT pronamespace FROM pg_catalog.pg_proc WHERE oid = objid)"
      " WHEN 'pg_catalog.pg_constraint'::regclass THEN (SELECT connamespace FROM pg_catalog.pg_constraint WHERE oid = objid)"
      " WHEN 'pg_catalog.pg_operator'::regclass THEN (SELECT oprnamespace FROM pg_catalog.pg_operator WHERE oid = objid)"
      " WHEN 'pg_catalog.pg_attrdef'::regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_attrdef a"
      "   JOIN pg_catalog.pg_class c ON c.oid = a.adrelid WHERE a.oid = objid)"
      " WHEN 'pg_catalog.pg_rewrite'::regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_rewrite w"
      "   JOIN pg_catalog.pg_class c ON c.oid = w.ev_class WHERE w.oid = objid)"
      " WHEN 'pg_catalog.pg_trigger'::regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_trigger g"
      "   JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid WHERE g.oid = objid)"
      " WHEN 'pg_catalog.pg_policy'::regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_policy y"
      "   JOIN pg_catalog.pg_class c ON c.oid = y.polrelid WHERE y.oid = objid)"
      " ELSE NULL END) IS DISTINCT FROM $1::oid ORDER BY 1 LIMIT 6";
  /* clang-format on */
  const char *params[] = {p->final_oid};
  PGresult *res =
      pgs_query(r->in, r->c, sql, 1, params, "looking for objects that depend on the schema");
  if (res == NULL)
    return ENGINE_ERROR;
  int n = PQntuples(res);
  if (n > 0) {
    struct sbuf list = {0};
    for (int i = 0; i < n && i < 5; i++)
      sb_add(&list, "%s%s", i ? "; " : "", PQgetvalue(res, i, 0));
    r->h->set_error(r->h,
                    "schema '%s' in %s is used by objects outside it (%s%s); --drop-existing (DROP "
                    "SCHEMA ... CASCADE) would drop them too, so nothing was changed: restore with "
                    "--as NAME instead, or remove those dependencies first",
                    p->final, r->t.describe, list.p ? list.p : "?", n > 5 ? "; ..." : "");
    free(list.p);
    PQclear(res);
    return ENGINE_ERROR;
  }
  PQclear(res);
  return ENGINE_OK;
}

static int plan_extensions(struct rs *r, struct plan *p, json_t *exts) {
  const struct engine_host *h = r->h;
  size_t i;
  json_t *e;
  json_array_foreach(exts, i, e) {
    const char *name = json_string_value(json_object_get(e, "name"));
    const char *sch = json_string_value(json_object_get(e, "schema"));
    if (name == NULL || sch == NULL)
      continue;
    const char *params[] = {name};
    PGresult *res =
        pgs_query(r->in, r->c,
                  "SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n "
                  "ON n.oid = e.extnamespace WHERE e.extname = $1",
                  1, params, "looking up an extension on the target");
    if (res == NULL)
      return ENGINE_ERROR;
    if (PQntuples(res) > 0) {
      int same = strcmp(PQgetvalue(res, 0, 0), sch) == 0;
      if (!same)
        h->set_error(
            h,
            "extension '%s' is installed in schema '%s' on %s, but the dump of schema '%s' refers "
            "to it in schema '%s'; move it (ALTER EXTENSION %s SET SCHEMA %s) or restore elsewhere",
            name, PQgetvalue(res, 0, 0), r->t.describe, p->ps, sch, name, sch);
      PQclear(res);
      if (!same)
        return ENGINE_ERROR;
      continue;
    }
    PQclear(res);
    if (strcmp(sch, p->schema) == 0) {
      h->set_error(h,
                   "extension '%s' was installed inside schema '%s' itself; pg_dump -n does not "
                   "dump extensions, so create the schema and the extension by hand and restore "
                   "the archive with pg_restore (engine restore --to-stdout)",
                   name, p->ps);
      return ENGINE_ERROR;
    }
    res = pgs_query(r->in, r->c, "SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = $1",
                    1, params, "looking up an available extension");
    if (res == NULL)
      return ENGINE_ERROR;
    int avail = PQntuples(res) > 0;
    PQclear(res);
    if (!avail) {
      h->set_error(h,
                   "the dump of schema '%s' needs extension '%s', which is not available on %s; "
                   "install its package on that server (e.g. postgresql-contrib)",
                   p->ps, name, r->t.describe);
      return ENGINE_ERROR;
    }
    char *qn = pgs_quote_ident(name), *qs = pgs_quote_ident(sch);
    if (qn == NULL || qs == NULL) {
      free(qn);
      free(qs);
      h->set_error(h, "out of memory");
      return ENGINE_ERROR;
    }
    sb_add(&p->pre,
           "CREATE SCHEMA IF NOT EXISTS %s;\nCREATE EXTENSION IF NOT EXISTS %s WITH SCHEMA %s;\n",
           qs, qn, qs);
    h->log(h, ENGINE_LOG_INFO, "schema '%s': creating extension '%s' in schema '%s' first", p->ps,
           name, sch);
    free(qn);
    free(qs);
  }
  return ENGINE_OK;
}

static int plan_roles(struct rs *r, struct plan *p, json_t *roles, const char *format) {
  const struct engine_host *h = r->h;
  struct sbuf missing = {0};
  size_t n_missing = 0, i;
  json_t *v;
  json_array_foreach(roles, i, v) {
    const char *role = json_string_value(v);
    if (role == NULL)
      continue;
    const char *params[] = {role};
    PGresult *res = pgs_query(r->in, r->c, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
                              1, params, "looking up a role on the target");
    if (res == NULL) {
      free(missing.p);
      return ENGINE_ERROR;
    }
    if (PQntuples(res) == 0) {
      sb_add(&missing, "%s'%s'", n_missing ? ", " : "", role);
      n_missing++;
    }
    PQclear(res);
  }
  p->no_owner = r->no_owner;
  if (n_missing > 0) {
    if (strcmp(format, "plain") == 0) {
      h->set_error(
          h,
          "the dump of schema '%s' names role(s) %s that do not exist on %s, and a plain-format "
          "dump cannot drop ownership at restore time; create the roles first",
          p->ps, missing.p ? missing.p : "?", r->t.describe);
      free(missing.p);
      return ENGINE_ERROR;
    }
    h->log(
        h, ENGINE_LOG_WARN,
        "schema '%s': role(s) %s named by the dump do not exist on %s; restoring with --no-owner "
        "--no-acl (objects will belong to the connecting user, grants are not restored)",
        p->ps, missing.p ? missing.p : "?", r->t.describe);
    p->no_owner = 1;
  } else if (p->no_owner && strcmp(format, "plain") != 0) {
    h->log(h, ENGINE_LOG_INFO, "schema '%s': restoring with --no-owner --no-acl as configured",
           p->ps);
  }
  free(missing.p);
  return ENGINE_OK;
}

static int build_plan(struct rs *r, struct plan *p, json_t *meta, const char *format) {
  const struct engine_host *h = r->h;
  int e = schema_exists(r, p->final, &p->final_oid);
  if (e < 0)
    return ENGINE_ERROR;
  p->final_exists = e;
  if (p->final_exists) {
    if (!r->drop_existing) {
      h->set_error(h,
                   "schema '%s' already exists in %s; nothing was changed. Restore under another "
                   "name with --as NAME, or replace it with --drop-existing",
                   p->final, r->t.describe);
      return ENGINE_ERROR;
    }
    if (!r->yes) {
      h->set_error(h, "replacing schema '%s' in %s was not confirmed (--yes)", p->final,
                   r->t.describe);
      return ENGINE_ERROR;
    }
    if (check_outside_dependents(r, p) != ENGINE_OK)
      return ENGINE_ERROR;
  }
  if (strcmp(p->final, p->schema) != 0) {
    e = schema_exists(r, p->schema, NULL);
    if (e < 0)
      return ENGINE_ERROR;
    p->schema_exists = e;
    if (p->schema_exists) {
      /* pg_restore creates the dump's own schema name; the existing one
       * waits under a temporary name inside the same transaction, so other
       * sessions never see it renamed */
      for (int tries = 0; tries < 100 && p->tmp_name == NULL; tries++) {
        char *cand = xasprintf_or_null("engine_restore_tmp_%d_%u", (int)getpid(), ++r->tmp_seq);
        if (cand == NULL)
          break;
        int x = schema_exists(r, cand, NULL);
        if (x < 0) {
          free(cand);
          return ENGINE_ERROR;
        }
        if (x == 0)
          p->tmp_name = cand;
        else
          free(cand);
      }
      if (p->tmp_name == NULL) {
        h->set_error(h, "unable to choose a temporary schema name for the restore of '%s'", p->ps);
        return ENGINE_ERROR;
      }
    }
  }
  char *qf = pgs_quote_ident(p->final), *qs = pgs_quote_ident(p->schema);
  char *qt = p->tmp_name ? pgs_quote_ident(p->tmp_name) : NULL;
  if (qf == NULL || qs == NULL || (p->tmp_name && qt == NULL)) {
    free(qf);
    free(qs);
    free(qt);
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  sb_add(&p->pre, "SET client_min_messages = warning;\nBEGIN;\n");
  if (p->final_exists)
    sb_add(&p->pre, "DROP SCHEMA %s CASCADE;\n", qf);
  if (p->tmp_name)
    sb_add(&p->pre, "ALTER SCHEMA %s RENAME TO %s;\n", qs, qt);
  int rc = plan_extensions(r, p, json_object_get(meta, "extensions"));
  if (rc == ENGINE_OK)
    rc = plan_roles(r, p, json_object_get(meta, "roles"), format);
  /* the restored SQL starts with its own SET commands; a blank line keeps
   * our preamble a separate statement whatever the stream starts with */
  sb_add(&p->pre, "\n");
  sb_add(&p->post, "\n");
  if (strcmp(p->final, p->schema) != 0)
    sb_add(&p->post, "ALTER SCHEMA %s RENAME TO %s;\n", qs, qf);
  if (p->tmp_name)
    sb_add(&p->post, "ALTER SCHEMA %s RENAME TO %s;\n", qt, qs);
  sb_add(&p->post, "COMMIT;\n");
  free(qf);
  free(qs);
  free(qt);
  if (rc == ENGINE_OK && (p->pre.oom || p->post.oom)) {
    h->set_error(h, "out of memory");
    rc = ENGINE_ERROR;
  }
  return rc;
}

/* ---- after a restore --------------------------------------------------------- */

/* plpgsql and SQL function bodies are text: after --as they still name the
 * old schema and would use its objects at run time. */
static void warn_old_schema_references(struct rs *r, const struct plan *p) {
  const char *params[] = {p->final, p->schema};
  PGresult *res =
      pgs_query(r->in, r->c,
                "SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p JOIN "
                "pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 AND "
                "(pg_catalog.strpos(pg_catalog.lower(p.prosrc), pg_catalog.lower($2)) > 0 OR "
                "pg_catalog.strpos(pg_catalog.lower(pg_catalog.array_to_string(p.proconfig, ',')), "
                "pg_catalog.lower($2)) > 0) ORDER BY 1",
                2, params, "looking for functions that name the old schema");
  if (res == NULL) {
    r->h->log(r->h, ENGINE_LOG_WARN,
              "schema '%s': unable to check function bodies for the old schema name '%s'", p->final,
              p->ps);
    return;
  }
  int n = PQntuples(res);
  if (n > 0) {
    struct sbuf list = {0};
    for (int i = 0; i < n && i < 10; i++)
      sb_add(&list, "%s%s", i ? ", " : "", PQgetvalue(res, i, 0));
    r->h->log(r->h, ENGINE_LOG_WARN,
              "schema '%s' restored from '%s': %d function(s) still name '%s' in their body or "
              "settings and will use that schema's objects, not the restored ones: %s%s",
              p->final, p->ps, n, p->ps, list.p ? list.p : "?", n > 10 ? ", ..." : "");
    free(list.p);
  }
  PQclear(res);
}

/* ---- one item ---------------------------------------------------------------- */

static int to_stdout(struct rs *r, const struct engine_item *item, const struct engine_reader *data,
                     const char *format) {
  const struct engine_host *h = r->h;
  if (strcmp(format, "plain") != 0 && isatty(STDOUT_FILENO)) {
    h->set_error(h,
                 "refusing to write the binary pg_dump archive of '%.*s' to a terminal; redirect "
                 "standard output to a file or a pipe (e.g. | pg_restore -l)",
                 (int)item->name_len, item->name);
    return ENGINE_ERROR;
  }
  struct flow f = {0};
  copy_in(r, data, STDOUT_FILENO, &f);
  if (f.reader_failed || f.reader_short) {
    h->set_error(h, "reading the dump of '%.*s' from the repository failed after %llu bytes",
                 (int)item->name_len, item->name, (unsigned long long)f.bytes);
    return ENGINE_ERROR;
  }
  if (f.dest_err) {
    h->set_error(h, "writing the dump of '%.*s' to standard output failed after %llu bytes: %s",
                 (int)item->name_len, item->name, (unsigned long long)f.bytes,
                 strerror(f.dest_err));
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

static int tools_for(struct rs *r, json_t *meta, const char *format, const char *ps) {
  const struct engine_host *h = r->h;
  if (!r->have_psql_tool) {
    if (pgs_tool_probe(r->in, r->in->psql, "psql", &r->psql_tool) != ENGINE_OK)
      return ENGINE_ERROR;
    r->have_psql_tool = 1;
  }
  if (strcmp(format, "plain") == 0)
    return ENGINE_OK;
  if (!r->have_restore_tool) {
    if (pgs_tool_probe(r->in, r->in->pg_restore, "pg_restore", &r->restore_tool) != ENGINE_OK)
      return ENGINE_ERROR;
    r->have_restore_tool = 1;
  }
  json_t *dv = json_object_get(meta, "pg_dump_version_num");
  if (json_is_integer(dv) &&
      pgs_major(r->restore_tool.version_num) < pgs_major((int)json_integer_value(dv))) {
    h->set_error(
        h,
        "pg_restore '%s' is version %s, older than the pg_dump %s that wrote the archive of schema "
        "'%s'; it cannot read it: point the 'pg_restore' option at a client of version %s or later",
        r->in->pg_restore, r->restore_tool.version,
        json_string_value(json_object_get(meta, "pg_dump_version"))
            ? json_string_value(json_object_get(meta, "pg_dump_version"))
            : "?",
        ps,
        json_string_value(json_object_get(meta, "pg_dump_version"))
            ? json_string_value(json_object_get(meta, "pg_dump_version"))
            : "?");
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

static int run_restore(struct rs *r, struct plan *p, const struct engine_reader *data,
                       const char *format, struct pgs_buf *capture) {
  const struct engine_host *h = r->h;
  int custom = strcmp(format, "plain") != 0;
  char *dbarg = xasprintf_or_null("--dbname=%s", r->conninfo);
  if (dbarg == NULL) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  const char *psql_argv[] = {
      r->in->psql, "--no-psqlrc", "--quiet", "--no-password", "--set=ON_ERROR_STOP=1", dbarg, NULL};
  struct engine_child *psql = spawn_child(r, r->in->psql, psql_argv, 0);
  free(dbarg);
  if (psql == NULL)
    return ENGINE_ERROR;
  struct engine_child *pgr = NULL;
  if (custom) {
    const char *argv[6] = {r->in->pg_restore, "--exit-on-error", "--file=-", NULL, NULL, NULL};
    if (p->no_owner) {
      argv[3] = "--no-owner";
      argv[4] = "--no-acl";
    }
    pgr = spawn_child(r, r->in->pg_restore, argv, 1);
    if (pgr == NULL) {
      h->child_kill(h, psql, SIGKILL);
      int st;
      h->child_wait(h, psql, &st);
      h->child_free(h, psql);
      return ENGINE_ERROR;
    }
  }
  struct flow f = {.capture_max = capture != NULL && custom ? PGS_CAPTURE_MAX : 0};
  int pre_err = pgs_write_all(psql->stdin_fd, p->pre.p, p->pre.len) != 0 ? errno : 0;
  struct pump pump = {
      .h = h, .in_fd = pgr ? pgr->stdout_fd : -1, .out_fd = psql->stdin_fd, .src = pgr};
  pthread_t th;
  int thread_started = 0;
  if (!pre_err && custom) {
    int e = pthread_create(&th, NULL, pump_main, &pump);
    if (e != 0) {
      pre_err = e;
    } else {
      thread_started = 1;
    }
  }
  if (!pre_err)
    copy_in(r, data, custom ? pgr->stdin_fd : psql->stdin_fd, &f);
  int pgr_status = 0, pgr_ok = 1;
  if (custom) {
    close(pgr->stdin_fd);
    pgr->stdin_fd = -1;
    if (!thread_started)
      h->child_kill(h, pgr, SIGTERM);
    else
      pthread_join(th, NULL);
    close(pgr->stdout_fd);
    pgr->stdout_fd = -1;
    pgr_ok = h->child_wait(h, pgr, &pgr_status) == ENGINE_OK && exited_ok(pgr_status);
  }
  int ok = !pre_err && !f.reader_failed && !f.reader_short && !f.dest_err && pgr_ok && !pump.err;
  int post_err = 0;
  if (ok)
    post_err = pgs_write_all(psql->stdin_fd, p->post.p, p->post.len) != 0 ? errno : 0;
  else
    /* never let psql reach the end of its input: the transaction must die
     * with the connection, not be committed half-restored */
    h->child_kill(h, psql, SIGKILL);
  close(psql->stdin_fd);
  psql->stdin_fd = -1;
  int psql_status = 0;
  int psql_waited = h->child_wait(h, psql, &psql_status) == ENGINE_OK;
  int psql_ok = psql_waited && exited_ok(psql_status);
  int psql_failed_itself = psql_waited && WIFEXITED(psql_status) && WEXITSTATUS(psql_status) != 0;
  int rc = ENGINE_OK;
  char st[96];
  if (ok && !post_err && psql_ok) {
    rc = ENGINE_OK;
  } else if (psql_failed_itself || (ok && !psql_ok)) {
    pgs_describe_status(psql_status, st, sizeof(st));
    h->set_error(h, "restoring schema '%s' into %s failed, nothing was changed (psql %s): %s",
                 p->ps, r->t.describe, st, pgs_stderr_tail(r->in, psql));
    rc = ENGINE_ERROR;
  } else if (f.reader_failed || f.reader_short) {
    h->set_error(h,
                 "reading the dump of schema '%s' from the repository failed after %llu of %llu "
                 "bytes; nothing was changed",
                 p->ps, (unsigned long long)f.bytes, (unsigned long long)data->size);
    rc = ENGINE_ERROR;
  } else if (custom && !pgr_ok) {
    pgs_describe_status(pgr_status, st, sizeof(st));
    h->set_error(h, "pg_restore failed on the archive of schema '%s' (%s), nothing was changed: %s",
                 p->ps, st, pgs_stderr_tail(r->in, pgr));
    rc = ENGINE_ERROR;
  } else {
    int e = pre_err ? pre_err : f.dest_err ? f.dest_err : pump.err ? pump.err : post_err;
    h->set_error(h, "restoring schema '%s' into %s failed, nothing was changed: %s", p->ps,
                 r->t.describe, e ? strerror(e) : "the restore pipeline broke");
    rc = ENGINE_ERROR;
  }
  if (pgr != NULL)
    h->child_free(h, pgr);
  h->child_free(h, psql);
  if (capture != NULL)
    *capture = f.capture;
  else
    pgs_buf_free(&f.capture);
  return rc;
}

/* The whole (small) content of an item. */
static int read_all(struct rs *r, const struct engine_reader *data, char **out, size_t *len) {
  const struct engine_host *h = r->h;
  size_t cap = data->size > 0 && data->size < (64u << 20) ? (size_t)data->size + 1 : 65536, n = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (buf == NULL) {
      h->set_error(h, "out of memory");
      return ENGINE_ERROR;
    }
    if (n == cap) {
      if (cap >= (256u << 20)) {
        free(buf);
        h->set_error(h, "the globals item is larger than 256 MiB");
        return ENGINE_ERROR;
      }
      char *nb = realloc(buf, cap * 2);
      if (nb == NULL) {
        free(buf);
        buf = NULL;
        continue;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t k = data->read(data, buf + n, cap - n);
    if (k < 0) {
      free(buf);
      h->set_error(h, "reading the item from the repository failed after %zu bytes", n);
      return ENGINE_ERROR;
    }
    if (k == 0)
      break;
    n += (size_t)k;
  }
  *out = buf;
  *len = n;
  return ENGINE_OK;
}

static int restore_globals(struct rs *r, const struct engine_item *item,
                           const struct engine_reader *data) {
  const struct engine_host *h = r->h;
  if (r->as_name != NULL) {
    h->set_error(h, "--as renames a schema; '%.*s' holds the cluster's globals, not a schema",
                 (int)item->name_len, item->name);
    return ENGINE_ERROR;
  }
  char *doc = NULL, *summary = NULL;
  size_t len = 0;
  if (read_all(r, data, &doc, &len) != ENGINE_OK)
    return ENGINE_ERROR;
  int rc;
  if (r->mode == RS_TEST) {
    rc = pgs_globals_check(r->in, doc, len, &summary);
    if (rc == ENGINE_OK)
      h->log(h, ENGINE_LOG_INFO, "restore test of the globals: %s", summary ? summary : "ok");
  } else {
    rc = pgs_globals_apply(r->in, r->c, doc, len, r->t.describe, &summary);
    if (rc == ENGINE_OK)
      h->log(h, ENGINE_LOG_INFO, "globals restored into %s: %s", r->t.describe,
             summary ? summary : "done");
  }
  free(summary);
  free(doc);
  return rc;
}

int pgs_restore_item(void *rctx, const struct engine_item *item, const struct engine_reader *data) {
  struct rs *r = rctx;
  const struct engine_host *h = r->h;
  if (item->type != ENGINE_ITEM_STREAM || data == NULL) {
    h->set_error(h, "item '%.*s' is not a schema dump (type %d)", (int)item->name_len, item->name,
                 (int)item->type);
    return ENGINE_ERROR;
  }
  json_error_t je;
  json_t *meta = json_loads(item->meta_json ? item->meta_json : "{}", 0, &je);
  if (!json_is_object(meta)) {
    json_decref(meta);
    h->set_error(h, "item '%.*s': its metadata is not a JSON object (%s)", (int)item->name_len,
                 item->name, je.text);
    return ENGINE_ERROR;
  }
  const char *kind = json_string_value(json_object_get(meta, "kind"));
  const char *format = json_string_value(json_object_get(meta, "format"));
  if (format == NULL)
    format = "custom";
  if (kind != NULL && strcmp(kind, "globals") == 0) {
    int rc =
        r->mode == RS_STDOUT ? to_stdout(r, item, data, "plain") : restore_globals(r, item, data);
    json_decref(meta);
    return rc;
  }
  if (r->mode == RS_STDOUT) {
    int rc = to_stdout(r, item, data, format);
    json_decref(meta);
    return rc;
  }
  char *item_name = strndup(item->name, item->name_len);
  const char *schema = json_string_value(json_object_get(meta, "schema"));
  if (schema == NULL)
    schema = item_name;
  struct plan p = {.schema = schema,
                   .final = r->mode == RS_NORMAL && r->as_name ? r->as_name : schema};
  p.ps = schema ? pgs_printable(schema) : NULL;
  int rc = ENGINE_ERROR;
  if (item_name == NULL || p.ps == NULL) {
    h->set_error(h, "out of memory");
    goto out;
  }
  if (strcmp(format, "custom") != 0 && strcmp(format, "plain") != 0) {
    h->set_error(h, "schema '%s': unknown dump format '%s' in the manifest", p.ps, format);
    goto out;
  }
  if (!valid_schema_name(h, schema, "the manifest") ||
      tools_for(r, meta, format, p.ps) != ENGINE_OK || build_plan(r, &p, meta, format) != ENGINE_OK)
    goto out;
  struct pgs_buf capture = {0};
  rc = run_restore(r, &p, data, format, r->mode == RS_TEST ? &capture : NULL);
  if (rc != ENGINE_OK) {
    pgs_buf_free(&capture);
    goto out;
  }
  if (r->mode == RS_TEST) {
    /* checked on the verifier threads while the next schema is restored */
    rc = pgs_verify_submit(r->verify, schema, meta, p.no_owner, capture.oom ? NULL : capture.p,
                           capture.oom ? 0 : capture.len);
    if (capture.oom)
      pgs_buf_free(&capture);
    if (rc != ENGINE_OK)
      h->set_error(h, "out of memory");
    goto out;
  }
  if (strcmp(p.final, p.schema) != 0)
    warn_old_schema_references(r, &p);
  if (strcmp(p.final, p.schema) != 0)
    h->log(h, ENGINE_LOG_INFO, "schema '%s' restored as '%s' into %s", p.ps, p.final,
           r->t.describe);
  else
    h->log(h, ENGINE_LOG_INFO, "schema '%s' %s in %s", p.ps,
           p.final_exists ? "replaced" : "restored", r->t.describe);
out:
  plan_free(&p);
  free(item_name);
  json_decref(meta);
  return rc;
}

int pgs_restore_end(void *rctx, int status) {
  struct rs *r = rctx;
  if (r == NULL)
    return ENGINE_OK;
  (void)status;
  int rc = ENGINE_OK;
  if (r->verify != NULL) {
    size_t ok = 0, failed = 0;
    char *why = NULL;
    rc = pgs_verify_finish(r->verify, &ok, &failed, &why);
    if (rc != ENGINE_OK)
      r->h->set_error(r->h,
                      "restore test FAILED for %zu of %zu schema(s) in scratch database "
                      "'%s': %s",
                      failed, ok + failed, r->scratch ? r->scratch : "?",
                      why ? why : "(out of memory describing it)");
    free(why);
    pgs_verify_free(r->verify);
    r->verify = NULL;
  }
  if (r->mode == RS_TEST && drop_scratch(r) != ENGINE_OK)
    rc = ENGINE_ERROR;
  rs_free(r);
  return rc;
}
