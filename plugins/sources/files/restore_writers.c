/* The files source's restore: the small-file writer pool. Files of at most
 * ASYNC_MAX_FILE bytes are read whole by the main thread and queued; WRITERS
 * threads create, write and link them inside a parent directory the main
 * thread already opened safely.
 *
 * A file is created without a name (O_TMPFILE), written, given its
 * metadata and then linked under its name: one operation under the
 * directory's lock per file (a temporary name and a rename take two, and
 * writers in one directory spend their time spinning on that lock), no
 * random name to draw, and still nothing half-written ever under the real
 * name. Where the file system or the process cannot (no O_TMPFILE; linkat
 * refused), or a node is in the way, the file gets a temporary name and is
 * renamed into place, as the main thread does. Writers take the queued
 * files a directory at a time, each a directory no other writer is in
 * when there is one. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "restore_int.h"

#define ASYNC_MAX_QUEUED (16u * 1024u * 1024u)
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

/* Who a new file in the run's directory belongs to: what the first file
 * created there got (the process's ids, or the directory's group where it
 * is set-group-id), found with one fstat per run. */
struct run_owner {
  int known;
  uid_t uid;
  gid_t gid;
};

/* Whether the new file already has the owner and group to restore (files
 * of the restoring user: an fchown would only cost an inode update). */
static int owned_as(const struct rctx *r, int fd, const struct rmeta *m, struct run_owner *o) {
  if (m->uid != r->euid)
    return 0;
  if (!o->known) {
    struct stat st;
    if (fstat(fd, &st) != 0)
      return 0;
    *o = (struct run_owner){1, st.st_uid, st.st_gid};
  }
  return o->uid == m->uid && o->gid == m->gid;
}

/* Give the nameless file fd the name base in dirfd: 0, or -1 with errno.
 * linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; without it the file is
 * linked through /proc/self/fd (r->tmpfile_proc remembers which works). */
static int link_tmpfile(struct rctx *r, int fd, int dirfd, const char *base) {
  if (!__atomic_load_n(&r->tmpfile_proc, __ATOMIC_RELAXED)) {
    if (linkat(fd, "", dirfd, base, AT_EMPTY_PATH) == 0)
      return 0;
    if (errno != EPERM && errno != ENOENT && errno != EINVAL)
      return -1;
    __atomic_store_n(&r->tmpfile_proc, 1, __ATOMIC_RELAXED);
  }
  char path[40];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  return linkat(AT_FDCWD, path, dirfd, base, AT_SYMLINK_FOLLOW);
}

/* Rename tmp into place as base (an empty directory in the way is
 * removed); unlinks tmp when that fails. */
static const char *rename_into_place(int dirfd, const char *tmp, const char *base, int *err) {
  int rc = renameat(dirfd, tmp, dirfd, base);
  if (rc != 0 && errno == EISDIR && unlinkat(dirfd, base, AT_REMOVEDIR) == 0)
    rc = renameat(dirfd, tmp, dirfd, base);
  if (rc == 0)
    return NULL;
  *err = errno;
  unlinkat(dirfd, tmp, 0);
  return "unable to rename the temporary file into place";
}

/* Link the finished nameless file fd under its name; something in the way
 * is replaced through a temporary name. NULL, "" when linking is not
 * possible here at all (the caller writes the file again the named way),
 * or what failed (*err). */
static const char *place_tmpfile(struct rctx *r, struct wjob *j, int fd, int *err) {
  if (link_tmpfile(r, fd, j->dirfd, j->base) == 0)
    return NULL;
  if (errno != EEXIST) {
    if (errno == EPERM || errno == ENOENT || errno == EINVAL || errno == EXDEV) {
      __atomic_store_n(&r->tmpfile, -1, __ATOMIC_RELAXED);
      return "";
    }
    *err = errno;
    return "unable to link the new file into place";
  }
  char tmp[NAME_MAX + 1];
  for (int attempt = 0; attempt < 100; attempt++) {
    rs_tmp_name(tmp, j->base);
    if (link_tmpfile(r, fd, j->dirfd, tmp) == 0)
      return rename_into_place(j->dirfd, tmp, j->base, err);
    if (errno != EEXIST)
      break;
  }
  *err = errno;
  return "unable to link the new file under a temporary name";
}

/* Same steps as restore_file: a node without a name or under a temporary
 * one, content, size, metadata, then its name (an empty directory in the
 * way is removed). A plain permission mode the umask leaves alone is given
 * at creation, which saves an fchmod (and an inode update) per file. The
 * partly written file is then as readable as the restored file will be (and
 * directories this restore creates stay 0700 until restore_end). */
static void write_job(struct rctx *r, struct wjob *j, struct run_owner *owner) {
  char tmp[NAME_MAX + 1];
  int fd = -1, anon = 0;
  mode_t create_mode = 0600;
  int mode_set = 0;
  /* only plain modes: set-id and sticky bits are set by fchmod after the
   * fchown (which clears set-id bits) */
  if (j->meta.has_mode && r->umask >= 0 && (j->meta.mode & 07000) == 0 &&
      (j->meta.mode & (mode_t)r->umask) == 0) {
    create_mode = j->meta.mode;
    mode_set = 1;
  }
  if (__atomic_load_n(&r->tmpfile, __ATOMIC_RELAXED) >= 0) {
    fd = openat(j->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, create_mode);
    if (fd >= 0)
      anon = 1;
    else if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)
      __atomic_store_n(&r->tmpfile, -1, __ATOMIC_RELAXED);
    else
      return rs_wfail(r, j->name, "unable to create a new file", errno);
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
  /* the file is new: its size is what was written */
  if (rs_write_all(fd, j->data, j->len) != 0)
    what = "unable to write", err = errno;
  else if (r->is_root && j->meta.has_owner && !owned_as(r, fd, &j->meta, owner) &&
           fchown(fd, j->meta.uid, j->meta.gid) != 0)
    what = "unable to set the owner", err = errno;
  else if (j->meta.has_mode && !mode_set && fchmod(fd, j->meta.mode) != 0)
    what = "unable to set the mode", err = errno;
  if (what == NULL)
    rs_set_xattrs(r, j->name, fd, -1, NULL, &j->meta);
  if (what == NULL && j->meta.has_times && futimens(fd, j->meta.ts) != 0)
    what = "unable to set timestamps", err = errno;
  if (anon) {
    if (what == NULL)
      what = place_tmpfile(r, j, fd, &err);
    if (what != NULL && what[0] == '\0') { /* no linking here: the named way */
      close(fd);
      return write_job(r, j, owner);
    }
    if (close(fd) != 0 && what == NULL) {
      what = "unable to close the new file", err = errno;
      unlinkat(j->dirfd, j->base, 0);
    }
  } else {
    if (close(fd) != 0 && what == NULL)
      what = "unable to close the temporary file", err = errno;
    if (what == NULL)
      what = rename_into_place(j->dirfd, tmp, j->base, &err);
    else
      unlinkat(j->dirfd, tmp, 0);
  }
  if (what != NULL)
    rs_wfail(r, j->name, what, err);
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

/* Is a writer other than `self` writing in directory dirfd? (the mutex is
 * held) */
static int dir_busy(const struct rctx *r, int self, int dirfd) {
  for (int i = 0; i < WRITERS; i++)
    if (i != self && r->wdir[i] == dirfd)
      return 1;
  return 0;
}

/* Take a run of queued files of one directory (at most WRITER_RUN) for
 * writer `self`: the first run in a directory no other writer is in,
 * looking a few runs ahead, else the first. Creating and linking take the
 * directory's lock: writers in one directory spend their time spinning on
 * it, writers in different ones do not. (The mutex is held.) */
static struct wjob *take_run(struct rctx *r, int self, size_t *n_out, size_t *bytes_out) {
  struct wjob *prev = NULL, *start = r->whead, *pick_prev = NULL, *pick = r->whead;
  size_t seen = 0;
  for (int runs = 0; start != NULL && runs < 8 && seen < 1024; runs++) {
    if (!dir_busy(r, self, start->dirfd)) {
      pick = start;
      pick_prev = prev;
      break;
    }
    while (start->next != NULL && start->next->dirfd == start->dirfd && seen++ < 1024)
      start = start->next;
    prev = start;
    start = start->next;
  }
  struct wjob *last = pick;
  size_t n = 1, bytes = pick->len;
  while (last->next != NULL && n < WRITER_RUN && last->next->dirfd == pick->dirfd) {
    last = last->next;
    n++;
    bytes += last->len;
  }
  if (pick_prev != NULL)
    pick_prev->next = last->next;
  else
    r->whead = last->next;
  if (r->wtail == last)
    r->wtail = pick_prev;
  last->next = NULL;
  r->wjobs -= n;
  r->wdir[self] = pick->dirfd;
  *n_out = n;
  *bytes_out = bytes;
  return pick;
}

static void *writer_main(void *arg) {
  struct rctx *r = arg;
  pthread_mutex_lock(&r->wmu);
  int self = r->wnext++;
  for (;;) {
    r->wdir[self] = -1;
    while (r->whead == NULL && !r->wstop) {
      r->widle++;
      pthread_cond_wait(&r->wcv, &r->wmu);
      r->widle--;
    }
    if (r->whead == NULL)
      break;
    size_t n, bytes;
    struct wjob *run = take_run(r, self, &n, &bytes);
    pthread_mutex_unlock(&r->wmu);
    struct run_owner owner = {0, 0, 0};
    for (struct wjob *j = run; j != NULL; j = j->next)
      write_job(r, j, &owner);
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
      r->wdir[i] = -1;
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
