/* engine serve internals shared by its parts (the list of parts and the
 * order in which they call each other is below, above the declarations). */
#ifndef CORE_SERVE_SERVE_INT_H
#define CORE_SERVE_SERVE_INT_H

#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "serve/httpd.h"
#include "serve/proc.h"
#include "serve/serve.h"
#include "util/cron.h"

#define SERVE_MAX_RUNNING 2        /* jobs running at once, over all pipelines */
#define SERVE_KEEP_JOBS 100        /* finished jobs kept in memory */
#define SERVE_KEEP_JOBS_ON_DISK 20 /* finished jobs kept on disk, per pipeline and kind */
#define SERVE_MAX_LISTINGS 4       /* child-answered requests at once */
#define SERVE_STOP_WAIT_MS 60000
#define SERVE_KILL_GRACE_S 10       /* SIGTERM, then SIGKILL this much later */
#define SERVE_STATUS_REFRESH_S 300  /* each pipeline's status is read again this often */
#define SERVE_MAX_STATUS_CHILDREN 2 /* `engine status` children at once */

struct serve_pipeline {
  char *name; /* `name:`, or the file name without extension when invalid */
  char *path; /* config_dir/FILE */
  int valid;
  char *error;    /* why it is invalid (file:line:col: ...), or NULL */
  char *schedule; /* the cron text, or NULL */
  struct cron_expr cron;
  int64_t timeout_ms; /* limits.timeout, 0: none */
  int64_t rpo_ms, rto_ms;
  json_t *warnings; /* what a run here would fail on (unset env: secrets), an array */
};

/* Per pipeline name, kept across reloads (metrics, status, episodes). */
struct serve_stats {
  char *name;
  uint64_t succeeded, partial, failed, skipped, waited, cancelled, timed_out;
  int has_last;
  double last_finished; /* unix seconds */
  double last_duration;
  int last_exit_code; /* -1 when killed by a signal */
  uint64_t last_bytes_read, last_stored_bytes;
  double last_lock_wait;
  /* the pipeline's status from its repository (`engine status`) */
  json_t *status;     /* the last one read, or NULL */
  double status_at;   /* when it was read */
  char *status_error; /* why the last refresh failed, or NULL */
  int status_busy;    /* a refresh is running */
  double status_due;  /* when to read it next (0: at once) */
  /* recovery-point watch (persisted in state.json) */
  int stale;
  double stale_since;
  uint64_t stale_events;
  double first_seen; /* when this server first loaded the pipeline */
  int paused;        /* its schedule is paused (persisted) */
  struct serve_stats *next;
};

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_SUCCEEDED, JOB_PARTIAL, JOB_FAILED, JOB_CANCELLED };
enum job_kind { JOB_RUN, JOB_CHECK, JOB_FORGET, JOB_RESTORE };

struct serve_job {
  int64_t id;
  enum job_kind kind;
  char *pipeline, *path;
  char *trigger;   /* "api", "schedule" */
  json_t *request; /* the parameters it was started with (an object) */
  char **args;     /* the child's arguments after the binary's name (NULL-terminated) */
  enum job_state state;
  double queued_at, started_at, finished_at; /* unix seconds, 0 = not yet */
  uint64_t started_ns;                       /* uv_hrtime at start */
  double duration;
  int pid;
  int exit_code; /* -1 until it exited normally */
  int term_signal;
  json_t *summary; /* the child's --json output, when it printed one */
  char *stderr_tail;
  char *error;
  char *progress;     /* the child's last progress line (restores), or NULL */
  int64_t timeout_ms; /* limits.timeout at start, 0: none */
  int timed_out, cancel_requested;
  uint64_t term_sent_ns; /* when SIGTERM was sent (for the SIGKILL after the grace) */
  int from_disk;         /* loaded from the history of an earlier server */
  struct proc *proc;     /* while running */
  struct serve *srv;
  struct serve_job *prev, *next; /* oldest first */
};

struct serve_listing; /* a pending child-answered request (api_children.c) */

struct serve {
  uv_loop_t loop;
  struct httpd *http;
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_timer_t tick, stop_timer, watchdog;
  char address[80]; /* as bound */
  /* Without a token: the Host values (and, after "http://", the Origins)
   * that name this server: 127.0.0.1:PORT, localhost:PORT, [::1]:PORT, the
   * bound address, the --listen text; also without ":80" on port 80. */
  char **hosts;
  size_t n_hosts;
  const char *config_dir;
  int have_token;
  unsigned char token_hash[32];
  int have_restore_token; /* --allow-restore */
  unsigned char restore_token_hash[32];
  const struct serve_opts *opts;
  char exe[PATH_MAX];

  char *state_dir;
  int lock_fd;          /* the config directory, flock'ed: one scheduler per directory */
  int summary_minute;   /* daily_summary: minutes after local midnight */
  char summary_day[16]; /* the last day a summary was sent for (YYYY-MM-DD) */

  struct serve_pipeline *pipelines;
  size_t n_pipelines;
  struct serve_stats *stats;

  struct serve_job *jobs, *jobs_tail;
  size_t n_jobs;
  int64_t next_job_id;
  int running, queued;
  struct serve_listing *listings;
  int n_listings;
  int status_children;
  int notifying; /* notifications being sent on the thread pool */

  double started_at; /* unix seconds */
  uint64_t started_ns;
  time_t last_minute; /* the last minute the scheduler looked at */
  int stopping, stop_stage, exit_code;
};

/* Each part calls only the parts listed below it, never one above:
 *
 *   serve.c         start, signals, reloads, the stop
 *   api.c           routing and the JSON documents
 *   serve_watch.c   the scheduler and the daily summary
 *   api_children.c  endpoints a child `engine` answers
 *   api_metrics.c   /metrics
 *   serve_jobs.c    jobs
 *   serve_status.c  pipeline statuses, the recovery-point watch, notifications
 *   serve_state.c   the state directory
 *   serve_util.c    what all of them use
 */

/* ---- serve_util.c ---- */
void serve_set_quiet(int quiet);
double serve_now(void); /* unix seconds with fractions */
/* Lifecycle lines (listening, jobs, reloads); -q keeps only warnings. */
void serve_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A copy of in[0..len) with every byte that is not part of valid UTF-8 (and
 * NUL) replaced by '?', so it can be a JSON string. */
char *serve_utf8_clean(const char *in, size_t len);
char *serve_iso(double t); /* malloc'd ISO 8601 UTC */
/* A JSON string of text from outside (file names, child output), or null. */
json_t *serve_jstr(const char *t);
json_t *serve_iso_or_null(double t);
void serve_respond_json(struct httpd_req *req, int status, json_t *j, const char *extra);
void serve_respond_error(struct httpd_req *req, int status, const char *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const struct serve_pipeline *serve_find_pipeline(const struct serve *s, const char *name);
struct serve_stats *serve_stats_get(struct serve *s, const char *name);
/* argv for a child `engine` with the server's plugin directories:
 * engine [--plugin-dir D]... ARGS... ; free with serve_free_argv. */
char **serve_child_argv(const struct serve *s, const char *const *args);
void serve_free_argv(char **argv);
/* Called when a job, a child-answered request, a status child or a
 * notification ended: completes a pending stop. */
void serve_maybe_stopped(struct serve *s);

/* ---- serve_state.c ---- */
/* The state directory (created), the scheduler lock on the config
 * directory and state.json. Returns 0, or -1 with *err (another server
 * holds the lock: *err says which). */
int serve_state_open(struct serve *s, char **err);
void serve_state_close(struct serve *s);
/* Write state.json (paused schedules, stale episodes, the last summary). */
void serve_state_save(struct serve *s);
/* Write a job's document to jobs/PIPELINE/KIND-ID.json; once it finished,
 * forget the oldest of its pipeline and kind beyond SERVE_KEEP_JOBS_ON_DISK. */
void serve_state_write_job(struct serve *s, const char *pipeline, const char *kind, int64_t id,
                           json_t *doc, int finished);
/* The job documents on disk of a pipeline (NULL: every pipeline) and kind
 * (NULL: every kind), each pipeline's newest first. */
json_t *serve_state_read_jobs(struct serve *s, const char *pipeline, const char *kind);

/* ---- serve_status.c ---- */
/* Read the pipeline's status again soon (after one of its jobs; NULL: only
 * start the reads that are due). */
void serve_status_refresh(struct serve *s, const char *pipeline);
/* Stop the status children (shutdown). */
void serve_status_stop(void);
/* The status document of a pipeline as served (the cached status plus
 * checked_at, refresh_error, stale, paused), or null. */
json_t *serve_status_json(struct serve *s, const struct serve_pipeline *p);
/* The fields of a stale / recovered / daily_summary body. */
json_t *serve_watch_fields(struct serve *s, const struct serve_pipeline *p);
/* Stale or recovered now? Raises the notification on a change. */
void serve_rpo_evaluate(struct serve *s, const struct serve_pipeline *p, double now);
/* Send event with fields (taken) to the pipeline's webhooks that want it,
 * on the thread pool. */
void serve_notify(struct serve *s, const struct serve_pipeline *p, const char *event,
                  json_t *fields);

/* ---- serve_jobs.c ---- */
const char *serve_job_state_name(enum job_state st);
const char *serve_job_kind_name(enum job_kind k);
/* The queued or running job of a pipeline, or NULL. */
struct serve_job *serve_active_job(const struct serve *s, const char *pipeline);
/* The newest job of a pipeline (of kind k; -1: any), or NULL. */
struct serve_job *serve_last_job(const struct serve *s, const char *pipeline, int kind);
struct serve_job *serve_find_job(const struct serve *s, int64_t id);
/* Queue a job (it starts at once when a slot is free). args: the child's
 * arguments after the binary (copied); request: its parameters (taken).
 * Returns 0, or -1 with *err when the pipeline already has a job (*busy
 * set) or cannot run. */
int serve_start_job(struct serve *s, const struct serve_pipeline *p, enum job_kind kind,
                    const char *trigger, const char *const *args, json_t *request,
                    struct serve_job **out, int *busy, char **err);
/* Cancel: a queued job is dropped, a running one gets SIGCONT and SIGTERM
 * (SIGKILL SERVE_KILL_GRACE_S later). Returns 0, or -1 with *err when the
 * job has finished. */
int serve_cancel_job(struct serve *s, struct serve_job *j, char **err);
/* Once a second: timeouts and the SIGKILL after an ignored SIGTERM. */
void serve_jobs_watchdog(struct serve *s);
/* Stop: queued jobs fail, running ones get sig. */
void serve_jobs_fail_queued(struct serve *s, const char *why);
void serve_jobs_kill(struct serve *s, int sig);
/* The history of earlier servers (after serve_state_open): ids continue
 * after the highest, jobs that were queued or running are failed. */
void serve_jobs_load(struct serve *s);
/* The jobs of kind of a pipeline from the history on disk, newest first. */
json_t *serve_job_history(struct serve *s, const char *pipeline, enum job_kind kind);
void serve_job_free(struct serve_job *j);
void serve_jobs_free(struct serve *s);
/* The job as a JSON document (with_tail: stderr_tail too). */
json_t *serve_job_json(const struct serve_job *j, int with_tail);

/* ---- api_metrics.c ---- */
void serve_metrics(struct serve *s, struct httpd_req *req);

/* ---- api_children.c ---- */
/* GET /v1/pipelines/NAME/snapshots: `engine snapshots PATH --json`. */
void serve_list_snapshots(struct serve *s, struct httpd_req *req, const struct serve_pipeline *p);
/* GET /v1/pipelines/NAME/snapshots/ID: `engine show PATH ID --json`. */
void serve_show_snapshot(struct serve *s, struct httpd_req *req, const struct serve_pipeline *p,
                         const char *id);
/* GET /v1/snapshots (and its alias): every pipeline's listing, merged and
 * filtered by the query (pipeline, since, until, status, item, tenant). */
void serve_list_all_snapshots(struct serve *s, struct httpd_req *req);
/* Stop the children still answering requests (shutdown). */
void serve_cancel_listings(struct serve *s);

/* ---- serve_watch.c ---- */
/* The minute tick: schedules, the RPO watch, the daily summary. */
void serve_watch_start(struct serve *s);
void serve_watch_stop(struct serve *s);

/* ---- api.c ---- */
void serve_handle_request(void *ud, struct httpd_req *req);

#endif
