/* Child processes of `engine serve` (backup jobs, snapshot listings): spawned
 * on the serve loop with uv_spawn in their own session, stdin from
 * /dev/null, stdout collected up to a cap and the tail of stderr kept, so a
 * child that crashes or floods its output cannot harm the server. The
 * environment is inherited (secrets stay out of argv). */
#ifndef CORE_SERVE_PROC_H
#define CORE_SERVE_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct proc;

struct proc_result {
  int64_t exit_status; /* valid when term_signal == 0 */
  int term_signal;     /* the signal that ended the child, or 0 */
  const char *out;     /* stdout, NUL-terminated (at most out_cap bytes) */
  size_t out_len;
  int out_truncated; /* stdout was longer than out_cap */
  const char *err;   /* the last err_cap bytes of stderr, NUL-terminated */
  size_t err_len;
};

/* Called once when the child has exited and its output is read; the proc is
 * freed right after (do not use it from then on). */
typedef void (*proc_done_fn)(void *ud, const struct proc_result *r);

/* Start file with args (args[0] is the name shown by ps; NULL-terminated).
 * Returns 0 with *out and *pid, or -1 with *err (malloc'd); done is never
 * called then. */
int proc_spawn(uv_loop_t *loop, const char *file, char *const *args, size_t out_cap, size_t err_cap,
               proc_done_fn done, void *ud, struct proc **out, int *pid, char **err);

/* What the child wrote to stderr so far (its last bytes, at most twice
 * err_cap; not NUL-terminated), e.g. to show a progress line live. */
const char *proc_stderr(const struct proc *p, size_t *len);

/* Send a signal to a child that has not been reaped yet. */
int proc_kill(struct proc *p, int sig);

#endif
