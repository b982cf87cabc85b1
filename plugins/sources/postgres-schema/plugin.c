/* The `postgres-schema` source plugin: descriptor, option schema and
 * instance lifecycle. Backup lives in backup.c, restore in restore.c, the
 * connection and child-process helpers in conn.c. */
#include <stdlib.h>
#include <string.h>

#include "pgschema.h"
#include "engine/helpers.h"

static const struct engine_option pgs_options[] = {
    {.name = "dsn",
     .type = ENGINE_OPT_STRING,
     .required = 1,
     .description = "libpq connection string or URI of the database holding the schemas "
                    "(\"host=/run/postgresql dbname=app user=backup\"); a password in it is never "
                    "passed on a command line."},
    {.name = "password",
     .type = ENGINE_OPT_SECRET,
     .description = "Password for the dsn's user (env:NAME or file:PATH), when the dsn gives none "
                    "(without either, PGPASSWORD or a passfile is used)."},
    {.name = "schemas",
     .type = ENGINE_OPT_STRING_LIST,
     .required = 1,
     .description = "Globs of the schemas to back up (\"tenant_*\"); each matching schema becomes "
                    "one item; a glob matching nothing is a warning (partial run)."},
    {.name = "exclude_schemas",
     .type = ENGINE_OPT_STRING_LIST,
     .description = "Globs of schemas to leave out even when `schemas` matches them."},
    {.name = "extensions",
     .type = ENGINE_OPT_ENUM,
     .default_value = "auto",
     .enum_values = "auto|none",
     .description = "auto: record the extensions the schema's objects use, and CREATE EXTENSION IF "
                    "NOT EXISTS them before a restore; none: do not."},
    {.name = "format",
     .type = ENGINE_OPT_ENUM,
     .default_value = "custom",
     .enum_values = "custom|plain",
     .description = "pg_dump archive format: custom (pg_dump -Fc, restored with pg_restore) or "
                    "plain SQL (restored with psql)."},
    {.name = "compress_level",
     .type = ENGINE_OPT_INT,
     .default_value = "0",
     .description = "pg_dump --compress level for the custom format, 0-9; 0 (the default) "
                    "deduplicates best, the engine compresses chunks itself."},
    {.name = "no_owner",
     .type = ENGINE_OPT_BOOL,
     .default_value = "false",
     .description = "Restore with pg_restore --no-owner --no-acl even when every role the dump "
                    "names exists on the target (it is done anyway when one is missing)."},
    {.name = "jobs",
     .type = ENGINE_OPT_INT,
     .default_value = "0",
     .description = "pg_dump processes run at once, each dumping its share of the schemas from "
                    "the same snapshot; 0 (the default): the CPU count, at most 8, and at most "
                    "half of the server's free connections."},
    {.name = "globals",
     .type = ENGINE_OPT_BOOL,
     .default_value = "true",
     .description = "Also back up the cluster's roles, role memberships, role and database "
                    "settings and tablespaces, as the item _globals (restore it with --only "
                    "SOURCE/_globals before the schemas that need its roles)."},
    {.name = "include_role_passwords",
     .type = ENGINE_OPT_BOOL,
     .default_value = "false",
     .description = "Store the roles' password hashes in _globals (read from pg_authid: needs a "
                    "superuser or a member of pg_read_all_data); without it, restored roles have "
                    "no password."},
    {.name = "pg_dump",
     .type = ENGINE_OPT_STRING,
     .default_value = "pg_dump",
     .description =
         "pg_dump program (searched in PATH without a '/'); must not be older than the server."},
    {.name = "pg_restore",
     .type = ENGINE_OPT_STRING,
     .default_value = "pg_restore",
     .description = "pg_restore program used by restores."},
    {.name = "psql",
     .type = ENGINE_OPT_STRING,
     .default_value = "psql",
     .description = "psql program that applies a restore inside one transaction."},
    {.name = NULL},
};

static const struct engine_option_bounds pgs_bounds[] = {
    {.name = "compress_level", .min = "0", .max = "9"},
    {.name = "jobs", .min = "0", .max = "64"},
    {.name = NULL},
};

static void pgs_destroy(void *p) {
  struct pgs_inst *in = p;
  if (in == NULL)
    return;
  if (in->dsn != NULL) /* may hold a password */
    explicit_bzero(in->dsn, strlen(in->dsn));
  free(in->dsn);
  engine_strv_free(in->schemas, in->n_schemas);
  engine_strv_free(in->exclude, in->n_exclude);
  free(in->pg_dump);
  free(in->pg_restore);
  free(in->psql);
  free(in);
}

static int copy_string(const struct engine_host *h, const char *opt, const char *dflt, char **out) {
  const char *s = h->cfg_string(h, opt);
  if (s == NULL)
    s = dflt;
  if (s == NULL || s[0] == '\0') {
    h->set_error(h, "option '%s' must not be empty", opt);
    return ENGINE_ERROR;
  }
  *out = strdup(s);
  if (*out == NULL) {
    h->set_error(h, "unable to read option '%s': out of memory", opt);
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

static int pgs_create(const struct engine_host *host, void **out) {
  struct pgs_inst *in = calloc(1, sizeof(*in));
  if (in == NULL) {
    host->set_error(host, "unable to create the postgres-schema source: out of memory");
    return ENGINE_ERROR;
  }
  in->host = host;
  if (copy_string(host, "dsn", NULL, &in->dsn) != ENGINE_OK ||
      engine_cfg_strv(host, "schemas", &in->schemas, &in->n_schemas) != ENGINE_OK ||
      engine_cfg_strv(host, "exclude_schemas", &in->exclude, &in->n_exclude) != ENGINE_OK ||
      copy_string(host, "pg_dump", "pg_dump", &in->pg_dump) != ENGINE_OK ||
      copy_string(host, "pg_restore", "pg_restore", &in->pg_restore) != ENGINE_OK ||
      copy_string(host, "psql", "psql", &in->psql) != ENGINE_OK) {
    pgs_destroy(in);
    return ENGINE_ERROR;
  }
  if (in->n_schemas == 0) {
    host->set_error(host, "option 'schemas' is required: list the schemas (globs) to back up");
    pgs_destroy(in);
    return ENGINE_ERROR;
  }
  /* The dsn is parsed here so a typo is reported by `engine validate`-time
   * create, not half-way through a run. The message never echoes the dsn:
   * it may hold a password. */
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(in->dsn, &perr);
  if (opts == NULL) {
    host->set_error(host, "option 'dsn' is not a valid libpq connection string or URI: %s",
                    perr ? perr : "out of memory");
    PQfreemem(perr);
    pgs_destroy(in);
    return ENGINE_ERROR;
  }
  for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
    if (o->val != NULL) /* a password among them */
      explicit_bzero(o->val, strlen(o->val));
  PQconninfoFree(opts);
  const char *ext = host->cfg_string(host, "extensions");
  in->extensions_auto = ext == NULL || strcmp(ext, "none") != 0;
  const char *fmt = host->cfg_string(host, "format");
  in->format = fmt != NULL && strcmp(fmt, "plain") == 0 ? PGS_FORMAT_PLAIN : PGS_FORMAT_CUSTOM;
  int64_t level = host->cfg_int(host, "compress_level", 0);
  if (level < 0 || level > 9) {
    host->set_error(host, "option 'compress_level' is %lld: it must be between 0 and 9",
                    (long long)level);
    pgs_destroy(in);
    return ENGINE_ERROR;
  }
  in->compress_level = (int)level;
  in->no_owner = host->cfg_bool(host, "no_owner", 0);
  int64_t jobs = host->cfg_int(host, "jobs", 0);
  if (jobs < 0 || jobs > 64) { /* an engine older than ABI 1.5 does not check the bounds */
    host->set_error(host, "option 'jobs' is %lld: it must be between 0 (automatic) and 64",
                    (long long)jobs);
    pgs_destroy(in);
    return ENGINE_ERROR;
  }
  in->jobs = (int)jobs;
  in->globals = host->cfg_bool(host, "globals", 1);
  in->include_role_passwords = host->cfg_bool(host, "include_role_passwords", 0);
  *out = in;
  return ENGINE_OK;
}

static const struct engine_source_ops pgs_source_ops = {
    .struct_size = sizeof(struct engine_source_ops),
    .backup = pgs_backup,
    .restore_begin = pgs_restore_begin,
    .restore_item = pgs_restore_item,
    .restore_end = pgs_restore_end,
    .capabilities = ENGINE_SOURCE_CAP_RESTORE_TEST,
};

static const struct engine_plugin pgs_plugin = {
    ENGINE_PLUGIN_HEADER,
    .kind = ENGINE_PLUGIN_SOURCE,
    .name = "postgres-schema",
    .version = "1.1.0",
    .license = "MIT",
    .description = "PostgreSQL schemas (one item per schema, e.g. per tenant) and the cluster's "
                   "roles, dumped by parallel pg_dumps from one exported snapshot; restores "
                   "under another name, into another database, or in place inside one "
                   "transaction.",
    .options = pgs_options,
    .option_bounds = pgs_bounds,
    .create = pgs_create,
    .destroy = pgs_destroy,
    .source = &pgs_source_ops,
};

ENGINE_PLUGIN_EXPORT const struct engine_plugin *engine_plugin_query(uint32_t host_abi_major) {
  if (host_abi_major != ENGINE_ABI_MAJOR)
    return NULL;
  return &pgs_plugin;
}
