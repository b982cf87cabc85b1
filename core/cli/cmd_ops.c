/* engine audit PIPELINE [--json]: the audit trail of the pipeline's
 * repository, with the local log's records that never reached it.
 * engine notify PIPELINE EVENT [--message TEXT]: call the pipeline's
 * webhooks for EVENT now (what a systemd OnFailure= unit runs, and how an
 * operator tests a webhook). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/dispatch.h"
#include "ops/audit.h"
#include "ops/notify.h"
#include "util/log.h"

/* ---- audit ------------------------------------------------------------------ */

static json_t *find_op(json_t *records, const char *op_id) {
  size_t i;
  json_t *r;
  json_array_foreach(records, i, r) {
    const char *id = json_string_value(json_object_get(r, "op_id"));
    if (id && op_id && strcmp(id, op_id) == 0)
      return r;
  }
  return NULL;
}

static int cmp_time(const void *a, const void *b) {
  json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  json_int_t tx = json_integer_value(json_object_get(x, "created_ns"));
  json_int_t ty = json_integer_value(json_object_get(y, "created_ns"));
  return tx < ty ? -1 : tx > ty;
}

/* The repository's records and the local ones it lacks, oldest first, each
 * with "stored": ["repository", "local"] as the case may be. */
static json_t *merge(json_t *repo_records, json_t *local) {
  json_t *all = json_array();
  size_t i;
  json_t *r;
  json_array_foreach(repo_records, i, r) {
    json_t *st = json_array();
    json_array_append_new(st, json_string("repository"));
    if (find_op(local, json_string_value(json_object_get(r, "op_id"))))
      json_array_append_new(st, json_string("local"));
    json_object_set_new(r, "stored", st);
    json_array_append(all, r);
  }
  json_array_foreach(local, i, r) {
    if (find_op(repo_records, json_string_value(json_object_get(r, "op_id"))))
      continue;
    json_object_set_new(r, "stored", json_pack("[s]", "local"));
    json_array_append(all, r);
  }
  size_t n = json_array_size(all);
  json_t **v = xcalloc(n, sizeof(*v));
  for (i = 0; i < n; i++)
    v[i] = json_incref(json_array_get(all, i));
  qsort(v, n, sizeof(*v), cmp_time);
  json_decref(all);
  all = json_array();
  for (i = 0; i < n; i++)
    json_array_append_new(all, v[i]);
  free(v);
  return all;
}

static const char *str(json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return s ? s : "";
}

static void print_table(json_t *records) {
  printf("%-20s %-16s %-10s %-14s %-16s %-8s %-9s %s\n", "TIME", "HOST", "USER", "PIPELINE",
         "COMMAND", "SNAPSHOT", "OUTCOME", "STORED");
  size_t i;
  json_t *r;
  json_array_foreach(records, i, r) {
    json_t *st = json_object_get(r, "stored");
    int in_repo = 0, in_local = 0;
    size_t k;
    json_t *x;
    json_array_foreach(st, k, x) {
      in_repo |= strcmp(json_string_value(x), "repository") == 0;
      in_local |= strcmp(json_string_value(x), "local") == 0;
    }
    printf("%-20s %-16.16s %-10.10s %-14.14s %-16.16s %-8.8s %-9s %s\n", str(r, "time"),
           str(r, "host"), str(r, "user"), str(r, "pipeline"), str(r, "command"),
           *str(r, "snapshot") ? str(r, "snapshot") : "-", str(r, "outcome"),
           in_repo && in_local ? "repository+local"
           : in_repo           ? "repository"
                               : "local only");
    if (*str(r, "error")) {
      const char *e = str(r, "error");
      printf("  error: %.*s%s\n", (int)strcspn(e, "\n"), e, strchr(e, '\n') ? " ..." : "");
    }
  }
  printf("%zu record(s)\n", json_array_size(records));
}

int cmd_audit(const struct cli_globals *g, const struct cli_args *a) {
  struct cli_ctx c;
  char *err = NULL;
  if (cli_load_pipeline(g, a->pos[0], &c, &err) != 0) {
    cli_close(&c);
    return cli_fail(err);
  }
  c.read_only = 1;
  json_t *records = NULL, *unreadable = NULL;
  int rc = EXIT_OK;
  if (cli_open(&c, 0, 0, 0, &err) != 0 || audit_list(c.repo, &records, &unreadable, &err) != 0) {
    log_error("%s; showing only this host's local audit log", err);
    free(err);
    rc = EXIT_ERROR;
  }
  json_t *local = audit_local_records(c.p->name);
  json_t *all = merge(records, local);
  if (a->json)
    cli_print_json(all);
  else
    print_table(all);
  size_t i;
  json_t *u;
  json_array_foreach(unreadable, i, u)
      log_error("audit record %s cannot be read: %s", str(u, "object"), str(u, "error"));
  if (json_array_size(unreadable))
    rc = EXIT_ERROR;
  json_decref(all);
  json_decref(local);
  json_decref(records);
  json_decref(unreadable);
  cli_close(&c);
  return rc;
}

/* ---- notify ------------------------------------------------------------------ */

/* What systemd tells an OnFailure= unit about the unit that failed. */
static void add_systemd_monitor(json_t *b) {
  static const char *const vars[][2] = {{"MONITOR_UNIT", "unit"},
                                        {"MONITOR_SERVICE_RESULT", "service_result"},
                                        {"MONITOR_EXIT_CODE", "exit_code_kind"},
                                        {"MONITOR_EXIT_STATUS", "exit_status"},
                                        {"MONITOR_INVOCATION_ID", "invocation"}};
  json_t *m = json_object();
  for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
    const char *v = getenv(vars[i][0]);
    if (v && *v)
      json_object_set_new(m, vars[i][1], json_string(v));
  }
  if (json_object_size(m))
    json_object_set(b, "systemd", m);
  json_decref(m);
}

int cmd_notify(const struct cli_globals *g, const struct cli_args *a) {
  const char *event = a->pos[1];
  if (!pipeline_notify_event_known(event)) {
    char *list = pipeline_notify_event_list();
    int rc = cli_usage_error("notify", "unknown event '%s' (expected one of: %s)", event, list);
    free(list);
    return rc;
  }
  struct cli_ctx c;
  char *err = NULL;
  if (cli_load_pipeline(g, a->pos[0], &c, &err) != 0) {
    cli_close(&c);
    return cli_fail(err);
  }
  /* an OnFailure= unit: the run that failed reported itself if it got as
   * far as its audit record (it was not killed before its end) */
  const char *inv = getenv("MONITOR_INVOCATION_ID");
  if (inv && *inv && audit_has_invocation(inv)) {
    if (!g->quiet)
      printf("the run of invocation %s reported its outcome itself; nothing sent\n", inv);
    cli_close(&c);
    return EXIT_OK;
  }
  int wanted = 0;
  for (size_t i = 0; i < c.p->n_notify; i++)
    for (size_t k = 0; k < c.p->notify[i].n_on; k++)
      wanted += strcmp(c.p->notify[i].on[k], event) == 0;
  if (!wanted) {
    err =
        xasprintf("no webhook of pipeline '%s' is called for '%s' (notify[].on)", c.p->name, event);
    cli_close(&c);
    return cli_fail(err);
  }
  json_t *b = notify_body(c.p, event);
  if (strcmp(event, "success") == 0 || strcmp(event, "failure") == 0 ||
      strcmp(event, "partial") == 0)
    json_object_set_new(b, "status", json_string(event));
  json_object_set_new(b, "message", a->message ? json_string(a->message) : json_null());
  json_object_set_new(b, "manual", json_true());
  add_systemd_monitor(b);
  int sent = notify_send(c.p, event, b);
  json_decref(b);
  if (!g->quiet)
    printf("'%s' delivered to %d of %d webhook(s)\n", event, sent, wanted);
  int rc = sent == wanted ? EXIT_OK : EXIT_ERROR;
  if (rc != EXIT_OK)
    log_note_error("some webhooks did not accept the notification (see the warnings above)");
  cli_close(&c);
  return rc;
}
