/* engine serve [--listen ADDR:PORT] [--config-dir DIR] [--token-file PATH] ...:
 * the HTTP API and cron scheduler (core/serve/, docs/SERVE.md). */
#include "cli/commands.h"
#include "serve/serve.h"

int cmd_serve(const struct cli_globals *g, const struct cli_args *a) {
  struct serve_opts o = {
      .listen = a->listen ? a->listen : "127.0.0.1:5036",
      .config_dir = a->config_dir ? a->config_dir : "conf.d",
      .token_file = a->token_file,
      .state_dir = a->state_dir,
      .allow_restore = a->allow_restore,
      .restore_token_file = a->restore_token_file,
      .summary_minute = a->daily_summary ? a->summary_minute : 0,
      .plugin_dirs = g->plugin_dirs,
      .n_plugin_dirs = g->n_plugin_dirs,
      .quiet = g->quiet,
  };
  return serve_run(&o);
}
