/* Pipeline configuration: a YAML file (conf.d/NAME.yml) parsed with libyaml
 * into a struct pipeline, validated against the schemas of the plugins it
 * names. Every error names file:line:column, the option and what was
 * expected, e.g.
 *   conf.d/x.yml:12:7: sinks[0].with.path: expected a string, got a sequence
 *   conf.d/x.yml:3:3: unknown key 'soruces' at top level (expected one of: version, name, ...)
 */
#ifndef CORE_CONFIG_PIPELINE_H
#define CORE_CONFIG_PIPELINE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config/values.h" /* config_parse_size/_duration/_bool */
#include "engine/plugin.h"

struct pipeline_retention;

struct pipeline_plugin_cfg {
  char *name;   /* `name:` (unique among sources, among sinks); defaults to type */
  char *type;   /* `type:` = plugin name */
  int required; /* sinks: `required:` (default true) */
  /* `with:` after validation: a JSON object holding every option of the
   * schema that was given or has a default, normalised: STRING/ENUM/SECRET
   * -> string, INT/SIZE/DURATION -> integer (bytes, ms), BOOL -> true/false,
   * STRING_LIST -> array of strings. Owned. */
  json_t *with;
  int line, col;                      /* where the entry starts (for later messages) */
  const struct engine_plugin *plugin; /* resolved through the lookup */
  /* sources: `retention:`, rules applied to each of the source's items on
   * its own (NULL: none; owned) */
  struct pipeline_retention *retention;
};

#define PIPELINE_DEFAULT_RPO_MS (24ll * 3600 * 1000)

struct pipeline_item_rules;

struct pipeline_retention {
  int set; /* a retention block was given */
  int keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly; /* 0 = unset */
  int64_t keep_within_ms;                                                         /* 0 = unset */
  char **keep_tags;
  size_t n_keep_tags;
  char *apply; /* NULL or "after-run" */
  /* sources[].retention only: an item's rules stop keeping its snapshots
   * once its newest snapshot is this much older than the newest snapshot
   * of the group (0 = never) */
  int64_t expire_after_ms;
  /* the pipeline's block only: the sources' per-item rules (pointing into
   * sources[]), in source order; engine forget applies them too */
  struct pipeline_item_rules *items;
  size_t n_items;
};

/* The per-item retention of one source (sources[].retention). */
struct pipeline_item_rules {
  const char *source;                    /* the source's name */
  const struct pipeline_retention *keep; /* keep_* rules and expire_after */
};

/* A header sent with a webhook: `headers: { Authorization: env:HOOK_TOKEN }`.
 * value is a secret reference (env:NAME, file:/path; resolved when the
 * webhook is called) when secret is set, else the literal text. */
struct pipeline_notify_header {
  char *name;
  char *value;
  int secret;
};

/* One `notify:` entry (docs/CONFIG.md): a webhook and the events it is
 * called for (config/pipeline_notify.c's notify_events; NOTIFY_EVENTS_HELP). */
struct pipeline_notify {
  char *webhook;
  char **on;
  size_t n_on; /* "success", "failure", "partial", "consecutive_failures", ... */
  struct pipeline_notify_header *headers;
  size_t n_headers;
  int64_t timeout_ms;       /* `timeout:` the whole call, retries included (default 30 s) */
  int retries;              /* `retries:` after the first attempt (default 3) */
  int consecutive_failures; /* `consecutive_failures:` N failed runs in a row (default 2) */
  int storage_threshold;    /* `storage_threshold:` percent used of a local sink (default 90) */
};

#define PIPELINE_HOOKS_TIMEOUT_MS (5 * 60 * 1000)
#define PIPELINE_NOTIFY_TIMEOUT_MS (30 * 1000)
#define PIPELINE_NOTIFY_RETRIES 3
#define PIPELINE_NOTIFY_CONSECUTIVE 2
#define PIPELINE_NOTIFY_STORAGE 90

struct pipeline {
  char *path;     /* file it was read from */
  int version;    /* must be 1 */
  char *name;     /* required; [A-Za-z0-9._-]+ */
  char *schedule; /* cron expression or NULL */
  char **tags;
  size_t n_tags;

  struct pipeline_plugin_cfg *sources;
  size_t n_sources; /* at least one */
  struct pipeline_plugin_cfg *sinks;
  size_t n_sinks; /* at least one */

  /* stages.compress: { algorithm: zstd|gzip|none (default zstd), level } */
  char *compress_algorithm;
  int compress_level; /* -1 when not given: algorithm default */

  /* stages.encrypt: { algorithm: <crypto plugin>|none, passphrase: SECRET, key_file: path }
   * The block is required; algorithm none must be written explicitly.
   * Exactly one of passphrase / key_file unless algorithm is none. */
  char *encrypt_algorithm;
  char *encrypt_passphrase_ref; /* "env:NAME" / "file:/path" or NULL */
  char *encrypt_key_file;       /* path or NULL */
  /* stages.encrypt.mode: write-only: key_file is a writer credential
   * (engine key add --write-only), the host adds backups but reads none */
  int encrypt_write_only;
  /* stages.encrypt.per_tenant: each tenant's items under its own keys
   * (repository format 2; docs/SECURITY.md). An item's tenant: its
   * metadata's "tenant" (postgres-schema: the schema, mongodb: the
   * database), else the first tenant_of rule whose SOURCE/GLOB matches it;
   * items of no tenant use the repository's keys. */
  int encrypt_per_tenant;
  struct pipeline_tenant_rule {
    char *source, *glob, *tenant;
  } * tenant_of;
  size_t n_tenant_of;
  const struct engine_plugin *crypto; /* resolved; NULL for none */

  /* repository: { chunk_min, chunk_avg, chunk_max, pack_size } (SIZE values;
   * only used when the repository is created) and engine tuning */
  uint32_t chunk_min, chunk_avg, chunk_max; /* 0 = default */
  uint64_t pack_size;                       /* 0 = default (16 MiB) */
  int repo_format;                          /* repository.format: 0 = default, 1 or 2 */
  uint64_t max_inflight;                    /* `limits: { memory: 256MiB }` 0 = default */
  int64_t timeout_ms; /* `limits: { timeout: 2h }`: engine serve stops a job after it; 0 = none */

  /* objectives: { rpo: 1h, rto: 4h } (milliseconds): the newest complete
   * snapshot may be at most rpo old (default PIPELINE_DEFAULT_RPO_MS); a
   * restore test should take at most rto (0: no objective) */
  int64_t rpo_ms, rto_ms;

  struct pipeline_retention retention;
  char **hooks_before;
  size_t n_hooks_before;
  char **hooks_after;
  size_t n_hooks_after;
  int64_t hooks_timeout_ms; /* `hooks: { timeout: }` each command's limit (default 5 min) */
  struct pipeline_notify *notify;
  size_t n_notify;
};

/* Resolve a plugin by kind and type name. Returns NULL and sets *err
 * (malloc'd, e.g. "no sink plugin named 'sftp' (available: local, s3)"). */
typedef const struct engine_plugin *(*pipeline_lookup_fn)(void *ud, enum engine_plugin_kind kind,
                                                          const char *type, char **err);

/* Parse and validate. On error returns -1 and *err (malloc'd) holds every
 * problem found, one per line, each "file:line:col: option: message".
 * lookup may be NULL: plugin options are then not checked (structure only). */
int pipeline_load(const char *path, pipeline_lookup_fn lookup, void *ud, struct pipeline **out,
                  char **err);
/* Same, from a buffer; `path` is used in messages only. */
int pipeline_load_string(const char *path, const char *text, size_t len, pipeline_lookup_fn lookup,
                         void *ud, struct pipeline **out, char **err);
void pipeline_free(struct pipeline *p);

/* Every secret reference of the pipeline: [{"option": "stages.encrypt.passphrase", "ref":
 * "env:ENGINE_PASSPHRASE"}, ...] (the passphrase, plugins' SECRET options,
 * notify headers), a new array. */
json_t *pipeline_secret_refs(const struct pipeline *p);

/* The events a `notify:` entry may name ("success, failure, ...",
 * malloc'd), and whether event is one of them. */
char *pipeline_notify_event_list(void);
int pipeline_notify_event_known(const char *event);

#endif
