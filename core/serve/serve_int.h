/* engine serve internals shared by serve.c (state, configuration, jobs,
 * scheduler, signals) and api.c (the HTTP endpoints and their JSON). */
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

#define SERVE_MAX_RUNNING 2  /* jobs running at once, over all pipelines */
#define SERVE_KEEP_JOBS 100  /* finished jobs remembered */
#define SERVE_MAX_LISTINGS 4 /* `snapshots` children at once */
#define SERVE_STOP_WAIT_MS 60000

struct serve_pipeline {
  char *name; /* `name:`, or the file name without extension when invalid */
  char *path; /* config_dir/FILE */
  int valid;
  char *error;    /* why it is invalid (file:line:col: ...), or NULL */
  char *schedule; /* the cron text, or NULL */
  struct cron_expr cron;
};

/* Per pipeline name, kept across reloads (for /metrics). */
struct serve_stats {
  char *name;
  uint64_t succeeded, partial, failed, skipped;
  int has_last;
  double last_finished; /* unix seconds */
  double last_duration;
  int last_exit_code; /* -1 when killed by a signal */
  uint64_t last_bytes_read, last_stored_bytes;
  struct serve_stats *next;
};

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_SUCCEEDED, JOB_PARTIAL, JOB_FAILED };

struct serve_job {
  int64_t id;
  char *pipeline, *path;
  const char *trigger; /* "api" or "schedule" */
  enum job_state state;
  double queued_at, started_at, finished_at; /* unix seconds, 0 = not yet */
  uint64_t started_ns;                       /* uv_hrtime at start */
  double duration;
  int pid;
  int exit_code; /* -1 until it exited normally */
  int term_signal;
  json_t *summary; /* the parsed `engine run --json` output */
  char *stderr_tail;
  char *error;
  struct proc *proc; /* while running */
  struct serve *srv;
  struct serve_job *prev, *next; /* oldest first */
};

struct serve_listing; /* a pending `snapshots` request */

struct serve {
  uv_loop_t loop;
  struct httpd *http;
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_timer_t tick, stop_timer;
  char address[80]; /* as bound */
  /* Without a token: the Host values (and, after "http://", the Origins)
   * that name this server: 127.0.0.1:PORT, localhost:PORT, [::1]:PORT, the
   * bound address, the --listen text; also without ":80" on port 80. */
  char **hosts;
  size_t n_hosts;
  const char *config_dir;
  int have_token;
  unsigned char token_hash[32];
  const struct serve_opts *opts;
  char exe[PATH_MAX];

  struct serve_pipeline *pipelines;
  size_t n_pipelines;
  struct serve_stats *stats;

  struct serve_job *jobs, *jobs_tail;
  size_t n_jobs;
  int64_t next_job_id;
  int running, queued;
  struct serve_listing *listings;
  int n_listings;

  double started_at; /* unix seconds */
  uint64_t started_ns;
  time_t last_minute; /* the last minute the scheduler looked at */
  int stopping, stop_stage, exit_code;
};

/* serve.c */
double serve_now(void); /* unix seconds with fractions */
const struct serve_pipeline *serve_find_pipeline(const struct serve *s, const char *name);
struct serve_stats *serve_stats_get(struct serve *s, const char *name);
/* The queued or running job of a pipeline, or NULL. */
struct serve_job *serve_active_job(const struct serve *s, const char *pipeline);
/* The newest job of a pipeline, or NULL. */
struct serve_job *serve_last_job(const struct serve *s, const char *pipeline);
struct serve_job *serve_find_job(const struct serve *s, int64_t id);
/* Queue a run (it starts at once when a slot is free). Returns 0, or -1 with
 * *err when the pipeline already has a job (*busy set) or cannot run. */
int serve_start_job(struct serve *s, const struct serve_pipeline *p, const char *trigger,
                    struct serve_job **out, int *busy, char **err);
/* argv for a child `engine` with the server's plugin directories:
 * engine [--plugin-dir D]... ARGS... ; free with serve_free_argv. */
char **serve_child_argv(const struct serve *s, const char *const *args);
void serve_free_argv(char **argv);
/* A copy of in[0..len) with every byte that is not part of valid UTF-8 (and
 * NUL) replaced by '?', so it can be a JSON string. */
char *serve_utf8_clean(const char *in, size_t len);
/* Called when a snapshot listing ended: completes a pending stop. */
void serve_maybe_stopped(struct serve *s);

/* api.c */
void serve_handle_request(void *ud, struct httpd_req *req);
/* Stop the snapshot listings still running (shutdown). */
void serve_cancel_listings(struct serve *s);
char *serve_iso(double t); /* malloc'd ISO 8601 UTC */
const char *serve_job_state_name(enum job_state st);

#endif
