/* Internal interface between the parts of the files source's restore:
 *
 *   restore.c          the source ops (restore_begin / _item / _end), one
 *                      function per item type, temporary names, placing
 *   restore_path.c     names and safe path resolution below the target
 *   restore_meta.c     metadata: parsing, applying, what the target refused
 *   restore_writers.c  the small-file writer pool
 *   restore_flush.c    the flusher: write-out of large files during the run
 *
 * Every function here runs on the main thread (the engine's restore calls)
 * unless its comment says otherwise.
 */
#ifndef FILES_RESTORE_INT_H
#define FILES_RESTORE_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "files.h"

/* Small files are written by a few threads: a restore of many small files
 * is bound by file creation in the kernel, which one thread cannot spread
 * over the cores. The main thread reads the content (from the engine's
 * read-ahead) and checks every name; writers only create, write and link
 * inside a parent directory the main thread already opened safely. */
#define ASYNC_MAX_FILE (1024u * 1024u)
#define WRITERS 3
/* Large files (at least this size) get their write-out started as soon as
 * they are complete and are handed to the flusher (restore_flush.c). */
#define WRITEBACK_MIN (256u * 1024u)

/* Metadata as restore applies it. */
struct rmeta {
  int has_mode;
  mode_t mode;
  int has_owner;
  uid_t uid;
  gid_t gid;
  int has_times;
  struct timespec ts[2]; /* atime, mtime; UTIME_OMIT when unknown */
  int sparse;
  struct files_xattrs *xattrs; /* owned; NULL when none (or the option is off) */
  unsigned flags;              /* inode flags to set last; 0 when none */
};

/* A file whose inode flags are set in restore_end, once nothing else will
 * touch it (immutable and append-only forbid renames, links and times). */
struct flag_fixup {
  char *name;
  unsigned flags;
};

struct dir_fixup {
  char *name;
  size_t depth;
  struct rmeta meta;
};

/* An open directory shared by the parent cache and the queued small files
 * in it: closed when the last holder lets go (writers run on other
 * threads, hence the atomic count). One descriptor per directory instead
 * of a dup and a close per queued file. */
struct dref {
  int fd;
  int refs;
};

struct wjob;     /* restore_writers.c */
struct rt_state; /* restore_test.c */
struct fjob;     /* restore_flush.c */

struct rctx {
  /* small-file writers (see ASYNC_MAX_FILE) */
  pthread_mutex_t wmu;
  pthread_cond_t wcv; /* writers wait for jobs */
  pthread_cond_t dcv; /* the main thread waits for room in the queue or a drain */
  int main_waits;     /* the main thread is waiting on dcv */
  struct wjob *whead, *wtail;
  size_t wqueued, wpending, wjobs; /* bytes and files queued; files not yet written */
  int wstop, nthreads, widle;      /* widle: writers waiting on wcv */
  pthread_t threads[WRITERS];
  int wnext;         /* the next writer's index */
  int wdir[WRITERS]; /* the directory each writer is writing in (-1: none) */
  /* O_TMPFILE for small files: 0 usable so far, -1 not here (a temporary
   * name then); tmpfile_proc: linked through /proc/self/fd (any thread) */
  int tmpfile, tmpfile_proc;
  size_t wfailures;
  char wfirst[1536];
  /* the flusher (see FLUSH_MAX_QUEUED) */
  pthread_mutex_t fmu;
  pthread_cond_t fcv;
  struct fjob *fhead, *ftail;
  size_t fqueued;
  int fstop, fstarted, frunning;
  pthread_t fthread;
  size_t fflushed;
  struct files_inst *in;
  const struct engine_host *h;
  int rootfd; /* -1 in a dry run on a missing target */
  char *root; /* the target as given, or "/" */
  int dry_run;
  int is_root; /* effective uid 0: ownership and device nodes */
  uid_t euid;  /* the process's effective ids (owned_as, per small file) */
  gid_t egid;
  int umask; /* the process's umask, or -1 when unknown */
  struct dir_fixup *dirs;
  size_t n_dirs, cap_dirs;
  /* The parent directory of the previous item, kept open because items
   * arrive grouped by directory. */
  char *cache_name;
  struct dref *cache_dir;
  char *buf;             /* FILES_IO_BLOCK */
  char last_error[1536]; /* the message of the latest fail() */
  struct flag_fixup *flagged;
  size_t n_flagged, cap_flagged;
  /* metadata the target refused, per kind (xattr.c), reported once each in
   * restore_end; writers count too, hence the mutex */
  pthread_mutex_t xmu;
  size_t xfailed[FILES_XK_N];
  int xerr[FILES_XK_N];
  char xfirst[FILES_XK_N][512];
  /* restore flag restore_test=1: what each item must look like, checked in
   * restore_end (restore_test.c); NULL for a plain restore */
  struct rt_state *test;
};

/* ---- restore.c ---- */

/* set_error("unable to restore '<name>': <reason>") and return ENGINE_ERROR
 * (main thread: it writes r->last_error). */
int rs_fail(struct rctx *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A writer's or the flusher's failure (any thread). */
void rs_wfail(struct rctx *r, const char *name, const char *what, int err);
/* "<base>.engine-tmp-XXXXXX" within NAME_MAX (any thread). */
void rs_tmp_name(char *out, const char *base);
/* write(2) until done; -1 with errno (any thread). */
int rs_write_all(int fd, const char *buf, size_t len);

/* ---- restore_path.c ---- */

const char *rs_invalid_name(const char *name, size_t len);
size_t rs_name_depth(const char *name);
int rs_open_dir_path(struct rctx *r, const char *item, const char *path, int create);
/* Let go of a directory reference (any thread). */
void rs_dref_put(struct dref *d);
void rs_cache_drop(struct rctx *r);
void rs_cache_invalidate(struct rctx *r, const char *name);
int rs_parent_fd(struct rctx *r, char *name, const char **base);

/* ---- restore_meta.c ---- */

int rs_parse_meta(const struct rctx *r, json_t *m, struct rmeta *out, char *why, size_t why_len);
/* Count metadata the target refused (any thread). */
void rs_note_xfail(struct rctx *r, const char *name, enum files_xkind kind, const char *what,
                   int err);
/* Extended attributes / inode flags of a node (any thread; failures are
 * counted, not errors). */
void rs_set_xattrs(struct rctx *r, const char *name, int fd, int dirfd, const char *base,
                   const struct rmeta *m);
void rs_set_flags(struct rctx *r, const char *name, int fd, unsigned flags);
void rs_report_xfail(struct rctx *r);
int rs_apply_meta_fd(struct rctx *r, const char *name, int fd, const struct rmeta *m);
int rs_apply_meta_at(struct rctx *r, const char *name, int dirfd, const char *base,
                     const struct rmeta *m, int is_symlink);

/* ---- restore_writers.c ---- */

int rs_queue_file(struct rctx *r, const char *name, int dirfd, const char *base, struct rmeta *m,
                  const struct engine_reader *data);
void rs_writers_kick(struct rctx *r);
void rs_writers_drain(struct rctx *r);
void rs_writers_stop(struct rctx *r);

/* ---- restore_test.c ---- */

/* A restore test: create the scratch directory (*target). */
int rs_test_begin(struct rctx *r, char **target);
/* A reader that hashes what is read through it (*out); the returned
 * handle goes to rs_test_note and rs_test_unwrap. NULL on OOM. */
void *rs_test_wrap(const struct engine_reader *data, const struct engine_reader **out);
void rs_test_unwrap(void *wrap);
/* Remember what the item must look like (wrap: its content's hash, or
 * NULL). */
int rs_test_note(struct rctx *r, const char *name, const struct engine_item *item, json_t *meta,
                 const struct rmeta *m, void *wrap);
/* After everything is restored (restored_ok: without failures): compare
 * every item, then remove the scratch directory. ENGINE_ERROR (with the
 * host's error set) when something differs. */
int rs_test_end(struct rctx *r, int restored_ok);

/* ---- restore_flush.c ---- */

void rs_start_writeback(int fd, uint64_t size);
int rs_flush_hand_over(struct rctx *r, int fd, const char *name);
void rs_flusher_stop(struct rctx *r);

#endif
