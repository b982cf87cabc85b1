/* Helpers shared by the pipeline commands (cmd_*.c): opening a pipeline's
 * existing repository, with or without its lock, and a monotonic clock. */
#ifndef CORE_CLI_CMD_COMMON_H
#define CORE_CLI_CMD_COMMON_H

#include "cli/context.h"
#include "cli/commands.h"

/* Load the pipeline at path and open its repository (with_sources: the
 * source instances too). On failure prints the error, closes c and returns
 * EXIT_ERROR. */
int cli_open_existing(const struct cli_globals *g, const char *path, struct cli_ctx *c,
                      int with_sources, int read_only);
/* cli_open_existing on a->pos[0], then lock: lock = 1 shared, 2 exclusive;
 * then read the index if the command reads blobs. */
int cli_open_locked(const struct cli_globals *g, const struct cli_args *a, struct cli_ctx *c,
                    int with_sources, int lock, int load_index);
/* Seconds on the monotonic clock. */
double cli_mono_now(void);

#endif
