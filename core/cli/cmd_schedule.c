/* engine schedule PIPELINE [--install] [--unit-dir DIR]: turn the pipeline's
 * `schedule:` (a 5-field cron expression) into a systemd .service + .timer
 * pair, printed or installed. The cron fields are translated to systemd's
 * OnCalendar syntax (lists, ranges and steps of each field); `@daily`-style
 * shortcuts are accepted too. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "util/log.h"

static const char *const dow_names[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};

/* Translate one cron field (numbers, "*", ranges a-b, steps like "*\/n", lists) into the
 * OnCalendar form of the same field. Returns NULL with *err on bad input. */
static char *field(const char *in, int lo, int hi, int is_dow, int width, const char *what,
                   char **err) {
  char out[512] = "";
  char *dup = xstrdup(in), *save = NULL;
  for (char *part = strtok_r(dup, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
    char piece[64];
    int a = lo, b = hi, step = 1;
    char *slash = strchr(part, '/');
    if (slash) {
      *slash = '\0';
      char *end;
      long s = strtol(slash + 1, &end, 10);
      if (*end || s < 1 || s > hi) {
        *err = xasprintf("schedule: %s field '%s': bad step", what, in);
        free(dup);
        return NULL;
      }
      step = (int)s;
    }
    if (strcmp(part, "*") != 0) {
      char *end;
      long x = strtol(part, &end, 10);
      long y = x;
      if (*end == '-') {
        y = strtol(end + 1, &end, 10);
      } else if (slash) {
        y = hi; /* "5/15" means from 5 to the end in steps of 15 */
      }
      if (*end || end == part || x < lo || y > hi || x > y) {
        *err = xasprintf(
            "schedule: %s field '%s': expected numbers %d..%d, '*', ranges, steps or lists", what,
            in, lo, hi);
        free(dup);
        return NULL;
      }
      a = (int)x;
      b = (int)y;
    } else if (!slash) {
      if (!is_dow)
        snprintf(piece, sizeof(piece), "*");
      else
        piece[0] = '\0'; /* any weekday: the day-of-week part is left out */
      strncat(out, out[0] && piece[0] ? "," : "", sizeof(out) - strlen(out) - 1);
      strncat(out, piece, sizeof(out) - strlen(out) - 1);
      continue;
    }
    /* expand explicitly: systemd's own step syntax differs per field */
    for (int v = a; v <= b; v += step) {
      if (is_dow)
        snprintf(piece, sizeof(piece), "%s", dow_names[v]);
      else
        snprintf(piece, sizeof(piece), "%0*d", width, v);
      if (out[0])
        strncat(out, ",", sizeof(out) - strlen(out) - 1);
      strncat(out, piece, sizeof(out) - strlen(out) - 1);
    }
  }
  free(dup);
  return xstrdup(out);
}

/* cron "m h dom mon dow" -> OnCalendar "DOW *-MON-DOM HH:MM:00" */
int schedule_to_oncalendar(const char *cron, char **out, char **err) {
  const char *shortcuts[][2] = {{"@hourly", "0 * * * *"},   {"@daily", "0 0 * * *"},
                                {"@midnight", "0 0 * * *"}, {"@weekly", "0 0 * * 0"},
                                {"@monthly", "0 0 1 * *"},  {"@yearly", "0 0 1 1 *"},
                                {"@annually", "0 0 1 1 *"}};
  for (size_t i = 0; i < sizeof(shortcuts) / sizeof(shortcuts[0]); i++)
    if (strcmp(cron, shortcuts[i][0]) == 0)
      cron = shortcuts[i][1];
  char f[5][128];
  int n = sscanf(cron, "%127s %127s %127s %127s %127s", f[0], f[1], f[2], f[3], f[4]);
  char extra[8];
  if (n != 5 || sscanf(cron, "%*s %*s %*s %*s %*s %7s", extra) == 1) {
    *err = xasprintf(
        "schedule '%s': expected 5 cron fields 'minute hour day-of-month month day-of-week' or "
        "@hourly/@daily/@weekly/@monthly/@yearly",
        cron);
    return -1;
  }
  if (strcmp(f[2], "*") != 0 && strcmp(f[4], "*") != 0) {
    /* cron ORs day-of-month and day-of-week; OnCalendar ANDs them */
    *err = xasprintf(
        "schedule '%s': restricting both day-of-month and day-of-week is not supported (cron and "
        "systemd combine them differently); use one of them",
        cron);
    return -1;
  }
  char *mi = field(f[0], 0, 59, 0, 2, "minute", err);
  char *hr = mi ? field(f[1], 0, 23, 0, 2, "hour", err) : NULL;
  char *dm = hr ? field(f[2], 1, 31, 0, 2, "day-of-month", err) : NULL;
  char *mo = dm ? field(f[3], 1, 12, 0, 2, "month", err) : NULL;
  char *dw = mo ? field(f[4], 0, 7, 1, 0, "day-of-week", err) : NULL;
  if (dw)
    *out = xasprintf("%s%s*-%s-%s %s:%s:00", dw, dw[0] ? " " : "", mo, dm, hr, mi);
  free(mi);
  free(hr);
  free(dm);
  free(mo);
  free(dw);
  return dw ? 0 : -1;
}

static int write_file(const char *path, const char *text, char **err) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f || fputs(text, f) == EOF || fflush(f) != 0 || fsync(fileno(f)) != 0) {
    *err = xasprintf("unable to write '%s': %s", tmp, strerror(errno));
    if (f)
      fclose(f);
    return -1;
  }
  fclose(f);
  if (rename(tmp, path) != 0) {
    *err = xasprintf("unable to rename '%s' to '%s': %s", tmp, path, strerror(errno));
    return -1;
  }
  return 0;
}

int cmd_schedule(const struct cli_globals *g, const struct cli_args *a) {
  struct cli_ctx c;
  char *err = NULL;
  if (cli_load_pipeline(g, a->pos[0], &c, &err) != 0) {
    fprintf(stderr, "engine: error: %s\n", err);
    free(err);
    cli_close(&c);
    return EXIT_ERROR;
  }
  int rc = EXIT_ERROR;
  char *cal = NULL, *svc = NULL, *tmr = NULL;
  char pipeline_abs[PATH_MAX], exe[PATH_MAX];
  if (!c.p->schedule) {
    fprintf(stderr,
            "engine: error: %s has no 'schedule:' (a cron expression such as \"0 3 * * *\")\n",
            a->pos[0]);
    goto out;
  }
  if (schedule_to_oncalendar(c.p->schedule, &cal, &err) != 0) {
    fprintf(stderr, "engine: error: %s: %s\n", a->pos[0], err);
    free(err);
    goto out;
  }
  if (!realpath(a->pos[0], pipeline_abs)) {
    fprintf(stderr, "engine: error: %s: %s\n", a->pos[0], strerror(errno));
    goto out;
  }
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0)
    snprintf(exe, sizeof(exe), "/usr/local/bin/engine");
  else
    exe[n] = '\0';
  svc = xasprintf(
      "# generated by 'engine schedule %s'\n"
      "[Unit]\n"
      "Description=engine backup pipeline %s\n"
      "Wants=network-online.target\n"
      "After=network-online.target\n\n"
      "[Service]\n"
      "Type=oneshot\n"
      "# secrets: the pipeline references them (env:NAME via EnvironmentFile=, or file:PATH)\n"
      "ExecStart=%s run %s --progress never\n"
      "# exit 3 (partial) is reported as a failure so it is noticed\n"
      "Nice=10\n"
      "IOSchedulingClass=idle\n"
      "PrivateTmp=true\n",
      a->pos[0], c.p->name, exe, pipeline_abs);
  tmr = xasprintf("# generated by 'engine schedule %s'\n"
                  "[Unit]\n"
                  "Description=engine backup pipeline %s (schedule \"%s\")\n\n"
                  "[Timer]\n"
                  "OnCalendar=%s\n"
                  "Persistent=true\n"
                  "RandomizedDelaySec=60\n\n"
                  "[Install]\n"
                  "WantedBy=timers.target\n",
                  a->pos[0], c.p->name, c.p->schedule, cal);
  if (!a->install) {
    printf("# engine-%s.service\n%s\n# engine-%s.timer\n%s", c.p->name, svc, c.p->name, tmr);
    rc = EXIT_OK;
    goto out;
  }
  {
    const char *dir = a->unit_dir ? a->unit_dir : "/etc/systemd/system";
    char path[PATH_MAX];
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
      err = xasprintf("unable to create the unit directory '%s': %s", dir, strerror(errno));
      goto werr;
    }
    snprintf(path, sizeof(path), "%s/engine-%s.service", dir, c.p->name);
    if (write_file(path, svc, &err) != 0)
      goto werr;
    snprintf(path, sizeof(path), "%s/engine-%s.timer", dir, c.p->name);
    if (write_file(path, tmr, &err) != 0)
      goto werr;
    printf("installed %s/engine-%s.service and .timer (OnCalendar=%s)\n"
           "enable with: systemctl daemon-reload && systemctl enable --now engine-%s.timer\n",
           dir, c.p->name, cal, c.p->name);
    rc = EXIT_OK;
    goto out;
  werr:
    fprintf(stderr, "engine: error: %s\n", err);
    free(err);
  }
out:
  free(cal);
  free(svc);
  free(tmr);
  cli_close(&c);
  return rc;
}
