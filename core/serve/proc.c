/* Child processes with captured, bounded output (see proc.h). */
#include "serve/proc.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

#define READ_SIZE 65536
/* after the child exited, how long a grandchild that inherited its stdout or
 * stderr may keep them open before the output is taken as it is */
#define EOF_GRACE_MS 5000

struct proc {
  uv_process_t process;
  uv_pipe_t out_pipe, err_pipe;
  uv_timer_t grace;
  int open_handles;
  int exited, out_eof, err_eof, finished;
  int64_t exit_status;
  int term_signal;
  char *out;
  size_t out_len, out_cap;
  int out_truncated;
  char *err;
  size_t err_len, err_cap;
  proc_done_fn done;
  void *ud;
};

static void on_handle_closed(uv_handle_t *h) {
  struct proc *p = h->data;
  if (--p->open_handles > 0)
    return;
  free(p->out);
  free(p->err);
  free(p);
}

static void close_all(struct proc *p) {
  uv_handle_t *hs[] = {(uv_handle_t *)&p->process, (uv_handle_t *)&p->out_pipe,
                       (uv_handle_t *)&p->err_pipe, (uv_handle_t *)&p->grace};
  for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
    if (!uv_is_closing(hs[i]))
      uv_close(hs[i], on_handle_closed);
}

static void maybe_finish(struct proc *p) {
  if (p->finished || !p->exited || !p->out_eof || !p->err_eof)
    return;
  p->finished = 1;
  if (p->err_len > p->err_cap) {
    memmove(p->err, p->err + p->err_len - p->err_cap, p->err_cap);
    p->err_len = p->err_cap;
  }
  p->out[p->out_len] = '\0';
  p->err[p->err_len] = '\0';
  struct proc_result r = {p->exit_status,   p->term_signal, p->out,    p->out_len,
                          p->out_truncated, p->err,         p->err_len};
  p->done(p->ud, &r);
  close_all(p);
}

static void on_grace(uv_timer_t *t) {
  struct proc *p = t->data;
  if (!p->out_eof || !p->err_eof)
    log_warn("serve: child process %d exited but its output is still held open (by a process "
             "it started?); using what was read",
             p->process.pid);
  p->out_eof = p->err_eof = 1;
  uv_read_stop((uv_stream_t *)&p->out_pipe);
  uv_read_stop((uv_stream_t *)&p->err_pipe);
  maybe_finish(p);
}

static void on_exit_cb(uv_process_t *h, int64_t exit_status, int term_signal) {
  struct proc *p = h->data;
  p->exited = 1;
  p->exit_status = exit_status;
  p->term_signal = term_signal;
  if (!p->out_eof || !p->err_eof)
    uv_timer_start(&p->grace, on_grace, EOF_GRACE_MS, 0);
  maybe_finish(p);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  buf->base = xmalloc(READ_SIZE);
  buf->len = READ_SIZE;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct proc *p = s->data;
  int is_out = s == (uv_stream_t *)&p->out_pipe;
  if (nread < 0) {
    free(buf->base);
    uv_read_stop(s);
    if (is_out)
      p->out_eof = 1;
    else
      p->err_eof = 1;
    maybe_finish(p);
    return;
  }
  size_t n = (size_t)nread;
  if (is_out) {
    size_t room = p->out_cap - p->out_len;
    if (n > room) {
      p->out_truncated = 1;
      n = room;
    }
    memcpy(p->out + p->out_len, buf->base, n);
    p->out_len += n;
  } else {
    /* keep the last err_cap bytes: the buffer holds twice that, and is
     * shifted when full */
    if (n >= p->err_cap) {
      memcpy(p->err, buf->base + n - p->err_cap, p->err_cap);
      p->err_len = p->err_cap;
    } else {
      if (p->err_len + n > 2 * p->err_cap) {
        memmove(p->err, p->err + p->err_len - (p->err_cap - n), p->err_cap - n);
        p->err_len = p->err_cap - n;
      }
      memcpy(p->err + p->err_len, buf->base, n);
      p->err_len += n;
    }
  }
  free(buf->base);
}

int proc_spawn(uv_loop_t *loop, const char *file, char *const *args, size_t out_cap, size_t err_cap,
               proc_done_fn done, void *ud, struct proc **out, int *pid, char **err) {
  struct proc *p = xcalloc(1, sizeof(*p));
  p->done = done;
  p->ud = ud;
  p->out_cap = out_cap;
  p->err_cap = err_cap;
  p->out = xmalloc(out_cap + 1);
  p->err = xmalloc(2 * err_cap + 1);
  uv_pipe_init(loop, &p->out_pipe, 0);
  uv_pipe_init(loop, &p->err_pipe, 0);
  uv_timer_init(loop, &p->grace);
  p->out_pipe.data = p->err_pipe.data = p->grace.data = p->process.data = p;
  p->open_handles = 4;

  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&p->out_pipe;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&p->err_pipe;
  uv_process_options_t o;
  memset(&o, 0, sizeof(o));
  o.file = file;
  o.args = (char **)args;
  o.exit_cb = on_exit_cb;
  o.stdio = stdio;
  o.stdio_count = 3;
  /* its own session: a Ctrl-C meant for the server does not interrupt the
   * backups it waits for on shutdown */
  o.flags = UV_PROCESS_DETACHED;
  int rc = uv_spawn(loop, &p->process, &o);
  if (rc < 0) {
    *err = xasprintf("unable to start '%s': %s", file, uv_strerror(rc));
    p->finished = 1;
    close_all(p);
    return -1;
  }
  uv_read_start((uv_stream_t *)&p->out_pipe, on_alloc, on_read);
  uv_read_start((uv_stream_t *)&p->err_pipe, on_alloc, on_read);
  *out = p;
  *pid = p->process.pid;
  return 0;
}

const char *proc_stderr(const struct proc *p, size_t *len) {
  *len = p->err_len;
  return p->err;
}

int proc_kill(struct proc *p, int sig) {
  if (p->exited)
    return 0;
  return uv_process_kill(&p->process, sig);
}
