/* engine serve: the HTTP API and cron scheduler over a directory of
 * pipelines (docs/SERVE.md). */
#ifndef CORE_SERVE_SERVE_H
#define CORE_SERVE_SERVE_H

#include <stddef.h>

struct serve_opts {
  const char *listen;     /* "ADDR:PORT" */
  const char *config_dir; /* the *.yml / *.yaml pipelines */
  const char *token_file; /* bearer token, or NULL */
  const char *state_dir;  /* NULL: the default for the config directory */
  int allow_restore;      /* POST /v1/pipelines/NAME/restore */
  const char *restore_token_file;
  int summary_minute; /* the daily summary: minutes after local midnight */
  const char *const *plugin_dirs;
  size_t n_plugin_dirs;
  int quiet;
};

/* Run until SIGTERM/SIGINT; returns the process exit status (0 after a clean
 * stop, 1 when the server could not start, 2 for a bad --listen). */
int serve_run(const struct serve_opts *o);

#endif
