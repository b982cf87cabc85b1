/* Running a pipeline's before and after hooks (see hooks.h). */
#include "ops/hooks.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "plugin/host.h"
#include "plugin/spawn.h"
#include "util/cancel.h"
#include "util/log.h"

/* After SIGTERM, how long the hook's process group has before SIGKILL. */
#define HOOK_KILL_GRACE_MS 5000
/* After the shell exited, how long a process it left behind may keep the
 * output open before the output is taken as it is (a daemon started with &). */
#define HOOK_EOF_GRACE_MS 1000
/* The last lines of output a failure message quotes. */
#define HOOK_TAIL_LINES 10
#define HOOK_TAIL_BYTES 2048
/* A line longer than this is logged in pieces. */
#define HOOK_LINE_MAX 4096

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "5m", "1m30s", "2.5s" */
static void format_duration(int64_t ms, char *buf, size_t n) {
  if (ms % 1000)
    snprintf(buf, n, "%.1fs", (double)ms / 1000);
  else if (ms >= 60000 && (ms / 1000) % 60)
    snprintf(buf, n, "%lldm%llds", (long long)(ms / 60000), (long long)(ms / 1000 % 60));
  else if (ms >= 60000)
    snprintf(buf, n, "%lldm", (long long)(ms / 60000));
  else
    snprintf(buf, n, "%llds", (long long)(ms / 1000));
}

/* The output of one hook: lines are logged as they complete; the last
 * HOOK_TAIL_LINES are kept for a failure message. */
struct output {
  const char *label;
  char line[HOOK_LINE_MAX];
  size_t len;
  char *tail[HOOK_TAIL_LINES];
  size_t n_tail;
};

static void take_line(struct output *o) {
  log_info("%s: %.*s", o->label, (int)o->len, o->line);
  if (o->n_tail == HOOK_TAIL_LINES) {
    free(o->tail[0]);
    memmove(o->tail, o->tail + 1, (HOOK_TAIL_LINES - 1) * sizeof(char *));
    o->n_tail--;
  }
  o->tail[o->n_tail++] = xasprintf("%.*s", (int)o->len, o->line);
  o->len = 0;
}

static void output_add(struct output *o, const char *buf, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (buf[i] == '\n') {
      take_line(o);
      continue;
    }
    if (o->len == sizeof(o->line))
      take_line(o);
    o->line[o->len++] = buf[i] == '\r' || buf[i] == '\0' ? ' ' : buf[i];
  }
}

/* "; its last output: a | b" (malloc'd), or "" */
static char *output_tail(struct output *o) {
  if (o->len)
    take_line(o);
  if (!o->n_tail)
    return xstrdup("");
  size_t total = 0;
  size_t first = o->n_tail;
  while (first > 0 && total + strlen(o->tail[first - 1]) + 3 < HOOK_TAIL_BYTES)
    total += strlen(o->tail[--first]) + 3;
  if (first == o->n_tail) /* one very long line: its end */
    return xasprintf("; its last output: ...%s",
                     o->tail[o->n_tail - 1] + strlen(o->tail[o->n_tail - 1]) - HOOK_TAIL_BYTES / 2);
  char *s = xstrdup("; its last output: ");
  for (size_t i = first; i < o->n_tail; i++) {
    char *t = xasprintf("%s%s%s", s, i > first ? " | " : "", o->tail[i]);
    free(s);
    s = t;
  }
  return s;
}

static void output_free(struct output *o) {
  for (size_t i = 0; i < o->n_tail; i++)
    free(o->tail[i]);
  o->n_tail = 0;
}

/* Has the child exited? (not reaped: spawn_wait does that) */
static int exited(pid_t pid) {
  siginfo_t si;
  memset(&si, 0, sizeof(si));
  if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
    return errno == ECHILD;
  return si.si_pid == pid;
}

/* How one hook ended. */
enum hook_end { HOOK_DONE, HOOK_TIMEOUT, HOOK_INTERRUPTED };

/* Reads the hook's output until it ends (EOF, or the shell exited and the
 * output stayed quiet for HOOK_EOF_GRACE_MS), the deadline passes, or (if
 * stop_on_cancel) a cancellation. */
static enum hook_end follow(const struct engine_host *h, struct engine_child *ch, int64_t deadline,
                            int stop_on_cancel, struct output *out) {
  int fd = ch->stdout_fd;
  int64_t quiet_since = -1;
  char buf[4096];
  for (;;) {
    if (stop_on_cancel && cancel_requested())
      return HOOK_INTERRUPTED;
    int64_t left = deadline - now_ms();
    if (left <= 0)
      return HOOK_TIMEOUT;
    if (fd < 0) { /* output closed: wait for the shell itself */
      if (exited(ch->pid))
        return HOOK_DONE;
      struct timespec ts = {0, 20 * 1000000L};
      nanosleep(&ts, NULL);
      continue;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int n = poll(&pfd, 1, left < 100 ? (int)left : 100);
    if (n < 0 && errno != EINTR)
      return HOOK_DONE;
    if (n > 0) {
      ssize_t r = read(fd, buf, sizeof(buf));
      if (r > 0) {
        output_add(out, buf, (size_t)r);
        quiet_since = -1;
        continue;
      }
      if (r < 0 && (errno == EINTR || errno == EAGAIN))
        continue;
      close(fd); /* EOF */
      fd = ch->stdout_fd = -1;
      continue;
    }
    if (exited(ch->pid)) {
      if (quiet_since < 0)
        quiet_since = now_ms();
      else if (now_ms() - quiet_since >= HOOK_EOF_GRACE_MS)
        return HOOK_DONE;
    }
  }
  (void)h;
}

/* SIGTERM to the hook's process group, SIGKILL after the grace period. */
static void stop_group(const struct engine_host *h, struct engine_child *ch) {
  spawn_kill(h, ch, SIGTERM);
  int64_t until = now_ms() + HOOK_KILL_GRACE_MS;
  while (!exited(ch->pid) && now_ms() < until) {
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
  }
  spawn_kill(h, ch, SIGKILL);
}

/* Runs one hook. Returns 0 on success, or -1 with *why (malloc'd). */
static int run_one(const char *label, const char *cmd, const char *const *env, int64_t timeout_ms,
                   int stop_on_cancel, char **why) {
  *why = NULL;
  struct engine_host *h = host_new(label, NULL);
  /* stderr joins stdout, so the log keeps the order the command wrote in */
  char *script = xasprintf("exec 2>&1\n%s", cmd);
  const char *argv[] = {"sh", "-c", script, NULL};
  struct engine_spawn_opts so = {.struct_size = sizeof(so),
                                 .file = "/bin/sh",
                                 .argv = argv,
                                 .env = env,
                                 .stdin_mode = ENGINE_STDIO_NULL,
                                 .stdout_mode = ENGINE_STDIO_PIPE,
                                 .stderr_mode = ENGINE_STDIO_NULL};
  struct engine_child *ch = NULL;
  int64_t start = now_ms();
  log_info("%s: running '%s'", label, cmd);
  if (spawn_child_group(h, &so, &ch) != ENGINE_OK) {
    *why = xstrdup(host_last_error(h));
    free(script);
    host_free(h);
    return -1;
  }
  struct output out = {.label = label};
  enum hook_end end = follow(h, ch, start + timeout_ms, stop_on_cancel, &out);
  if (end != HOOK_DONE)
    stop_group(h, ch);
  int status = 0;
  int waited = spawn_wait(h, ch, &status);
  char *tail = output_tail(&out);
  char limit[32];
  format_duration(timeout_ms, limit, sizeof(limit));
  if (end == HOOK_TIMEOUT)
    *why = xasprintf("did not finish within %s (hooks.timeout); it was killed%s", limit, tail);
  else if (end == HOOK_INTERRUPTED)
    *why = xasprintf("interrupted (SIGINT/SIGTERM); it was stopped%s", tail);
  else if (waited != ENGINE_OK)
    *why = xstrdup(host_last_error(h));
  else if (WIFSIGNALED(status))
    *why = xasprintf("was killed by signal %d%s", WTERMSIG(status), tail);
  else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    *why = xasprintf("exited with status %d%s", WIFEXITED(status) ? WEXITSTATUS(status) : -1, tail);
  else
    log_info("%s: done in %.1f s", label, (double)(now_ms() - start) / 1000);
  free(tail);
  output_free(&out);
  spawn_free(h, ch);
  host_free(h);
  free(script);
  return *why ? -1 : 0;
}

/* NAME=VALUE, malloc'd, appended to a NULL-terminated vector */
static void env_add(char ***v, size_t *n, const char *name, const char *value) {
  *v = xrealloc(*v, (*n + 2) * sizeof(char *));
  (*v)[(*n)++] = xasprintf("%s=%s", name, value ? value : "");
  (*v)[*n] = NULL;
}

static void env_free(char **v) {
  for (size_t i = 0; v && v[i]; i++)
    free(v[i]);
  free(v);
}

static char **base_env(const struct pipeline *p, const char *phase, size_t *n) {
  char **v = NULL;
  *n = 0;
  env_add(&v, n, "ENGINE_PIPELINE", p->name);
  char abs[PATH_MAX];
  env_add(&v, n, "ENGINE_PIPELINE_FILE", realpath(p->path, abs) ? abs : p->path);
  env_add(&v, n, "ENGINE_HOOK", phase);
  return v;
}

/* The pipeline file, flock'ed by this run (hooks.h), or -1. */
static int g_run_lock = -1;
/* This run gave up (or was interrupted) waiting for another run: it ran no
 * before hook, so it runs no after hook either (that would undo the other
 * run's before hook during its backup). */
static int g_run_lock_refused;

static int run_lock(const struct pipeline *p, struct hooks_wait *w, char **err) {
  int fd = open(p->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    log_warn("unable to open %s to keep other runs of pipeline '%s' from overlapping this "
             "one's hooks: %s",
             p->path, p->name, strerror(errno));
    return 0;
  }
  int64_t start = now_ms();
  int said = 0;
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      log_warn("unable to lock %s to keep other runs of pipeline '%s' from overlapping this "
               "one's hooks: %s",
               p->path, p->name, strerror(errno));
      close(fd);
      return 0;
    }
    int64_t waited = now_ms() - start;
    if (cancel_requested()) {
      *err = xasprintf("interrupted while waiting for another run of pipeline '%s' on this host",
                       p->name);
      close(fd);
      return -1;
    }
    if (w->wait_ms >= 0 && waited >= w->wait_ms) {
      char limit[32];
      format_duration(w->wait_ms, limit, sizeof(limit));
      *err = xasprintf("another backup of this pipeline is running on this host (a run of "
                       "pipeline '%s' with hooks holds %s); gave up waiting after %s (--lock-wait)",
                       p->name, p->path, limit);
      w->gave_up = 1;
      w->waited_s = (double)waited / 1000;
      close(fd);
      return -1;
    }
    if (!said) {
      log_warn("waiting for another run of pipeline '%s' on this host to finish, hooks "
               "included (it holds %s)",
               p->name, p->path);
      said = 1;
    }
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
  }
  w->waited_s = (double)(now_ms() - start) / 1000;
  g_run_lock = fd;
  return 0;
}

int hooks_run_before(const struct pipeline *p, struct hooks_wait *w, char **err) {
  *err = NULL;
  if (!p->n_hooks_before && !p->n_hooks_after)
    return 0;
  if (g_run_lock < 0 && run_lock(p, w, err) != 0) {
    g_run_lock_refused = 1;
    return -1;
  }
  if (!p->n_hooks_before)
    return 0;
  size_t n;
  char **env = base_env(p, "before", &n);
  int rc = 0;
  for (size_t i = 0; i < p->n_hooks_before && rc == 0; i++) {
    char *label = xasprintf("hooks.before[%zu]", i);
    char *why;
    if (run_one(label, p->hooks_before[i], (const char *const *)env, p->hooks_timeout_ms, 1,
                &why) != 0) {
      *err = xasprintf("%s ('%s') %s; the backup did not start", label, p->hooks_before[i], why);
      free(why);
      rc = -1;
    }
    free(label);
  }
  env_free(env);
  return rc;
}

static void run_unlock(void) {
  if (g_run_lock >= 0)
    close(g_run_lock); /* releases the flock */
  g_run_lock = -1;
}

int hooks_run_after(const struct pipeline *p, const struct hooks_outcome *o) {
  if (g_run_lock_refused) {
    log_info("the after hooks do not run: this run ran no before hook (another run of pipeline "
             "'%s' had its turn)",
             p->name);
    return 0;
  }
  if (!p->n_hooks_after) {
    run_unlock();
    return 0;
  }
  size_t n;
  char **env = base_env(p, "after", &n);
  char code[16], warnings[32];
  snprintf(code, sizeof(code), "%d", o->exit_code);
  snprintf(warnings, sizeof(warnings), "%zu", o->warnings);
  env_add(&env, &n, "ENGINE_STATUS", o->status);
  env_add(&env, &n, "ENGINE_EXIT", code);
  env_add(&env, &n, "ENGINE_SNAPSHOT", o->snapshot);
  env_add(&env, &n, "ENGINE_ERROR", o->error);
  env_add(&env, &n, "ENGINE_WARNINGS", warnings);
  char *missed = xstrdup("");
  size_t k;
  json_t *s;
  json_array_foreach(o->sinks_missed, k, s) {
    char *t = xasprintf("%s%s%s", missed, k ? "," : "", json_string_value(s));
    free(missed);
    missed = t;
  }
  env_add(&env, &n, "ENGINE_SINKS_MISSED", missed);
  free(missed);
  int failed = 0;
  for (size_t i = 0; i < p->n_hooks_after; i++) {
    char *label = xasprintf("hooks.after[%zu]", i);
    char *why;
    if (run_one(label, p->hooks_after[i], (const char *const *)env, p->hooks_timeout_ms, 0, &why) !=
        0) {
      log_warn("%s ('%s') %s", label, p->hooks_after[i], why);
      free(why);
      failed++;
    }
    free(label);
  }
  env_free(env);
  run_unlock();
  return failed;
}
