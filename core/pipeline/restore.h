/* Restore: read a snapshot's item trees and hand selected items, with their
 * content streams, to the source plugins' restore callbacks. */
#ifndef CORE_PIPELINE_RESTORE_H
#define CORE_PIPELINE_RESTORE_H

#include <jansson.h>

#include "plugin/host.h"
#include "repo/repo.h"
#include "repo/snapshot.h"

struct restore_opts {
  struct repo *repo;
  const struct snapshot *snapshot;
  struct plugin_instance **sources; /* the pipeline's source instances */
  size_t n_sources;
  const char *only;   /* "SOURCE" or "SOURCE/GLOB", or NULL for everything */
  const char *target; /* --target or NULL */
  int dry_run;
  int yes;
  int interactive;          /* may ask [y/N] on the terminal */
  int json;                 /* dry-run listing as JSON lines */
  const char *const *extra; /* NULL-terminated "key=value" flags for the plugins */
  int progress;             /* progress line on stderr: 1 always, 0 never, -1 when interactive */
};

struct restore_result {
  uint64_t items, bytes, failed;
};

/* 0: everything restored; 3: some items failed (target is partial, said so);
 * -1: nothing restored / aborted with *err. */
int restore_run(const struct restore_opts *o, struct restore_result *res, char **err);

#endif
