/* The files source's restore: the flusher, a thread that waits for the
 * write-out of complete large files while the restore goes on.
 *
 * Started write-out is not yet durable: the final syncfs still waits for
 * it and then for the device to flush its volatile write cache, and that
 * flush covers every byte written since the previous one. Where a device
 * flush is expensive (a virtio disk whose flush is an fsync on the host),
 * that flush is most of the final syncfs. So a flusher thread takes over
 * the descriptor of each complete large file and waits for its write-out
 * while the restore goes on: of the files queued when it wakes, it waits
 * for the data of all but the last (sync_file_range, no flush) and
 * fdatasyncs the last, one device flush for the batch. The final syncfs
 * then has the small files, the metadata and the last batches left. The
 * flusher only moves work earlier: the syncfs in restore_end is what makes
 * the restore durable, and errors the flusher sees fail the restore as
 * well.
 *
 * Once a batch is written out, its files' pages are dropped from the page
 * cache (POSIX_FADV_DONTNEED; they are clean then). A restore is
 * write-once: keeping a gigabyte of restored files cached would evict what
 * the machine's other programs have cached, and the pages freed this way
 * are what the next files are written into. On a VM with a memory balloon
 * that matters twice: free memory the balloon has handed back to the host
 * costs a host fault on its first touch, and freshly freed pages do not
 * (docs/PERFORMANCE.md has the figures). A program that reads the restored
 * files right away reads the large ones from disk again.
 *
 * At most FLUSH_MAX_QUEUED descriptors wait; beyond that
 * (or when the thread cannot start) a file is closed at once and left to
 * the syncfs. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "restore_int.h"

#define FLUSH_MAX_QUEUED 64u

/* A large file whose write-out the flusher waits for. */
struct fjob {
  struct fjob *next;
  int fd;     /* owned: the flusher closes it */
  char *name; /* the item's name (messages) */
};

/* restore_end makes everything durable with one syncfs. Starting the
 * write-out of each large file (those the main thread writes) as soon as
 * it is complete lets the disk work while the restore goes on, instead of
 * all of it at the end, which shortens the final syncfs (figures in
 * docs/PERFORMANCE.md). Only a hint: write errors still surface in the
 * syncfs. Small files (below WRITEBACK_MIN, restore_int.h) are left to the
 * syncfs: a hint per small file costs more than it saves. */
void rs_start_writeback(int fd, uint64_t size) {
  if (size >= WRITEBACK_MIN)
    (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

static void fjob_free(struct fjob *j) {
  if (j->fd >= 0)
    close(j->fd);
  free(j->name);
  free(j);
}

static void *flusher_main(void *arg) {
  struct rctx *r = arg;
  pthread_mutex_lock(&r->fmu);
  for (;;) {
    while (r->fhead == NULL && !r->fstop)
      pthread_cond_wait(&r->fcv, &r->fmu);
    if (r->fhead == NULL)
      break; /* stopped, and every queued file is done */
    struct fjob *batch = r->fhead;
    r->fhead = r->ftail = NULL;
    r->fqueued = 0;
    pthread_mutex_unlock(&r->fmu);
    size_t n = 0, batch_len = 0;
    for (struct fjob *j = batch; j != NULL; j = j->next) {
      batch_len++;
      int rc = j->next != NULL
                   ? sync_file_range(j->fd, 0, 0,
                                     SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                         SYNC_FILE_RANGE_WAIT_AFTER)
                   : fdatasync(j->fd);
      if (rc != 0)
        rs_wfail(r, j->name,
                 j->next != NULL ? "unable to write it out" : "unable to flush it to disk", errno);
      else
        n++;
    }
    while (batch != NULL) {
      struct fjob *next = batch->next;
      /* written out now: its pages can go (see "the flusher") */
      if (n == batch_len)
        (void)posix_fadvise(batch->fd, 0, 0, POSIX_FADV_DONTNEED);
      if (close(batch->fd) != 0)
        rs_wfail(r, batch->name, "unable to close it after flushing", errno);
      batch->fd = -1;
      fjob_free(batch);
      batch = next;
    }
    pthread_mutex_lock(&r->fmu);
    r->fflushed += n;
  }
  pthread_mutex_unlock(&r->fmu);
  return NULL;
}

/* Hands the descriptor of a complete large file to the flusher, which
 * closes it. Returns 0 when handed over; otherwise the caller keeps fd. */
int rs_flush_hand_over(struct rctx *r, int fd, const char *name) {
  pthread_mutex_lock(&r->fmu);
  if (!r->fstarted) {
    r->fstarted = 1;
    r->frunning = pthread_create(&r->fthread, NULL, flusher_main, r) == 0;
  }
  if (!r->frunning || r->fstop || r->fqueued >= FLUSH_MAX_QUEUED) {
    pthread_mutex_unlock(&r->fmu);
    return -1;
  }
  struct fjob *j = malloc(sizeof(*j));
  char *copy = strdup(name);
  if (j == NULL || copy == NULL) {
    pthread_mutex_unlock(&r->fmu);
    free(j);
    free(copy);
    return -1;
  }
  *j = (struct fjob){NULL, fd, copy};
  if (r->ftail != NULL)
    r->ftail->next = j;
  else
    r->fhead = j;
  r->ftail = j;
  r->fqueued++;
  pthread_cond_signal(&r->fcv);
  pthread_mutex_unlock(&r->fmu);
  return 0;
}

/* Stops the flusher once it has done every queued file (usually none are
 * left: the queue is taken as soon as the flusher is free). Nothing is
 * queued unless the thread runs, and it only ends with an empty queue. */
void rs_flusher_stop(struct rctx *r) {
  pthread_mutex_lock(&r->fmu);
  r->fstop = 1;
  pthread_cond_signal(&r->fcv);
  int running = r->frunning;
  r->frunning = 0;
  pthread_mutex_unlock(&r->fmu);
  if (running)
    pthread_join(r->fthread, NULL);
}
