/* Child processes for plugins: engine_host.spawn, child_wait, child_stderr,
 * child_kill and child_free (docs/PLUGINS.md 4.1). posix_spawn with pipes,
 * the environment allow-list, descriptors handed over in pass_fds, a thread
 * that drains a piped stderr into a ring, and reaping that can never signal
 * a recycled pid. */
#include "plugin/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/log.h"

extern char **environ;

#define STDERR_CAPTURE_MAX (64 * 1024)
/* After the child exits, a grandchild may keep its stderr open and keep
 * writing; the final drain takes at most this much more. */
#define STDERR_FINAL_DRAIN_MAX (1024 * 1024)
/* Size of struct engine_spawn_opts as ABI 1.0 defined it ... */
#define SPAWN_OPTS_V1_0_SIZE ENGINE_FIELD_END(struct engine_spawn_opts, stderr_mode)
/* More descriptors than this for one child is a plugin bug. */
#define SPAWN_PASS_FDS_MAX 64

struct child {
  struct engine_child pub; /* first: the plugin's pointer is ours */
  char *file;              /* for messages */
  int group;               /* leads a process group of its own: signals go to the group */
  pthread_mutex_t lock;    /* reaped/status vs. child_kill, and stderr finishing */
  int reaped;
  int status;
  /* stderr capture: the tail of the output, in a ring */
  int err_fd;  /* parent end of the stderr pipe, owned by the drain thread */
  int stop_fd; /* eventfd: "the child was reaped, finish up" */
  int drain_running;
  pthread_t drain;
  char *ring;
  size_t ring_pos;     /* next write position */
  uint64_t ring_total; /* bytes seen */
  char *err_text;      /* finalised capture */
};

static void ring_append(struct child *c, const char *buf, size_t n) {
  c->ring_total += n;
  /* callers read at most a 4 KiB buffer at a time, far below the ring size;
   * keep only the tail should that ever change */
  if (n > STDERR_CAPTURE_MAX) {
    buf += n - STDERR_CAPTURE_MAX;
    n = STDERR_CAPTURE_MAX;
  }
  size_t first = STDERR_CAPTURE_MAX - c->ring_pos;
  if (first > n)
    first = n;
  memcpy(c->ring + c->ring_pos, buf, first);
  memcpy(c->ring, buf + first, n - first);
  c->ring_pos = (c->ring_pos + n) % STDERR_CAPTURE_MAX;
}

/* Read whatever is already in the pipe without waiting for writers that
 * outlive the child (a daemonised grandchild holding stderr open). */
static void drain_remaining(struct child *c, char *buf, size_t size) {
  int fl = fcntl(c->err_fd, F_GETFL);
  if (fl < 0 || fcntl(c->err_fd, F_SETFL, fl | O_NONBLOCK) < 0)
    return;
  size_t taken = 0;
  while (taken < STDERR_FINAL_DRAIN_MAX) {
    ssize_t r = read(c->err_fd, buf, size);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return;
    ring_append(c, buf, (size_t)r);
    taken += (size_t)r;
  }
}

/* Keeps reading the child's stderr so it can never block on a full pipe,
 * however much it writes; only the last STDERR_CAPTURE_MAX bytes are kept. */
static void *drain_main(void *arg) {
  struct child *c = arg;
  char buf[4096];
  struct pollfd pfd[2] = {{.fd = c->err_fd, .events = POLLIN},
                          {.fd = c->stop_fd, .events = POLLIN}};
  for (;;) {
    int n = poll(pfd, 2, -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (pfd[1].revents) {
      drain_remaining(c, buf, sizeof buf);
      break;
    }
    if (pfd[0].revents) {
      ssize_t r = read(c->err_fd, buf, sizeof buf);
      if (r < 0 && (errno == EINTR || errno == EAGAIN))
        continue;
      if (r <= 0)
        break;
      ring_append(c, buf, (size_t)r);
    }
  }
  return NULL;
}

/* Stops the drain thread (the child is gone) and turns the ring into the
 * message text. Called with c->lock held. */
static void finish_stderr(struct child *c) {
  if (c->err_text)
    return;
  if (c->drain_running) {
    uint64_t one = 1;
    ssize_t w;
    do
      w = write(c->stop_fd, &one, sizeof one);
    while (w < 0 && errno == EINTR);
    pthread_join(c->drain, NULL);
    c->drain_running = 0;
  }
  if (!c->ring) {
    c->err_text = xstrdup("");
    return;
  }
  static const char cut[] = "[...] ";
  size_t kept = c->ring_total < STDERR_CAPTURE_MAX ? (size_t)c->ring_total : STDERR_CAPTURE_MAX;
  int truncated = c->ring_total > STDERR_CAPTURE_MAX;
  char *t = xmalloc(kept + sizeof cut);
  size_t len = 0;
  if (truncated) {
    memcpy(t, cut, sizeof cut - 1);
    len = sizeof cut - 1;
    memcpy(t + len, c->ring + c->ring_pos, STDERR_CAPTURE_MAX - c->ring_pos);
    len += STDERR_CAPTURE_MAX - c->ring_pos;
    memcpy(t + len, c->ring, c->ring_pos);
    len += c->ring_pos;
  } else {
    memcpy(t, c->ring, kept);
    len = kept;
  }
  /* Callers embed this in a sentence; trailing newlines only get in the way. */
  while (len > 0 &&
         (t[len - 1] == '\n' || t[len - 1] == '\r' || t[len - 1] == ' ' || t[len - 1] == '\t'))
    len--;
  t[len] = '\0';
  c->err_text = t;
  free(c->ring);
  c->ring = NULL;
}

static void close_fd(int *fd) {
  if (*fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

static int stdio_valid(enum engine_stdio m) {
  return m == ENGINE_STDIO_NULL || m == ENGINE_STDIO_PIPE || m == ENGINE_STDIO_INHERIT;
}

static size_t env_name_len(const char *entry) {
  const char *eq = strchr(entry, '=');
  return eq ? (size_t)(eq - entry) : 0;
}

/* What a child gets of the engine's own environment: what programs need to
 * find things, speak the user's language and write temporary files. The
 * engine's environment also holds secrets (the repository passphrase and
 * sink credentials as env: references, PGPASSWORD, tokens); none of it goes
 * to a child unless the plugin passes it in the spawn's env. */
static const char *const env_allowed[] = {"PATH",   "HOME", "USER",     "LOGNAME", "LANG",
                                          "TMPDIR", "TZ",   "LANGUAGE", NULL};

static int env_is_allowed(const char *entry) {
  size_t nl = env_name_len(entry);
  if (nl == 0)
    return 0;
  if (nl > 3 && strncmp(entry, "LC_", 3) == 0)
    return 1;
  for (size_t i = 0; env_allowed[i]; i++)
    if (strlen(env_allowed[i]) == nl && strncmp(entry, env_allowed[i], nl) == 0)
      return 1;
  return 0;
}

/* The allowed part of the current environment with the spawn's entries
 * overriding variables of the same name (a later spawn entry overrides an
 * earlier one). Only the pointer array is allocated; the strings stay the
 * caller's. */
static char **build_env(const char *const *extra) {
  size_t n_env = 0, n_extra = 0;
  while (environ && environ[n_env])
    n_env++;
  while (extra && extra[n_extra])
    n_extra++;
  char **env = xcalloc(n_env + n_extra + 1, sizeof *env);
  size_t k = 0;
  for (size_t i = 0; i < n_env; i++) {
    if (!env_is_allowed(environ[i]))
      continue;
    size_t nl = env_name_len(environ[i]);
    int overridden = 0;
    for (size_t j = 0; j < n_extra && !overridden; j++)
      overridden = env_name_len(extra[j]) == nl && strncmp(extra[j], environ[i], nl) == 0;
    if (!overridden)
      env[k++] = environ[i];
  }
  for (size_t j = 0; j < n_extra; j++) {
    size_t nl = env_name_len(extra[j]);
    int later = 0;
    for (size_t l = j + 1; l < n_extra && !later; l++)
      later = env_name_len(extra[l]) == nl && strncmp(extra[l], extra[j], nl) == 0;
    if (!later)
      env[k++] = (char *)extra[j];
  }
  env[k] = NULL;
  return env;
}

static int spawn_fail(const struct engine_host *h, const char *file, const char *what, int err) {
  h->set_error(h, "unable to start '%s': %s: %s", file, what, strerror(err));
  return ENGINE_ERROR;
}

/* Sets up the child's end of one standard stream. pipefd[0] is the read
 * end; the child reads stdin from it and writes stdout/stderr to pipefd[1]. */
static int setup_stdio(posix_spawn_file_actions_t *fa, int fd, enum engine_stdio mode,
                       int pipefd[2]) {
  if (mode == ENGINE_STDIO_INHERIT)
    return 0;
  if (mode == ENGINE_STDIO_NULL)
    return posix_spawn_file_actions_addopen(fa, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0);
  if (pipe2(pipefd, O_CLOEXEC) != 0)
    return errno;
  /* dup2 clears FD_CLOEXEC on the child's copy; the originals close on exec. */
  return posix_spawn_file_actions_adddup2(fa, fd == 0 ? pipefd[0] : pipefd[1], fd);
}

/* Hands pass_fds[i] to the child as descriptor 3 + i and closes every
 * other descriptor above 2 there (with a glibc older than 2.34, only those
 * with FD_CLOEXEC are). The descriptors are first copied above both every
 * source and every target, so that no dup2 overwrites a source still to be
 * moved; the copies are closed again. */
static int setup_pass_fds(posix_spawn_file_actions_t *fa, const int *fds, size_t n) {
  int base = 3 + (int)n;
  for (size_t i = 0; i < n; i++)
    if (fds[i] >= base)
      base = fds[i] + 1;
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++)
    rc = posix_spawn_file_actions_adddup2(fa, fds[i], base + (int)i);
  for (size_t i = 0; i < n && !rc; i++)
    rc = posix_spawn_file_actions_adddup2(fa, base + (int)i, 3 + (int)i);
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 34)
  if (!rc)
    rc = posix_spawn_file_actions_addclosefrom_np(fa, 3 + (int)n);
#else
  for (size_t i = 0; i < n && !rc; i++)
    rc = posix_spawn_file_actions_addclose(fa, base + (int)i);
#endif
  return rc;
}

/* pass_fds as the plugin filled them, or NULL/0 for a pre-1.2 structure.
 * Returns -1 (with the error set) when they are unusable. */
static int pass_fds_of(const struct engine_host *h, const struct engine_spawn_opts *o,
                       const int **fds, size_t *n) {
  *fds = NULL;
  *n = 0;
  if (!ENGINE_HAS_FIELD(o, struct engine_spawn_opts, n_pass_fds) || o->n_pass_fds == 0)
    return 0;
  if (!o->pass_fds || o->n_pass_fds > SPAWN_PASS_FDS_MAX) {
    h->set_error(h, "spawn of '%s': pass_fds must list between 1 and %d descriptors (got %zu%s)",
                 o->file, SPAWN_PASS_FDS_MAX, o->n_pass_fds, o->pass_fds ? "" : " and no array");
    return -1;
  }
  for (size_t i = 0; i < o->n_pass_fds; i++) {
    int fd = o->pass_fds[i];
    if (fd < 3) {
      h->set_error(h,
                   "spawn of '%s': pass_fds[%zu] is %d; standard streams are set with the "
                   "stdio modes, pass_fds takes descriptors above 2",
                   o->file, i, fd);
      return -1;
    }
    if (fcntl(fd, F_GETFD) < 0) {
      h->set_error(h, "spawn of '%s': pass_fds[%zu] (descriptor %d) is not open: %s", o->file, i,
                   fd, strerror(errno));
      return -1;
    }
  }
  *fds = o->pass_fds;
  *n = o->n_pass_fds;
  return 0;
}

/* The options a spawn may go ahead with: ENGINE_OK (pass_fds as the plugin
 * filled them, NULL/0 before ABI 1.2), or ENGINE_ERROR with the error set. */
static int check_opts(const struct engine_host *h, const struct engine_spawn_opts *o,
                      const int **pass_fds, size_t *n_pass_fds) {
  if (o->struct_size < SPAWN_OPTS_V1_0_SIZE) {
    h->set_error(h, "spawn: options structure of %u bytes is smaller than the %zu bytes of ABI 1.0",
                 o->struct_size, (size_t)SPAWN_OPTS_V1_0_SIZE);
    return ENGINE_ERROR;
  }
  if (!o->file || !o->file[0] || !o->argv || !o->argv[0]) {
    h->set_error(h, "spawn: a program name and a non-empty argv are required");
    return ENGINE_ERROR;
  }
  if (!stdio_valid(o->stdin_mode) || !stdio_valid(o->stdout_mode) || !stdio_valid(o->stderr_mode)) {
    h->set_error(h, "spawn of '%s': unknown stdio mode (expected NULL, PIPE or INHERIT)", o->file);
    return ENGINE_ERROR;
  }
  for (size_t i = 0; o->env && o->env[i]; i++)
    if (env_name_len(o->env[i]) == 0) {
      /* The entry itself is not shown: env is where secrets travel. */
      h->set_error(h, "spawn of '%s': environment entry %zu is not of the form NAME=VALUE", o->file,
                   i);
      return ENGINE_ERROR;
    }
  return pass_fds_of(h, o, pass_fds, n_pass_fds) == 0 ? ENGINE_OK : ENGINE_ERROR;
}

/* The child must not inherit the engine's blocked signals or ignored
 * dispositions (SIGPIPE is commonly ignored by servers, and ignored
 * dispositions survive exec). */
static int default_signals(posix_spawnattr_t *attr, int group) {
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  int rc = posix_spawnattr_setsigmask(attr, &none);
  if (!rc)
    rc = posix_spawnattr_setsigdefault(attr, &all);
  if (!rc && group)
    rc = posix_spawnattr_setpgroup(attr, 0);
  if (!rc)
    rc = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                            (group ? POSIX_SPAWN_SETPGROUP : 0));
  return rc;
}

/* The pipes of the three standard streams: [0] read end, [1] write end. */
struct stdio_pipes {
  int in[2], out[2], err[2];
};

/* Everything the child gets besides its program: standard streams, handed
 * descriptors, the stderr capture, the signal state. 0, or an errno with
 * *step naming what failed. */
static int prepare(struct child *c, const struct engine_spawn_opts *o, const int *pass_fds,
                   size_t n_pass_fds, posix_spawn_file_actions_t *fa, posix_spawnattr_t *attr,
                   struct stdio_pipes *p, const char **step) {
  *step = "setting up standard input";
  int rc = setup_stdio(fa, 0, o->stdin_mode, p->in);
  if (!rc) {
    *step = "setting up standard output";
    rc = setup_stdio(fa, 1, o->stdout_mode, p->out);
  }
  if (!rc) {
    *step = "setting up standard error";
    rc = setup_stdio(fa, 2, o->stderr_mode, p->err);
  }
  /* A plugin that knows ABI 1.2 knows that only pass_fds reach the child;
   * an older one may rely on inheriting descriptors without FD_CLOEXEC. */
  if (!rc && ENGINE_HAS_FIELD(o, struct engine_spawn_opts, n_pass_fds)) {
    *step = "handing descriptors to the child";
    rc = setup_pass_fds(fa, pass_fds, n_pass_fds);
  }
  if (!rc && o->stderr_mode == ENGINE_STDIO_PIPE) {
    *step = "creating the stderr capture";
    c->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (c->stop_fd < 0)
      rc = errno;
    else
      c->ring = xmalloc(STDERR_CAPTURE_MAX);
  }
  if (!rc) {
    *step = "setting the child's signal state";
    rc = default_signals(attr, c->group);
  }
  return rc;
}

/* posix_spawnp with everything prepare() sets up; on success the parent's
 * ends of the pipes are the child's stdin_fd/stdout_fd and err_fd. */
static int start(const struct engine_host *h, struct child *c, const struct engine_spawn_opts *o,
                 const int *pass_fds, size_t n_pass_fds) {
  struct stdio_pipes p = {{-1, -1}, {-1, -1}, {-1, -1}};
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  int rc = posix_spawn_file_actions_init(&fa);
  if (rc)
    return spawn_fail(h, o->file, "posix_spawn_file_actions_init", rc);
  rc = posix_spawnattr_init(&attr);
  if (rc) {
    posix_spawn_file_actions_destroy(&fa);
    return spawn_fail(h, o->file, "posix_spawnattr_init", rc);
  }
  const char *step = NULL;
  rc = prepare(c, o, pass_fds, n_pass_fds, &fa, &attr, &p, &step);
  if (!rc) {
    step = NULL;
    char **env = build_env(o->env);
    pid_t pid;
    rc = posix_spawnp(&pid, o->file, &fa, &attr, (char *const *)o->argv, env);
    free(env);
    if (!rc)
      c->pub.pid = pid;
  }
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  /* The child's ends belong to the child now (or to nobody on failure). */
  close_fd(&p.in[0]);
  close_fd(&p.out[1]);
  close_fd(&p.err[1]);
  if (rc) {
    close_fd(&p.in[1]);
    close_fd(&p.out[0]);
    close_fd(&p.err[0]);
    if (step)
      return spawn_fail(h, o->file, step, rc);
    h->set_error(h, "unable to start '%s': %s", o->file, strerror(rc));
    return ENGINE_ERROR;
  }
  c->pub.stdin_fd = p.in[1];
  c->pub.stdout_fd = p.out[0];
  c->err_fd = p.err[0];
  return ENGINE_OK;
}

/* Starts the thread that drains a piped stderr. Without a reader the child
 * could block forever on stderr: on failure it is killed and reaped. */
static int start_drain(const struct engine_host *h, struct child *c) {
  int rc = pthread_create(&c->drain, NULL, drain_main, c);
  if (!rc) {
    c->drain_running = 1;
    return ENGINE_OK;
  }
  h->set_error(h, "unable to start the stderr reader for '%s': %s", c->file, strerror(rc));
  kill(c->pub.pid, SIGKILL);
  pid_t r;
  do
    r = waitpid(c->pub.pid, NULL, 0);
  while (r < 0 && errno == EINTR);
  close_fd(&c->pub.stdin_fd);
  close_fd(&c->pub.stdout_fd);
  return ENGINE_ERROR;
}

/* A child that never ran (or was reaped already) and what it held. */
static void discard(struct child *c) {
  close_fd(&c->err_fd);
  close_fd(&c->stop_fd);
  free(c->ring);
  free(c->file);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

static int spawn_common(const struct engine_host *h, const struct engine_spawn_opts *o, int group,
                        struct engine_child **out) {
  if (out)
    *out = NULL;
  if (!o || !out) {
    h->set_error(h, "spawn: called without options or output pointer");
    return ENGINE_ERROR;
  }
  const int *pass_fds;
  size_t n_pass_fds;
  if (check_opts(h, o, &pass_fds, &n_pass_fds) != ENGINE_OK)
    return ENGINE_ERROR;

  struct child *c = xcalloc(1, sizeof *c);
  c->pub.pid = -1;
  c->pub.stdin_fd = c->pub.stdout_fd = c->pub.stderr_fd = -1;
  c->err_fd = c->stop_fd = -1;
  c->file = xstrdup(o->file);
  c->group = group;
  pthread_mutex_init(&c->lock, NULL);
  if (start(h, c, o, pass_fds, n_pass_fds) != ENGINE_OK ||
      (o->stderr_mode == ENGINE_STDIO_PIPE && start_drain(h, c) != ENGINE_OK)) {
    discard(c);
    return ENGINE_ERROR;
  }
  *out = &c->pub;
  return ENGINE_OK;
}

int spawn_child(const struct engine_host *h, const struct engine_spawn_opts *o,
                struct engine_child **out) {
  return spawn_common(h, o, 0, out);
}

int spawn_child_group(const struct engine_host *h, const struct engine_spawn_opts *o,
                      struct engine_child **out) {
  return spawn_common(h, o, 1, out);
}

/* Reaping is split in two so child_kill can never signal a recycled pid:
 * waitid(WNOWAIT) waits without reaping, then the reap happens under the
 * lock that child_kill also takes. */
int spawn_wait(const struct engine_host *h, struct engine_child *child, int *status) {
  struct child *c = (struct child *)child;
  if (!c) {
    h->set_error(h, "child_wait: no child given");
    return ENGINE_ERROR;
  }
  pthread_mutex_lock(&c->lock);
  int reaped = c->reaped;
  pthread_mutex_unlock(&c->lock);
  if (!reaped) {
    siginfo_t si;
    for (;;) {
      memset(&si, 0, sizeof si);
      if (waitid(P_PID, (id_t)c->pub.pid, &si, WEXITED | WNOWAIT) == 0)
        break;
      if (errno == EINTR)
        continue;
      h->set_error(h, "unable to wait for '%s' (pid %d): %s", c->file, (int)c->pub.pid,
                   strerror(errno));
      return ENGINE_ERROR;
    }
  }
  pthread_mutex_lock(&c->lock);
  if (!c->reaped) {
    int st;
    pid_t r;
    do
      r = waitpid(c->pub.pid, &st, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      int e = errno;
      pthread_mutex_unlock(&c->lock);
      h->set_error(h, "unable to reap '%s' (pid %d): %s", c->file, (int)c->pub.pid, strerror(e));
      return ENGINE_ERROR;
    }
    c->reaped = 1;
    c->status = st;
  }
  finish_stderr(c);
  if (status)
    *status = c->status;
  pthread_mutex_unlock(&c->lock);
  return ENGINE_OK;
}

const char *spawn_stderr(const struct engine_host *h, struct engine_child *child) {
  (void)h;
  struct child *c = (struct child *)child;
  if (!c)
    return "";
  pthread_mutex_lock(&c->lock);
  const char *t = c->err_text ? c->err_text : "";
  pthread_mutex_unlock(&c->lock);
  return t;
}

void spawn_kill(const struct engine_host *h, struct engine_child *child, int sig) {
  struct child *c = (struct child *)child;
  if (!c)
    return;
  pthread_mutex_lock(&c->lock);
  /* a group's id stays taken while any member lives, so -pid cannot name
   * another group before the leader is reaped */
  if (!c->reaped && kill(c->group ? -c->pub.pid : c->pub.pid, sig) != 0 && errno != ESRCH)
    h->log(h, ENGINE_LOG_WARN, "unable to send signal %d to '%s' (pid %d): %s", sig, c->file,
           (int)c->pub.pid, strerror(errno));
  pthread_mutex_unlock(&c->lock);
}

void spawn_free(const struct engine_host *h, struct engine_child *child) {
  struct child *c = (struct child *)child;
  if (!c)
    return;
  pthread_mutex_lock(&c->lock);
  if (!c->reaped) {
    /* A zombie or an orphan is worse than a killed child: the plugin gave
     * up on it. */
    h->log(h, ENGINE_LOG_WARN, "'%s' (pid %d) was still running when released; killing it", c->file,
           (int)c->pub.pid);
    kill(c->group ? -c->pub.pid : c->pub.pid, SIGKILL);
    pid_t r;
    do
      r = waitpid(c->pub.pid, &c->status, 0);
    while (r < 0 && errno == EINTR);
    c->reaped = 1;
  }
  finish_stderr(c);
  pthread_mutex_unlock(&c->lock);
  close_fd(&c->pub.stdin_fd);
  close_fd(&c->pub.stdout_fd);
  close_fd(&c->err_fd);
  close_fd(&c->stop_fd);
  free(c->err_text);
  free(c->ring);
  free(c->file);
  pthread_mutex_destroy(&c->lock);
  free(c);
}
