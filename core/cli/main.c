/* engine: command-line entry point. Parses global and command options,
 * installs signal handlers, and dispatches to cli/commands.c. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "config/pipeline.h"
#include "net/http.h"
#include "plugin/host.h"
#include "util/log.h"
#include "util/cancel.h"
#include "util/secret.h"

const struct cli_command cli_commands[] = {
    {"run",
     "engine run PIPELINE [--dry-run] [--json] [--progress auto|always|never] [--time ISO8601] "
     "[--lock-wait D]",
     "Back up every source of the pipeline into a new snapshot on every sink. The first run on an "
     "empty\n"
     "sink location initialises the repository; a location holding anything else is refused.\n"
     "  --dry-run    read and chunk everything, count what would be new, store nothing\n"
     "  --json       print the summary as JSON (docs/CLI.md)\n"
     "  --progress   progress line on stderr: auto (when stderr is a terminal), always, never\n"
     "  --time T     record T (ISO 8601) as the snapshot time instead of now (imports, tests)\n"
     "Exit status: 0 complete, 3 partial (some items failed or vanished; see warnings), 1 error,\n"
     "130 interrupted (no snapshot written).",
     1, 1, cmd_run},
    {"validate", "engine validate PIPELINE [--json]",
     "Check a pipeline file without running it: structure, types, plugin names and every plugin\n"
     "option against the plugin's schema. Errors name file:line:column and the option.",
     1, 1, cmd_validate},
    {"snapshots", "engine snapshots PIPELINE [--json]",
     "List the recovery points in the pipeline's repository, oldest first.", 1, 1, cmd_snapshots},
    {"show", "engine show PIPELINE SNAPSHOT|latest [--json]",
     "Print one snapshot manifest: times, host, status, per-source items, marks and warnings.", 2,
     2, cmd_show},
    {"restore",
     "engine restore PIPELINE SNAPSHOT|latest [--only SOURCE[/ITEM-GLOB]] [--target T] [--dry-run] "
     "[--yes]\n"
     "               [--as NAME] [--drop-existing] [--to-stdout]",
     "Restore a snapshot. Without --target, sources restore to their original location.\n"
     "  --only S[/G]  only source S, and within it items matching glob G (and what is below them)\n"
     "  --target T    where to restore (a directory for the files source)\n"
     "  --dry-run     list what would be restored, write nothing\n"
     "  --yes         confirm overwriting existing data (a terminal is asked [y/N] instead)\n"
     "  --as NAME     restore one item under another name (database sources: another schema name)\n"
     "  --drop-existing  replace existing objects (database sources; asks [y/N] or needs --yes)\n"
     "  --to-stdout   write the selected item's raw stream to stdout (e.g. a pg_dump archive)\n"
     "Item names in the snapshot are checked first; a manifest with '..' or absolute names is "
     "refused.\n"
     "Exit status: 0 restored, 3 some items failed (the target is incomplete and says so), 1 "
     "error.",
     2, 2, cmd_restore},
    {"check", "engine check PIPELINE [--read-data] [--restore-test] [--json]",
     "Verify the repository: every snapshot's trees and chunks are indexed and their packs exist.\n"
     "  --read-data   also download every pack, verify its hash, decrypt and verify every blob, "
     "and\n"
     "                name the snapshots and items affected by any damage.\n"
     "  --restore-test  restore the latest snapshot of every source that supports it into a "
     "scratch\n"
     "                location and run the source's sanity checks (database sources), then clean "
     "up.\n"
     "Exit status: 0 sound, 1 problems found or the check could not run.",
     1, 1, cmd_check},
    {"forget",
     "engine forget PIPELINE [SNAPSHOT]... [--prune] [--dry-run] [--json] [--lock-wait D]\n"
     "              [--forget-unreadable ID]...",
     "With SNAPSHOT ids (or prefixes of at least 8 hex digits): remove those snapshots. Without:\n"
     "apply the pipeline's retention policy (retention: keep_last, keep_hourly, keep_daily, "
     "keep_weekly,\n"
     "keep_monthly, keep_yearly, keep_within, keep_tags; restic's semantics, UTC calendar) to each "
     "group of\n"
     "snapshots from the same host and pipeline. Prints which snapshots are kept and why, and "
     "which are\n"
     "removed. Takes the exclusive lock.\n"
     "  --dry-run     print the decision, remove nothing\n"
     "  --prune       then remove the data no snapshot references (see prune)\n"
     "  --lock-wait D wait up to D (e.g. 10m) for other processes' locks instead of failing\n"
     "  --forget-unreadable ID  drop snapshot ID, which exists but cannot be read (see check);\n"
     "                without it forget refuses to run while any snapshot is unreadable",
     1, 64, cmd_forget},
    {"prune",
     "engine prune PIPELINE [--dry-run] [--repack-threshold F] [--json] [--lock-wait D] "
     "[--forget-unreadable ID]...",
     "Remove data no snapshot references: deletes packs without used blobs (including packs left "
     "by\n"
     "killed backups) and repacks packs whose unused share exceeds the threshold (default 0.5), "
     "then\n"
     "rewrites the index. Takes the exclusive lock, so it waits for (or refuses during) backups.\n"
     "A killed prune leaves a repository that passes check; run it again. It refuses to delete\n"
     "anything while a snapshot or an index object cannot be read (name lost snapshots with\n"
     "--forget-unreadable ID; rebuild a damaged index with 'engine repair index').",
     1, 1, cmd_prune},
    {"repair",
     "engine repair index|snapshots PIPELINE [SNAPSHOT]... [--read-data] [--dry-run] [--json] "
     "[--lock-wait D]",
     "Repair a damaged repository under the exclusive lock; a killed repair leaves it as it was\n"
     "or repaired, never worse.\n"
     "  index       rebuild the index from the packs' own headers: index objects that cannot be\n"
     "              read are replaced, packs no index lists are indexed again, entries of lost\n"
     "              packs are dropped (entries of packs whose header is damaged are kept)\n"
     "  snapshots   for each snapshot (or the ones named) whose data is partly lost, write a new\n"
     "              snapshot holding what survives, tagged 'repaired', with the lost items listed\n"
     "              in its manifest; the damaged original stays until you forget it.\n"
     "              --read-data also decodes every blob the snapshots use (finds damaged data,\n"
     "              not only missing data)\n"
     "  --dry-run   say what would be done, write nothing\n"
     "Exit status: 0 nothing to repair or repaired, 3 repaired but data was lost, 1 error.",
     2, 64, cmd_repair},
    {"sync", "engine sync PIPELINE --from SINK --to SINK",
     "Copy the objects the --from sink has and the --to sink lacks (after an outage of a sink "
     "with\n"
     "required: false, or to seed a sink newly added to the pipeline), in an order that keeps the\n"
     "target consistent: keys and config, packs, index, snapshots. Nothing is overwritten or "
     "deleted.",
     1, 1, cmd_sync},
    {"key",
     "engine key add|list|remove|passwd PIPELINE [KEY-ID] [--new-passphrase env:NAME|file:PATH] "
     "[--new-key-file PATH] [--json]",
     "Manage the keys that open the repository; the data is never rewritten.\n"
     "  add       add a key for a new passphrase (from --new-passphrase, --new-key-file, or asked "
     "twice\n"
     "            on the terminal). --new-key-file PATH creates PATH (mode 0600) with a random key "
     "if it\n"
     "            does not exist.\n"
     "  list      list the keys (id, created, user, host; * marks the key used to open)\n"
     "  remove    remove KEY-ID (refuses the last key and the key used to open the repository)\n"
     "  passwd    add a key for the new passphrase and remove the one used to open the "
     "repository;\n"
     "            update the pipeline's stages.encrypt reference afterwards.\n"
     "The repository is opened with the pipeline's stages.encrypt passphrase or key file.",
     2, 3, cmd_key},
    {"schedule", "engine schedule PIPELINE [--install] [--unit-dir DIR]",
     "Print a systemd .service and .timer that run the pipeline on its 'schedule:' (a cron "
     "expression,\n"
     "translated to OnCalendar=; Persistent=true catches up after downtime). --install writes them "
     "to\n"
     "/etc/systemd/system (or --unit-dir) as engine-NAME.service/.timer.",
     1, 1, cmd_schedule},
    {"serve", "engine serve [--listen ADDR:PORT] [--config-dir DIR] [--token-file PATH]",
     "Serve the HTTP API (docs/SERVE.md) and run the pipelines of DIR (every *.yml / *.yaml,\n"
     "default ./conf.d) on their cron 'schedule:'. Backups run as child processes, at most one\n"
     "per pipeline and two at once. SIGHUP reloads DIR; SIGTERM/SIGINT stop accepting requests\n"
     "and wait up to 60 s for running backups.\n"
     "  --listen A:P       address to listen on (default 127.0.0.1:5036; port 0 picks one)\n"
     "  --config-dir DIR   the pipelines (default conf.d)\n"
     "  --token-file PATH  require 'Authorization: Bearer TOKEN' with the token in PATH (mode\n"
     "                     0600); needed to listen on anything but a loopback address",
     0, 0, cmd_serve},
    {"plugins", "engine plugins [--json]",
     "List the plugins found on the search path (--plugin-dir, $ENGINE_PLUGIN_PATH, the build "
     "tree,\n"
     "the install prefix) with their versions, options, and why any was refused.",
     0, 0, cmd_plugins},
    {NULL, NULL, NULL, 0, 0, NULL}};

const struct cli_command *cli_find_command(const char *name) {
  for (const struct cli_command *c = cli_commands; c->name; c++)
    if (strcmp(c->name, name) == 0)
      return c;
  return NULL;
}

static void usage(FILE *f) {
  fprintf(f, "usage: engine [--plugin-dir DIR]... [-v|-q] COMMAND [ARGS]\n\ncommands:\n");
  for (const struct cli_command *c = cli_commands; c->name; c++)
    fprintf(f, "  %s\n", c->usage);
  fprintf(f, "  engine help COMMAND\n  engine --version\n\n"
             "exit status: 0 ok, 1 error, 2 usage, 3 partial, 130 interrupted\n");
}

static void on_signal(int sig) {
  static volatile sig_atomic_t count;
  if (++count > 1) {
    /* second signal: give up at once */
    signal(sig, SIG_DFL);
    raise(sig);
  }
  cancel_request();
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "engine: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n(see 'engine help')\n");
  return EXIT_USAGE;
}

int main(int argc, char **argv) {
  secret_protect_process(); /* before any passphrase or key is read */
  struct cli_globals g = {0};
  const char **dirs = calloc((size_t)argc + 1, sizeof(char *));
  int i = 1;
  for (; i < argc; i++) {
    const char *o = argv[i];
    if (strcmp(o, "--plugin-dir") == 0 && i + 1 < argc)
      dirs[g.n_plugin_dirs++] = argv[++i];
    else if (strncmp(o, "--plugin-dir=", 13) == 0)
      dirs[g.n_plugin_dirs++] = o + 13;
    else if (strcmp(o, "-v") == 0 || strcmp(o, "--verbose") == 0)
      g.verbose++;
    else if (strcmp(o, "-q") == 0 || strcmp(o, "--quiet") == 0)
      g.quiet = 1;
    else if (strcmp(o, "--version") == 0 || strcmp(o, "version") == 0) {
      printf("engine %s (plugin ABI %d.%d)\n", ENGINE_VERSION, ENGINE_ABI_MAJOR, ENGINE_ABI_MINOR);
      free(dirs);
      return EXIT_OK;
    } else if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
      usage(stdout);
      free(dirs);
      return EXIT_OK;
    } else
      break;
  }
  g.plugin_dirs = dirs;
  log_set_level(g.quiet          ? ENGINE_LOG_ERROR
                : g.verbose >= 2 ? ENGINE_LOG_DEBUG
                : g.verbose      ? ENGINE_LOG_INFO
                                 : ENGINE_LOG_WARN);
  if (i >= argc) {
    usage(stderr);
    free(dirs);
    return EXIT_USAGE;
  }
  const char *name = argv[i++];
  if (strcmp(name, "help") == 0) {
    int rc = EXIT_OK;
    if (i >= argc) {
      usage(stdout);
    } else {
      const struct cli_command *c = cli_find_command(argv[i]);
      if (c)
        printf("usage: %s\n\n%s\n", c->usage, c->help);
      else
        rc = usage_error("unknown command '%s'", argv[i]);
    }
    free(dirs);
    return rc;
  }
  const struct cli_command *cmd = cli_find_command(name);
  if (!cmd) {
    free(dirs);
    return usage_error("unknown command '%s'", name);
  }
  struct cli_args a = {0};
  const char **pos = calloc((size_t)argc + 1, sizeof(char *));
  const char **forget_ids = calloc((size_t)argc + 1, sizeof(char *));
  a.pos = pos;
  a.forget_unreadable = forget_ids;
  int rc = -1;
  for (; i < argc && rc < 0; i++) {
    const char *o = argv[i];
    const char **val = NULL;
    if (strcmp(o, "--json") == 0)
      a.json = 1;
    else if (strcmp(o, "--dry-run") == 0)
      a.dry_run = 1;
    else if (strcmp(o, "--yes") == 0 || strcmp(o, "-y") == 0)
      a.yes = 1;
    else if (strcmp(o, "--read-data") == 0)
      a.read_data = 1;
    else if (strcmp(o, "--restore-test") == 0)
      a.restore_test = 1;
    else if (strcmp(o, "--drop-existing") == 0)
      a.drop_existing = 1;
    else if (strcmp(o, "--to-stdout") == 0)
      a.to_stdout = 1;
    else if (strcmp(o, "--prune") == 0)
      a.prune = 1;
    else if (strcmp(o, "--install") == 0)
      a.install = 1;
    else if (strcmp(o, "--unit-dir") == 0)
      val = &a.unit_dir;
    else if (strcmp(o, "--from") == 0)
      val = &a.from;
    else if (strcmp(o, "--to") == 0)
      val = &a.to;
    else if (strcmp(o, "--lock-wait") == 0)
      val = &a.lock_wait;
    else if (strcmp(o, "--repack-threshold") == 0)
      val = &a.repack_threshold;
    else if (strcmp(o, "--as") == 0)
      val = &a.as_name;
    else if (strcmp(o, "--progress") == 0)
      val = &a.progress;
    else if (strcmp(o, "--only") == 0)
      val = &a.only;
    else if (strcmp(o, "--target") == 0)
      val = &a.target;
    else if (strcmp(o, "--time") == 0)
      val = &a.time;
    else if (strcmp(o, "--new-passphrase") == 0)
      val = &a.new_passphrase;
    else if (strcmp(o, "--new-key-file") == 0)
      val = &a.new_key_file;
    else if (strcmp(o, "--listen") == 0)
      val = &a.listen;
    else if (strcmp(o, "--config-dir") == 0)
      val = &a.config_dir;
    else if (strcmp(o, "--token-file") == 0)
      val = &a.token_file;
    else if (strcmp(o, "--plugin-dir") == 0 && i + 1 < argc)
      dirs[g.n_plugin_dirs++] = argv[++i];
    else if (strcmp(o, "--forget-unreadable") == 0) {
      if (i + 1 >= argc)
        rc = usage_error("option '%s' needs a value", o);
      else /* repeatable; each value may hold several ids, comma-separated */
        forget_ids[a.n_forget_unreadable++] = argv[++i];
    } else if (strcmp(o, "-v") == 0)
      log_set_level(ENGINE_LOG_INFO);
    else if (strcmp(o, "-q") == 0)
      g.quiet = 1;
    else if (o[0] == '-' && o[1] != '\0')
      rc = usage_error("unknown option '%s'", o);
    else
      pos[a.n_pos++] = o;
    if (val) {
      if (i + 1 >= argc)
        rc = usage_error("option '%s' needs a value", o);
      else
        *val = argv[++i];
    }
  }
  if (rc < 0 && a.progress && strcmp(a.progress, "auto") != 0 &&
      strcmp(a.progress, "always") != 0 && strcmp(a.progress, "never") != 0)
    rc = usage_error("--progress '%s': expected auto, always or never", a.progress);
  if (rc < 0 && a.n_forget_unreadable && strcmp(cmd->name, "forget") != 0 &&
      strcmp(cmd->name, "prune") != 0)
    rc = usage_error("--forget-unreadable belongs to forget and prune, not %s", cmd->name);
  if (rc < 0 && a.lock_wait && config_parse_duration(a.lock_wait, &a.lock_wait_ms) != 0)
    rc = usage_error("--lock-wait '%s': expected a duration such as 30s, 5m or 1h", a.lock_wait);
  if (rc < 0 && ((int)a.n_pos < cmd->min_pos || (int)a.n_pos > cmd->max_pos)) {
    fprintf(stderr, "engine: %s: wrong number of arguments\nusage: %s\n", cmd->name, cmd->usage);
    rc = EXIT_USAGE;
  }
  if (rc < 0) {
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
    rc = cmd->run(&g, &a);
    http_shutdown();
  }
  free(pos);
  free(forget_ids);
  free(dirs);
  return rc;
}
