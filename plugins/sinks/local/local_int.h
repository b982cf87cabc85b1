/* Internal interface of the "local" sink: the instance and what local.c
 * (names, put, get, stat, del, the instance) shares with list.c (the sorted
 * walk of the repository directory). Nothing here is exported. */
#ifndef LOCAL_INT_H
#define LOCAL_INT_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#include "engine/plugin.h"

/* Temporary files are "<base>.tmp-<pid>-<16 hex digits>"; list skips them and
 * object names may not contain the marker, so the two never collide. */
#define TEMP_MARKER ".tmp-"
#define TEMP_SUFFIX_MAX 32 /* ".tmp-" + 10-digit pid + "-" + 16 hex digits */
#define TEMP_ATTEMPTS 16
#define LIST_MAX_DEPTH 64 /* far deeper than any object name; stops symlink loops */
#define IO_CHUNK ((size_t)1 << 30)

struct local_sink {
  const struct engine_host *host;
  char *root;        /* absolute, canonical repository directory */
  char *root_prefix; /* root with exactly one trailing '/', object paths are root_prefix + name */
  size_t root_len;   /* strlen(root) without a trailing '/' ("/" counts as 0) */
  int fsync;         /* 0 only for tests and benchmarks */
  int direct_io;     /* write large aligned objects with O_DIRECT */
  /* descriptors of recently read packs (see "open packs") */
  pthread_mutex_t open_mu;
  struct open_pack *open;
  uint64_t open_tick;
};

#define SET_ERROR(s, ...) (s)->host->set_error((s)->host, __VA_ARGS__)

const char *local_errstr(int e, char *buf, size_t len);
/* Reports an errno failure; `what` is a sentence fragment like "unable to open". */
int local_fail_errno(const struct local_sink *s, int e, const char *what, const char *path,
                     const char *name);
int local_fail_oom(const struct local_sink *s, const char *name);
/* Why the directory part [p, p+len) of a name or prefix is unusable, or NULL. */
const char *local_path_problem(const char *p, size_t len);

/* engine_sink_ops.list (list.c). */
int local_list(void *inst, const char *prefix, int (*cb)(void *ud, const char *name, uint64_t size),
               void *ud);

#endif
