/* The files source's restore: the small-file writer pool. Files of at most
 * ASYNC_MAX_FILE bytes are read whole by the main thread and queued; WRITERS
 * threads create, write and rename them inside a parent directory the main
 * thread already opened safely. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "restore_int.h"

#define ASYNC_MAX_QUEUED (32u * 1024u * 1024u)
/* Wake-ups cost a context switch, and the woken writer usually preempts
 * the main thread that woke it: a writer is woken only when it would find
 * a batch of this many files (one more writer per batch queued), a writer
 * keeps going while the queue has work, and a main thread waiting for room
 * is woken when the queue is half empty. */
#define WAKE_BATCH 4
/* A writer takes up to this many queued files of one directory at a time. */
#define WRITER_RUN 64

struct wjob {
  struct wjob *next;
  int dirfd;        /* the parent directory: the target's root or dir->fd */
  struct dref *dir; /* a reference held by the job, or NULL for the root */
  char *name;       /* the item's name (messages) */
  char *base;       /* the last component */
  char *data;
  size_t len;
  struct rmeta meta;
};

static void wjob_free(struct wjob *j) {
  files_xattrs_free(j->meta.xattrs);
  rs_dref_put(j->dir);
  free(j->name);
  free(j->base);
  free(j->data);
  free(j);
}

/* Whether the new file already has the owner and group to restore (files
 * of the restoring user: an fchown would only cost an inode update). */
static int owned_as(const struct rctx *r, int fd, const struct rmeta *m) {
  struct stat st;
  return m->uid == r->euid && m->gid == r->egid && fstat(fd, &st) == 0 && st.st_uid == m->uid &&
         st.st_gid == m->gid;
}

/* Same steps as restore_file: a temporary node, content, size, metadata,
 * then rename into place (an empty directory in the way is removed). A
 * plain permission mode the umask leaves alone is given at creation, which
 * saves an fchmod (and an inode update) per file. The partly written
 * temporary file is then as readable as the restored file will be (and
 * directories this restore creates stay 0700 until restore_end). */
static void write_job(struct rctx *r, struct wjob *j) {
  char tmp[NAME_MAX + 1];
  int fd = -1;
  mode_t create_mode = 0600;
  int mode_set = 0;
  /* only plain modes: set-id and sticky bits are set by fchmod after the
   * fchown (which clears set-id bits) */
  if (j->meta.has_mode && r->umask >= 0 && (j->meta.mode & 07000) == 0 &&
      (j->meta.mode & (mode_t)r->umask) == 0) {
    create_mode = j->meta.mode;
    mode_set = 1;
  }
  for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
    rs_tmp_name(tmp, j->base);
    fd = openat(j->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, create_mode);
    if (fd < 0 && errno != EEXIST)
      return rs_wfail(r, j->name, "unable to create a temporary file", errno);
  }
  if (fd < 0)
    return rs_wfail(r, j->name, "unable to create a temporary file", EEXIST);
  const char *what = NULL;
  int err = 0;
  /* the file is new (O_EXCL): its size is what was written */
  if (rs_write_all(fd, j->data, j->len) != 0)
    what = "unable to write", err = errno;
  else if (r->is_root && j->meta.has_owner && !owned_as(r, fd, &j->meta) &&
           fchown(fd, j->meta.uid, j->meta.gid) != 0)
    what = "unable to set the owner", err = errno;
  else if (j->meta.has_mode && !mode_set && fchmod(fd, j->meta.mode) != 0)
    what = "unable to set the mode", err = errno;
  if (what == NULL)
    rs_set_xattrs(r, j->name, fd, -1, NULL, &j->meta);
  if (what == NULL && j->meta.has_times && futimens(fd, j->meta.ts) != 0)
    what = "unable to set timestamps", err = errno;
  if (close(fd) != 0 && what == NULL)
    what = "unable to close the temporary file", err = errno;
  if (what == NULL) {
    int rc = renameat(j->dirfd, tmp, j->dirfd, j->base);
    if (rc != 0 && errno == EISDIR && unlinkat(j->dirfd, j->base, AT_REMOVEDIR) == 0)
      rc = renameat(j->dirfd, tmp, j->dirfd, j->base);
    if (rc != 0)
      what = "unable to rename the temporary file into place", err = errno;
  }
  if (what != NULL) {
    unlinkat(j->dirfd, tmp, 0);
    rs_wfail(r, j->name, what, err);
  }
}

/* Wake one more writer when the queue holds a batch for each writer
 * already awake and one more (the mutex is held). */
static void writers_wake(struct rctx *r) {
  size_t awake = (size_t)(r->nthreads - r->widle);
  if (r->widle > 0 && r->wjobs >= (awake + 1) * WAKE_BATCH)
    pthread_cond_signal(&r->wcv);
}

/* Before the main thread spends a while on something else (a large file):
 * files still waiting for a batch to fill are started now. */
void rs_writers_kick(struct rctx *r) {
  if (r->nthreads == 0)
    return;
  pthread_mutex_lock(&r->wmu);
  if (r->wjobs > 0 && r->widle == r->nthreads)
    pthread_cond_signal(&r->wcv);
  pthread_mutex_unlock(&r->wmu);
}

/* Whether two queued files have the same parent directory. */
static int same_dir(const struct wjob *a, const struct wjob *b) {
  size_t la = strlen(a->name) - strlen(a->base), lb = strlen(b->name) - strlen(b->base);
  return la == lb && memcmp(a->name, b->name, la) == 0;
}

static void *writer_main(void *arg) {
  struct rctx *r = arg;
  pthread_mutex_lock(&r->wmu);
  for (;;) {
    while (r->whead == NULL && !r->wstop) {
      r->widle++;
      pthread_cond_wait(&r->wcv, &r->wmu);
      r->widle--;
    }
    if (r->whead == NULL)
      break;
    /* Take the run of queued files of one directory: creating and renaming
     * take the directory's lock, and writers in one directory spend their
     * time spinning on it while writers in different ones do not. */
    struct wjob *run = r->whead, *last = run;
    size_t n = 1, bytes = run->len;
    while (last->next != NULL && n < WRITER_RUN && same_dir(run, last->next)) {
      last = last->next;
      n++;
      bytes += last->len;
    }
    r->whead = last->next;
    if (r->whead == NULL)
      r->wtail = NULL;
    last->next = NULL;
    r->wjobs -= n;
    pthread_mutex_unlock(&r->wmu);
    for (struct wjob *j = run; j != NULL; j = j->next)
      write_job(r, j);
    pthread_mutex_lock(&r->wmu);
    r->wqueued -= bytes;
    r->wpending -= n;
    if (r->main_waits && (r->wpending == 0 || r->wqueued <= ASYNC_MAX_QUEUED / 2))
      pthread_cond_signal(&r->dcv);
    pthread_mutex_unlock(&r->wmu);
    while (run != NULL) {
      struct wjob *next = run->next;
      wjob_free(run);
      run = next;
    }
    pthread_mutex_lock(&r->wmu);
  }
  pthread_mutex_unlock(&r->wmu);
  return NULL;
}

/* Wait until every queued file is written (before hard links, which need
 * their target, and at the end). */
void rs_writers_drain(struct rctx *r) {
  if (r->nthreads == 0)
    return;
  pthread_mutex_lock(&r->wmu);
  if (r->wjobs > 0)
    pthread_cond_broadcast(&r->wcv);
  r->main_waits++;
  while (r->wpending > 0)
    pthread_cond_wait(&r->dcv, &r->wmu);
  r->main_waits--;
  pthread_mutex_unlock(&r->wmu);
}

void rs_writers_stop(struct rctx *r) {
  if (r->nthreads == 0)
    return;
  pthread_mutex_lock(&r->wmu);
  r->wstop = 1;
  pthread_cond_broadcast(&r->wcv);
  pthread_mutex_unlock(&r->wmu);
  for (int i = 0; i < r->nthreads; i++)
    pthread_join(r->threads[i], NULL);
  r->nthreads = 0;
}

/* Read a small file's whole content and queue it for a writer. Returns
 * ENGINE_OK when queued (errors of the writing itself come at restore_end). */
int rs_queue_file(struct rctx *r, const char *name, int dirfd, const char *base, struct rmeta *m,
                  const struct engine_reader *data) {
  size_t len = (size_t)data->size;
  struct wjob *j = calloc(1, sizeof(*j));
  if (j == NULL)
    return rs_fail(r, name, "out of memory");
  j->name = strdup(name);
  j->base = strdup(base);
  j->data = malloc(len ? len : 1);
  j->len = len;
  j->meta = *m;
  m->xattrs = NULL; /* the job owns them now */
  if (j->name == NULL || j->base == NULL || j->data == NULL) {
    wjob_free(j);
    return rs_fail(r, name, "out of memory");
  }
  size_t got = 0;
  for (;;) {
    ssize_t n = data->read(data, j->data + got, len - got);
    if (n < 0) {
      wjob_free(j);
      return rs_fail(r, name, "reading the content from the repository failed after %zu bytes",
                     got);
    }
    if (n == 0)
      break;
    got += (size_t)n;
    if (got == len) {
      char extra;
      n = data->read(data, &extra, 1);
      if (n != 0) {
        wjob_free(j);
        return n < 0 ? rs_fail(r, name, "reading the content from the repository failed")
                     : rs_fail(r, name,
                               "the repository returned more content than the expected %zu bytes",
                               len);
      }
      break;
    }
  }
  if (got != len) {
    wjob_free(j);
    return rs_fail(r, name, "the content is truncated: got %zu of %zu bytes", got, len);
  }
  /* dirfd is the root or the cached parent (parent_fd): the job holds a
   * reference to the latter, which outlives a change of the cache */
  j->dirfd = dirfd;
  if (dirfd != r->rootfd) {
    j->dir = r->cache_dir;
    __atomic_add_fetch(&j->dir->refs, 1, __ATOMIC_RELAXED);
  }
  rs_cache_invalidate(r, name); /* as place() does: the node at `name` is replaced */
  pthread_mutex_lock(&r->wmu);
  if (r->nthreads == 0 && !r->wstop) {
    for (int i = 0; i < WRITERS; i++)
      if (pthread_create(&r->threads[r->nthreads], NULL, writer_main, r) == 0)
        r->nthreads++;
  }
  if (r->nthreads == 0) {
    pthread_mutex_unlock(&r->wmu);
    wjob_free(j);
    return rs_fail(r, name, "unable to start the writer threads");
  }
  if (r->wqueued > 0 && r->wqueued + len > ASYNC_MAX_QUEUED) {
    pthread_cond_broadcast(&r->wcv); /* all hands while the main thread waits */
    r->main_waits++;
    while (r->wqueued > 0 && r->wqueued + len > ASYNC_MAX_QUEUED)
      pthread_cond_wait(&r->dcv, &r->wmu);
    r->main_waits--;
  }
  if (r->wtail)
    r->wtail->next = j;
  else
    r->whead = j;
  r->wtail = j;
  r->wqueued += len;
  r->wpending++;
  r->wjobs++;
  writers_wake(r);
  pthread_mutex_unlock(&r->wmu);
  return ENGINE_OK;
}
