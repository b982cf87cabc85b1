/* The operational status of a pipeline, read from its repository so that it
 * survives restarts and covers runs from any host: the newest complete
 * recovery point and its age against the recovery-point objective, the last
 * run outcome and the last verification (check, read-data, restore test)
 * with the measured restore time against the recovery-time objective.
 * `engine status` prints it, `engine serve` serves it and watches the RPO,
 * and both turn it into Prometheus series (docs/CLI.md, docs/SERVE.md). */
#ifndef CORE_OPS_STATUS_H
#define CORE_OPS_STATUS_H

#include <jansson.h>
#include <stdint.h>

#include "config/pipeline.h"
#include "ops/metrics.h"
#include "repo/repo.h"
#include "repo/snapshot.h"

/* The status of pipeline p at time now (unix seconds) from its open
 * repository r (docs/CLI.md, "engine status"). Returns a new object, or
 * NULL with *err when the snapshots cannot be listed. */
json_t *status_collect(struct repo *r, const struct pipeline *p, int64_t now, char **err);

/* The selection a snapshot was taken with (`engine run --only`): its
 * manifest's "only" array, or NULL for a snapshot of everything. */
json_t *status_snapshot_only(const struct snapshot *m);

/* Declare the families of a run's own series (engine_runs_total,
 * engine_runs_skipped_total, engine_runs_waited_total, engine_last_run_*). */
void status_run_families(struct metrics *m);

/* Declare the families status_metrics_add fills. */
void status_metrics_families(struct metrics *m);
/* The series of one pipeline's status object: engine_rpo_seconds,
 * engine_newest_snapshot_timestamp_seconds, engine_last_success_..., the
 * last verification and restore test, the last run's lock wait. Series
 * whose value is unknown (no complete snapshot yet ...) are left out. */
void status_metrics_add(struct metrics *m, json_t *status);

/* What one `engine run` did, for its runs/ record and its metrics file. */
struct status_run {
  const char *outcome;  /* complete, partial, failed, interrupted, skipped */
  int exit_code;        /* the command's exit status */
  const char *error;    /* why it failed, or NULL */
  const char *snapshot; /* the snapshot written, or NULL */
  int64_t started;      /* unix seconds */
  double seconds;       /* how long the command ran */
  double lock_wait_seconds;
  uint64_t items, bytes_read, new_bytes, stored_bytes;
  const char *const *only; /* --only, or NULL */
  size_t n_only;
};

/* Store the run's runs/ record in r (docs/FORMAT.md §14c). 0, or -1 with
 * *err. */
int status_record_run(struct repo *r, const char *pipeline, const struct status_run *run,
                      char **err);

/* `engine run --metrics-file PATH`: the run's series (engine_last_run_*,
 * engine_runs_total and the skipped and waited counters, carried forward
 * from the file's previous content) and, when r is open, the pipeline's
 * status series from the repository; without a repository (it could not
 * be opened) the previous file's status series are kept. Written
 * atomically. 0, or -1 with *err. */
int status_write_metrics_file(const char *path, struct repo *r, const struct pipeline *p,
                              const char *pipeline, const struct status_run *run, char **err);

/* Unix seconds of an ISO time member of o (0 when absent or malformed). */
int64_t status_time(json_t *o, const char *key);

#endif
