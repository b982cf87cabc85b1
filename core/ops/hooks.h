/* A pipeline's `hooks:` (docs/CONFIG.md): shell commands run before a
 * backup's sources start and after it ends, whatever the outcome. Each runs
 * as `/bin/sh -c COMMAND` through the core's child processes
 * (plugin/spawn.c): the minimal environment of docs/PLUGINS.md 4.1 plus the
 * ENGINE_* variables describing the run (never in argv), in a process group
 * of its own, bounded by the pipeline's hooks.timeout (the whole group is
 * killed when it passes), its output (stdout and stderr, in order) logged
 * line by line. */
#ifndef CORE_OPS_HOOKS_H
#define CORE_OPS_HOOKS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config/pipeline.h"

/* What the after hooks are told (their ENGINE_* variables). */
struct hooks_outcome {
  const char *status;   /* "success", "partial" or "failure" */
  int exit_code;        /* the command's exit status */
  const char *snapshot; /* the new snapshot's id, or NULL */
  const char *error;    /* why the run failed, or NULL */
  size_t warnings;      /* warnings of the snapshot */
  json_t *sinks_missed; /* array of sink names, or NULL */
};

/* Runs of one pipeline with hooks never overlap on a host, hooks included:
 * a run waits before its before hooks until the other run's after hooks are
 * done (else its before hook would run during the other's backup, and the
 * other's after hook would undo it during its own). The lock is an flock
 * on the pipeline file, which every run of it can open (also read-only
 * under systemd's ProtectSystem=strict); it is held until the after hooks
 * end. A run that gave up waiting (or was interrupted while waiting) runs
 * no hook at all. */
struct hooks_wait {
  int64_t wait_ms; /* at most this long (--lock-wait); -1: as long as it takes */
  double waited_s; /* out: how long it waited */
  int gave_up;     /* out: wait_ms passed (the run is "skipped") */
};

/* Takes the lock above (when p has hooks), then runs p's before hooks in
 * order; the first that fails (exit status not 0, killed, timed out, or
 * interrupted by SIGINT/SIGTERM) stops them. Returns 0, or -1 with *err
 * (malloc'd) naming the hook and why, with its last lines of output, or
 * why the lock was not taken. */
int hooks_run_before(const struct pipeline *p, struct hooks_wait *w, char **err);

/* Runs every after hook, each whatever the others did and also after an
 * interruption (the point of an after hook is to undo what a before hook
 * did), then releases the run lock. A failure is logged as a warning.
 * Returns the number that failed. */
int hooks_run_after(const struct pipeline *p, const struct hooks_outcome *o);

#endif
