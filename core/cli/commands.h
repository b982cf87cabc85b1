/* The CLI: its commands (one function each) and the table that declares
 * every command and option once (cli/table.c). The parser (cli/args.c),
 * `engine help CMD` and the synopsis in docs/CLI.md (`engine help
 * --markdown`) all read that table, so an option is accepted by exactly the
 * commands that use it and documented where it is accepted. */
#ifndef CORE_CLI_COMMANDS_H
#define CORE_CLI_COMMANDS_H

#include <stdio.h>

#include "cli/context.h"

struct cli_args {
  const char **pos; /* positional arguments after the command (an action first) */
  size_t n_pos;
  int json, dry_run, yes, read_data;
  const char *progress; /* auto|always|never */
  const char **only;    /* --only, repeatable (run); restore takes one */
  size_t n_only;
  const char *target, *time;
  int64_t time_s; /* --time, parsed (seconds since the epoch) */
  const char *new_passphrase, *new_key_file;
  int write_only;      /* key add --write-only */
  const char *out;     /* key add --write-only --out FILE */
  const char *tenant;  /* key shred, snapshots: --tenant NAME */
  int rewrite;         /* key rotate --rewrite */
  const char *as_name; /* restore --as */
  int drop_existing, to_stdout, restore_test, prune;
  const char **namespace_map; /* restore --namespace-map OLD=NEW, repeatable */
  size_t n_namespace_map;
  const char *lock_wait, *repack_threshold;
  int64_t lock_wait_ms;   /* --lock-wait, parsed */
  double repack_fraction; /* --repack-threshold, parsed */
  const char *from, *to;  /* sync */
  int install;            /* schedule */
  const char *unit_dir;
  const char *listen, *config_dir, *token_file; /* serve */
  const char **forget_unreadable;               /* forget, prune: ids, repeatable */
  size_t n_forget_unreadable;
  const char *message;            /* notify */
  const char *env_file;           /* schedule */
  const char *metrics_file;       /* run: Prometheus textfile */
  int allow_untested;             /* check --restore-test */
  const char *contains;           /* snapshots: SOURCE/ITEM-GLOB */
  const char *state_dir;          /* serve */
  int allow_restore;              /* serve */
  const char *restore_token_file; /* serve */
  const char *daily_summary;      /* serve: HH:MM */
  int summary_minute;             /* parsed */
};

typedef int (*cli_command_fn)(const struct cli_globals *g, const struct cli_args *a);

/* ---- the table ----------------------------------------------------------- */

/* Every option of every command, one entry each (cli_options[]). */
enum cli_opt {
  OPT_NONE = 0, /* ends a command's option list */
  OPT_JSON,
  OPT_DRY_RUN,
  OPT_PROGRESS,
  OPT_TIME,
  OPT_LOCK_WAIT,
  OPT_ONLY,
  OPT_TARGET,
  OPT_YES,
  OPT_AS,
  OPT_DROP_EXISTING,
  OPT_TO_STDOUT,
  OPT_NAMESPACE_MAP,
  OPT_READ_DATA,
  OPT_RESTORE_TEST,
  OPT_PRUNE,
  OPT_REPACK_THRESHOLD,
  OPT_FORGET_UNREADABLE,
  OPT_NEW_PASSPHRASE,
  OPT_NEW_KEY_FILE,
  OPT_FROM,
  OPT_TO,
  OPT_INSTALL,
  OPT_UNIT_DIR,
  OPT_LISTEN,
  OPT_CONFIG_DIR,
  OPT_TOKEN_FILE,
  OPT_METRICS_FILE,
  OPT_ALLOW_UNTESTED,
  OPT_CONTAINS,
  OPT_STATE_DIR,
  OPT_ALLOW_RESTORE,
  OPT_RESTORE_TOKEN_FILE,
  OPT_DAILY_SUMMARY,
  OPT_MESSAGE,
  OPT_ENV_FILE,
  OPT_WRITE_ONLY,
  OPT_OUT,
  OPT_TENANT,
  OPT_REWRITE,
  OPT__COUNT
};

enum cli_opt_kind {
  CLI_FLAG,  /* --name; sets an int to 1 */
  CLI_VALUE, /* --name VALUE or --name=VALUE; a const char *, given at most once */
  CLI_LIST   /* --name VALUE, repeatable; a const char ** and its count */
};

struct cli_option {
  const char *name; /* without the dashes: "dry-run" */
  char short_name;  /* 'y' for -y, or 0 */
  enum cli_opt_kind kind;
  const char *value; /* the value's name in the synopsis ("D"); NULL for a flag */
  size_t field;      /* offsetof(struct cli_args, ...) */
  size_t count;      /* CLI_LIST: offsetof the count */
  /* Checks a value, and may store its parsed form in *a. Returns NULL, or
   * what was expected ("expected a duration such as 30s, 5m or 1h"). */
  const char *(*check)(const char *value, struct cli_args *a);
};

/* How a command takes one of the options. */
#define CLI_REQUIRED 1u /* the command needs it (shown without brackets) */
#define CLI_ONCE 2u     /* a repeatable option this command takes at most once */
struct cli_use {
  enum cli_opt opt;
  const char *help;    /* for `engine help CMD`; wrapped there */
  unsigned flags;      /* CLI_REQUIRED, CLI_ONCE */
  const char *actions; /* NULL: every action; else the ones that take it ("add passwd") */
  enum cli_opt needs;  /* another option it only makes sense with, or OPT_NONE */
};

/* A command whose first argument names what to do (key add, repair index). */
struct cli_action {
  const char *name;
  const char *args;     /* the positional arguments after the action, for the synopsis */
  int min_pos, max_pos; /* how many; max_pos CLI_MANY: no limit */
  const char *help;
};
#define CLI_MANY (-1)

struct cli_command {
  const char *name;
  const char *args;     /* positional arguments, for the synopsis ("PIPELINE SNAPSHOT|latest") */
  int min_pos, max_pos; /* how many; max_pos CLI_MANY: no limit */
  const struct cli_action *actions; /* NULL, or ends with {NULL} */
  const struct cli_use *options;    /* ends with {OPT_NONE} */
  const char *help;                 /* what it does (wrapped) */
  const char *footer;               /* after the options: exit status; NULL: none */
  cli_command_fn run;
};

extern const struct cli_option cli_options[OPT__COUNT];
extern const struct cli_command cli_commands[]; /* ends with {NULL} */

const struct cli_command *cli_find_command(const char *name);

/* ---- parsing and help (cli/args.c) --------------------------------------- */

enum cli_todo {
  CLI_TODO_RUN,      /* run cmd */
  CLI_TODO_HELP,     /* `engine help [CMD]`, `engine [CMD] --help`: print help (cmd may be NULL) */
  CLI_TODO_MARKDOWN, /* `engine help --markdown`: the synopsis block of docs/CLI.md */
  CLI_TODO_VERSION,  /* `engine --version` */
  CLI_TODO_USAGE     /* no command given: the usage on stderr, exit 2 */
};

struct cli_invocation {
  enum cli_todo todo;
  const struct cli_command *cmd;
  struct cli_globals g;
  struct cli_args a;
};

/* Parses argv against the table. Returns 0, or EXIT_USAGE with *err
 * (malloc'd) saying what is wrong, to be printed after "engine: ". Global
 * options (--plugin-dir DIR, -v, -q) may come before or after the command.
 * The arrays in *inv point into argv; free them with cli_invocation_free. */
int cli_parse(int argc, char **argv, struct cli_invocation *inv, char **err);
void cli_invocation_free(struct cli_invocation *inv);

/* The synopsis of a command (one line per action, each wrapped at 100
 * columns, continuation lines indented under the first argument), every
 * line but the first preceded by `indent` spaces. */
void cli_print_synopsis(FILE *f, const struct cli_command *c, int indent);
/* `engine help`: usage and the list of commands. */
void cli_print_usage(FILE *f);
/* `engine help CMD`. */
void cli_print_help(FILE *f, const struct cli_command *c);
/* docs/CLI.md's synopsis: a fenced code block of every command's synopsis. */
void cli_print_markdown(FILE *f);

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
int cmd_audit(const struct cli_globals *g, const struct cli_args *a);
int cmd_notify(const struct cli_globals *g, const struct cli_args *a);
int cmd_status(const struct cli_globals *g, const struct cli_args *a);

#endif
