/* Repository locks (core/repo/lock.c) on a real local repository:
 * shared locks coexist, an exclusive one conflicts with any other and the
 * refusal says who holds the lock; stale locks (their process gone on this
 * host, or not refreshed for LOCK_STALE_S) are removed; a lock object that
 * cannot be read is a conflict and is left alone (it may belong to a
 * running command). Uses the local sink and aes-256-gcm from the build. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "plugin/host.h"
#include "plugin/loader.h"
#include "repo/lock.h"
#include "repo/repo.h"
#include "compress/compress.h"
#include "util/sysinfo.h"

struct fixture {
  char dir[64];
  struct plugin_registry *reg;
  struct plugin_instance *sink_pi;
  struct repo_sink sink;
  struct repo *repo;
};

static int setup(void **state) {
  struct fixture *f = calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "%s", "/tmp/engine-test-lock-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  const char *dirs[] = {ENGINE_TEST_PLUGIN_DIR};
  assert_int_equal(registry_load(dirs, 1, &f->reg), 0);
  char *err = NULL;
  const struct engine_plugin *local = registry_find(f->reg, ENGINE_PLUGIN_SINK, "local", &err);
  assert_non_null(local);
  const struct engine_plugin *crypto =
      registry_find(f->reg, ENGINE_PLUGIN_CRYPTO, "aes-256-gcm", &err);
  assert_non_null(crypto);
  json_t *cfg = json_pack("{s:s, s:b}", "path", f->dir, "fsync", 0);
  assert_int_equal(plugin_instance_new(local, "local", cfg, &f->sink_pi, &err), 0);
  json_decref(cfg);
  f->sink.pi = f->sink_pi;
  f->sink.required = 1;
  struct repo_open_opts o;
  memset(&o, 0, sizeof(o));
  o.sinks = &f->sink;
  o.n_sinks = 1;
  o.crypto = crypto;
  o.passphrase = "lock test";
  o.passphrase_len = strlen(o.passphrase);
  o.create = 1;
  o.compress_algo = COMPRESS_ZSTD;
  o.compress_level = 3;
  assert_int_equal(repo_open(&o, &f->repo, &err), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  repo_close(f->repo);
  plugin_instance_free(f->sink_pi);
  registry_free(f->reg);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

static size_t count_locks(struct repo *r) {
  json_t *list;
  char *err = NULL;
  assert_int_equal(repo_list(r, "locks/", &list, &err), 0);
  size_t n = json_array_size(list);
  json_decref(list);
  return n;
}

static int has_object(struct repo *r, const char *name) {
  json_t *list, *e;
  char *err = NULL;
  size_t i;
  int found = 0;
  assert_int_equal(repo_list(r, "locks/", &list, &err), 0);
  json_array_foreach(list, i, e) found |=
      strcmp(json_string_value(json_object_get(e, "name")), name) == 0;
  json_decref(list);
  return found;
}

/* A lock object as another process would have written it. */
static void put_lock(struct repo *r, const char *name, int exclusive, const char *host, long pid,
                     time_t refreshed) {
  json_t *o = json_pack("{s:b, s:s, s:I, s:s, s:s, s:I}", "exclusive", exclusive, "hostname", host,
                        "pid", (json_int_t)pid, "username", "someone", "time",
                        "2026-01-01T00:00:00Z", "refreshed_unix", (json_int_t)refreshed);
  char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(o);
  size_t n = strlen(text), sl = repo_sealed_len(r, n);
  unsigned char *sealed = malloc(sl);
  assert_int_equal(repo_seal(r, "lock", 4, text, n, sealed), 0);
  char *err = NULL;
  assert_int_equal(repo_put(r, name, sealed, sl, ENGINE_PUT_NO_OVERWRITE, &err), 0);
  free(sealed);
  free(text);
}

static void delete_object(struct repo *r, const char *name) {
  char *err = NULL;
  assert_int_equal(repo_delete(r, name, &err), 0);
}

/* acquire with wait 0 must fail; the message must contain want. */
static void expect_locked(struct repo *r, int exclusive, const char *want) {
  struct repo_lock *l = NULL;
  char *err = NULL;
  size_t before = count_locks(r);
  assert_int_not_equal(repo_lock_acquire(r, exclusive, 0, &l, &err), 0);
  assert_null(l);
  assert_non_null(err);
  if (strstr(err, want) == NULL)
    fail_msg("expected '%s' in: %s", want, err);
  assert_non_null(strstr(err, "the repository is locked: "));
  assert_non_null(strstr(err, "--lock-wait"));
  free(err);
  assert_int_equal(count_locks(r), before); /* nothing left behind */
}

static void test_shared_and_exclusive(void **state) {
  struct fixture *f = *state;
  struct repo *r = f->repo;
  struct repo_lock *a = NULL, *b = NULL, *x = NULL;
  char *err = NULL;
  assert_int_equal(repo_lock_acquire(r, 0, 0, &a, &err), 0);
  assert_int_equal(repo_lock_acquire(r, 0, 0, &b, &err), 0); /* shared locks coexist */
  assert_int_equal(count_locks(r), 2);
  char host[SYS_NAME_MAX];
  sys_hostname(host);
  char want[SYS_NAME_MAX + 64];
  snprintf(want, sizeof(want), "a shared lock held by ");
  expect_locked(r, 1, want);
  snprintf(want, sizeof(want), "@%s (pid %ld)", host, (long)getpid());
  expect_locked(r, 1, want);
  repo_lock_release(a);
  expect_locked(r, 1, "a shared lock");
  repo_lock_release(b);
  assert_int_equal(count_locks(r), 0);
  /* exclusive: nothing else, shared or exclusive */
  assert_int_equal(repo_lock_acquire(r, 1, 0, &x, &err), 0);
  expect_locked(r, 0, "an exclusive lock held by ");
  expect_locked(r, 1, "an exclusive lock held by ");
  repo_lock_release(x);
  assert_int_equal(count_locks(r), 0);
  repo_lock_release(NULL); /* allowed */
}

static void test_waiting_gives_up(void **state) {
  struct fixture *f = *state;
  struct repo *r = f->repo;
  struct repo_lock *x = NULL, *y = NULL;
  char *err = NULL;
  assert_int_equal(repo_lock_acquire(r, 1, 0, &x, &err), 0);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_not_equal(repo_lock_acquire(r, 0, 700, &y, &err), 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  assert_true(waited >= 0.7);
  assert_non_null(strstr(err, "gave up waiting; see --lock-wait"));
  free(err);
  repo_lock_release(x);
  assert_int_equal(count_locks(r), 0);
}

static void test_stale_locks_removed(void **state) {
  struct fixture *f = *state;
  struct repo *r = f->repo;
  char host[SYS_NAME_MAX];
  sys_hostname(host);
  /* a process of this host that no longer exists */
  pid_t child = fork();
  assert_true(child >= 0);
  if (child == 0)
    _exit(0);
  assert_int_equal(waitpid(child, NULL, 0), child);
  const char *dead = "locks/00000000000000000000000000000001";
  put_lock(r, dead, 1, host, (long)child, time(NULL));
  /* another host, not refreshed for longer than LOCK_STALE_S */
  const char *old = "locks/00000000000000000000000000000002";
  put_lock(r, old, 1, "elsewhere.example", 1, time(NULL) - LOCK_STALE_S - 60);
  assert_int_equal(count_locks(r), 2);
  struct repo_lock *x = NULL;
  char *err = NULL;
  assert_int_equal(repo_lock_acquire(r, 1, 0, &x, &err), 0);
  assert_false(has_object(r, dead));
  assert_false(has_object(r, old));
  assert_int_equal(count_locks(r), 1); /* ours */
  repo_lock_release(x);
  assert_int_equal(count_locks(r), 0);
}

static void test_live_locks_conflict(void **state) {
  struct fixture *f = *state;
  struct repo *r = f->repo;
  char host[SYS_NAME_MAX];
  sys_hostname(host);
  /* another host, refreshed recently: its PID cannot be checked from here */
  const char *remote = "locks/00000000000000000000000000000003";
  put_lock(r, remote, 1, "elsewhere.example", 4242, time(NULL) - 60);
  expect_locked(r, 0, "an exclusive lock held by someone@elsewhere.example (pid 4242) since");
  assert_true(has_object(r, remote));
  delete_object(r, remote);
  /* this host, a live process (ours), refreshed a while ago but within the limit */
  const char *local = "locks/00000000000000000000000000000004";
  put_lock(r, local, 0, host, (long)getpid(), time(NULL) - LOCK_STALE_S + 120);
  expect_locked(r, 1, "a shared lock held by someone@");
  struct repo_lock *s = NULL;
  char *err = NULL;
  assert_int_equal(repo_lock_acquire(r, 0, 0, &s, &err), 0); /* shared + shared */
  repo_lock_release(s);
  assert_true(has_object(r, local));
  delete_object(r, local);
  assert_int_equal(count_locks(r), 0);
}

static void test_unreadable_lock_conflicts(void **state) {
  struct fixture *f = *state;
  struct repo *r = f->repo;
  /* a lock object that does not authenticate with the repository key */
  const char *bad = "locks/00000000000000000000000000000005";
  const char junk[] = "not a sealed lock object at all, long enough to hold a nonce and tag";
  char *err = NULL;
  assert_int_equal(repo_put(r, bad, junk, sizeof(junk), ENGINE_PUT_NO_OVERWRITE, &err), 0);
  for (int exclusive = 0; exclusive <= 1; exclusive++) {
    struct repo_lock *l = NULL;
    err = NULL;
    assert_int_not_equal(repo_lock_acquire(r, exclusive, 0, &l, &err), 0);
    assert_null(l);
    if (strstr(err, "lock 'locks/00000000000000000000000000000005' cannot be read (it does not "
                    "authenticate with the repository key or is not a lock); it may be held by a "
                    "running command") == NULL)
      fail_msg("unexpected refusal: %s", err);
    assert_non_null(strstr(err, "delete that object and try again"));
    free(err);
    /* never taken for stale or absent: the object is still there */
    assert_true(has_object(r, bad));
    assert_int_equal(count_locks(r), 1);
  }
  delete_object(r, bad);
  struct repo_lock *l = NULL;
  assert_int_equal(repo_lock_acquire(r, 1, 0, &l, &err), 0);
  repo_lock_release(l);
}

/* A backup's lock names its pipeline: another backup of the same pipeline
 * on this host conflicts (and says so), other pipelines and plain shared
 * locks do not; the waiting limit is the backup's own (run_wait_ms). */
static void test_backups_of_one_pipeline(void **state) {
  struct fixture *f = *state;
  struct repo *r = f->repo;
  char *err = NULL;
  struct repo_lock *a = NULL, *b = NULL, *c = NULL, *d = NULL;
  struct repo_lock_opts oa = {.pipeline = "nightly", .run_wait_ms = -1};
  assert_int_equal(repo_lock_acquire_opts(r, &oa, &a, &err), 0);
  /* the same pipeline, 600 ms of patience: refused, flagged as a run conflict */
  struct repo_lock_opts ob = {.pipeline = "nightly", .run_wait_ms = 600};
  time_t t0 = time(NULL);
  assert_int_not_equal(repo_lock_acquire_opts(r, &ob, &b, &err), 0);
  assert_true(ob.run_conflict);
  assert_true(ob.waited_s >= 0.5);
  assert_true(time(NULL) - t0 < 10);
  assert_non_null(strstr(err, "another backup of this pipeline is running on this host"));
  assert_non_null(strstr(err, "a shared lock held by"));
  assert_non_null(strstr(err, "(a backup of pipeline 'nightly')"));
  free(err);
  err = NULL;
  /* another pipeline, and a plain shared lock (check, restore), go on */
  struct repo_lock_opts oc = {.pipeline = "weekly", .run_wait_ms = -1};
  assert_int_equal(repo_lock_acquire_opts(r, &oc, &c, &err), 0);
  assert_int_equal(repo_lock_acquire(r, 0, 0, &d, &err), 0);
  repo_lock_release(d);
  repo_lock_release(c);
  /* an exclusive lock still conflicts, as a repository conflict */
  struct repo_lock_opts ox = {.exclusive = 1};
  assert_int_not_equal(repo_lock_acquire_opts(r, &ox, &d, &err), 0);
  assert_false(ox.run_conflict);
  free(err);
  err = NULL;
  repo_lock_release(a);
  /* once the first backup is done the second takes the lock */
  assert_int_equal(repo_lock_acquire_opts(r, &ob, &b, &err), 0);
  assert_false(ob.run_conflict);
  repo_lock_release(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_shared_and_exclusive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_waiting_gives_up, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stale_locks_removed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_live_locks_conflict, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unreadable_lock_conflicts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_backups_of_one_pipeline, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
