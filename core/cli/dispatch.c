/* Around every command: JSON errors, the audit trail, a run's after hooks
 * and notifications, check's verify_failed (see dispatch.h). */
#include "cli/dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/audit.h"
#include "ops/hooks.h"
#include "ops/notify.h"
#include "util/log.h"

/* A notification carries at most this many of a run's warnings (and their
 * count); the audit record only the count. */
#define NOTIFY_MAX_WARNINGS 20
#define NOTIFY_MAX_PROBLEMS 20

/* The command running in this process. */
static struct {
  int active;
  const struct cli_command *cmd;
  const struct cli_args *a;
  char *command;       /* "run", "key add", ... */
  const char *path;    /* the pipeline file argument */
  int audited;         /* leaves an audit record */
  int json_printed;    /* printed its --json document */
  struct cli_ctx kept; /* the pipeline and repository, from cli_close */
  int have_kept;
  int closing;
  char *snapshot;
  json_t *details;
  json_t *warnings;     /* run: the snapshot's warnings */
  json_t *sinks_missed; /* run */
  const char *status;   /* run: complete, partial */
  double started;
} g_op;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void cli_print_json(json_t *j) {
  char *t = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
  printf("%s\n", t ? t : "null");
  free(t);
  g_op.json_printed = 1;
}

static int is_cmd(const char *name) {
  return g_op.cmd && strcmp(g_op.cmd->name, name) == 0;
}

/* Which commands leave an audit record: those that change a repository or
 * verify it; dry runs change nothing and leave none. */
static int audited(const struct cli_command *cmd, const struct cli_args *a) {
  static const char *const changing[] = {"run", "restore", "forget", "prune", "repair"};
  for (size_t i = 0; i < sizeof(changing) / sizeof(changing[0]); i++)
    if (strcmp(cmd->name, changing[i]) == 0)
      return !a->dry_run;
  if (strcmp(cmd->name, "key") == 0)
    return a->n_pos > 0 && strcmp(a->pos[0], "list") != 0;
  return strcmp(cmd->name, "check") == 0;
}

int cli_keep_ctx(struct cli_ctx *c) {
  if (!g_op.active || g_op.closing || !g_op.audited || !c->p)
    return 0;
  if (g_op.have_kept) { /* a command that opened twice: the last one counts */
    g_op.closing = 1;
    cli_close(&g_op.kept);
    g_op.closing = 0;
  }
  g_op.kept = *c;
  g_op.have_kept = 1;
  memset(c, 0, sizeof(*c));
  return 1;
}

int cli_before_hooks(const struct pipeline *p, double *waited_s, int *gave_up, char **err) {
  *err = NULL;
  *waited_s = 0;
  *gave_up = 0;
  if (g_op.a && g_op.a->dry_run)
    return 0;
  struct hooks_wait w = {g_op.a && g_op.a->lock_wait ? g_op.a->lock_wait_ms : -1, 0, 0};
  int rc = hooks_run_before(p, &w, err);
  *waited_s = w.waited_s;
  *gave_up = w.gave_up;
  return rc;
}

void cli_note_snapshot(const char *id) {
  free(g_op.snapshot);
  g_op.snapshot = id && *id ? xstrdup(id) : NULL;
}

void cli_note_detail(const char *key, json_t *value) {
  if (!g_op.details)
    g_op.details = json_object();
  json_object_set_new(g_op.details, key, value ? value : json_null());
}

void cli_note_run(const struct backup_result *r, const char *status, json_t *sinks_missed) {
  cli_note_snapshot(r->snapshot_id);
  g_op.status = status;
  json_decref(g_op.warnings);
  g_op.warnings = json_incref(r->warnings);
  json_decref(g_op.sinks_missed);
  g_op.sinks_missed = json_incref(sinks_missed);
  cli_note_detail("counts", json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "items",
                                      (json_int_t)r->items, "bytes_read", (json_int_t)r->bytes_read,
                                      "new_bytes", (json_int_t)r->new_bytes, "stored_bytes",
                                      (json_int_t)r->stored_bytes, "reused_items",
                                      (json_int_t)r->reused_items, "packs", (json_int_t)r->packs));
  cli_note_detail("warnings", json_integer((json_int_t)json_array_size(r->warnings)));
  cli_note_detail("sinks_missed", json_incref(sinks_missed));
}

/* "error" code words of the JSON error object, by exit status */
static const char *code_word(int rc) {
  switch (rc) {
  case EXIT_USAGE:
    return "usage";
  case EXIT_PARTIAL:
    return "partial";
  case EXIT_INTERRUPTED:
    return "interrupted";
  default:
    return "error";
  }
}

static void print_error_object(const char *command, int rc, const char *msg) {
  json_t *e =
      json_pack("{s:{s:s, s:s, s:i, s:s?}}", "error", "message", msg && *msg ? msg : "failed",
                "code", code_word(rc), "exit_code", rc, "command", command);
  char *t = json_dumps(e, JSON_INDENT(2) | JSON_SORT_KEYS);
  printf("%s\n", t ? t : "{}");
  fflush(stdout);
  free(t);
  json_decref(e);
}

void cli_usage_failed(int argc, char **argv, int rc, const char *msg) {
  int json = 0;
  const char *command = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0)
      break;
    if (strcmp(argv[i], "--json") == 0)
      json = 1;
    else if (!command && argv[i][0] != '-')
      command = argv[i];
  }
  if (json)
    print_error_object(command, rc, msg);
}

/* The ids a forget report says were removed. */
static json_t *removed_ids(json_t *report) {
  json_t *ids = json_array();
  size_t i, k;
  json_t *g, *s;
  json_array_foreach(json_object_get(report, "groups"), i, g) {
    json_array_foreach(json_object_get(g, "remove"), k, s)
        json_array_append(ids, json_object_get(s, "id"));
  }
  json_array_foreach(json_object_get(report, "forgotten"), i, s)
      json_array_append(ids, json_object_get(s, "id"));
  json_array_foreach(json_object_get(report, "unreadable_forgotten"), i, s)
      json_array_append(ids, s);
  return ids;
}

/* What the audit record keeps of a command's report: ids and counts, not
 * item lists (a repair report names every lost item). */
static void trim_details(void) {
  json_t *report = json_object_get(g_op.details, "report");
  if (!report)
    return;
  json_incref(report);
  json_object_del(g_op.details, "report");
  if (is_cmd("forget")) {
    json_object_set_new(g_op.details, "removed", removed_ids(report));
  } else if (is_cmd("repair")) {
    json_t *snaps = json_array();
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(report, "snapshots"), i, s) {
      json_t *o = json_object();
      const char *keys[] = {"id", "result", "repaired_as", "items_kept", "items_lost"};
      for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
        if (json_object_get(s, keys[k]))
          json_object_set(o, keys[k], json_object_get(s, keys[k]));
      json_array_append_new(snaps, o);
    }
    json_object_del(report, "snapshots");
    json_object_update(g_op.details, report);
    if (json_array_size(snaps))
      json_object_set(g_op.details, "snapshots", snaps);
    json_decref(snaps);
  }
  json_decref(report);
}

static void record_audit(int rc, const char *error, double seconds) {
  const struct pipeline *p = g_op.have_kept ? g_op.kept.p : NULL;
  struct repo *repo = g_op.have_kept ? g_op.kept.repo : NULL;
  trim_details();
  struct audit_op op = {.command = g_op.command,
                        .pipeline = p ? p->name : g_op.path,
                        .snapshot = g_op.snapshot,
                        .outcome = rc == EXIT_OK        ? "success"
                                   : rc == EXIT_PARTIAL ? "partial"
                                                        : "failure",
                        .exit_code = rc,
                        .error = error,
                        .seconds = seconds,
                        .details = g_op.details,
                        .repository = repo ? repo->id : NULL};
  json_t *rec = audit_record(&op);
  char *err = NULL;
  if (audit_append_local(rec, &err) != 0) {
    log_warn("the audit record was not written to the local log: %s", err);
    free(err);
    err = NULL;
  }
  /* a command that failed leaves the repository as it found it (docs/CLI.md,
   * exit status 1): its record is in the local log only */
  if (repo && (rc == EXIT_OK || rc == EXIT_PARTIAL) && audit_store(repo, rec, &err) != 0) {
    log_warn("the audit record was not stored in the repository (the local audit log has it): %s",
             err);
    free(err);
  }
  json_decref(rec);
}

/* The body of a run's notifications: the documented fields. */
static json_t *run_body(const struct pipeline *p, const char *event, int rc, const char *error,
                        double seconds) {
  json_t *b = notify_body(p, event);
  const char *status = rc == EXIT_OK ? "success" : rc == EXIT_PARTIAL ? "partial" : "failure";
  json_object_set_new(b, "status", json_string(status));
  json_object_set_new(b, "exit_code", json_integer(rc));
  json_object_set_new(b, "snapshot", g_op.snapshot ? json_string(g_op.snapshot) : json_null());
  json_object_set_new(b, "error", error ? json_string(error) : json_null());
  json_object_set_new(b, "duration_seconds", json_real(seconds));
  json_t *counts = json_object_get(g_op.details, "counts");
  json_object_set(b, "counts", counts ? counts : json_null());
  json_t *w = json_array();
  size_t i;
  json_t *x;
  json_array_foreach(g_op.warnings, i, x) {
    if (i == NOTIFY_MAX_WARNINGS)
      break;
    json_array_append(w, x);
  }
  json_object_set_new(b, "warnings", w);
  json_object_set_new(b, "warnings_count",
                      json_integer((json_int_t)json_array_size(g_op.warnings)));
  json_object_set_new(b, "sinks_missed",
                      g_op.sinks_missed ? json_incref(g_op.sinks_missed) : json_array());
  return b;
}

static void after_run(int rc, const char *error) {
  const struct pipeline *p = g_op.kept.p;
  const char *status = rc == EXIT_OK ? "success" : rc == EXIT_PARTIAL ? "partial" : "failure";
  struct hooks_outcome ho = {
      status, rc, g_op.snapshot, error, json_array_size(g_op.warnings), g_op.sinks_missed};
  int failed = hooks_run_after(p, &ho);
  if (failed)
    cli_note_detail("after_hooks_failed", json_integer(failed));
}

static void notify_run(int rc, const char *error, double seconds) {
  const struct pipeline *p = g_op.kept.p;
  if (!p->n_notify)
    return;
  const char *event = rc == EXIT_OK ? "success" : rc == EXIT_PARTIAL ? "partial" : "failure";
  json_t *b = run_body(p, event, rc, error, seconds);
  if (notify_wanted(p, event))
    notify_send(p, event, b);
  if (rc != EXIT_OK && rc != EXIT_PARTIAL && notify_wanted(p, "consecutive_failures")) {
    int streak = audit_failure_streak(p->name);
    if (streak > 0)
      notify_consecutive_failures(p, streak, b);
  }
  json_decref(b);
  json_t *s = notify_body(p, "storage_low");
  notify_storage_low(p, s);
  json_decref(s);
}

static void notify_check(int rc, const char *error) {
  const struct pipeline *p = g_op.kept.p;
  if (rc == EXIT_OK || !notify_wanted(p, "verify_failed"))
    return;
  json_t *b = notify_body(p, "verify_failed");
  json_object_set_new(b, "status", json_string("failure"));
  json_object_set_new(b, "exit_code", json_integer(rc));
  json_object_set_new(b, "error", error ? json_string(error) : json_null());
  const char *keys[] = {"read_data", "restore_test", "problems_count", "restore_test_failed"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    json_t *v = json_object_get(g_op.details, keys[i]);
    if (v)
      json_object_set(b, keys[i], v);
  }
  json_t *pr = json_array();
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(g_op.details, "problems"), i, x) {
    if (i == NOTIFY_MAX_PROBLEMS)
      break;
    json_array_append(pr, x);
  }
  json_object_set_new(b, "problems", pr);
  notify_send(p, "verify_failed", b);
  json_decref(b);
}

static char *command_label(const struct cli_command *cmd, const struct cli_args *a) {
  if (cmd->actions && a->n_pos > 0)
    return xasprintf("%s %s", cmd->name, a->pos[0]);
  return xstrdup(cmd->name);
}

const char *cli_current_command(void) {
  return g_op.active ? g_op.command : NULL;
}

int cli_dispatch(const struct cli_command *cmd, const struct cli_globals *g,
                 const struct cli_args *a) {
  memset(&g_op, 0, sizeof(g_op));
  g_op.active = 1;
  g_op.cmd = cmd;
  g_op.a = a;
  g_op.command = command_label(cmd, a);
  g_op.path = a->n_pos > (cmd->actions ? 1u : 0u) ? a->pos[cmd->actions ? 1 : 0] : "";
  g_op.audited = audited(cmd, a);
  g_op.started = now_s();
  log_note_error(NULL);

  int rc = cmd->run(g, a);

  double seconds = now_s() - g_op.started;
  char *error = NULL;
  if (rc == EXIT_INTERRUPTED)
    error = xstrdup("interrupted by SIGINT/SIGTERM");
  else if (rc != EXIT_OK && rc != EXIT_PARTIAL)
    error = log_last_error();
  if (a->json && rc != EXIT_OK && !g_op.json_printed)
    print_error_object(g_op.command, rc, error);
  fflush(stdout);
  if (g_op.audited && rc != EXIT_USAGE) {
    int run = is_cmd("run") && g_op.have_kept;
    if (run)
      after_run(rc, error);
    /* the problems went to the notification; the record keeps their count */
    json_t *problems = g_op.details ? json_incref(json_object_get(g_op.details, "problems")) : NULL;
    if (problems)
      json_object_del(g_op.details, "problems");
    record_audit(rc, error, seconds);
    if (problems)
      cli_note_detail("problems", problems);
    if (run)
      notify_run(rc, error, seconds);
    if (is_cmd("check") && g_op.have_kept)
      notify_check(rc, error);
  }
  if (g_op.have_kept) {
    g_op.closing = 1;
    cli_close(&g_op.kept);
  }
  free(error);
  free(g_op.command);
  free(g_op.snapshot);
  json_decref(g_op.details);
  json_decref(g_op.warnings);
  json_decref(g_op.sinks_missed);
  memset(&g_op, 0, sizeof(g_op));
  return rc;
}
