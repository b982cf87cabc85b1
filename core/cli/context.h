/* What every pipeline command needs: the plugin registry, the parsed
 * pipeline, sink and source instances, and the opened repository. */
#ifndef CORE_CLI_CONTEXT_H
#define CORE_CLI_CONTEXT_H

#include "config/pipeline.h"
#include "plugin/host.h"
#include "plugin/loader.h"
#include "repo/lock.h"
#include "repo/repo.h"

struct cli_globals {
  const char **plugin_dirs;
  size_t n_plugin_dirs;
  int verbose, quiet;
};

struct cli_ctx {
  struct plugin_registry *reg;
  struct pipeline *p;
  struct plugin_instance **sources;
  struct plugin_instance **sink_insts;
  struct repo_sink *sinks;
  struct repo *repo;
  struct repo_lock *lock;
  json_t *skipped_sinks; /* names of optional sinks that could not be set up */
  int read_only;         /* set between cli_load_pipeline and cli_open */
};

/* Exit codes (docs/CLI.md) */
#define EXIT_OK 0
#define EXIT_ERROR 1
#define EXIT_USAGE 2
#define EXIT_PARTIAL 3
#define EXIT_INTERRUPTED 130

/* Errors. A command's failure is printed through the logger
 * ("engine: error: MESSAGE"); a usage error says which command it is about
 * and where its help is ("engine: CMD: MESSAGE", "(see 'engine help CMD')"). */
/* Prints err (malloc'd; NULL: "failed") and frees it. Returns EXIT_ERROR. */
int cli_fail(char *err);
/* cmd may be NULL (no command). Returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int cli_registry(const struct cli_globals *g, struct plugin_registry **out);
/* Load and validate the pipeline. */
int cli_load_pipeline(const struct cli_globals *g, const char *path, struct cli_ctx *c, char **err);
/* Create the sink (and, with sources, the source) instances and open the
 * repository (create: initialise an empty location). */
int cli_open(struct cli_ctx *c, int with_sources, int create, int dry_run, char **err);
void cli_close(struct cli_ctx *c);
/* Read the repository's index (commands that read blobs: restore, check,
 * backup dedup, prune). cli_open does not, so it is read once, under the
 * lock where one is taken. */
int cli_load_index(struct cli_ctx *c, char **err);
/* Take the repository lock (shared or exclusive), waiting up to wait_ms,
 * then read the index if load_index. */
int cli_lock(struct cli_ctx *c, int exclusive, int64_t wait_ms, int load_index, char **err);
void cli_unlock(struct cli_ctx *c);

#endif
