/* Repository locking (see lock.h). A background thread refreshes the lock
 * while it is held, so a long backup is never mistaken for a dead one. */
#include "repo/lock.h"

#include <errno.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "util/cancel.h"
#include "util/sysinfo.h"

struct repo_lock {
  struct repo *r;
  int exclusive;
  char *pipeline; /* a backup's pipeline, or NULL */
  char name[80];  /* current locks/<id> */
  pthread_t refresher;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;
};

/* Write a new lock object; name receives its object name. */
static int write_lock(struct repo *r, int exclusive, const char *pipeline, char name[80],
                      char **err) {
  unsigned char rnd[16];
  char hex[33];
  if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
    *err = xstrdup("the system random number generator failed");
    return -1;
  }
  hex_encode(rnd, sizeof(rnd), hex);
  char host[SYS_NAME_MAX], user[SYS_NAME_MAX];
  sys_hostname(host);
  sys_username(user);
  time_t now = time(NULL);
  char *ts = iso_time(now);
  json_t *o = json_pack("{s:b, s:s, s:I, s:s, s:s, s:I}", "exclusive", exclusive, "hostname", host,
                        "pid", (json_int_t)getpid(), "username", user, "time", ts, "refreshed_unix",
                        (json_int_t)now);
  free(ts);
  if (pipeline)
    json_object_set_new(o, "pipeline", json_string(pipeline));
  char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(o);
  size_t n = strlen(text), sl = repo_sealed_len(r, n);
  unsigned char *sealed = xmalloc(sl);
  int rc = repo_seal(r, "lock", 4, text, n, sealed);
  free(text);
  if (rc != 0) {
    free(sealed);
    *err = xstrdup("unable to encrypt the lock");
    return -1;
  }
  snprintf(name, 80, "locks/%s", hex);
  rc = repo_put(r, name, sealed, sl, ENGINE_PUT_NO_OVERWRITE, err);
  free(sealed);
  return rc == 0 ? 0 : -1;
}

#define RELEASED "locks/released/"

/* A write-only host (format 2, keys2.h) may hold storage credentials that
 * cannot delete: it never deletes its lock, it writes a release marker
 * locks/released/<id> instead, which every host reads as "this lock is
 * gone"; a host that can delete removes both the next time it takes a
 * lock. */
static void delete_object(struct repo *r, const char *name) {
  char *err = NULL;
  if (r->write_only) {
    char marker[96];
    snprintf(marker, sizeof(marker), RELEASED "%s", name + strlen("locks/"));
    const char *text = "{\"released\":true}";
    size_t n = strlen(text), sl = repo_sealed_len(r, n);
    unsigned char *sealed = xmalloc(sl);
    int rc = repo_seal(r, "lock", 4, text, n, sealed);
    if (rc == 0)
      rc = repo_put(r, marker, sealed, sl, ENGINE_PUT_NO_OVERWRITE, &err);
    free(sealed);
    if (rc != 0 && rc != ENGINE_EXISTS) {
      log_warn("unable to release the repository lock %s: %s", name + 6,
               err ? err : "encryption failed");
    }
    free(err);
    return;
  }
  if (repo_delete(r, name, &err) != 0) {
    log_warn("%s", err);
    free(err);
  }
}

/* 1: *out is the lock; 0: it is gone (removed meanwhile); -1: it exists but
 * cannot be read (*why) -- it may belong to a running command, so it is
 * never taken for absent: a prune that skipped the lock of a backup could
 * delete the data that backup is writing. */
static int read_lock(struct repo *r, const char *name, json_t **out, char **why) {
  void *buf;
  size_t n;
  char *err = NULL;
  *out = NULL;
  int rc = repo_get(r, name, 0, 0, &buf, &n, &err);
  if (rc == ENGINE_NOT_FOUND) {
    free(err);
    return 0;
  }
  if (rc != 0) {
    *why = err;
    return -1;
  }
  char *plain = xmalloc(n + 1);
  size_t pl;
  if (repo_unseal(r, "lock", 4, buf, n, plain, &pl) == 0) {
    json_error_t je;
    *out = json_loadb(plain, pl, 0, &je);
  }
  free(plain);
  free(buf);
  if (!json_is_object(*out)) {
    json_decref(*out);
    *out = NULL;
    *why = xstrdup("it does not authenticate with the repository key or is not a lock");
    return -1;
  }
  return 1;
}

static int is_stale(json_t *l, char **why) {
  char host[SYS_NAME_MAX];
  sys_hostname(host);
  const char *lh = json_string_value(json_object_get(l, "hostname"));
  json_int_t pid = json_integer_value(json_object_get(l, "pid"));
  json_int_t refreshed = json_integer_value(json_object_get(l, "refreshed_unix"));
  time_t now = time(NULL);
  if (lh && strcmp(lh, host) == 0 && pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
    *why = xasprintf("its process %lld on this host (%s) no longer exists", (long long)pid, host);
    return 1;
  }
  if (refreshed > 0 && now - refreshed > LOCK_STALE_S) {
    *why = xasprintf("it was last refreshed %lld s ago (limit %d s)", (long long)(now - refreshed),
                     LOCK_STALE_S);
    return 1;
  }
  return 0;
}

static char *describe(json_t *l) {
  const char *p = json_string_value(json_object_get(l, "pipeline"));
  char *run = p ? xasprintf(" (a backup of pipeline '%s')", p) : xstrdup("");
  char *d = xasprintf("%s lock held by %s@%s (pid %lld) since %s%s",
                      json_is_true(json_object_get(l, "exclusive")) ? "an exclusive" : "a shared",
                      json_string_value(json_object_get(l, "username")),
                      json_string_value(json_object_get(l, "hostname")),
                      (long long)json_integer_value(json_object_get(l, "pid")),
                      json_string_value(json_object_get(l, "time")), run);
  free(run);
  return d;
}

/* Is l the lock of a backup of `pipeline` on this host? */
static int same_run(json_t *l, const char *pipeline) {
  char host[SYS_NAME_MAX];
  sys_hostname(host);
  const char *lp = json_string_value(json_object_get(l, "pipeline"));
  const char *lh = json_string_value(json_object_get(l, "hostname"));
  return pipeline && lp && lh && strcmp(lp, pipeline) == 0 && strcmp(lh, host) == 0;
}

/* Find a lock (other than `mine`) conflicting with the wanted mode (and,
 * with pipeline, a backup of that pipeline on this host: *run set); stale
 * ones are removed on the way. Returns a description or NULL. */
static char *find_conflict(struct repo *r, int exclusive, const char *pipeline, const char *mine,
                           char **err, int *failed, int *run) {
  json_t *list;
  *failed = 0;
  *run = 0;
  if (repo_list(r, "locks/", &list, err) != 0) {
    *failed = 1;
    return NULL;
  }
  char *conflict = NULL;
  size_t i;
  json_t *e;
  /* release markers (see delete_object): the locks they name are gone */
  json_t *released = json_object();
  json_array_foreach(list, i, e) {
    const char *name = json_string_value(json_object_get(e, "name"));
    if (strncmp(name, RELEASED, strlen(RELEASED)) == 0)
      json_object_set_new(released, name + strlen(RELEASED), json_true());
  }
  json_array_foreach(list, i, e) {
    const char *name = json_string_value(json_object_get(e, "name"));
    if (strncmp(name, RELEASED, strlen(RELEASED)) == 0) {
      /* a marker whose lock is gone: removed by a host that can delete */
      char lock[96];
      snprintf(lock, sizeof(lock), "locks/%s", name + strlen(RELEASED));
      int has_lock = 0;
      size_t k;
      json_t *f;
      json_array_foreach(list, k, f) has_lock |=
          strcmp(json_string_value(json_object_get(f, "name")), lock) == 0;
      if (!has_lock && !r->write_only)
        delete_object(r, name);
      continue;
    }
    if (mine && strcmp(name, mine) == 0)
      continue;
    if (json_object_get(released, name + strlen("locks/"))) {
      if (!r->write_only)
        delete_object(r, name); /* its marker goes on the next pass */
      continue;
    }
    json_t *l;
    char *why = NULL;
    int got = read_lock(r, name, &l, &why);
    if (got == 0)
      continue;
    if (got < 0) {
      if (!conflict)
        conflict = xasprintf("lock '%s' cannot be read (%s); it may be held by a running command. "
                             "If no engine uses this repository, delete that object and try again",
                             name, why);
      free(why);
      continue;
    }
    if (is_stale(l, &why)) {
      char *d = describe(l);
      log_warn("removing stale lock %s: %s; %s", name + 6, d, why);
      free(d);
      free(why);
      delete_object(r, name);
    } else if (!conflict && (exclusive || json_is_true(json_object_get(l, "exclusive")))) {
      conflict = describe(l);
    } else if (!conflict && same_run(l, pipeline)) {
      conflict = describe(l);
      *run = 1;
    }
    json_decref(l);
  }
  json_decref(released);
  json_decref(list);
  return conflict;
}

static void *refresh_main(void *arg) {
  struct repo_lock *l = arg;
  pthread_mutex_lock(&l->mu);
  while (!l->stop) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += LOCK_REFRESH_S;
    pthread_cond_timedwait(&l->cv, &l->mu, &ts);
    if (l->stop)
      break;
    char name[80], *err = NULL;
    if (write_lock(l->r, l->exclusive, l->pipeline, name, &err) == 0) {
      delete_object(l->r, l->name);
      memcpy(l->name, name, sizeof(name));
    } else {
      log_warn("unable to refresh the repository lock: %s", err);
      free(err);
    }
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

static double seconds_since(const struct timespec *t0) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

int repo_lock_acquire_opts(struct repo *r, struct repo_lock_opts *o, struct repo_lock **out,
                           char **err) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int announced = 0;
  o->waited_s = 0;
  o->run_conflict = 0;
  for (;;) {
    int failed, run;
    char *conflict = find_conflict(r, o->exclusive, o->pipeline, NULL, err, &failed, &run);
    if (failed)
      return -1;
    if (!conflict) {
      char name[80];
      if (write_lock(r, o->exclusive, o->pipeline, name, err) != 0)
        return -1;
      /* another process may have written a conflicting lock meanwhile */
      conflict = find_conflict(r, o->exclusive, o->pipeline, name, err, &failed, &run);
      if (!conflict && !failed) {
        struct repo_lock *l = xcalloc(1, sizeof(*l));
        l->r = r;
        l->exclusive = o->exclusive;
        l->pipeline = o->pipeline ? xstrdup(o->pipeline) : NULL;
        memcpy(l->name, name, sizeof(name));
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->cv, NULL);
        pthread_create(&l->refresher, NULL, refresh_main, l);
        *out = l;
        o->waited_s = seconds_since(&t0);
        return 0;
      }
      delete_object(r, name);
      if (failed)
        return -1;
    }
    double waited = seconds_since(&t0);
    int64_t limit = run ? o->run_wait_ms : o->wait_ms;
    if ((limit >= 0 && waited * 1000.0 >= (double)limit) || cancel_requested()) {
      o->waited_s = waited;
      o->run_conflict = run;
      if (run)
        *err = xasprintf("another backup of this pipeline is running on this host: %s%s", conflict,
                         limit > 0 ? " (gave up waiting; see --lock-wait)" : "");
      else
        *err = xasprintf("the repository is locked: %s%s", conflict,
                         limit > 0 ? " (gave up waiting; see --lock-wait)"
                                   : " (use --lock-wait DURATION to wait)");
      free(conflict);
      return -1;
    }
    if (announced != 1 + run) {
      log_warn(run ? "waiting for %s to finish" : "waiting for the repository lock: %s", conflict);
      announced = 1 + run;
    }
    free(conflict);
    /* back off with jitter so waiting processes do not retry in step */
    unsigned char j;
    RAND_bytes(&j, 1);
    usleep((useconds_t)(500000 + j * 2000));
  }
}

int repo_lock_acquire(struct repo *r, int exclusive, int64_t wait_ms, struct repo_lock **out,
                      char **err) {
  struct repo_lock_opts o = {.exclusive = exclusive, .wait_ms = wait_ms};
  return repo_lock_acquire_opts(r, &o, out, err);
}

void repo_lock_release(struct repo_lock *l) {
  if (!l)
    return;
  pthread_mutex_lock(&l->mu);
  l->stop = 1;
  pthread_cond_signal(&l->cv);
  pthread_mutex_unlock(&l->mu);
  pthread_join(l->refresher, NULL);
  delete_object(l->r, l->name);
  free(l->pipeline);
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->cv);
  free(l);
}
