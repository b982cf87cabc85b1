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
  char name[80]; /* current locks/<id> */
  pthread_t refresher;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;
};

/* Write a new lock object; name receives its object name. */
static int write_lock(struct repo *r, int exclusive, char name[80], char **err) {
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

static void delete_object(struct repo *r, const char *name) {
  char *err = NULL;
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
  return xasprintf("%s lock held by %s@%s (pid %lld) since %s",
                   json_is_true(json_object_get(l, "exclusive")) ? "an exclusive" : "a shared",
                   json_string_value(json_object_get(l, "username")),
                   json_string_value(json_object_get(l, "hostname")),
                   (long long)json_integer_value(json_object_get(l, "pid")),
                   json_string_value(json_object_get(l, "time")));
}

/* Find a lock (other than `mine`) conflicting with the wanted mode; stale
 * ones are removed on the way. Returns a description or NULL. */
static char *find_conflict(struct repo *r, int exclusive, const char *mine, char **err,
                           int *failed) {
  json_t *list;
  *failed = 0;
  if (repo_list(r, "locks/", &list, err) != 0) {
    *failed = 1;
    return NULL;
  }
  char *conflict = NULL;
  size_t i;
  json_t *e;
  json_array_foreach(list, i, e) {
    const char *name = json_string_value(json_object_get(e, "name"));
    if (mine && strcmp(name, mine) == 0)
      continue;
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
    }
    json_decref(l);
  }
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
    if (write_lock(l->r, l->exclusive, name, &err) == 0) {
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

int repo_lock_acquire(struct repo *r, int exclusive, int64_t wait_ms, struct repo_lock **out,
                      char **err) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int announced = 0;
  for (;;) {
    int failed;
    char *conflict = find_conflict(r, exclusive, NULL, err, &failed);
    if (failed)
      return -1;
    if (!conflict) {
      char name[80];
      if (write_lock(r, exclusive, name, err) != 0)
        return -1;
      /* another process may have written a conflicting lock meanwhile */
      conflict = find_conflict(r, exclusive, name, err, &failed);
      if (!conflict && !failed) {
        struct repo_lock *l = xcalloc(1, sizeof(*l));
        l->r = r;
        l->exclusive = exclusive;
        memcpy(l->name, name, sizeof(name));
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->cv, NULL);
        pthread_create(&l->refresher, NULL, refresh_main, l);
        *out = l;
        return 0;
      }
      delete_object(r, name);
      if (failed)
        return -1;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t waited = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
    if (waited >= wait_ms || cancel_requested()) {
      *err = xasprintf("the repository is locked: %s%s", conflict,
                       wait_ms > 0 ? " (gave up waiting; see --lock-wait)"
                                   : " (use --lock-wait DURATION to wait)");
      free(conflict);
      return -1;
    }
    if (!announced) {
      log_warn("waiting for the repository lock: %s", conflict);
      announced = 1;
    }
    free(conflict);
    /* back off with jitter so waiting processes do not retry in step */
    unsigned char j;
    RAND_bytes(&j, 1);
    usleep((useconds_t)(500000 + j * 2000));
  }
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
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->cv);
  free(l);
}
