/* Backup: one exported snapshot, parallel pg_dumps split per schema.
 *
 * A control connection opens a REPEATABLE READ transaction and exports its
 * snapshot; every pg_dump imports it with --snapshot, so all schemas are
 * dumped as of the same instant, whichever pg_dump process dumps them. The
 * control connection lists the schemas and reads, once for all selected
 * schemas, what a restore needs besides the dump (the extensions the
 * schemas' objects use, the roles their dumps name) and the cluster's
 * globals, all inside that same snapshot. The transaction ends once every
 * pg_dump is done (an exported snapshot dies with it).
 *
 * dump.c runs the pg_dumps on worker threads and splits their archives into
 * one archive per schema; this thread (the only one that calls the emitter)
 * stores the globals item first, then each schema as one item, in name
 * order, as the workers deliver them. Nothing goes through temporary
 * files; memory is bounded (dump.c). */
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgschema.h"

/* Bytes of pieces the dump workers may hold ahead of the emitter, in all. */
#define PGS_BUFFER_TOTAL (64u * 1024u * 1024u)
#define PGS_BUFFER_MIN (8u * 1024u * 1024u)
#define PGS_JOBS_AUTO_MAX 8

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
  int in_transaction;
  PGconn *fresh; /* outside the snapshot, when needed */
  struct pgs_run run;
};

static int has_cut(const struct engine_emitter *em) {
  return ENGINE_HAS_FIELD(em, struct engine_emitter, item_cut) && em->item_cut != NULL;
}

/* ---- marks ------------------------------------------------------------------------ */

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

static int mark_json(const struct engine_emitter *em, const char *key, json_t *v) {
  char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  int rc = s ? em->mark(em, key, s) : ENGINE_ERROR;
  free(s);
  return rc;
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
  b->in_transaction = 1;
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

static int end_snapshot(struct bk *b) {
  if (!b->in_transaction)
    return ENGINE_OK;
  b->in_transaction = 0;
  return pgs_exec(b->in, b->c, "COMMIT", "ending the snapshot transaction");
}

/* ---- schema selection ------------------------------------------------------------ */

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

/* The selected schemas, in byte order of their names, into b->run.tenants;
 * names: the JSON array of their names. */
static int select_schemas(struct bk *b, json_t *names) {
  struct pgs_inst *in = b->in;
  const struct engine_host *h = b->h;
  PGresult *r = pgs_query(in, b->c,
                          "SELECT n.oid::text, n.nspname FROM pg_catalog.pg_namespace n WHERE "
                          "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' ORDER BY "
                          "n.nspname COLLATE \"C\"",
                          0, NULL, "listing the schemas");
  if (r == NULL)
    return ENGINE_ERROR;
  int nrows = PQntuples(r);
  size_t *hits = calloc(in->n_schemas, sizeof(*hits));
  size_t *kept = calloc(in->n_schemas, sizeof(*kept));
  b->run.tenants = calloc((size_t)nrows + 1, sizeof(*b->run.tenants));
  if (hits == NULL || kept == NULL || b->run.tenants == NULL) {
    free(hits);
    free(kept);
    PQclear(r);
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  int rc = ENGINE_OK;
  for (int i = 0; i < nrows && rc == ENGINE_OK; i++) {
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
    char *pn = pgs_printable(name);
    char msg[512];
    msg[0] = '\0';
    if (unsafe_item_name(name))
      snprintf(msg, sizeof(msg),
               "schema '%s' skipped: its name contains '/' or is '.' or '..', which cannot name an "
               "item; rename it or exclude it",
               pn ? pn : "?");
    else if (in->globals && strcmp(name, PGS_GLOBALS_ITEM) == 0)
      snprintf(msg, sizeof(msg),
               "schema '%s' skipped: the item of that name holds the cluster's globals; rename "
               "the schema, exclude it, or set globals: false",
               pn ? pn : "?");
    free(pn);
    if (msg[0]) {
      b->em->warn(b->em, NULL, msg);
      continue;
    }
    struct pgs_tenant *t = &b->run.tenants[b->run.n_tenants];
    t->name = strdup(name);
    t->oid = strdup(PQgetvalue(r, i, 0));
    if (t->name == NULL || t->oid == NULL || json_array_append_new(names, json_string(name)) != 0) {
      h->set_error(h, "out of memory");
      rc = ENGINE_ERROR;
    }
    b->run.n_tenants++;
  }
  for (size_t g = 0; g < in->n_schemas && rc == ENGINE_OK; g++) {
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
  PQclear(r);
  return rc;
}

/* '{oid,oid,...}' of the selected schemas, for = ANY($1::oid[]). */
static char *oid_array(struct bk *b) {
  struct pgs_buf s = {0};
  pgs_buf_add(&s, "{", 1);
  for (size_t i = 0; i < b->run.n_tenants; i++) {
    if (i > 0)
      pgs_buf_add(&s, ",", 1);
    pgs_buf_add(&s, b->run.tenants[i].oid, strlen(b->run.tenants[i].oid));
  }
  pgs_buf_add(&s, "}", 2);
  if (s.oom) {
    pgs_buf_free(&s);
    return NULL;
  }
  return (char *)s.p;
}

static struct pgs_tenant *tenant_by_oid(struct bk *b, const char *oid) {
  /* the tenants are in name order; oids are few enough to scan per row only
   * once per query result: a small index would not pay off below millions */
  for (size_t i = 0; i < b->run.n_tenants; i++)
    if (strcmp(b->run.tenants[i].oid, oid) == 0)
      return &b->run.tenants[i];
  return NULL;
}

/* ---- what a restore needs besides the dump: one query each, all schemas ----------- */

/* Extensions whose member objects (types, functions, operator classes ...)
 * a schema's own objects depend on, plus extensions installed into the
 * schema itself. pg_dump -n dumps neither, so a restore must create them. */
static int collect_extensions(struct bk *b, const char *oids) {
  /* clang-format off */
  static const char sql[] =
      "WITH objs(nsp, classid, objid) AS ("
      " SELECT c.relnamespace, 'pg_catalog.pg_class'::regclass, c.oid FROM pg_catalog.pg_class c WHERE c.relnamespace = ANY($1::oid[])"
      " UNION ALL SELECT t.typnamespace, 'pg_catalog.pg_type'::regclass, t.oid FROM pg_catalog.pg_type t WHERE t.typnamespace = ANY($1::oid[])"
      " UNION ALL SELECT p.pronamespace, 'pg_catalog.pg_proc'::regclass, p.oid FROM pg_catalog.pg_proc p WHERE p.pronamespace = ANY($1::oid[])"
      " UNION ALL SELECT k.connamespace, 'pg_catalog.pg_constraint'::regclass, k.oid FROM pg_catalog.pg_constraint k WHERE k.connamespace = ANY($1::oid[])"
      " UNION ALL SELECT o.oprnamespace, 'pg_catalog.pg_operator'::regclass, o.oid FROM pg_catalog.pg_operator o WHERE o.oprnamespace = ANY($1::oid[])"
      " UNION ALL SELECT c.relnamespace, 'pg_catalog.pg_attrdef'::regclass, a.oid FROM pg_catalog.pg_attrdef a"
      "   JOIN pg_catalog.pg_class c ON c.oid = a.adrelid WHERE c.relnamespace = ANY($1::oid[])"
      " UNION ALL SELECT c.relnamespace, 'pg_catalog.pg_rewrite'::regclass, w.oid FROM pg_catalog.pg_rewrite w"
      "   JOIN pg_catalog.pg_class c ON c.oid = w.ev_class WHERE c.relnamespace = ANY($1::oid[])"
      " UNION ALL SELECT c.relnamespace, 'pg_catalog.pg_trigger'::regclass, g.oid FROM pg_catalog.pg_trigger g"
      "   JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid WHERE c.relnamespace = ANY($1::oid[])"
      " UNION ALL SELECT c.relnamespace, 'pg_catalog.pg_policy'::regclass, y.oid FROM pg_catalog.pg_policy y"
      "   JOIN pg_catalog.pg_class c ON c.oid = y.polrelid WHERE c.relnamespace = ANY($1::oid[])"
      "), refs(nsp, classid, objid) AS ("
      " SELECT o.nsp, d.refclassid, d.refobjid FROM objs o JOIN pg_catalog.pg_depend d"
      "   ON d.classid = o.classid AND d.objid = o.objid AND d.deptype IN ('n', 'a')"
      " WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend m WHERE m.classid = o.classid"
      "   AND m.objid = o.objid AND m.deptype = 'e')"
      "), refs2(nsp, classid, objid) AS ("
      /* a column of type citext[] depends on the array type, whose element
       * type is the extension's member */
      " SELECT nsp, classid, objid FROM refs"
      " UNION SELECT r.nsp, 'pg_catalog.pg_type'::regclass, t.typelem FROM refs r JOIN pg_catalog.pg_type t"
      "   ON r.classid = 'pg_catalog.pg_type'::regclass AND t.oid = r.objid AND t.typelem <> 0"
      "), used(nsp, ext) AS ("
      " SELECT r.nsp, x.refobjid FROM refs2 r JOIN pg_catalog.pg_depend x ON x.classid = r.classid"
      "   AND x.objid = r.objid AND x.refclassid = 'pg_catalog.pg_extension'::regclass AND x.deptype = 'e'"
      " UNION SELECT e.extnamespace, e.oid FROM pg_catalog.pg_extension e WHERE e.extnamespace = ANY($1::oid[])"
      ") "
      "SELECT DISTINCT u.nsp::text, e.extname, e.extversion, n.nspname FROM used u"
      " JOIN pg_catalog.pg_extension e ON e.oid = u.ext"
      " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
      " ORDER BY 1, 2";
  /* clang-format on */
  const char *params[] = {oids};
  PGresult *r =
      pgs_query(b->in, b->c, sql, 1, params, "finding the extensions the schemas' objects use");
  if (r == NULL)
    return ENGINE_ERROR;
  for (int i = 0; i < PQntuples(r); i++) {
    struct pgs_tenant *t = tenant_by_oid(b, PQgetvalue(r, i, 0));
    if (t == NULL)
      continue;
    json_array_append_new(json_object_get(t->meta, "extensions"),
                          json_pack("{s:s, s:s, s:s}", "name", PQgetvalue(r, i, 1), "version",
                                    PQgetvalue(r, i, 2), "schema", PQgetvalue(r, i, 3)));
  }
  PQclear(r);
  return ENGINE_OK;
}

/* Every role a schema's dump will name: owners and grantees of its objects
 * and its default privileges. A restore on a server lacking one of them
 * must drop ownership and grants (--no-owner --no-acl), or restore the
 * globals item first. */
static int collect_roles(struct bk *b, const char *oids) {
  /* clang-format off */
  static const char sql[] =
      "SELECT DISTINCT s.nsp::text, r.rolname FROM ("
      " SELECT oid AS nsp, nspowner AS o FROM pg_catalog.pg_namespace WHERE oid = ANY($1::oid[])"
      " UNION SELECT oid, (pg_catalog.aclexplode(nspacl)).grantee FROM pg_catalog.pg_namespace WHERE oid = ANY($1::oid[])"
      " UNION SELECT relnamespace, relowner FROM pg_catalog.pg_class WHERE relnamespace = ANY($1::oid[])"
      " UNION SELECT relnamespace, (pg_catalog.aclexplode(relacl)).grantee FROM pg_catalog.pg_class WHERE relnamespace = ANY($1::oid[])"
      " UNION SELECT c.relnamespace, (pg_catalog.aclexplode(a.attacl)).grantee FROM pg_catalog.pg_attribute a"
      "   JOIN pg_catalog.pg_class c ON c.oid = a.attrelid WHERE c.relnamespace = ANY($1::oid[]) AND a.attacl IS NOT NULL"
      " UNION SELECT pronamespace, proowner FROM pg_catalog.pg_proc WHERE pronamespace = ANY($1::oid[])"
      " UNION SELECT pronamespace, (pg_catalog.aclexplode(proacl)).grantee FROM pg_catalog.pg_proc WHERE pronamespace = ANY($1::oid[])"
      " UNION SELECT typnamespace, typowner FROM pg_catalog.pg_type WHERE typnamespace = ANY($1::oid[])"
      " UNION SELECT typnamespace, (pg_catalog.aclexplode(typacl)).grantee FROM pg_catalog.pg_type WHERE typnamespace = ANY($1::oid[])"
      " UNION SELECT oprnamespace, oprowner FROM pg_catalog.pg_operator WHERE oprnamespace = ANY($1::oid[])"
      " UNION SELECT collnamespace, collowner FROM pg_catalog.pg_collation WHERE collnamespace = ANY($1::oid[])"
      " UNION SELECT cfgnamespace, cfgowner FROM pg_catalog.pg_ts_config WHERE cfgnamespace = ANY($1::oid[])"
      " UNION SELECT dictnamespace, dictowner FROM pg_catalog.pg_ts_dict WHERE dictnamespace = ANY($1::oid[])"
      " UNION SELECT connamespace, conowner FROM pg_catalog.pg_conversion WHERE connamespace = ANY($1::oid[])"
      " UNION SELECT c.relnamespace, pg_catalog.unnest(y.polroles) FROM pg_catalog.pg_policy y"
      "   JOIN pg_catalog.pg_class c ON c.oid = y.polrelid WHERE c.relnamespace = ANY($1::oid[])"
      " UNION SELECT defaclnamespace, defaclrole FROM pg_catalog.pg_default_acl WHERE defaclnamespace = ANY($1::oid[])"
      " UNION SELECT defaclnamespace, (pg_catalog.aclexplode(defaclacl)).grantee FROM pg_catalog.pg_default_acl"
      "   WHERE defaclnamespace = ANY($1::oid[])"
      ") s JOIN pg_catalog.pg_roles r ON r.oid = s.o ORDER BY 1, 2";
  /* clang-format on */
  const char *params[] = {oids};
  PGresult *r =
      pgs_query(b->in, b->c, sql, 1, params, "listing the roles the schemas' objects name");
  if (r == NULL)
    return ENGINE_ERROR;
  for (int i = 0; i < PQntuples(r); i++) {
    struct pgs_tenant *t = tenant_by_oid(b, PQgetvalue(r, i, 0));
    if (t != NULL)
      json_array_append_new(json_object_get(t->meta, "roles"), json_string(PQgetvalue(r, i, 1)));
  }
  PQclear(r);
  return ENGINE_OK;
}

/* A query whose failure the run survives, inside the snapshot's
 * transaction: under a savepoint, so an error does not abort the
 * transaction whose snapshot the pg_dumps import. NULL when it failed. */
static PGresult *query_optional(struct bk *b, const char *sql, int nparams,
                                const char *const *params, const char *what) {
  if (pgs_exec(b->in, b->c, "SAVEPOINT pgs_optional", what) != ENGINE_OK)
    return NULL;
  PGresult *r = pgs_query(b->in, b->c, sql, nparams, params, what);
  if (r == NULL)
    (void)pgs_exec(b->in, b->c, "ROLLBACK TO SAVEPOINT pgs_optional", what);
  else
    (void)pgs_exec(b->in, b->c, "RELEASE SAVEPOINT pgs_optional", what);
  return r;
}

/* What the progress display expects: the selected schemas' table sizes. */
static void progress_estimate(struct bk *b, const char *oids) {
  const struct engine_host *h = b->h;
  if (!ENGINE_HAS_FIELD(h, struct engine_host, progress_total) || h->progress_total == NULL)
    return;
  const char *params[] = {oids};
  PGresult *r =
      query_optional(b,
                     "SELECT COALESCE(sum(pg_catalog.pg_table_size(c.oid)), 0)::bigint FROM "
                     "pg_catalog.pg_class c WHERE c.relnamespace = ANY($1::oid[]) AND "
                     "c.relkind IN ('r', 'm')",
                     1, params, "estimating the size of the schemas");
  if (r == NULL)
    return; /* an estimate only */
  h->progress_total(h, strtoull(PQgetvalue(r, 0, 0), NULL, 10));
  PQclear(r);
}

/* The settings of this session that shape COPY's text and that pg_dump
 * does not set itself (it connects as this session does): the restore test
 * reads the rows back with them. */
static json_t *copy_settings(struct bk *b) {
  PGresult *r = pgs_query(b->in, b->c,
                          "SELECT pg_catalog.current_setting('TimeZone'), "
                          "pg_catalog.current_setting('bytea_output'), "
                          "pg_catalog.current_setting('lc_monetary')",
                          0, NULL, "reading the session's settings");
  if (r == NULL)
    return NULL;
  json_t *o = json_pack("{s:s, s:s, s:s}", "TimeZone", PQgetvalue(r, 0, 0), "bytea_output",
                        PQgetvalue(r, 0, 1), "lc_monetary", PQgetvalue(r, 0, 2));
  PQclear(r);
  return o;
}

/* What is known of each schema before it is dumped. Nothing in it changes
 * from run to run for an unchanged schema (the snapshot id and the run's
 * timing are marks of the source, not of each item), so the item tree of an
 * unchanged tenant deduplicates too. */
static int base_meta(struct bk *b) {
  const struct engine_host *h = b->h;
  json_t *settings = copy_settings(b);
  if (settings == NULL)
    return ENGINE_ERROR;
  int plain = b->in->format == PGS_FORMAT_PLAIN;
  char c[32];
  snprintf(c, sizeof(c), "--compress=%d", b->in->compress_level);
  json_t *opts = plain ? json_pack("[s, s]", "--format=plain", "--no-password")
                       : json_pack("[s, s, s]", "--format=custom", c, "--no-password");
  int rc = opts != NULL ? ENGINE_OK : ENGINE_ERROR;
  for (size_t i = 0; i < b->run.n_tenants && rc == ENGINE_OK; i++) {
    struct pgs_tenant *t = &b->run.tenants[i];
    t->meta =
        json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:i, s:s, s:i, s:O, s:O, s:[], s:[]}", "schema",
                  t->name, "tenant", t->name, "database", b->database, "server_version",
                  b->server_version, "server_version_num", b->server_num, "pg_dump_version",
                  b->dump.version, "pg_dump_version_num", b->dump.version_num, "format",
                  plain ? "plain" : "custom", "compression", plain ? 0 : b->in->compress_level,
                  "dump_options", opts, "copy_settings", settings, "extensions", "roles");
    if (t->meta == NULL)
      rc = ENGINE_ERROR;
  }
  json_decref(opts);
  json_decref(settings);
  if (rc != ENGINE_OK)
    h->set_error(h, "out of memory");
  return rc;
}

/* ---- jobs ----------------------------------------------------------------------- */

/* The configured jobs, or: the CPU count, at most PGS_JOBS_AUTO_MAX, and at
 * most half the connections the server has free. Never more than schemas. */
static size_t choose_jobs(struct bk *b) {
  const struct engine_host *h = b->h;
  long free_conns = -1;
  PGresult *r =
      query_optional(b,
                     "SELECT pg_catalog.current_setting('max_connections')::int - "
                     "pg_catalog.current_setting('superuser_reserved_connections')::int - "
                     "(SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = "
                     "'client backend')::int",
                     0, NULL, "counting the server's free connections");
  if (r != NULL) {
    free_conns = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
  }
  size_t jobs;
  if (b->in->jobs > 0) {
    jobs = (size_t)b->in->jobs;
    if (free_conns >= 0 && (long)jobs > free_conns)
      h->log(h, ENGINE_LOG_WARN,
             "jobs: %zu pg_dump connections asked for, but %s has only %ld free (max_connections); "
             "some pg_dumps may be refused",
             jobs, b->t.describe, free_conns);
  } else {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    jobs = cpus > 0 ? (size_t)cpus : 1;
    if (jobs > PGS_JOBS_AUTO_MAX)
      jobs = PGS_JOBS_AUTO_MAX;
    if (free_conns >= 0 && (long)jobs > free_conns / 2)
      jobs = free_conns / 2 > 0 ? (size_t)(free_conns / 2) : 1;
  }
  if (jobs > b->run.n_tenants)
    jobs = b->run.n_tenants;
  return jobs > 0 ? jobs : 1;
}

/* ---- emitting --------------------------------------------------------------------- */

static int emit_globals(struct bk *b) {
  const struct engine_emitter *em = b->em;
  json_t *summary = NULL;
  /* A failed query (pg_authid unreadable) must not abort the snapshot's
   * transaction: the pg_dumps import its snapshot, now or later. */
  char *doc = NULL;
  if (pgs_exec(b->in, b->c, "SAVEPOINT pgs_globals", "reading the globals") == ENGINE_OK) {
    doc = pgs_globals_collect(b->in, b->c, b->database, b->server_num, &summary);
    if (doc == NULL) {
      char saved[sizeof(b->in->last_error)];
      memcpy(saved, b->in->last_error, sizeof(saved));
      if (pgs_exec(b->in, b->c, "ROLLBACK TO SAVEPOINT pgs_globals",
                   "keeping the snapshot after the globals failed") != ENGINE_OK) {
        b->h->set_error(b->h,
                        "the snapshot's transaction was lost after reading the globals "
                        "failed: %s",
                        b->in->last_error);
        json_decref(summary);
        return ENGINE_ERROR;
      }
      memcpy(b->in->last_error, saved, sizeof(saved));
    }
  }
  if (doc == NULL) {
    char msg[1400];
    snprintf(msg, sizeof(msg), "the cluster's globals were not backed up: %s",
             b->in->last_error[0] ? b->in->last_error : "reading them failed");
    em->warn(em, PGS_GLOBALS_ITEM, msg);
    return ENGINE_OK;
  }
  json_t *meta = json_pack("{s:s, s:s, s:s, s:i, s:O}", "kind", "globals", "database", b->database,
                           "server_version", b->server_version, "server_version_num", b->server_num,
                           "contents", summary);
  json_decref(summary);
  char *meta_text = meta ? pgs_json_dump(meta) : NULL;
  json_decref(meta);
  struct engine_item item = {.name = PGS_GLOBALS_ITEM,
                             .name_len = strlen(PGS_GLOBALS_ITEM),
                             .type = ENGINE_ITEM_STREAM,
                             .meta_json = meta_text,
                             .size = strlen(doc)};
  int rc = meta_text ? em->item_begin(em, &item) : ENGINE_ERROR;
  if (rc == ENGINE_OK)
    rc = em->item_write(em, doc, strlen(doc));
  if (rc == ENGINE_OK)
    rc = em->item_end(em, ENGINE_OK, NULL, NULL);
  free(meta_text);
  free(doc);
  if (rc != ENGINE_OK)
    b->h->set_error(b->h, "the run stopped while storing the cluster's globals");
  return rc;
}

/* A schema that existed in the snapshot but is gone from the catalog now
 * was dropped after the snapshot was exported: pg_dump could not lock it.
 * Asked on a connection of its own, outside the snapshot (opened when a
 * schema first fails). */
static int dropped_since(struct bk *b, const char *name) {
  if (b->fresh == NULL)
    b->fresh = pgs_connect(b->in, &b->t, NULL);
  if (b->fresh == NULL)
    return 0;
  const char *params[] = {name};
  PGresult *r =
      pgs_query(b->in, b->fresh, "SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = $1",
                1, params, "looking the schema up");
  int gone = r != NULL && strcmp(PQgetvalue(r, 0, 0), "0") == 0;
  PQclear(r);
  return gone;
}

/* Stores one schema as the workers deliver it. ENGINE_ERROR: stop the run. */
static int emit_tenant(struct bk *b, struct pgs_tenant *t) {
  const struct engine_emitter *em = b->em;
  const struct engine_host *h = b->h;
  char *meta_text = pgs_json_dump(t->meta);
  struct engine_item item = {.name = t->name,
                             .name_len = strlen(t->name),
                             .type = ENGINE_ITEM_STREAM,
                             .meta_json = meta_text,
                             .size = 0};
  int begun = 0, rc = ENGINE_OK;
  char *pn = pgs_printable(t->name);
  const char *ps = pn ? pn : t->name;
  if (meta_text == NULL) {
    h->set_error(h, "out of memory");
    free(pn);
    return ENGINE_ERROR;
  }
  for (;;) {
    struct pgs_piece *p = NULL;
    int k = pgs_dump_next(&b->run, t, &p);
    if (k <= 0) {
      rc = k < 0 ? ENGINE_ERROR : ENGINE_OK;
      break;
    }
    if (!begun) {
      rc = em->item_begin(em, &item);
      begun = rc == ENGINE_OK;
    }
    if (rc == ENGINE_OK && p->len > 0)
      rc = em->item_write(em, p->data, p->len);
    if (rc == ENGINE_OK && p->cut && has_cut(em))
      rc = em->item_cut(em);
    pgs_piece_done(&b->run, t, p);
    if (rc != ENGINE_OK)
      break;
  }
  if (rc != ENGINE_OK) {
    free(meta_text);
    if (begun)
      em->item_end(em, ENGINE_ERROR, NULL, "the run was cancelled");
    h->set_error(h, "the run stopped while storing schema '%s'", ps);
    free(pn);
    return ENGINE_ERROR;
  }
  rc = begun ? ENGINE_OK : em->item_begin(em, &item);
  free(meta_text);
  if (rc != ENGINE_OK) {
    h->set_error(h, "the run was cancelled before schema '%s'", ps);
    free(pn);
    return ENGINE_ERROR;
  }
  pthread_mutex_lock(&b->run.mu);
  enum pgs_tstate st = t->state;
  pthread_mutex_unlock(&b->run.mu);
  if (st == PGS_T_DONE) {
    json_t *m = json_deep_copy(t->meta);
    json_object_update(m, t->found);
    json_object_set_new(m, "dump_size", json_integer((json_int_t)t->size));
    char *final = pgs_json_dump(m);
    json_decref(m);
    rc = em->item_end(em, ENGINE_OK, final, NULL);
    free(final);
    if (rc == ENGINE_OK)
      h->log(h, ENGINE_LOG_DEBUG, "schema '%s': %llu bytes stored", ps,
             (unsigned long long)t->size);
  } else {
    char *msg = NULL;
    if (dropped_since(b, t->name)) {
      if (asprintf(&msg,
                   "schema '%s' was dropped after the snapshot was taken, before pg_dump could "
                   "lock it, so it is not in this snapshot (%s)",
                   ps, t->error ? t->error : "pg_dump failed") < 0)
        msg = NULL;
    }
    rc = em->item_end(em, ENGINE_ERROR, NULL, msg ? msg : t->error ? t->error : "pg_dump failed");
    free(msg);
  }
  free(pn);
  if (rc != ENGINE_OK)
    h->set_error(h, "the run stopped while storing schema '%s'", ps);
  return rc;
}

/* Schemas of the parent snapshot (its "schemas" mark) that are not selected
 * any more: named in a warning each (the snapshot is partial: it lacks
 * what the one before had) and in the "vanished_schemas" mark; new ones are
 * logged. */
static void report_changes(struct bk *b, json_t *selected) {
  const struct engine_emitter *em = b->em;
  if (!ENGINE_HAS_FIELD(em, struct engine_emitter, previous_mark) || em->previous_mark == NULL)
    return;
  const char *prev = NULL;
  if (em->previous_mark(em, "schemas", &prev) != ENGINE_OK || prev == NULL)
    return;
  json_error_t je;
  json_t *old = json_loads(prev, 0, &je);
  if (!json_is_array(old)) {
    json_decref(old);
    return;
  }
  json_t *gone = json_array();
  size_t i, k;
  json_t *o, *n;
  json_array_foreach(old, i, o) {
    int found = 0;
    json_array_foreach(selected, k, n) if (json_equal(o, n)) {
      found = 1;
      break;
    }
    if (!found && json_is_string(o)) {
      char msg[600];
      snprintf(msg, sizeof(msg),
               "schema '%s' was in the previous snapshot but no longer exists (or no longer "
               "matches 'schemas'); earlier snapshots keep it",
               json_string_value(o));
      em->warn(em, json_string_value(o), msg);
      json_array_append(gone, o);
    }
  }
  json_array_foreach(selected, k, n) {
    int found = 0;
    json_array_foreach(old, i, o) if (json_equal(o, n)) {
      found = 1;
      break;
    }
    if (!found)
      b->h->log(b->h, ENGINE_LOG_INFO, "schema '%s' is new since the previous snapshot",
                json_string_value(n));
  }
  mark_json(em, "vanished_schemas", gone);
  json_decref(gone);
  json_decref(old);
}

static int run_tenants(struct bk *b) {
  const struct engine_host *h = b->h;
  struct pgs_run *run = &b->run;
  run->in = b->in;
  run->h = h;
  run->t = &b->t;
  run->conninfo = b->conninfo;
  run->pg_dump = b->dump.path;
  run->snapshot = b->snapshot;
  run->n_workers = choose_jobs(b);
  run->workers = calloc(run->n_workers, sizeof(*run->workers));
  if (run->workers == NULL) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  run->limit = PGS_BUFFER_TOTAL / run->n_workers;
  if (run->limit < PGS_BUFFER_MIN)
    run->limit = PGS_BUFFER_MIN;
  h->log(h, ENGINE_LOG_INFO, "dumping %zu schema(s) with %zu parallel pg_dump(s)", run->n_tenants,
         run->n_workers);
  int rc = pgs_dump_start(run) == 0 ? ENGINE_OK : ENGINE_ERROR;
  if (rc == ENGINE_OK && b->in->globals)
    rc = emit_globals(b);
  for (size_t i = 0; i < run->n_tenants && rc == ENGINE_OK; i++) {
    rc = emit_tenant(b, &run->tenants[i]);
    /* once every pg_dump is done, the snapshot is no longer needed */
    if (rc == ENGINE_OK && b->in_transaction && pgs_dump_all_finished(run))
      rc = end_snapshot(b);
  }
  pgs_dump_join(run);
  if (rc == ENGINE_OK) {
    size_t done = 0;
    for (size_t i = 0; i < run->n_tenants; i++)
      done += run->tenants[i].state == PGS_T_DONE;
    h->log(h, ENGINE_LOG_INFO, "%zu schema(s) stored, %zu failed; %d pg_dump run(s)", done,
           run->n_tenants - done, run->dumps);
  }
  return rc;
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
  json_t *selected = json_array();
  if (selected == NULL || select_schemas(b, selected) != ENGINE_OK) {
    json_decref(selected);
    return ENGINE_ERROR;
  }
  report_changes(b, selected);
  json_decref(selected);
  int rc = ENGINE_OK;
  char *oids = oid_array(b);
  if (oids == NULL) {
    h->set_error(h, "out of memory");
    rc = ENGINE_ERROR;
  } else if (b->run.n_tenants > 0 && base_meta(b) != ENGINE_OK) {
    rc = ENGINE_ERROR;
  }
  if (rc == ENGINE_OK && b->run.n_tenants > 0) {
    progress_estimate(b, oids);
    if ((in->extensions_auto && collect_extensions(b, oids) != ENGINE_OK) ||
        collect_roles(b, oids) != ENGINE_OK)
      rc = ENGINE_ERROR;
  }
  free(oids);
  if (rc == ENGINE_OK) {
    if (b->run.n_tenants > 0)
      rc = run_tenants(b);
    else if (in->globals)
      rc = emit_globals(b);
  }
  /* what was stored, and what failed */
  json_t *stored = json_array(), *failed = json_array();
  for (size_t i = 0; i < b->run.n_tenants; i++) {
    struct pgs_tenant *t = &b->run.tenants[i];
    json_array_append_new(t->state == PGS_T_DONE ? stored : failed, json_string(t->name));
  }
  if (rc == ENGINE_OK && (mark_json(b->em, "schemas", stored) != ENGINE_OK ||
                          mark_json(b->em, "failed_schemas", failed) != ENGINE_OK)) {
    h->set_error(h, "unable to record the list of schemas");
    rc = ENGINE_ERROR;
  }
  json_decref(stored);
  json_decref(failed);
  if (rc == ENGINE_OK)
    rc = end_snapshot(b);
  return rc;
}

static void run_free(struct pgs_run *run) {
  for (size_t i = 0; i < run->n_tenants; i++) {
    struct pgs_tenant *t = &run->tenants[i];
    free(t->name);
    free(t->oid);
    free(t->error);
    json_decref(t->meta);
    json_decref(t->found);
  }
  free(run->tenants);
  free(run->workers);
}

int pgs_backup(void *inst, const struct engine_emitter *em) {
  struct pgs_inst *in = inst;
  struct bk b = {.in = in, .h = in->host, .em = em};
  pthread_mutex_init(&b.run.mu, NULL);
  pthread_cond_init(&b.run.cv, NULL);
  int rc = ENGINE_ERROR;
  if (pgs_target_init(in, NULL, &b.t) != ENGINE_OK)
    goto out;
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
  if (b.fresh != NULL)
    PQfinish(b.fresh);
  run_free(&b.run);
  free(b.conninfo);
  free(b.database);
  pgs_target_free(&b.t);
  pthread_mutex_destroy(&b.run.mu);
  pthread_cond_destroy(&b.run.cv);
  return rc;
}
