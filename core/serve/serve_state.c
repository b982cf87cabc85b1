/* engine serve: the state directory (docs/SERVE.md, "State").
 *
 *   STATE/state.json                      paused schedules, stale episodes,
 *                                         the day of the last summary
 *   STATE/jobs/PIPELINE/KIND-ID.json      one file per job, rewritten when it
 *                                         is queued, starts and ends; the
 *                                         newest SERVE_KEEP_JOBS_ON_DISK of
 *                                         each pipeline and kind are kept
 *   STATE/serve.pid                       the server's pid
 *
 * and the scheduler lock: an exclusive flock on the config directory
 * itself, so two servers on one directory never both fire its schedules
 * (the second refuses to start) and a crashed server's lock goes with its
 * process. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ops/audit.h"
#include "serve/serve_int.h"
#include "util/encoding.h"
#include "util/fileio.h"
#include "util/log.h"

#define STATE_MAX_FILE (64u << 20)

/* --state-dir, else BASE/serve-<the first 16 hex digits of the SHA-256 of
 * the config directory's real path>: one per config directory. */
static char *state_dir(const struct serve *s, const char *real_config, char **err) {
  if (s->opts->state_dir)
    return xstrdup(s->opts->state_dir);
  char *base = ops_state_dir();
  if (!base) {
    *err = xstrdup("no state directory: set --state-dir (or ENGINE_STATE_DIR, or HOME)");
    return NULL;
  }
  unsigned char h[32];
  unsigned int hl = 0;
  char hex[65];
  EVP_Digest(real_config, strlen(real_config), h, &hl, EVP_sha256(), NULL);
  hex_encode(h, 8, hex);
  char *dir = xasprintf("%s/serve-%s", base, hex);
  free(base);
  return dir;
}

static char *path_in(const struct serve *s, const char *name) {
  return xasprintf("%s/%s", s->state_dir, name);
}

/* ---- state.json ---------------------------------------------------------------------- */

void serve_state_save(struct serve *s) {
  json_t *pl = json_object();
  for (const struct serve_stats *st = s->stats; st; st = st->next) {
    if (!st->paused && !st->stale && !st->stale_events)
      continue;
    json_object_set_new(pl, st->name,
                        json_pack("{s:b, s:b, s:o, s:I}", "paused", st->paused, "stale", st->stale,
                                  "stale_since", serve_iso_or_null(st->stale_since), "stale_events",
                                  (json_int_t)st->stale_events));
  }
  json_t *o = json_pack("{s:i, s:s, s:o, s:s?}", "version", 1, "config_dir", s->config_dir,
                        "pipelines", pl, "summary_day", s->summary_day[0] ? s->summary_day : NULL);
  char *text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
  json_decref(o);
  char *path = path_in(s, "state.json"), *err = NULL;
  if (!text || file_write_atomic(path, text, strlen(text), 0600, &err) != 0) {
    log_warn("serve: the state (paused schedules, stale episodes) was not saved: %s",
             err ? err : "out of memory");
    free(err);
  }
  free(path);
  free(text);
}

static void load_state(struct serve *s) {
  char *path = path_in(s, "state.json"), *text = NULL, *err = NULL;
  size_t len;
  if (file_read_all(path, STATE_MAX_FILE, &text, &len, &err) != 0) {
    if (errno != ENOENT)
      log_warn("serve: %s; starting without it", err);
    free(err);
    free(path);
    return;
  }
  json_error_t je;
  json_t *o = json_loadb(text, len, 0, &je);
  free(text);
  if (!json_is_object(o)) {
    log_warn("serve: %s is not JSON (%s); starting without it", path, je.text);
    json_decref(o);
    free(path);
    return;
  }
  free(path);
  const char *k;
  json_t *v;
  json_object_foreach(json_object_get(o, "pipelines"), k, v) {
    struct serve_stats *st = serve_stats_get(s, k);
    st->paused = json_is_true(json_object_get(v, "paused"));
    st->stale = json_is_true(json_object_get(v, "stale"));
    int64_t t = 0;
    const char *since = json_string_value(json_object_get(v, "stale_since"));
    if (since && parse_iso_time(since, &t) == 0)
      st->stale_since = (double)t;
    st->stale_events = (uint64_t)json_integer_value(json_object_get(v, "stale_events"));
  }
  const char *day = json_string_value(json_object_get(o, "summary_day"));
  if (day)
    snprintf(s->summary_day, sizeof(s->summary_day), "%s", day);
  json_decref(o);
}

/* ---- jobs -------------------------------------------------------------------------------- */

struct job_file {
  int64_t id;
  char *name;
};

static int by_id_desc(const void *a, const void *b) {
  const struct job_file *x = a, *y = b;
  return x->id < y->id ? 1 : x->id > y->id ? -1 : 0;
}

/* The KIND-ID.json files of one pipeline's directory (of kind, or all). */
static struct job_file *list_job_files(const char *dir, const char *kind, size_t *n) {
  *n = 0;
  DIR *d = opendir(dir);
  if (!d)
    return NULL;
  struct job_file *v = NULL;
  size_t cap = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    const char *dash = strrchr(e->d_name, '-');
    size_t nl = strlen(e->d_name);
    if (!dash || nl < 6 || strcmp(e->d_name + nl - 5, ".json") != 0)
      continue;
    if (kind &&
        ((size_t)(dash - e->d_name) != strlen(kind) || strncmp(e->d_name, kind, strlen(kind)) != 0))
      continue;
    char *end;
    long long id = strtoll(dash + 1, &end, 10);
    if (id <= 0 || strcmp(end, ".json") != 0)
      continue;
    if (*n == cap) {
      cap = cap ? 2 * cap : 32;
      v = xrealloc(v, cap * sizeof(*v));
    }
    v[(*n)++] = (struct job_file){id, xstrdup(e->d_name)};
  }
  closedir(d);
  if (*n)
    qsort(v, *n, sizeof(*v), by_id_desc);
  return v;
}

static void free_job_files(struct job_file *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(v[i].name);
  free(v);
}

void serve_state_write_job(struct serve *s, const char *pipeline, const char *kind, int64_t id,
                           json_t *doc, int finished) {
  if (!s->state_dir)
    return;
  char *dir = xasprintf("%s/jobs/%s", s->state_dir, pipeline), *err = NULL;
  char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
  char *path = xasprintf("%s/%s-%lld.json", dir, kind, (long long)id);
  if (!text || file_mkdirs(dir, 0700, &err) != 0 ||
      file_write_atomic(path, text, strlen(text), 0600, &err) != 0) {
    log_warn("serve: job %lld was not written to the history: %s", (long long)id,
             err ? err : "out of memory");
    free(err);
  }
  free(path);
  free(text);
  if (finished) {
    size_t n;
    struct job_file *v = list_job_files(dir, kind, &n);
    for (size_t i = SERVE_KEEP_JOBS_ON_DISK; i < n; i++) {
      char *old = xasprintf("%s/%s", dir, v[i].name);
      unlink(old);
      free(old);
    }
    free_job_files(v, n);
  }
  free(dir);
}

/* A job file's document, or NULL (with a warning). */
static json_t *read_job(const char *path) {
  char *text = NULL, *err = NULL;
  size_t len;
  if (file_read_all(path, STATE_MAX_FILE, &text, &len, &err) != 0) {
    log_warn("serve: %s", err);
    free(err);
    return NULL;
  }
  json_error_t je;
  json_t *o = json_loadb(text, len, 0, &je);
  free(text);
  if (!json_is_object(o) || !json_is_integer(json_object_get(o, "id"))) {
    log_warn("serve: %s is not a job record; ignored", path);
    json_decref(o);
    return NULL;
  }
  return o;
}

/* The documents of one pipeline directory's files (of kind, or all),
 * appended to out, newest first. */
static void read_dir(const char *dir, const char *kind, json_t *out) {
  size_t n;
  struct job_file *v = list_job_files(dir, kind, &n);
  for (size_t i = 0; i < n; i++) {
    char *path = xasprintf("%s/%s", dir, v[i].name);
    json_t *o = read_job(path);
    free(path);
    if (o)
      json_array_append_new(out, o);
  }
  free_job_files(v, n);
}

json_t *serve_state_read_jobs(struct serve *s, const char *pipeline, const char *kind) {
  json_t *out = json_array();
  if (!s->state_dir)
    return out;
  if (pipeline) {
    char *dir = xasprintf("%s/jobs/%s", s->state_dir, pipeline);
    read_dir(dir, kind, out);
    free(dir);
    return out;
  }
  char *root = path_in(s, "jobs");
  DIR *d = opendir(root);
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    char *dir = xasprintf("%s/%s", root, e->d_name);
    read_dir(dir, kind, out);
    free(dir);
  }
  if (d)
    closedir(d);
  free(root);
  return out;
}

/* ---- open and close ------------------------------------------------------------------ */

/* The pid in STATE/serve.pid, or 0. */
static long read_pid(const struct serve *s) {
  char *path = path_in(s, "serve.pid"), *text = NULL, *err = NULL;
  size_t len;
  long pid = 0;
  if (file_read_all(path, 64, &text, &len, &err) == 0)
    pid = strtol(text, NULL, 10);
  free(err);
  free(text);
  free(path);
  return pid;
}

int serve_state_open(struct serve *s, char **err) {
  char real[PATH_MAX];
  if (!realpath(s->config_dir, real)) {
    *err =
        xasprintf("unable to read the config directory '%s': %s", s->config_dir, strerror(errno));
    return -1;
  }
  s->state_dir = state_dir(s, real, err);
  if (!s->state_dir || file_mkdirs(s->state_dir, 0700, err) != 0)
    return -1;
  s->lock_fd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (s->lock_fd < 0) {
    *err = xasprintf("unable to open the config directory '%s': %s", real, strerror(errno));
    return -1;
  }
  if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(s->lock_fd);
    s->lock_fd = -1;
    if (e == EWOULDBLOCK) {
      long pid = read_pid(s);
      char *who =
          pid > 0 ? xasprintf(" (pid %ld, per %s/serve.pid)", pid, s->state_dir) : xstrdup("");
      *err = xasprintf("another engine serve%s already schedules the pipelines of %s (it holds "
                       "the lock on the directory): two schedulers would run every backup twice. "
                       "Stop it first, or serve another --config-dir",
                       who, real);
      free(who);
    } else {
      *err = xasprintf("unable to lock the config directory '%s': %s", real, strerror(e));
    }
    return -1;
  }
  char *pidfile = path_in(s, "serve.pid"), *pidtext = xasprintf("%d\n", (int)getpid());
  char *e = NULL;
  if (file_write_atomic(pidfile, pidtext, strlen(pidtext), 0644, &e) != 0) {
    log_warn("serve: %s", e);
    free(e);
  }
  free(pidtext);
  free(pidfile);
  load_state(s);
  return 0;
}

void serve_state_close(struct serve *s) {
  if (s->lock_fd >= 0) {
    char *pidfile = path_in(s, "serve.pid");
    if (read_pid(s) == (long)getpid())
      unlink(pidfile);
    free(pidfile);
    close(s->lock_fd); /* releases the lock */
    s->lock_fd = -1;
  }
  free(s->state_dir);
  s->state_dir = NULL;
}
