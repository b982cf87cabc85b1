/* The `mongodb` source plugin: descriptor, option schema and instance
 * lifecycle. Backup lives in backup.c, restore in restore.c and
 * restore_server.c, connections and mongodump's naming in conn.c. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mongo.h"
#include "engine/helpers.h"

static const struct engine_option mg_options[] = {
    {.name = "uri",
     .type = ENGINE_OPT_STRING,
     .required = 1,
     .description =
         "Connection string (mongodb://host:27017/?replicaSet=rs0 or mongodb+srv://...). "
         "A password in it is refused: use `password`, or make the whole uri a secret "
         "reference (env:NAME or file:PATH)."},
    {.name = "password",
     .type = ENGINE_OPT_SECRET,
     .description = "Password of the uri's user for SCRAM authentication (env:NAME or file:PATH)."},
    {.name = "tls_ca_file",
     .type = ENGINE_OPT_STRING,
     .description = "CA certificates (PEM) that sign the server's certificate; turns TLS on."},
    {.name = "tls_cert_key_file",
     .type = ENGINE_OPT_STRING,
     .description =
         "Client certificate and key (one PEM file) for TLS client authentication; turns "
         "TLS on."},
    {.name = "databases",
     .type = ENGINE_OPT_STRING_LIST,
     .description =
         "Globs of the databases to back up (default: all but local and config, which are "
         "only backed up when named without wildcards); a glob matching nothing is a "
         "warning (partial run)."},
    {.name = "exclude_databases",
     .type = ENGINE_OPT_STRING_LIST,
     .description = "Globs of databases to leave out even when `databases` matches them."},
    {.name = "collections",
     .type = ENGINE_OPT_STRING_LIST,
     .description = "Globs on DB.COLLECTION of the collections and views to back up (default: all "
                    "of the selected databases); a glob matching nothing is a warning."},
    {.name = "exclude_collections",
     .type = ENGINE_OPT_STRING_LIST,
     .description = "Globs on DB.COLLECTION to leave out."},
    {.name = "read_preference",
     .type = ENGINE_OPT_ENUM,
     .default_value = "secondaryPreferred",
     .enum_values = "primary|primaryPreferred|secondary|secondaryPreferred|nearest",
     .description = "Which member of a replica set the backup reads from (one member for the whole "
                    "run)."},
    {.name = "include_users_and_roles",
     .type = ENGINE_OPT_BOOL,
     .default_value = "false",
     .description = "Also back up admin.system.users and admin.system.roles (every user and role), "
                    "restored as mongorestore does (_mergeAuthzCollections)."},
    {.name = "batch_size",
     .type = ENGINE_OPT_SIZE,
     .default_value = "16MiB",
     .description =
         "Bytes per batch read from the server (the server sends at most 16 MiB) and per "
         "bulk insert when restoring: bounds the plugin's memory whatever the collection "
         "size."},
    {.name = "timeout",
     .type = ENGINE_OPT_DURATION,
     .default_value = "10s",
     .description = "How long to wait for a server to answer when connecting (connectTimeoutMS and "
                    "serverSelectionTimeoutMS, unless the uri sets them)."},
    {.name = NULL},
};

static const struct engine_option_bounds mg_bounds[] = {
    {.name = "batch_size", .min = "64KiB", .max = "256MiB"},
    {.name = "timeout", .min = "1s", .max = "10m"},
    {.name = NULL},
};

/* ---- libmongoc: initialised once, its log into the engine's ------------- */

static pthread_once_t mg_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t mg_log_lock = PTHREAD_MUTEX_INITIALIZER;
static const struct engine_host *mg_log_host;
static int mg_inited;

static void mg_log_handler(mongoc_log_level_t level, const char *domain, const char *message,
                           void *ud) {
  (void)ud;
  if (level > MONGOC_LOG_LEVEL_INFO)
    return; /* debug and trace */
  pthread_mutex_lock(&mg_log_lock);
  const struct engine_host *h = mg_log_host;
  if (h != NULL)
    h->log(h, level <= MONGOC_LOG_LEVEL_WARNING ? ENGINE_LOG_WARN : ENGINE_LOG_DEBUG,
           "libmongoc %s: %s", domain ? domain : "", message ? message : "");
  pthread_mutex_unlock(&mg_log_lock);
}

static void mg_global_init(void) {
  mongoc_log_set_handler(mg_log_handler, NULL);
  mongoc_init();
  mg_inited = 1;
}

__attribute__((destructor)) static void mg_global_fini(void) {
  if (mg_inited)
    mongoc_cleanup();
}

/* ---- instances ------------------------------------------------------------ */

static void mg_destroy(void *p) {
  struct mg_inst *in = p;
  if (in == NULL)
    return;
  pthread_mutex_lock(&mg_log_lock);
  if (mg_log_host == in->host)
    mg_log_host = NULL;
  pthread_mutex_unlock(&mg_log_lock);
  if (in->uri != NULL) {
    explicit_bzero(in->uri, strlen(in->uri));
    free(in->uri);
  }
  free(in->tls_ca_file);
  free(in->tls_cert_key_file);
  engine_strv_free(in->databases, in->n_databases);
  engine_strv_free(in->exclude_databases, in->n_exclude_databases);
  engine_strv_free(in->collections, in->n_collections);
  engine_strv_free(in->exclude_collections, in->n_exclude_collections);
  free(in);
}

static int copy_opt(const struct engine_host *h, const char *opt, char **out) {
  const char *s = h->cfg_string(h, opt);
  *out = NULL;
  if (s == NULL)
    return ENGINE_OK;
  if (s[0] == '\0') {
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

static const struct {
  const char *name;
  mongoc_read_mode_t mode;
} read_modes[] = {
    {"primary", MONGOC_READ_PRIMARY},     {"primaryPreferred", MONGOC_READ_PRIMARY_PREFERRED},
    {"secondary", MONGOC_READ_SECONDARY}, {"secondaryPreferred", MONGOC_READ_SECONDARY_PREFERRED},
    {"nearest", MONGOC_READ_NEAREST},
};

/* The uri: a literal without a password, or a secret reference resolved
 * when connecting (the secret may hold a password). A literal is parsed now,
 * so a typo is reported by `engine validate`; messages never quote it. */
static int check_uri(struct mg_inst *in) {
  const struct engine_host *h = in->host;
  const char *s = h->cfg_string(h, "uri");
  if (s == NULL || s[0] == '\0') {
    h->set_error(h, "option 'uri' must not be empty");
    return ENGINE_ERROR;
  }
  if (strncmp(s, "env:", 4) == 0 || strncmp(s, "file:", 5) == 0) {
    in->uri_is_secret = 1;
    in->uri = strdup(s); /* the reference; resolved by mg_connect */
    if (in->uri == NULL)
      h->set_error(h, "unable to read option 'uri': out of memory");
    return in->uri ? ENGINE_OK : ENGINE_ERROR;
  }
  bson_error_t e;
  mongoc_uri_t *u = mongoc_uri_new_with_error(s, &e);
  if (u == NULL) {
    h->set_error(h,
                 "option 'uri' is not a valid MongoDB connection string (mongodb://HOST[:PORT]/... "
                 "or mongodb+srv://HOST/...)%s%s",
                 strchr(s, '@') ? "" : ": ", strchr(s, '@') ? "" : e.message);
    return ENGINE_ERROR;
  }
  const char *pw = mongoc_uri_get_password(u);
  int has_pw = pw != NULL;
  const char *user = mongoc_uri_get_username(u);
  int has_user = user != NULL && user[0] != '\0';
  mongoc_uri_destroy(u);
  if (has_pw) {
    h->set_error(h, "option 'uri' contains a password, which must not be written in a pipeline: "
                    "give it with 'password: env:NAME' (or file:PATH), or make the whole uri a "
                    "secret reference ('uri: env:MONGODB_URI')");
    return ENGINE_ERROR;
  }
  if (in->have_password && !has_user) {
    h->set_error(h, "option 'password' is set but option 'uri' names no user: write it as "
                    "mongodb://USER@HOST/ (with authSource=DB when the user is not defined in "
                    "admin)");
    return ENGINE_ERROR;
  }
  in->uri = strdup(s);
  if (in->uri == NULL)
    h->set_error(h, "unable to read option 'uri': out of memory");
  return in->uri ? ENGINE_OK : ENGINE_ERROR;
}

static int mg_create(const struct engine_host *host, void **out) {
  pthread_once(&mg_once, mg_global_init);
  struct mg_inst *in = calloc(1, sizeof(*in));
  if (in == NULL) {
    host->set_error(host, "unable to create the mongodb source: out of memory");
    return ENGINE_ERROR;
  }
  in->host = host;
  pthread_mutex_lock(&mg_log_lock);
  mg_log_host = host;
  pthread_mutex_unlock(&mg_log_lock);
  in->have_password = host->cfg_string(host, "password") != NULL;
  if (check_uri(in) != ENGINE_OK || copy_opt(host, "tls_ca_file", &in->tls_ca_file) != ENGINE_OK ||
      copy_opt(host, "tls_cert_key_file", &in->tls_cert_key_file) != ENGINE_OK ||
      engine_cfg_strv(host, "databases", &in->databases, &in->n_databases) != ENGINE_OK ||
      engine_cfg_strv(host, "exclude_databases", &in->exclude_databases,
                      &in->n_exclude_databases) != ENGINE_OK ||
      engine_cfg_strv(host, "collections", &in->collections, &in->n_collections) != ENGINE_OK ||
      engine_cfg_strv(host, "exclude_collections", &in->exclude_collections,
                      &in->n_exclude_collections) != ENGINE_OK) {
    mg_destroy(in);
    return ENGINE_ERROR;
  }
  const char *rp = host->cfg_string(host, "read_preference");
  in->read_mode = MONGOC_READ_SECONDARY_PREFERRED;
  in->read_mode_name = "secondaryPreferred";
  for (size_t i = 0; rp != NULL && i < sizeof(read_modes) / sizeof(read_modes[0]); i++)
    if (strcmp(rp, read_modes[i].name) == 0) {
      in->read_mode = read_modes[i].mode;
      in->read_mode_name = read_modes[i].name;
    }
  in->users_and_roles = host->cfg_bool(host, "include_users_and_roles", 0);
  in->batch_size = host->cfg_int(host, "batch_size", 16 * 1024 * 1024);
  in->timeout_ms = host->cfg_int(host, "timeout", 10000);
  /* engines older than ABI 1.5 do not enforce option_bounds */
  if (in->batch_size < 64 * 1024 || in->batch_size > 256ll * 1024 * 1024) {
    host->set_error(host, "option 'batch_size' must be between 64KiB and 256MiB");
    mg_destroy(in);
    return ENGINE_ERROR;
  }
  if (in->timeout_ms < 1000 || in->timeout_ms > 600000) {
    host->set_error(host, "option 'timeout' must be between 1s and 10m");
    mg_destroy(in);
    return ENGINE_ERROR;
  }
  *out = in;
  return ENGINE_OK;
}

static const struct engine_source_ops mg_source_ops = {
    .struct_size = sizeof(struct engine_source_ops),
    .backup = mg_backup,
    .restore_begin = mg_restore_begin,
    .restore_item = mg_restore_item,
    .restore_end = mg_restore_end,
    .capabilities = ENGINE_SOURCE_CAP_RESTORE_TEST,
    .select_globs = mg_select_globs,
};

static const struct engine_plugin mg_plugin = {
    ENGINE_PLUGIN_HEADER,
    .kind = ENGINE_PLUGIN_SOURCE,
    .name = "mongodb",
    .version = "1.0.0",
    .license = "MIT",
    .description = "MongoDB databases, collections, views and indexes through the official C "
                   "driver, in mongodump's format, all collections read at one cluster time on "
                   "replica sets and sharded clusters; restores to a server or a mongodump "
                   "directory.",
    .options = mg_options,
    .create = mg_create,
    .destroy = mg_destroy,
    .source = &mg_source_ops,
    .option_bounds = mg_bounds,
};

ENGINE_PLUGIN_EXPORT const struct engine_plugin *engine_plugin_query(uint32_t host_abi_major) {
  if (host_abi_major != ENGINE_ABI_MAJOR)
    return NULL;
  return &mg_plugin;
}
