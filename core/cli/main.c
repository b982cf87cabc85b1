/* engine: command-line entry point. Parses the command line against the
 * command table (cli/args.c, cli/table.c), sets up the process and runs
 * the command. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/dispatch.h"
#include "net/http.h"
#include "plugin/host.h" /* ENGINE_VERSION, ABI */
#include "util/log.h"
#include "util/cancel.h"
#include "util/secret.h"

static void on_signal(int sig) {
  static volatile sig_atomic_t count;
  if (++count > 1) {
    /* second signal: give up at once */
    signal(sig, SIG_DFL);
    raise(sig);
  }
  cancel_request();
}

/* Process-wide settings for a command's process (`engine serve` runs
 * backups as child processes of its own, so none of this reaches it twice). */
static void setup_process(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  /* Packs (16 MiB and more) are allocated and freed once each: serve them
   * with mmap so their memory goes back to the system at once, while
   * chunk-sized buffers stay in the allocator's arenas for reuse. This
   * keeps peak RSS near the live working set (docs/PERFORMANCE.md). */
  if (!getenv("MALLOC_MMAP_THRESHOLD_"))
    mallopt(M_MMAP_THRESHOLD, 8 * 1024 * 1024);
  if (!getenv("UV_THREADPOOL_SIZE")) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    char buf[16];
    snprintf(buf, sizeof(buf), "%ld", n < 2 ? 2 : n > 16 ? 16 : n + 1);
    setenv("UV_THREADPOOL_SIZE", buf, 1);
  }
}

int main(int argc, char **argv) {
  secret_protect_process(); /* before any passphrase or key is read */
  struct cli_invocation inv;
  char *err = NULL;
  int rc = cli_parse(argc, argv, &inv, &err);
  if (rc != 0) {
    fprintf(stderr, "engine: %s\n", err);
    cli_usage_failed(argc, argv, rc, err);
    free(err);
    cli_invocation_free(&inv);
    return rc;
  }
  const struct cli_globals *g = &inv.g;
  /* -q silences what commands print besides their results; warnings and
   * errors stay (docs/CLI.md) */
  log_set_level(g->quiet          ? ENGINE_LOG_WARN
                : g->verbose >= 2 ? ENGINE_LOG_DEBUG
                : g->verbose      ? ENGINE_LOG_INFO
                                  : ENGINE_LOG_WARN);
  switch (inv.todo) {
  case CLI_TODO_VERSION:
    printf("engine %s (plugin ABI %d.%d)\n", ENGINE_VERSION, ENGINE_ABI_MAJOR, ENGINE_ABI_MINOR);
    break;
  case CLI_TODO_HELP:
    if (inv.cmd)
      cli_print_help(stdout, inv.cmd);
    else
      cli_print_usage(stdout);
    break;
  case CLI_TODO_MARKDOWN:
    cli_print_markdown(stdout);
    break;
  case CLI_TODO_USAGE:
    cli_print_usage(stderr);
    rc = EXIT_USAGE;
    break;
  case CLI_TODO_RUN:
    setup_process();
    rc = cli_dispatch(inv.cmd, g, &inv.a);
    http_shutdown();
    break;
  }
  cli_invocation_free(&inv);
  return rc;
}
