/* engine restore */
#include "cli/commands.h"

#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmd_common.h"
#include "cli/dispatch.h"
#include "pipeline/restore.h"
#include "util/cancel.h"
#include "util/log.h"
#include "util/progress.h"

/* --progress: 1 always, 0 never, -1 auto (on a terminal) */
static int progress_choice(const struct cli_args *a) {
  if (!a->progress || strcmp(a->progress, "auto") == 0)
    return -1;
  return strcmp(a->progress, "always") == 0;
}

/* A restore allocates and frees a decoded blob (up to a chunk, 4 MiB) per
 * chunk on the read-ahead workers and the writers. With the default 128 KiB
 * of padding, each arena gives that memory back after nearly every blob
 * and faults it in again for the next: ~125,000 page faults per GiB
 * restored, ~0.5 CPU-s here. Keeping 16 MiB at the top of each arena cuts
 * them to ~25,000 for a few MiB more peak RSS (docs/PERFORMANCE.md). A
 * process-wide allocator setting, so it is made here, for this command's
 * process only (main sets the others), not in the restore pipeline, which
 * `engine serve` runs next to backups. */
#define RESTORE_MALLOC_TOP_PAD (16 * 1024 * 1024)

struct find_job {
  struct repo *repo;
  const char *ref;
  struct snapshot *m;
  char *err;
  int rc;
};

static void *find_snapshot_thread(void *arg) {
  struct find_job *j = arg;
  j->rc = snapshot_find(j->repo, j->ref, &j->m, &j->err);
  return NULL;
}

int cmd_restore(const struct cli_globals *g, const struct cli_args *a) {
  if (!getenv("MALLOC_TOP_PAD_"))
    mallopt(M_TOP_PAD, RESTORE_MALLOC_TOP_PAD);
  struct cli_ctx c;
  int rc =
      a->dry_run ? cli_open_existing(g, a->pos[0], &c, 1, 1) : cli_open_locked(g, a, &c, 1, 1, 0);
  if (rc)
    return rc;
  /* The snapshot is looked up while the index loads (both read and decrypt
   * objects, neither needs the other). */
  struct find_job fj = {.repo = c.repo, .ref = a->pos[1]};
  pthread_t th;
  int threaded = pthread_create(&th, NULL, find_snapshot_thread, &fj) == 0;
  char *ierr = NULL;
  c.repo->use_index_cache = 1;
  int irc = cli_load_index(&c, &ierr);
  if (threaded)
    pthread_join(th, NULL);
  else
    find_snapshot_thread(&fj);
  struct snapshot *m = fj.m;
  char *err = NULL;
  if (irc != 0 || fj.rc != 0) {
    snapshot_free(m);
    free(irc != 0 ? fj.err : ierr);
    cli_close(&c);
    return cli_fail(irc != 0 ? ierr : fj.err);
  }
  const char **extra = xcalloc(4 + a->n_namespace_map, sizeof(*extra));
  char **maps = xcalloc(a->n_namespace_map + 1, sizeof(*maps));
  size_t ne = 0;
  char *as_flag = a->as_name ? xasprintf("as=%s", a->as_name) : NULL;
  if (as_flag)
    extra[ne++] = as_flag;
  if (a->drop_existing)
    extra[ne++] = "drop_existing=1";
  if (a->to_stdout)
    extra[ne++] = "to_stdout=1";
  for (size_t i = 0; i < a->n_namespace_map; i++)
    extra[ne++] = maps[i] = xasprintf("namespace_map=%s", a->namespace_map[i]);
  extra[ne] = NULL;
  const char *only = a->n_only ? a->only[0] : NULL;
  if ((a->as_name || a->to_stdout) && (!only || !strchr(only, '/'))) {
    free(as_flag);
    for (size_t i = 0; i < a->n_namespace_map; i++)
      free(maps[i]);
    free(maps);
    free(extra);
    snapshot_free(m);
    cli_close(&c);
    return cli_usage_error("restore",
                           "--as and --to-stdout act on one item: give --only SOURCE/ITEM");
  }
  c.repo->trust_aead_ids = 1;
  struct restore_opts ro = {c.repo,         m,      c.sources,
                            c.p->n_sources, only,   a->target,
                            a->dry_run,     a->yes, isatty(STDIN_FILENO) && isatty(STDERR_FILENO),
                            a->json,        extra,  progress_choice(a)};
  struct restore_result res;
  rc = restore_run(&ro, &res, &err);
  free(as_flag);
  for (size_t i = 0; i < a->n_namespace_map; i++)
    free(maps[i]);
  free(maps);
  free(extra);
  /* with --to-stdout the data owns stdout: the summary goes to stderr */
  FILE *out = a->to_stdout || a->json ? stderr : stdout;
  char b[32];
  if (rc < 0) {
    snapshot_free(m);
    cli_close(&c);
    int code = cli_fail(err);
    return cancel_requested() ? EXIT_INTERRUPTED : code;
  }
  cli_note_snapshot(m->id);
  cli_note_detail("restore", json_pack("{s:s?, s:I, s:I, s:I}", "target", a->target, "items",
                                       (json_int_t)res.items, "bytes", (json_int_t)res.bytes,
                                       "failed", (json_int_t)res.failed));
  if (!g->quiet) {
    if (a->dry_run)
      fprintf(out, "dry run: %llu item(s), %s would be restored\n", (unsigned long long)res.items,
              format_bytes(res.bytes, b, sizeof(b)));
    else if (rc == 3 && res.items == 0)
      /* nothing was restored: each failed item said what it left behind
       * (a postgres schema: nothing, its transaction rolled back) */
      fprintf(out, "restore FAILED: none of %llu item(s) was restored (see the errors above)\n",
              (unsigned long long)res.failed);
    else if (rc == 3)
      fprintf(out,
              "restore INCOMPLETE: %llu item(s) restored, %llu FAILED (see the errors above); the "
              "target holds a "
              "partial restore\n",
              (unsigned long long)res.items, (unsigned long long)res.failed);
    else
      fprintf(out, "restored %llu item(s), %s from snapshot %.8s\n", (unsigned long long)res.items,
              format_bytes(res.bytes, b, sizeof(b)), m->id);
  }
  snapshot_free(m);
  cli_close(&c);
  return rc == 3 ? EXIT_PARTIAL : EXIT_OK;
}
