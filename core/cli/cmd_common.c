/* Helpers shared by the pipeline commands (cli/cmd_common.h). */
#include "cli/cmd_common.h"

#include <time.h>

int cli_open_existing(const struct cli_globals *g, const char *path, struct cli_ctx *c,
                      int with_sources, int read_only) {
  char *err = NULL;
  int lrc = cli_load_pipeline(g, path, c, &err);
  c->read_only = read_only;
  if (lrc != 0 || cli_open(c, with_sources, 0, 0, &err) != 0) {
    cli_close(c);
    return cli_fail(err);
  }
  return EXIT_OK;
}

int cli_open_locked(const struct cli_globals *g, const struct cli_args *a, struct cli_ctx *c,
                    int with_sources, int lock, int load_index) {
  int rc = cli_open_existing(g, a->pos[0], c, with_sources, lock != 2);
  if (rc)
    return rc;
  char *err = NULL;
  if (cli_lock(c, lock == 2, a->lock_wait_ms, load_index, &err) != 0) {
    cli_close(c);
    return cli_fail(err);
  }
  return EXIT_OK;
}

double cli_mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
