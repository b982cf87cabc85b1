/* Opening a pipeline's repository for the CLI commands. */
#include "cli/context.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/dispatch.h"
#include "ops/audit.h"
#include "repo/index.h"
#include "compress/compress.h"
#include "util/log.h"
#include "util/secret.h"

int cli_fail(char *err) {
  log_error("%s", err ? err : "failed");
  free(err);
  return EXIT_ERROR;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
  char *msg = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "engine: %s%s%s\n(see 'engine help%s%s')\n", cmd ? cmd : "", cmd ? ": " : "",
          n >= 0 ? msg : fmt, cmd ? " " : "", cmd ? cmd : "");
  if (n >= 0)
    free(msg);
  return EXIT_USAGE;
}

int cli_registry(const struct cli_globals *g, struct plugin_registry **out) {
  return registry_load(g->plugin_dirs, g->n_plugin_dirs, out);
}

static const struct engine_plugin *lookup(void *ud, enum engine_plugin_kind kind, const char *type,
                                          char **err) {
  return registry_find(ud, kind, type, err);
}

int cli_load_pipeline(const struct cli_globals *g, const char *path, struct cli_ctx *c,
                      char **err) {
  memset(c, 0, sizeof(*c));
  if (cli_registry(g, &c->reg) != 0) {
    *err = xstrdup("unable to scan the plugin search path");
    return -1;
  }
  return pipeline_load(path, lookup, c->reg, &c->p, err);
}

static int new_instance(const struct pipeline_plugin_cfg *pc, struct plugin_instance **out,
                        char **err) {
  return plugin_instance_new(pc->plugin, pc->name, pc->with, out, err);
}

/* A write-only host (stages.encrypt.mode: write-only) runs backups and
 * lists snapshot ids; every other command needs what its writer credential
 * deliberately lacks. NULL when cmd may run, else why not (malloc'd). */
static char *write_only_refusal(const struct pipeline *p, const char *cmd) {
  if (!p->encrypt_write_only || !cmd || strcmp(cmd, "run") == 0 || strcmp(cmd, "snapshots") == 0 ||
      strcmp(cmd, "validate") == 0)
    return NULL;
  const char *why;
  if (strncmp(cmd, "forget", 6) == 0 || strncmp(cmd, "prune", 5) == 0 ||
      strncmp(cmd, "repair", 6) == 0)
    why = "a write-only host only adds to the repository and never removes or rewrites what is "
          "in it, so that an intruder on it cannot destroy the recovery points";
  else if (strncmp(cmd, "key", 3) == 0)
    why = "managing keys needs the repository's master secret, which only the passphrase "
          "opens; its writer credential holds the public key alone";
  else
    why = "its writer credential holds the repository's public key but not the private key, so "
          "it cannot decrypt snapshots, trees or data";
  return xasprintf("'%s' is refused: %s's stages.encrypt.mode is write-only and %s; run it on "
                   "a host that holds the passphrase",
                   cmd, p->path, why);
}

int cli_open(struct cli_ctx *c, int with_sources, int create, int dry_run, char **err) {
  struct pipeline *p = c->p;
  char *refused = write_only_refusal(p, cli_current_command());
  if (refused) {
    *err = refused;
    return -1;
  }
  c->sink_insts = xcalloc(p->n_sinks, sizeof(*c->sink_insts));
  c->sinks = xcalloc(p->n_sinks, sizeof(*c->sinks));
  size_t n_sinks = 0;
  for (size_t i = 0; i < p->n_sinks; i++) {
    if (new_instance(&p->sinks[i], &c->sink_insts[i], err) != 0) {
      if (p->sinks[i].required || p->n_sinks == 1)
        return -1;
      /* an optional sink that cannot even be set up misses this run */
      log_warn("%s; sink '%s' is not required: continuing without it", *err, p->sinks[i].name);
      if (!c->skipped_sinks)
        c->skipped_sinks = json_array();
      json_array_append_new(c->skipped_sinks, json_string(p->sinks[i].name));
      free(*err);
      *err = NULL;
      continue;
    }
    c->sinks[n_sinks].pi = c->sink_insts[i];
    c->sinks[n_sinks].required = p->sinks[i].required;
    n_sinks++;
  }
  if (n_sinks == 0) {
    *err = xstrdup("no sink could be set up");
    return -1;
  }
  if (with_sources) {
    c->sources = xcalloc(p->n_sources, sizeof(*c->sources));
    for (size_t i = 0; i < p->n_sources; i++)
      if (new_instance(&p->sources[i], &c->sources[i], err) != 0)
        return -1;
  }
  struct repo_open_opts o;
  memset(&o, 0, sizeof(o));
  o.sinks = c->sinks;
  o.n_sinks = n_sinks;
  o.crypto = p->crypto;
  o.create = create;
  o.read_only = c->read_only;
  o.dry_run = dry_run;
  o.chunker.min_size = p->chunk_min;
  o.chunker.avg_size = p->chunk_avg;
  o.chunker.max_size = p->chunk_max;
  o.pack_size = p->pack_size;
  o.format = p->repo_format;
  o.write_only = p->encrypt_write_only;
  o.compress_algo = compress_algo_from_name(p->compress_algorithm ? p->compress_algorithm : "zstd");
  if (o.compress_algo < 0)
    o.compress_algo = COMPRESS_ZSTD;
  o.compress_level =
      p->compress_level >= 0 ? p->compress_level : compress_default_level(o.compress_algo);
  char *secret = NULL;
  size_t secret_len = 0;
  if (p->crypto) {
    char *ref = p->encrypt_passphrase_ref
                    ? xstrdup(p->encrypt_passphrase_ref)
                    : xasprintf("file:%s", p->encrypt_key_file ? p->encrypt_key_file : "");
    char *e = NULL;
    int rc = secret_resolve(ref, &secret, &secret_len, &e);
    free(ref);
    if (rc != 0) {
      *err = xasprintf("%s: stages.encrypt: %s", p->path, e);
      free(e);
      return -1;
    }
  }
  o.passphrase = secret;
  o.passphrase_len = secret_len;
  int rc = repo_open(&o, &c->repo, err);
  secret_wipe_free(secret, secret_len);
  if (rc == 0 && c->repo->write_only) {
    /* its own snapshots' manifests and trees, for the next run's parent */
    char *state = ops_state_dir();
    if (state)
      c->repo->journal_dir = xasprintf("%s/writer/%s", state, c->repo->id);
    free(state);
  }
  return rc == 0 ? 0 : -1;
}

int cli_load_index(struct cli_ctx *c, char **err) {
  if (c->repo->created)
    return 0;
  index_free(c->repo->index);
  c->repo->index = index_new();
  if (index_load(c->repo, err) != 0)
    return -1;
  size_t i;
  json_t *d;
  json_array_foreach(c->repo->index->damaged, i, d) log_warn(
      "%s; the blobs it lists are unknown, so items that need them will fail (run 'engine repair "
      "index')",
      json_string_value(json_object_get(d, "error")));
  return 0;
}

int cli_lock(struct cli_ctx *c, int exclusive, int64_t wait_ms, int load_index, char **err) {
  if (repo_lock_acquire(c->repo, exclusive, wait_ms, &c->lock, err) != 0)
    return -1;
  /* read the index only under the lock: a backup may have finished while
   * we waited, and prune may have rewritten it */
  return load_index ? cli_load_index(c, err) : 0;
}

void cli_unlock(struct cli_ctx *c) {
  repo_lock_release(c->lock);
  c->lock = NULL;
}

void cli_close(struct cli_ctx *c) {
  cli_unlock(c);
  /* an audited command's repository stays open for its audit record */
  if (cli_keep_ctx(c))
    return;
  repo_close(c->repo);
  if (c->p) {
    for (size_t i = 0; c->sources && i < c->p->n_sources; i++)
      plugin_instance_free(c->sources[i]);
    for (size_t i = 0; c->sink_insts && i < c->p->n_sinks; i++)
      plugin_instance_free(c->sink_insts[i]);
  }
  free(c->sources);
  free(c->sink_insts);
  free(c->sinks);
  pipeline_free(c->p);
  registry_free(c->reg);
  json_decref(c->skipped_sinks);
  memset(c, 0, sizeof(*c));
}
