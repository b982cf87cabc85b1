/* The CLI commands (one function each) and their help texts. */
#ifndef CORE_CLI_COMMANDS_H
#define CORE_CLI_COMMANDS_H

#include "cli/context.h"

struct cli_args {
  const char **pos; /* positional arguments after the command */
  size_t n_pos;
  int json, dry_run, yes, read_data;
  const char *progress; /* auto|always|never */
  const char *only, *target, *time;
  const char *new_passphrase, *new_key_file;
  const char *as_name; /* restore --as */
  int drop_existing, to_stdout, restore_test, prune;
  const char *lock_wait, *repack_threshold;
  int64_t lock_wait_ms;
  const char *from, *to; /* sync */
  int install;           /* schedule */
  const char *unit_dir;
  const char *listen, *config_dir, *token_file; /* serve */
  const char **forget_unreadable;               /* forget, prune: ids, repeatable */
  size_t n_forget_unreadable;
};

struct cli_command {
  const char *name;
  const char *usage;
  const char *help;
  int min_pos, max_pos;
  int (*run)(const struct cli_globals *g, const struct cli_args *a);
};

extern const struct cli_command cli_commands[];
const struct cli_command *cli_find_command(const char *name);

int cmd_run(const struct cli_globals *g, const struct cli_args *a);
int cmd_validate(const struct cli_globals *g, const struct cli_args *a);
int cmd_snapshots(const struct cli_globals *g, const struct cli_args *a);
int cmd_show(const struct cli_globals *g, const struct cli_args *a);
int cmd_restore(const struct cli_globals *g, const struct cli_args *a);
int cmd_check(const struct cli_globals *g, const struct cli_args *a);
int cmd_key(const struct cli_globals *g, const struct cli_args *a);
int cmd_forget(const struct cli_globals *g, const struct cli_args *a);
int cmd_prune(const struct cli_globals *g, const struct cli_args *a);
int cmd_sync(const struct cli_globals *g, const struct cli_args *a);
int cmd_schedule(const struct cli_globals *g, const struct cli_args *a);
int cmd_serve(const struct cli_globals *g, const struct cli_args *a);
int cmd_plugins(const struct cli_globals *g, const struct cli_args *a);
int cmd_repair(const struct cli_globals *g, const struct cli_args *a);

#endif
