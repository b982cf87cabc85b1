/* Running one command (cli/dispatch.c), and what happens around every
 * command in one place: a JSON error object on stdout when a --json command
 * fails without having printed its document, and, for the commands that
 * act on a repository, the audit record (ops/audit.h); for `run`, the
 * after hooks and the notifications of the outcome; for `check`,
 * verify_failed. Commands tell it what they did through the cli_note_*
 * calls; cli_close hands the pipeline and the still open repository over
 * (cli_keep_ctx) so the record can be stored there after the command
 * returned its exit status. */
#ifndef CORE_CLI_DISPATCH_H
#define CORE_CLI_DISPATCH_H

#include <jansson.h>

#include "cli/commands.h"
#include "pipeline/backup.h"

/* Runs cmd and what surrounds it; returns its exit status. */
int cli_dispatch(const struct cli_command *cmd, const struct cli_globals *g,
                 const struct cli_args *a);

/* A command line that could not be parsed (exit 2): with --json among its
 * arguments, the JSON error object goes to stdout. */
void cli_usage_failed(int argc, char **argv, int rc, const char *msg);

/* Prints a --json document (indented, sorted keys) and remembers that the
 * command printed one. */
void cli_print_json(json_t *j);

/* From cli_close: takes c over (returns 1, *c is emptied) while a command
 * that is audited runs; 0: close it. */
int cli_keep_ctx(struct cli_ctx *c);

/* `run`: the pipeline's before hooks (none with --dry-run), after waiting
 * for another run of a pipeline with hooks on this host (ops/hooks.h; as
 * long as --lock-wait allows: *waited_s, and *gave_up when it passed). 0,
 * or -1 with *err; the after hooks run anyway when the command ends. */
int cli_before_hooks(const struct pipeline *p, double *waited_s, int *gave_up, char **err);

/* What the command did, for its audit record and notifications. */
void cli_note_snapshot(const char *id);
void cli_note_detail(const char *key, json_t *value); /* steals value */
/* The command being dispatched ("run", "key add"), or NULL outside one. */
const char *cli_current_command(void);
void cli_note_run(const struct backup_result *r, const char *status, json_t *sinks_missed);

#endif
