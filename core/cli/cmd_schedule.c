/* engine schedule PIPELINE [--install] [--unit-dir DIR] [--env-file PATH]:
 * the pipeline's `schedule:` (a 5-field cron expression, translated to
 * OnCalendar= by util/cron.c) as systemd units, printed or installed:
 *   engine-NAME.service  the run, sandboxed (docs/CLI.md "schedule": what
 *                        each setting allows and why)
 *   engine-NAME.timer    when
 *   engine-NAME-failure.service
 *                        OnFailure= of the run when a webhook wants failure:
 *                        `engine notify PIPELINE failure`, which sends
 *                        nothing when the run reported its failure itself
 * and the pipeline's env: secrets in an environment file (mode 0600) the
 * units load; the secrets never appear in the unit files. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "util/cron.h"
#include "util/log.h"

/* Without limits.timeout, how long a run may take before systemd stops it. */
#define SCHEDULE_DEFAULT_TIMEOUT "12h"

static int write_file(const char *path, const char *text, mode_t mode, char **err) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (!f || fchmod(fd, mode) != 0 || fputs(text, f) == EOF || fflush(f) != 0 ||
      fsync(fileno(f)) != 0) {
    *err = xasprintf("unable to write '%s': %s", tmp, strerror(errno));
    if (f)
      fclose(f);
    else if (fd >= 0)
      close(fd);
    return -1;
  }
  fclose(f);
  if (rename(tmp, path) != 0) {
    *err = xasprintf("unable to rename '%s' to '%s': %s", tmp, path, strerror(errno));
    return -1;
  }
  return 0;
}

/* An argument or path as a unit file reads it: '%' is a specifier (and '$'
 * an expansion in ExecStart=, exec), so they are doubled; quoted when it
 * holds blanks or quotes. */
static char *unit_word(const char *s, int exec) {
  size_t n = strlen(s);
  char *out = xmalloc(2 * n + 3);
  size_t k = 0;
  int quote = strpbrk(s, " \t\"'\\") != NULL;
  if (quote)
    out[k++] = '"';
  for (const char *p = s; *p; p++) {
    if (*p == '%' || (exec && *p == '$'))
      out[k++] = *p;
    else if (quote && (*p == '"' || *p == '\\'))
      out[k++] = '\\';
    out[k++] = *p;
  }
  if (quote)
    out[k++] = '"';
  out[k] = '\0';
  return out;
}

/* Is path `p` at or below directory `dir`? */
static int under(const char *p, const char *dir) {
  size_t n = strlen(dir);
  return strncmp(p, dir, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

static void add_unique(json_t *arr, const char *s) {
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) if (strcmp(json_string_value(v), s) == 0) return;
  json_array_append_new(arr, json_string(s));
}

/* Every absolute path a plugin's options name (strings and string lists). */
static void scan_plugin(const struct pipeline_plugin_cfg *pc, json_t *paths) {
  const char *key;
  json_t *v;
  json_object_foreach(pc->with, key, v) {
    json_t *one = json_is_string(v) ? json_pack("[O]", v) : json_incref(v);
    size_t i;
    json_t *s;
    json_array_foreach(one, i, s) {
      const char *t = json_string_value(s);
      if (t && t[0] == '/')
        add_unique(paths, t);
    }
    json_decref(one);
  }
}

/* What the units need to know of the pipeline. */
struct needs {
  json_t *env;        /* names of the env: secrets */
  json_t *paths;      /* every path the pipeline names */
  json_t *writes;     /* local sink directories */
  int writes_home;    /* a sink under /home, /root or /run/user */
  int uses_tmp;       /* a path under /tmp or /var/tmp */
  int notify_failed;  /* a webhook wants 'failure' */
  char *metrics_file; /* --metrics-file (absolute), or NULL */
  char *metrics_dir;  /* its directory */
};

static void collect(const struct pipeline *p, struct needs *n) {
  memset(n, 0, sizeof(*n));
  n->env = json_array();
  n->paths = json_array();
  n->writes = json_array();
  json_t *refs = pipeline_secret_refs(p);
  size_t i;
  json_t *v;
  json_array_foreach(refs, i, v) {
    const char *ref = json_string_value(json_object_get(v, "ref"));
    if (strncmp(ref, "env:", 4) == 0)
      add_unique(n->env, ref + 4);
    else if (strncmp(ref, "file:", 5) == 0)
      add_unique(n->paths, ref + 5);
  }
  json_decref(refs);
  if (p->encrypt_key_file)
    add_unique(n->paths, p->encrypt_key_file);
  for (i = 0; i < p->n_sources; i++)
    scan_plugin(&p->sources[i], n->paths);
  for (i = 0; i < p->n_sinks; i++) {
    scan_plugin(&p->sinks[i], n->paths);
    const char *path = json_string_value(json_object_get(p->sinks[i].with, "path"));
    if (p->sinks[i].type && strcmp(p->sinks[i].type, "local") == 0 && path && path[0] == '/')
      add_unique(n->writes, path);
  }
  for (i = 0; i < p->n_notify; i++)
    for (size_t k = 0; k < p->notify[i].n_on; k++)
      n->notify_failed |= strcmp(p->notify[i].on[k], "failure") == 0;
  json_array_foreach(n->paths, i, v) {
    const char *s = json_string_value(v);
    n->uses_tmp |= under(s, "/tmp") || under(s, "/var/tmp");
  }
  json_array_foreach(n->writes, i, v) {
    const char *s = json_string_value(v);
    n->writes_home |= under(s, "/home") || under(s, "/root") || under(s, "/run/user");
  }
}

static void needs_free(struct needs *n) {
  json_decref(n->env);
  json_decref(n->paths);
  json_decref(n->writes);
  free(n->metrics_file);
  free(n->metrics_dir);
}

/* The sandbox both services share: what the engine needs and nothing more
 * (docs/CLI.md, schedule). */
static char *sandbox(const struct needs *n, int writes) {
  char *rw = xstrdup("");
  size_t i;
  json_t *v;
  if (writes)
    json_array_foreach(n->writes, i, v) {
      char *w = unit_word(json_string_value(v), 0);
      char *t = xasprintf("%sReadWritePaths=-%s\n", rw, w);
      free(w);
      free(rw);
      rw = t;
    }
  if (writes && n->metrics_dir) {
    char *w = unit_word(n->metrics_dir, 0);
    char *t = xasprintf("%s# --metrics-file\nReadWritePaths=-%s\n", rw, w);
    free(w);
    free(rw);
    rw = t;
  }
  char *s = xasprintf(
      "UMask=0077\n"
      "NoNewPrivileges=yes\n"
      "# the file system is read-only but for the local repositories, the state directory\n"
      "# (audit log) and the cache directory (index cache)\n"
      "ProtectSystem=strict\n"
      "%s"
      "StateDirectory=engine\n"
      "CacheDirectory=engine\n"
      "Environment=ENGINE_CACHE_DIR=%%C/engine\n"
      "%s"
      "%s"
      "PrivateDevices=yes\n"
      "PrivateMounts=yes\n"
      "ProtectKernelTunables=yes\n"
      "ProtectKernelModules=yes\n"
      "ProtectKernelLogs=yes\n"
      "ProtectControlGroups=yes\n"
      "ProtectClock=yes\n"
      "ProtectHostname=yes\n"
      "ProtectProc=invisible\n"
      "ProcSubset=pid\n"
      "RestrictNamespaces=yes\n"
      "RestrictRealtime=yes\n"
      "RestrictSUIDSGID=yes\n"
      "LockPersonality=yes\n"
      "MemoryDenyWriteExecute=yes\n"
      "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n"
      "SystemCallArchitectures=native\n"
      "SystemCallFilter=@system-service\n"
      "SystemCallErrorNumber=EPERM\n"
      "DevicePolicy=closed\n"
      "KeyringMode=private\n"
      "# root, but only to read every file (and write the repository): no other privilege\n"
      "CapabilityBoundingSet=CAP_DAC_READ_SEARCH CAP_DAC_OVERRIDE CAP_FOWNER\n",
      rw,
      writes && n->writes_home ? "# a repository is under /home, /root or /run/user\n"
                                 "ProtectHome=no\n"
                               : "ProtectHome=read-only\n",
      n->uses_tmp ? "# a path of the pipeline is under /tmp or /var/tmp: no private /tmp\n"
                  : "PrivateTmp=yes\n");
  free(rw);
  return s;
}

/* The EnvironmentFile= line (and a comment naming what it holds), or a
 * comment when the pipeline has no env: secret. */
static char *env_lines(const struct needs *n, const char *env_file) {
  if (!json_array_size(n->env))
    return xstrdup("# the pipeline has no env: secrets\n");
  char *names = xstrdup("");
  size_t i;
  json_t *v;
  json_array_foreach(n->env, i, v) {
    char *t = xasprintf("%s%s%s", names, i ? " " : "", json_string_value(v));
    free(names);
    names = t;
  }
  char *w = unit_word(env_file, 0);
  char *s = xasprintf("# the pipeline's env: secrets (%s) come from this file, mode 0600; never\n"
                      "# from this unit (docs/CLI.md, schedule)\n"
                      "EnvironmentFile=%s\n",
                      names, w);
  free(w);
  free(names);
  return s;
}

/* systemd's TimeoutStartSec= from limits.timeout (whole seconds, at least 1) */
static char *timeout_value(const struct pipeline *p) {
  if (p->timeout_ms <= 0)
    return xstrdup(SCHEDULE_DEFAULT_TIMEOUT);
  long long s = (p->timeout_ms + 999) / 1000;
  return xasprintf("%llds", s);
}

/* An EnvironmentFile= value: double-quoted, with what systemd's parser
 * unescapes there escaped. */
static char *env_value(const char *v) {
  size_t n = strlen(v);
  char *out = xmalloc(2 * n + 3);
  size_t k = 0;
  out[k++] = '"';
  for (const char *p = v; *p; p++) {
    if (*p == '"' || *p == '\\' || *p == '`' || *p == '$')
      out[k++] = '\\';
    out[k++] = *p;
  }
  out[k++] = '"';
  out[k] = '\0';
  return out;
}

/* Writes the environment file from the current environment, unless it
 * exists (it then says which names it lacks). */
static int install_env_file(const struct pipeline *p, const char *pipeline_path,
                            const struct needs *n, const char *path, int quiet, char **err) {
  if (!json_array_size(n->env))
    return 0;
  struct stat st;
  if (stat(path, &st) == 0) {
    if (st.st_mode & 077)
      log_warn("%s is readable by others than its owner (mode %04o); it holds secrets: chmod 600 "
               "%s",
               path, (unsigned)(st.st_mode & 07777), path);
    FILE *f = fopen(path, "r");
    char *text = NULL;
    size_t cap = 0;
    json_t *have = json_array();
    while (f && getline(&text, &cap, f) > 0) {
      size_t l = strcspn(text, "=");
      if (text[l] == '=' && text[0] != '#')
        json_array_append_new(have, json_stringn(text, l));
    }
    free(text);
    if (f)
      fclose(f);
    size_t i;
    json_t *v;
    json_array_foreach(n->env, i, v) {
      int found = 0;
      size_t k;
      json_t *h;
      json_array_foreach(have, k, h) found |= json_equal(h, v);
      if (!found)
        log_warn("%s exists and does not set %s, which the pipeline needs; add it", path,
                 json_string_value(v));
    }
    json_decref(have);
    if (!quiet)
      printf("kept the existing environment file %s\n", path);
    return 0;
  }
  char *dir = xstrdup(path);
  char *slash = strrchr(dir, '/');
  if (slash && slash != dir) {
    *slash = '\0';
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
      *err = xasprintf("unable to create '%s': %s", dir, strerror(errno));
      free(dir);
      return -1;
    }
  }
  free(dir);
  char *text = xasprintf("# the env: secrets of pipeline %s (%s), loaded by engine-%s.service\n"
                         "# (EnvironmentFile=). Keep it mode 0600.\n",
                         p->name, pipeline_path, p->name);
  size_t i;
  json_t *v;
  json_array_foreach(n->env, i, v) {
    const char *name = json_string_value(v);
    const char *val = getenv(name);
    char *line;
    if (val && !strpbrk(val, "\r\n")) {
      char *q = env_value(val);
      line = xasprintf("%s=%s\n", name, q);
      free(q);
    } else {
      log_warn("%s is %s in this environment; fill it in in %s", name,
               val ? "a multi-line value (not supported there)" : "not set", path);
      line = xasprintf("# %s=\n", name);
    }
    char *t = xasprintf("%s%s", text, line);
    free(line);
    free(text);
    text = t;
  }
  int rc = write_file(path, text, 0600, err);
  /* the secrets were in this buffer */
  memset(text, 0, strlen(text));
  free(text);
  if (rc == 0 && !quiet)
    printf("wrote %s (mode 0600): %zu secret(s) from the current environment\n", path,
           json_array_size(n->env));
  return rc;
}

/* The three units of a pipeline. */
struct units {
  char *svc, *tmr, *fail_svc;
};

static void units_free(struct units *u) {
  free(u->svc);
  free(u->tmr);
  free(u->fail_svc);
}

/* The text of the units: the service running `exe -v run pipeline_abs`,
 * its timer at OnCalendar= cal and the failure service. path is the
 * pipeline as given (for the "generated by" lines). */
static void make_units(const struct pipeline *p, const struct needs *n, const char *path,
                       const char *exe, const char *pipeline_abs, const char *env_file,
                       const char *cal, struct units *u) {
  char *x = unit_word(exe, 1), *pp = unit_word(pipeline_abs, 1);
  char *box = sandbox(n, 1), *box_ro = sandbox(n, 0), *envl = env_lines(n, env_file);
  char *to = timeout_value(p);
  char *mw = n->metrics_file ? unit_word(n->metrics_file, 1) : NULL;
  char *mf = xasprintf("%s%s", mw ? " --metrics-file " : "", mw ? mw : "");
  free(mw);
  char *on_failure = n->notify_failed
                         ? xasprintf("OnFailure=engine-%s-failure.service\n", p->name)
                         : xstrdup("# no OnFailure=: no webhook of the pipeline is called for "
                                   "'failure' (notify:)\n");
  u->svc = xasprintf("# generated by 'engine schedule %s'\n"
                     "[Unit]\n"
                     "Description=engine backup pipeline %s\n"
                     "Wants=network-online.target\n"
                     "After=network-online.target\n"
                     "%s"
                     "\n"
                     "[Service]\n"
                     "Type=oneshot\n"
                     "# -v: the hooks' output and the run's info lines go to the journal too\n"
                     "ExecStart=%s -v run %s --progress never%s\n"
                     "# exit 3 (partial) counts as a failure, so it is noticed\n"
                     "TimeoutStartSec=%s\n"
                     "%s"
                     "Nice=10\n"
                     "IOSchedulingClass=idle\n"
                     "%s",
                     path, p->name, on_failure, x, pp, mf, to, envl, box);
  u->fail_svc = xasprintf("# generated by 'engine schedule %s'\n"
                          "[Unit]\n"
                          "Description=report that engine backup pipeline %s failed\n"
                          "\n"
                          "[Service]\n"
                          "Type=oneshot\n"
                          "ExecStart=%s notify %s failure --message \"systemd unit "
                          "engine-%s.service failed\"\n"
                          "TimeoutStartSec=5min\n"
                          "%s"
                          "%s",
                          path, p->name, x, pp, p->name, envl, box_ro);
  u->tmr = xasprintf("# generated by 'engine schedule %s'\n"
                     "[Unit]\n"
                     "Description=engine backup pipeline %s (schedule \"%s\")\n\n"
                     "[Timer]\n"
                     "OnCalendar=%s\n"
                     "Persistent=true\n"
                     "RandomizedDelaySec=60\n\n"
                     "[Install]\n"
                     "WantedBy=timers.target\n",
                     path, p->name, p->schedule, cal);
  free(x);
  free(pp);
  free(box);
  free(box_ro);
  free(envl);
  free(to);
  free(mf);
  free(on_failure);
}

/* schedule --install: the repository directories, the environment file and
 * the units in --unit-dir. Returns EXIT_OK, or EXIT_ERROR after saying
 * why. */
static int install_units(const struct cli_globals *g, const struct cli_args *a,
                         const struct pipeline *p, const struct needs *n, const char *pipeline_abs,
                         const char *env_file, const char *cal, const struct units *u) {
  char *err = NULL;
  const char *dir = a->unit_dir ? a->unit_dir : "/etc/systemd/system";
  char path[PATH_MAX];
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    err = xasprintf("unable to create the unit directory '%s': %s", dir, strerror(errno));
    return cli_fail(err);
  }
  /* ReadWritePaths= needs the directories to exist when the unit starts */
  size_t i;
  json_t *v;
  json_array_foreach(n->writes, i, v) {
    const char *w = json_string_value(v);
    if (mkdir(w, 0700) != 0 && errno != EEXIST)
      log_warn("unable to create the repository directory '%s' (%s); the service can only "
               "write there once it exists",
               w, strerror(errno));
  }
  /* the textfile collector's directory belongs to it: not created here */
  if (n->metrics_dir && access(n->metrics_dir, F_OK) != 0)
    log_warn("the directory of --metrics-file, '%s', does not exist (%s); create it before "
             "the timer runs",
             n->metrics_dir, strerror(errno));
  if (install_env_file(p, pipeline_abs, n, env_file, g->quiet, &err) != 0)
    return cli_fail(err);
  snprintf(path, sizeof(path), "%s/engine-%s.service", dir, p->name);
  if (write_file(path, u->svc, 0644, &err) != 0)
    return cli_fail(err);
  snprintf(path, sizeof(path), "%s/engine-%s.timer", dir, p->name);
  if (write_file(path, u->tmr, 0644, &err) != 0)
    return cli_fail(err);
  snprintf(path, sizeof(path), "%s/engine-%s-failure.service", dir, p->name);
  if (n->notify_failed ? write_file(path, u->fail_svc, 0644, &err) != 0
                       : (unlink(path) != 0 && errno != ENOENT)) {
    if (!err)
      err = xasprintf("unable to remove '%s': %s", path, strerror(errno));
    return cli_fail(err);
  }
  printf("installed %s/engine-%s.service and .timer (OnCalendar=%s)%s\n"
         "enable with: systemctl daemon-reload && systemctl enable --now engine-%s.timer\n",
         dir, p->name, cal, n->notify_failed ? ", and the OnFailure= unit" : "", p->name);
  return EXIT_OK;
}

int cmd_schedule(const struct cli_globals *g, const struct cli_args *a) {
  struct cli_ctx c;
  char *err = NULL;
  if (cli_load_pipeline(g, a->pos[0], &c, &err) != 0) {
    cli_close(&c);
    return cli_fail(err);
  }
  int rc = EXIT_ERROR;
  char *cal = NULL, *env_file = NULL;
  struct units u = {0};
  char pipeline_abs[PATH_MAX], exe[PATH_MAX];
  struct needs n;
  collect(c.p, &n);
  if (a->metrics_file) {
    /* a file in a directory of its own below /: that directory becomes
     * writable */
    const char *mfile = a->metrics_file, *slash = strrchr(mfile, '/');
    if (mfile[0] != '/' || !slash || slash == mfile || !slash[1]) {
      log_error("--metrics-file: '%s' is not an absolute path of a file in a directory below / "
                "(e.g. /var/lib/prometheus/node-exporter/engine-%s.prom)",
                mfile, c.p->name);
      goto out;
    }
    n.metrics_file = xstrdup(mfile);
    n.metrics_dir = xasprintf("%.*s", (int)(slash - mfile), mfile);
    n.uses_tmp |= under(n.metrics_dir, "/tmp") || under(n.metrics_dir, "/var/tmp");
  }
  if (!c.p->schedule) {
    log_error("%s has no 'schedule:' (a cron expression such as \"0 3 * * *\")", a->pos[0]);
    goto out;
  }
  if (cron_to_oncalendar(c.p->schedule, &cal, &err) != 0) {
    log_error("%s: %s", a->pos[0], err);
    free(err);
    goto out;
  }
  if (!realpath(a->pos[0], pipeline_abs)) {
    log_error("%s: %s", a->pos[0], strerror(errno));
    goto out;
  }
  ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (len <= 0)
    snprintf(exe, sizeof(exe), "/usr/local/bin/engine");
  else
    exe[len] = '\0';
  env_file = a->env_file ? xstrdup(a->env_file) : xasprintf("/etc/engine/%s.env", c.p->name);
  make_units(c.p, &n, a->pos[0], exe, pipeline_abs, env_file, cal, &u);
  if (!a->install) {
    printf("# engine-%s.service\n%s\n# engine-%s.timer\n%s", c.p->name, u.svc, c.p->name, u.tmr);
    if (n.notify_failed)
      printf("\n# engine-%s-failure.service\n%s", c.p->name, u.fail_svc);
    rc = EXIT_OK;
  } else {
    rc = install_units(g, a, c.p, &n, pipeline_abs, env_file, cal, &u);
  }
out:
  needs_free(&n);
  free(cal);
  units_free(&u);
  free(env_file);
  cli_close(&c);
  return rc;
}
