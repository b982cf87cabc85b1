/* engine status PIPELINE... [--json]: each pipeline's recovery point against
 * its objectives, its last run and its last verification, read from the
 * repository (core/ops/status.c; docs/CLI.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/commands.h"
#include "cli/dispatch.h"
#include "ops/status.h"
#include "util/log.h"

/* Some pipeline misses an objective or failed its last verification. */
#define EXIT_ATTENTION 4

/* "3d 4h", "2h 5m", "40s" */
static void format_age(int64_t s, char *buf, size_t n) {
  if (s < 0)
    s = 0;
  if (s >= 86400)
    snprintf(buf, n, "%lldd %lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
  else if (s >= 3600)
    snprintf(buf, n, "%lldh %lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
  else if (s >= 60)
    snprintf(buf, n, "%lldm %llds", (long long)(s / 60), (long long)(s % 60));
  else
    snprintf(buf, n, "%llds", (long long)s);
}

static const char *str(json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? s : "?";
}

static void print_text(json_t *st) {
  char b1[32], b2[32];
  json_t *nc = json_object_get(st, "newest_complete_snapshot");
  printf("pipeline %s (%s): %s\n", str(st, "pipeline"), str(st, "path"),
         json_is_true(json_object_get(st, "ok")) ? "OK" : "NEEDS ATTENTION");
  format_age(json_integer_value(json_object_get(st, "rpo_seconds")), b2, sizeof(b2));
  if (json_is_object(nc)) {
    format_age(json_integer_value(json_object_get(st, "recovery_point_age_seconds")), b1,
               sizeof(b1));
    printf("  recovery point  %s (snapshot %.8s), %s old; RPO %s: %s\n", str(nc, "time"),
           str(nc, "id"), b1, b2, json_is_true(json_object_get(st, "rpo_met")) ? "met" : "STALE");
  } else {
    printf("  recovery point  none: no complete snapshot of this pipeline; RPO %s: NOT MET\n", b2);
  }
  json_t *run = json_object_get(st, "last_run");
  if (json_is_object(run)) {
    json_t *err = json_object_get(run, "error");
    printf("  last run        %s %s (exit %lld)%s%s\n", str(run, "time"), str(run, "outcome"),
           (long long)json_integer_value(json_object_get(run, "exit_code")),
           json_is_string(err) ? ": " : "", json_is_string(err) ? json_string_value(err) : "");
  } else {
    printf("  last run        none recorded\n");
  }
  json_t *v = json_object_get(st, "last_verify");
  if (json_is_object(v)) {
    printf("  last verify     %s %s %s (%lld problem(s))%s%s\n", str(v, "time"), str(v, "check"),
           str(v, "result"), (long long)json_integer_value(json_object_get(v, "problems")),
           json_is_string(json_object_get(v, "error")) ? ": " : "",
           json_is_string(json_object_get(v, "error")) ? str(v, "error") : "");
  } else {
    printf("  last verify     none recorded (run 'engine check')\n");
  }
  json_t *rt = json_object_get(st, "last_restore_test");
  json_t *rs = json_object_get(rt, "restore_seconds");
  if (json_is_number(rs)) {
    json_t *rto = json_object_get(st, "rto_seconds");
    if (json_is_integer(rto))
      format_age(json_integer_value(rto), b1, sizeof(b1));
    printf("  restore test    %s %s, restored in %.1f s%s%s%s\n", str(rt, "time"),
           str(rt, "result"), json_number_value(rs), json_is_integer(rto) ? "; RTO " : "",
           json_is_integer(rto) ? b1 : "",
           json_is_integer(rto)
               ? (json_is_true(json_object_get(rt, "rto_met")) ? ": met" : ": NOT MET")
               : "");
  } else {
    printf("  restore test    none recorded (run 'engine check --restore-test')\n");
  }
}

/* The status of one pipeline file, or {"path", "error"}. */
static json_t *one(const struct cli_globals *g, const char *path, int *failed) {
  struct cli_ctx c;
  char *err = NULL;
  json_t *st = NULL;
  if (cli_load_pipeline(g, path, &c, &err) == 0) {
    c.read_only = 1;
    if (cli_open(&c, 0, 0, 0, &err) == 0)
      st = status_collect(c.repo, c.p, (int64_t)time(NULL), &err);
  }
  cli_close(&c);
  if (!st) {
    /* most messages name the file already */
    const char *msg = err ? err : "failed";
    size_t n = strlen(path);
    if (strncmp(msg, path, n) == 0 && msg[n] == ':')
      log_error("%s", msg);
    else
      log_error("%s: %s", path, msg);
    st = json_pack("{s:s, s:s, s:b}", "path", path, "error", err ? err : "failed", "ok", 0);
    *failed = 1;
  }
  free(err);
  return st;
}

int cmd_status(const struct cli_globals *g, const struct cli_args *a) {
  json_t *out = json_array();
  int failed = 0, attention = 0;
  for (size_t i = 0; i < a->n_pos; i++) {
    json_t *st = one(g, a->pos[i], &failed);
    if (!json_object_get(st, "error")) {
      attention |= !json_is_true(json_object_get(st, "ok"));
      if (!a->json)
        print_text(st);
    }
    json_array_append_new(out, st);
  }
  if (a->json)
    cli_print_json(out);
  json_decref(out);
  return failed ? EXIT_ERROR : attention ? EXIT_ATTENTION : EXIT_OK;
}
