/* Backup: one exported snapshot, one pg_dump per matching schema.
 *
 * A control connection opens a REPEATABLE READ transaction and exports its
 * snapshot; every pg_dump imports it with --snapshot, so all schemas are
 * dumped as of the same instant. The transaction stays open (idle) until the
 * last pg_dump finished, because an exported snapshot dies with it. The
 * control connection also lists the schemas and, per schema, counts rows
 * exactly and finds the extensions and roles the dump will need, all inside
 * that same snapshot, so the manifest describes exactly what was dumped.
 * pg_dump's stdout is streamed straight into the emitter: no temp files. */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pgschema.h"

struct bk {
  struct pgs_inst *in;
  const struct engine_host *h;
  const struct engine_emitter *em;
  struct pgs_target t;
  PGconn *c;
  char *conninfo;
  struct pgs_tool dump;
  char snapshot[128];
  char *database;
  const char *server_version;
  int server_num;
};

/* ---- per-schema metadata --------------------------------------------------- */

static const char *kind_name(char k) {
  switch (k) {
  case 'r':
    return "table";
  case 'p':
    return "partitioned table";
  case 'm':
    return "materialized view";
  default:
    return "relation";
  }
}

static int collect_tables(struct bk *b, const char *oid, const char *schema, json_t *meta) {
  /* clang-format off */
  static const char sql[] =
      "SELECT c.relname, c.relkind::text, c.relispopulated FROM pg_catalog.pg_class c "
      "WHERE c.relnamespace = $1::oid AND c.relkind IN ('r', 'p', 'm') "
      "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = "
      "'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') "
      "ORDER BY c.relname COLLATE \"C\"";
  /* clang-format on */
  const char *params[] = {oid};
  PGresult *r = pgs_query(b->in, b->c, sql, 1, params, "listing the tables of the schema");
  if (r == NULL)
    return ENGINE_ERROR;
  char *qs = pgs_quote_ident(schema);
  json_t *tables = json_array();
  int64_t total = 0;
  int rc = qs && tables ? ENGINE_OK : ENGINE_ERROR;
  if (rc != ENGINE_OK)
    b->h->set_error(b->h, "out of memory");
  for (int i = 0; i < PQntuples(r) && rc == ENGINE_OK; i++) {
    const char *name = PQgetvalue(r, i, 0);
    char kind = PQgetvalue(r, i, 1)[0];
    int populated = PQgetvalue(r, i, 2)[0] == 't';
    json_t *row = json_pack("{s:s, s:s}", "name", name, "kind", kind_name(kind));
    if (row == NULL) {
      b->h->set_error(b->h, "out of memory");
      rc = ENGINE_ERROR;
      break;
    }
    /* Partitioned parents hold no rows (their partitions are counted), and
     * an unpopulated materialized view cannot be read; both stay null. */
    if (kind == 'r' || (kind == 'm' && populated)) {
      char *qt = pgs_quote_ident(name);
      char *q = NULL;
      if (qt == NULL || asprintf(&q, "SELECT count(*) FROM ONLY %s.%s", qs, qt) < 0) {
        free(qt);
        json_decref(row);
        b->h->set_error(b->h, "out of memory");
        rc = ENGINE_ERROR;
        break;
      }
      free(qt);
      char *what = NULL;
      if (asprintf(&what, "counting the rows of %s '%s'", kind_name(kind), name) < 0)
        what = NULL;
      PGresult *cr = pgs_query(b->in, b->c, q, 0, NULL, what ? what : "counting rows");
      free(what);
      free(q);
      if (cr == NULL) {
        json_decref(row);
        rc = ENGINE_ERROR;
        break;
      }
      long long n = strtoll(PQgetvalue(cr, 0, 0), NULL, 10);
      PQclear(cr);
      total += n;
      json_object_set_new(row, "rows", json_integer(n));
    } else {
      json_object_set_new(row, "rows", json_null());
    }
    json_array_append_new(tables, row);
  }
  PQclear(r);
  free(qs);
  if (rc != ENGINE_OK) {
    json_decref(tables);
    return rc;
  }
  json_object_set_new(meta, "table_count", json_integer((json_int_t)json_array_size(tables)));
  json_object_set_new(meta, "total_rows", json_integer(total));
  json_object_set_new(meta, "tables", tables);
  return ENGINE_OK;
}

/* Extensions whose member objects (types, functions, operator classes ...)
 * the schema's own objects depend on, plus extensions installed into the
 * schema itself. pg_dump -n dumps neither, so a restore must create them. */
static int collect_extensions(struct bk *b, const char *oid, json_t *meta) {
  /* clang-format off */
  static const char sql[] =
      "WITH objs(classid, objid) AS ("
      " SELECT 'pg_catalog.pg_class'::regclass, c.oid FROM pg_catalog.pg_class c WHERE c.relnamespace = $1::oid"
      " UNION ALL SELECT 'pg_catalog.pg_type'::regclass, t.oid FROM pg_catalog.pg_type t WHERE t.typnamespace = $1::oid"
      " UNION ALL SELECT 'pg_catalog.pg_proc'::regclass, p.oid FROM pg_catalog.pg_proc p WHERE p.pronamespace = $1::oid"
      " UNION ALL SELECT 'pg_catalog.pg_constraint'::regclass, k.oid FROM pg_catalog.pg_constraint k WHERE k.connamespace = $1::oid"
      " UNION ALL SELECT 'pg_catalog.pg_operator'::regclass, o.oid FROM pg_catalog.pg_operator o WHERE o.oprnamespace = $1::oid"
      " UNION ALL SELECT 'pg_catalog.pg_attrdef'::regclass, a.oid FROM pg_catalog.pg_attrdef a"
      "   JOIN pg_catalog.pg_class c ON c.oid = a.adrelid WHERE c.relnamespace = $1::oid"
      " UNION ALL SELECT 'pg_catalog.pg_rewrite'::regclass, w.oid FROM pg_catalog.pg_rewrite w"
      "   JOIN pg_catalog.pg_class c ON c.oid = w.ev_class WHERE c.relnamespace = $1::oid"
      " UNION ALL SELECT 'pg_catalog.pg_trigger'::regclass, g.oid FROM pg_catalog.pg_trigger g"
      "   JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid WHERE c.relnamespace = $1::oid"
      " UNION ALL SELECT 'pg_catalog.pg_policy'::regclass, y.oid FROM pg_catalog.pg_policy y"
      "   JOIN pg_catalog.pg_class c ON c.oid = y.polrelid WHERE c.relnamespace = $1::oid"
      "), refs(classid, objid) AS ("
      " SELECT d.refclassid, d.refobjid FROM objs o JOIN pg_catalog.pg_depend d"
      "   ON d.classid = o.classid AND d.objid = o.objid AND d.deptype IN ('n', 'a')"
      " WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend m WHERE m.classid = o.classid"
      "   AND m.objid = o.objid AND m.deptype = 'e')"
      "), refs2(classid, objid) AS ("
      /* a column of type citext[] depends on the array type, whose element
       * type is the extension's member */
      " SELECT classid, objid FROM refs"
      " UNION SELECT 'pg_catalog.pg_type'::regclass, t.typelem FROM refs r JOIN pg_catalog.pg_type t"
      "   ON r.classid = 'pg_catalog.pg_type'::regclass AND t.oid = r.objid AND t.typelem <> 0"
      ") "
      "SELECT e.extname, e.extversion, n.nspname FROM pg_catalog.pg_extension e"
      " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
      " WHERE e.extnamespace = $1::oid OR e.oid IN (SELECT x.refobjid FROM refs2 r"
      "   JOIN pg_catalog.pg_depend x ON x.classid = r.classid AND x.objid = r.objid"
      "   AND x.refclassid = 'pg_catalog.pg_extension'::regclass AND x.deptype = 'e')"
      " ORDER BY e.extname COLLATE \"C\"";
  /* clang-format on */
  const char *params[] = {oid};
  PGresult *r = pgs_query(b->in, b->c, sql, 1, params, "finding the extensions the schema uses");
  if (r == NULL)
    return ENGINE_ERROR;
  json_t *exts = json_array();
  for (int i = 0; i < PQntuples(r); i++)
    json_array_append_new(exts, json_pack("{s:s, s:s, s:s}", "name", PQgetvalue(r, i, 0), "version",
                                          PQgetvalue(r, i, 1), "schema", PQgetvalue(r, i, 2)));
  PQclear(r);
  json_object_set_new(meta, "extensions", exts);
  return ENGINE_OK;
}

/* Every role the dump will name: owners and grantees of the schema's
 * objects and its default privileges. A restore on a server lacking one of
 * them must drop ownership and grants (--no-owner --no-acl). */
static int collect_roles(struct bk *b, const char *oid, json_t *meta) {
  /* clang-format off */
  static const char sql[] =
      "SELECT DISTINCT r.rolname FROM ("
      " SELECT nspowner AS o FROM pg_catalog.pg_namespace WHERE oid = $1::oid"
      " UNION SELECT (pg_catalog.aclexplode(nspacl)).grantee FROM pg_catalog.pg_namespace WHERE oid = $1::oid"
      " UNION SELECT relowner FROM pg_catalog.pg_class WHERE relnamespace = $1::oid"
      " UNION SELECT (pg_catalog.aclexplode(relacl)).grantee FROM pg_catalog.pg_class WHERE relnamespace = $1::oid"
      " UNION SELECT (pg_catalog.aclexplode(a.attacl)).grantee FROM pg_catalog.pg_attribute a"
      "   JOIN pg_catalog.pg_class c ON c.oid = a.attrelid WHERE c.relnamespace = $1::oid AND a.attacl IS NOT NULL"
      " UNION SELECT proowner FROM pg_catalog.pg_proc WHERE pronamespace = $1::oid"
      " UNION SELECT (pg_catalog.aclexplode(proacl)).grantee FROM pg_catalog.pg_proc WHERE pronamespace = $1::oid"
      " UNION SELECT typowner FROM pg_catalog.pg_type WHERE typnamespace = $1::oid"
      " UNION SELECT (pg_catalog.aclexplode(typacl)).grantee FROM pg_catalog.pg_type WHERE typnamespace = $1::oid"
      " UNION SELECT oprowner FROM pg_catalog.pg_operator WHERE oprnamespace = $1::oid"
      " UNION SELECT collowner FROM pg_catalog.pg_collation WHERE collnamespace = $1::oid"
      " UNION SELECT cfgowner FROM pg_catalog.pg_ts_config WHERE cfgnamespace = $1::oid"
      " UNION SELECT dictowner FROM pg_catalog.pg_ts_dict WHERE dictnamespace = $1::oid"
      " UNION SELECT conowner FROM pg_catalog.pg_conversion WHERE connamespace = $1::oid"
      " UNION SELECT pg_catalog.unnest(y.polroles) FROM pg_catalog.pg_policy y"
      "   JOIN pg_catalog.pg_class c ON c.oid = y.polrelid WHERE c.relnamespace = $1::oid"
      " UNION SELECT defaclrole FROM pg_catalog.pg_default_acl WHERE defaclnamespace = $1::oid"
      " UNION SELECT (pg_catalog.aclexplode(defaclacl)).grantee FROM pg_catalog.pg_default_acl"
      "   WHERE defaclnamespace = $1::oid"
      ") s JOIN pg_catalog.pg_roles r ON r.oid = s.o ORDER BY 1";
  /* clang-format on */
  const char *params[] = {oid};
  PGresult *r =
      pgs_query(b->in, b->c, sql, 1, params, "listing the roles the schema's objects name");
  if (r == NULL)
    return ENGINE_ERROR;
  json_t *roles = json_array();
  for (int i = 0; i < PQntuples(r); i++)
    json_array_append_new(roles, json_string(PQgetvalue(r, i, 0)));
  PQclear(r);
  json_object_set_new(meta, "roles", roles);
  return ENGINE_OK;
}

static json_t *schema_meta(struct bk *b, const char *oid, const char *schema, json_t *dump_argv) {
  json_t *meta = json_pack(
      "{s:s, s:s, s:s, s:i, s:s, s:i, s:s, s:s, s:i, s:O}", "schema", schema, "database",
      b->database, "server_version", b->server_version, "server_version_num", b->server_num,
      "pg_dump_version", b->dump.version, "pg_dump_version_num", b->dump.version_num, "snapshot_id",
      b->snapshot, "format", b->in->format == PGS_FORMAT_PLAIN ? "plain" : "custom", "compression",
      b->in->format == PGS_FORMAT_PLAIN ? 0 : b->in->compress_level, "dump_options", dump_argv);
  if (meta == NULL) {
    b->h->set_error(b->h, "out of memory");
    return NULL;
  }
  if (collect_tables(b, oid, schema, meta) != ENGINE_OK ||
      (b->in->extensions_auto && collect_extensions(b, oid, meta) != ENGINE_OK) ||
      (!b->in->extensions_auto && json_object_set_new(meta, "extensions", json_array()) != 0) ||
      collect_roles(b, oid, meta) != ENGINE_OK) {
    json_decref(meta);
    return NULL;
  }
  return meta;
}

/* ---- pg_dump ------------------------------------------------------------- */

/* argv of pg_dump; the strings are owned by *store (freed by the caller). */
static int dump_argv(struct bk *b, const char *schema, char ***argv_out, json_t **recorded) {
  char *pattern = pgs_quote_ident(schema); /* a quoted pg_dump pattern is literal */
  char **v = calloc(12, sizeof(*v));
  if (pattern == NULL || v == NULL) {
    free(pattern);
    free(v);
    return -1;
  }
  size_t n = 0;
  int ok = 1;
  v[n++] = strdup(b->dump.path);
  v[n++] = strdup(b->in->format == PGS_FORMAT_PLAIN ? "--format=plain" : "--format=custom");
  if (b->in->format == PGS_FORMAT_CUSTOM)
    ok &= asprintf(&v[n++], "--compress=%d", b->in->compress_level) >= 0;
  v[n++] = strdup("--no-password");
  ok &= asprintf(&v[n++], "--snapshot=%s", b->snapshot) >= 0;
  ok &= asprintf(&v[n++], "--schema=%s", pattern) >= 0;
  ok &= asprintf(&v[n++], "--dbname=%s", b->conninfo) >= 0;
  free(pattern);
  for (size_t i = 0; i < n; i++)
    ok &= v[i] != NULL;
  json_t *rec = json_array();
  /* the recorded options leave out the program and the connection */
  for (size_t i = 1; ok && rec && i + 1 < n; i++)
    json_array_append_new(rec, json_string(v[i]));
  if (!ok || rec == NULL) {
    for (size_t i = 0; i < n; i++)
      free(v[i]);
    free(v);
    json_decref(rec);
    return -1;
  }
  *argv_out = v;
  *recorded = rec;
  return 0;
}

static void free_argv(char **v) {
  for (size_t i = 0; v && v[i]; i++)
    free(v[i]);
  free(v);
}

/* Ends the current item as failed with a formatted message. */
static int fail_item(struct bk *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail_item(struct bk *b, const char *fmt, ...) {
  char *msg = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  va_end(ap);
  int rc = b->em->item_end(b->em, ENGINE_ERROR, NULL, msg ? msg : "pg_dump failed (out of memory)");
  free(msg);
  return rc;
}

/* Returns ENGINE_OK to go on with the next schema (also after this one
 * failed), ENGINE_ERROR when the run must stop (cancelled, emitter failed,
 * control connection lost). */
static int dump_schema(struct bk *b, const char *oid, const char *schema) {
  const struct engine_host *h = b->h;
  char *pn = pgs_printable(schema);
  const char *ps = pn ? pn : schema;
  char **argv = NULL;
  json_t *recorded = NULL;
  if (dump_argv(b, schema, &argv, &recorded) != 0) {
    free(pn);
    h->set_error(h, "unable to prepare pg_dump for schema '%s': out of memory", ps);
    return ENGINE_ERROR;
  }
  /* A savepoint keeps one schema's failing query (a table it may not read)
   * from aborting the snapshot transaction the other schemas still need. */
  if (pgs_exec(b->in, b->c, "SAVEPOINT engine_schema", "SAVEPOINT") != ENGINE_OK) {
    free(pn);
    free_argv(argv);
    json_decref(recorded);
    return ENGINE_ERROR;
  }
  b->in->last_error[0] = '\0';
  json_t *meta = schema_meta(b, oid, schema, recorded);
  json_decref(recorded);
  if (meta == NULL) {
    char msg[1400];
    snprintf(msg, sizeof(msg), "schema '%s' skipped: %s", ps,
             b->in->last_error[0] ? b->in->last_error
                                  : "reading its catalog in the snapshot failed");
    PGresult *rb = PQexec(b->c, "ROLLBACK TO SAVEPOINT engine_schema");
    int alive = rb && PQresultStatus(rb) == PGRES_COMMAND_OK;
    PQclear(rb);
    b->em->warn(b->em, schema, msg);
    free(pn);
    free_argv(argv);
    if (!alive) {
      h->set_error(h, "the control connection to %s was lost while reading schema '%s'",
                   b->t.describe, ps);
      return ENGINE_ERROR;
    }
    return ENGINE_OK;
  }
  if (pgs_exec(b->in, b->c, "RELEASE SAVEPOINT engine_schema", "RELEASE SAVEPOINT") != ENGINE_OK) {
    json_decref(meta);
    free(pn);
    free_argv(argv);
    return ENGINE_ERROR;
  }
  char *meta_text = pgs_json_dump(meta);
  struct engine_item item = {.name = schema,
                             .name_len = strlen(schema),
                             .type = ENGINE_ITEM_STREAM,
                             .meta_json = meta_text,
                             .size = 0};
  if (meta_text == NULL || b->em->item_begin(b->em, &item) != ENGINE_OK) {
    free(meta_text);
    json_decref(meta);
    free(pn);
    free_argv(argv);
    if (meta_text == NULL)
      h->set_error(h, "out of memory");
    else
      h->set_error(h, "the run was cancelled before schema '%s'", ps);
    return ENGINE_ERROR;
  }
  free(meta_text);

  struct engine_spawn_opts o = {.struct_size = sizeof(o),
                                .file = b->dump.path,
                                .argv = (const char *const *)argv,
                                .stdin_mode = ENGINE_STDIO_NULL,
                                .stdout_mode = ENGINE_STDIO_PIPE,
                                .stderr_mode = ENGINE_STDIO_PIPE};
  pgs_target_spawn_opts(&b->t, &o);
  struct engine_child *child = NULL;
  int64_t t0 = h->now_ms(h);
  if (h->spawn(h, &o, &child) != ENGINE_OK) {
    int rc = fail_item(b, "unable to start '%s' for schema '%s'", b->dump.path, ps);
    json_decref(meta);
    free(pn);
    free_argv(argv);
    return rc == ENGINE_OK ? ENGINE_OK : ENGINE_ERROR;
  }
  free_argv(argv);
  /* fewer, larger reads: a 1 MiB pipe instead of the default 64 KiB */
  (void)fcntl(child->stdout_fd, F_SETPIPE_SZ, (int)PGS_IO_BLOCK);

  char *buf = malloc(PGS_IO_BLOCK);
  uint64_t total = 0;
  int stop = 0, read_err = 0;
  while (buf != NULL) {
    if (h->cancelled(h)) {
      stop = 1;
      break;
    }
    ssize_t n = read(child->stdout_fd, buf, PGS_IO_BLOCK);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      read_err = errno;
      break;
    }
    if (n == 0)
      break;
    if (b->em->item_write(b->em, buf, (size_t)n) != ENGINE_OK) {
      stop = 1;
      break;
    }
    total += (uint64_t)n;
  }
  if (buf == NULL)
    read_err = ENOMEM;
  free(buf);
  if (stop || read_err)
    h->child_kill(h, child, SIGTERM);
  close(child->stdout_fd);
  child->stdout_fd = -1;
  int status = 0;
  int wrc = h->child_wait(h, child, &status);
  int rc = ENGINE_OK;
  if (stop) {
    b->em->item_end(b->em, ENGINE_ERROR, NULL, "the run was cancelled");
    h->set_error(h, "the run was cancelled while dumping schema '%s'", ps);
    rc = ENGINE_ERROR;
  } else if (read_err) {
    rc = fail_item(b, "reading the output of pg_dump for schema '%s' failed after %llu bytes: %s",
                   ps, (unsigned long long)total, strerror(read_err));
  } else if (wrc != ENGINE_OK) {
    rc = fail_item(b, "unable to wait for pg_dump of schema '%s'", ps);
  } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    char st[96];
    pgs_describe_status(status, st, sizeof(st));
    rc = fail_item(b, "pg_dump of schema '%s' failed (%s) after %llu bytes: %s", ps, st,
                   (unsigned long long)total, pgs_stderr_tail(b->in, child));
  } else if (total == 0) {
    rc =
        fail_item(b, "pg_dump of schema '%s' wrote nothing: %s", ps, pgs_stderr_tail(b->in, child));
  } else {
    const char *warn = h->child_stderr(h, child);
    if (warn != NULL && warn[0] != '\0')
      h->log(h, ENGINE_LOG_WARN, "pg_dump of schema '%s' said: %s", ps,
             pgs_stderr_tail(b->in, child));
    json_object_set_new(meta, "dump_size", json_integer((json_int_t)total));
    json_object_set_new(meta, "duration_ms", json_integer((json_int_t)(h->now_ms(h) - t0)));
    char *final_meta = pgs_json_dump(meta);
    rc = b->em->item_end(b->em, ENGINE_OK, final_meta, NULL);
    free(final_meta);
    if (rc == ENGINE_OK)
      h->log(h, ENGINE_LOG_INFO, "schema '%s': %llu bytes dumped", ps, (unsigned long long)total);
    else
      h->set_error(h, "the run stopped while storing schema '%s'", ps);
  }
  h->child_free(h, child);
  json_decref(meta);
  free(pn);
  /* a failed item is not a failed run: item_end's status decides */
  return rc == ENGINE_OK ? ENGINE_OK : ENGINE_ERROR;
}

/* ---- schema selection ------------------------------------------------------ */

static int any_match(char **globs, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (fnmatch(globs[i], name, 0) == 0)
      return 1;
  return 0;
}

/* Item names are path-like: a schema whose name would be refused by the
 * restore (empty component, '.', '..') cannot be stored under its name. */
static int unsafe_item_name(const char *name) {
  if (name[0] == '\0' || name[0] == '/' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
    return 1;
  return strchr(name, '/') != NULL;
}

static int mark_string(const struct engine_emitter *em, const char *key, const char *value) {
  json_t *v = json_string(value);
  char *s = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
  json_decref(v);
  int rc = s ? em->mark(em, key, s) : ENGINE_ERROR;
  free(s);
  return rc;
}

static int mark_int(const struct engine_emitter *em, const char *key, long long value) {
  char s[32];
  snprintf(s, sizeof(s), "%lld", value);
  return em->mark(em, key, s);
}

static int start_snapshot(struct bk *b) {
  const struct engine_host *h = b->h;
  /* The control connection idles in its transaction while pg_dump runs; a
   * server-side idle timeout would kill the exported snapshot. */
  if (pgs_exec(b->in, b->c,
               "SET idle_in_transaction_session_timeout = 0; SET statement_timeout = 0; SET "
               "row_security = off",
               "configuring the control session") != ENGINE_OK)
    return ENGINE_ERROR;
  if (pgs_exec(b->in, b->c, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
               "starting the snapshot transaction") != ENGINE_OK)
    return ENGINE_ERROR;
  PGresult *r = pgs_query(b->in, b->c,
                          "SELECT pg_catalog.pg_export_snapshot(), pg_catalog.current_database(), "
                          "pg_catalog.pg_current_snapshot()::text",
                          0, NULL, "exporting a snapshot (pg_export_snapshot)");
  if (r == NULL)
    return ENGINE_ERROR;
  snprintf(b->snapshot, sizeof(b->snapshot), "%s", PQgetvalue(r, 0, 0));
  b->database = strdup(PQgetvalue(r, 0, 1));
  if (b->database == NULL) {
    PQclear(r);
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  int mrc = mark_string(b->em, "snapshot_id", b->snapshot) |
            mark_string(b->em, "database", b->database) |
            mark_string(b->em, "txid_snapshot", PQgetvalue(r, 0, 2)) |
            mark_string(b->em, "server_version", b->server_version) |
            mark_int(b->em, "server_version_num", b->server_num) |
            mark_string(b->em, "pg_dump_version", b->dump.version);
  PQclear(r);
  if (mrc != ENGINE_OK) {
    h->set_error(h, "unable to record the snapshot marks");
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

/* Schemas the parent snapshot had (its "schemas" mark) that match no more:
 * logged and recorded as the "vanished_schemas" mark. A dropped tenant is
 * news, not a failure: the snapshot does not become partial for it. */
static void report_vanished(struct bk *b, json_t *names) {
  const struct engine_emitter *em = b->em;
  if (!ENGINE_HAS_FIELD(em, struct engine_emitter, previous_mark) || em->previous_mark == NULL ||
      names == NULL)
    return;
  const char *prev = NULL;
  if (em->previous_mark(em, "schemas", &prev) != ENGINE_OK || prev == NULL)
    return;
  json_error_t je;
  json_t *old = json_loads(prev, 0, &je);
  json_t *gone = json_array();
  size_t i, k;
  json_t *o, *n;
  json_array_foreach(old, i, o) {
    int found = 0;
    json_array_foreach(names, k, n) if (json_equal(o, n)) {
      found = 1;
      break;
    }
    if (!found && json_is_string(o)) {
      b->h->log(
          b->h, ENGINE_LOG_WARN,
          "schema '%s' was in the previous snapshot but no longer exists (or no longer matches)",
          json_string_value(o));
      json_array_append(gone, o);
    }
  }
  char *text = json_dumps(gone, JSON_COMPACT);
  if (text)
    em->mark(em, "vanished_schemas", text);
  free(text);
  json_decref(gone);
  json_decref(old);
}

static void note_new_schema(struct bk *b, const char *name) {
  const struct engine_emitter *em = b->em;
  if (!ENGINE_HAS_FIELD(em, struct engine_emitter, previous) || em->previous == NULL)
    return;
  const char *pm = NULL;
  if (em->previous(em, name, strlen(name), &pm) == ENGINE_NOT_FOUND)
    b->h->log(b->h, ENGINE_LOG_INFO, "schema '%s' is new since the previous snapshot", name);
}

static int run_backup(struct bk *b) {
  struct pgs_inst *in = b->in;
  const struct engine_host *h = b->h;
  b->server_num = PQserverVersion(b->c);
  b->server_version = PQparameterStatus(b->c, "server_version");
  if (b->server_version == NULL)
    b->server_version = "unknown";
  if (pgs_tool_probe(in, in->pg_dump, "pg_dump", &b->dump) != ENGINE_OK)
    return ENGINE_ERROR;
  if (pgs_major(b->dump.version_num) < pgs_major(b->server_num)) {
    h->set_error(h,
                 "pg_dump '%s' is version %s, older than the server (PostgreSQL %s at %s); pg_dump "
                 "cannot dump a newer server: install the client programs of version %d or later "
                 "and point the 'pg_dump' option at them",
                 in->pg_dump, b->dump.version, b->server_version, b->t.describe,
                 pgs_major(b->server_num));
    return ENGINE_ERROR;
  }
  if (start_snapshot(b) != ENGINE_OK)
    return ENGINE_ERROR;

  PGresult *r = pgs_query(
      in, b->c,
      "SELECT n.oid::text, n.nspname, COALESCE((SELECT sum(pg_catalog.pg_table_size(c.oid)) FROM "
      "pg_catalog.pg_class c WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'm')), 0)::bigint "
      "FROM pg_catalog.pg_namespace n WHERE n.nspname !~ '^pg_' AND n.nspname <> "
      "'information_schema' ORDER BY n.nspname COLLATE \"C\"",
      0, NULL, "listing the schemas");
  if (r == NULL)
    return ENGINE_ERROR;
  int nrows = PQntuples(r);
  char *sel = calloc((size_t)nrows + 1, 1);
  size_t *hits = calloc(in->n_schemas, sizeof(*hits));
  size_t *kept = calloc(in->n_schemas, sizeof(*kept));
  if (sel == NULL || hits == NULL || kept == NULL) {
    free(sel);
    free(hits);
    free(kept);
    PQclear(r);
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  uint64_t estimate = 0;
  json_t *names = json_array();
  for (int i = 0; i < nrows; i++) {
    const char *name = PQgetvalue(r, i, 1);
    int included = 0;
    int excluded = any_match(in->exclude, in->n_exclude, name);
    for (size_t g = 0; g < in->n_schemas; g++)
      if (fnmatch(in->schemas[g], name, 0) == 0) {
        included = 1;
        hits[g]++;
        kept[g] += !excluded;
      }
    if (!included || excluded)
      continue;
    if (unsafe_item_name(name)) {
      char *pn = pgs_printable(name);
      char msg[512];
      snprintf(msg, sizeof(msg),
               "schema '%s' skipped: its name contains '/' or is '.' or '..', which cannot name an "
               "item; rename it or exclude it",
               pn ? pn : "?");
      free(pn);
      b->em->warn(b->em, NULL, msg);
      continue;
    }
    sel[i] = 1;
    estimate += strtoull(PQgetvalue(r, i, 2), NULL, 10);
    json_array_append_new(names, json_string(name));
  }
  for (size_t g = 0; g < in->n_schemas; g++) {
    char msg[512];
    if (hits[g] == 0)
      snprintf(msg, sizeof(msg), "schema glob '%s' matches no schema in database '%s'",
               in->schemas[g], b->database);
    else if (kept[g] == 0)
      snprintf(msg, sizeof(msg),
               "schema glob '%s' matches only schemas excluded by exclude_schemas in database '%s'",
               in->schemas[g], b->database);
    else
      continue;
    b->em->warn(b->em, NULL, msg);
  }
  free(hits);
  free(kept);
  report_vanished(b, names);
  char *names_text = names ? json_dumps(names, JSON_COMPACT) : NULL;
  json_decref(names);
  if (names_text == NULL || b->em->mark(b->em, "schemas", names_text) != ENGINE_OK) {
    free(names_text);
    free(sel);
    PQclear(r);
    h->set_error(h, "unable to record the list of schemas");
    return ENGINE_ERROR;
  }
  free(names_text);
  if (ENGINE_HAS_FIELD(h, struct engine_host, progress_total) && h->progress_total != NULL)
    h->progress_total(h, estimate);

  int rc = ENGINE_OK;
  for (int i = 0; i < nrows && rc == ENGINE_OK; i++) {
    if (!sel[i])
      continue;
    note_new_schema(b, PQgetvalue(r, i, 1));
    rc = dump_schema(b, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
  }
  free(sel);
  PQclear(r);
  if (rc == ENGINE_OK)
    rc = pgs_exec(in, b->c, "COMMIT", "ending the snapshot transaction");
  return rc;
}

int pgs_backup(void *inst, const struct engine_emitter *em) {
  struct pgs_inst *in = inst;
  struct bk b = {.in = in, .h = in->host, .em = em};
  if (pgs_target_init(in, NULL, &b.t) != ENGINE_OK)
    return ENGINE_ERROR;
  int rc = ENGINE_ERROR;
  b.conninfo = pgs_target_conninfo(&b.t, NULL);
  if (b.conninfo == NULL) {
    in->host->set_error(in->host, "out of memory");
    goto out;
  }
  b.c = pgs_connect(in, &b.t, NULL);
  if (b.c == NULL)
    goto out;
  rc = run_backup(&b);
out:
  if (b.c != NULL)
    PQfinish(b.c); /* also ends the snapshot transaction after a failure */
  free(b.conninfo);
  free(b.database);
  pgs_target_free(&b.t);
  return rc;
}
