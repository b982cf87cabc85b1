/* Secret references: "env:NAME" or "file:/path". A secret's value never
 * appears in a message. */
#ifndef CORE_UTIL_SECRET_H
#define CORE_UTIL_SECRET_H

#include <stddef.h>

/* Resolve ref. *out is NUL-terminated and must be released with
 * secret_wipe_free. On failure returns -1 and *err (malloc'd) names the
 * reference (never the value). One trailing newline of a file is removed. */
int secret_resolve(const char *ref, char **out, size_t *len, char **err);
void secret_wipe_free(char *buf, size_t len);

/* Called first thing in main, before any secret is read: the process is made
 * non-dumpable (no core file; its /proc files, environ and memory among
 * them, belong to root, so other processes of the same user cannot read
 * them or ptrace it) and RLIMIT_CORE is set to 0 (soft and hard, inherited
 * by children such as pg_dump, which hold secrets too). Warns if either
 * fails. */
void secret_protect_process(void);

#endif
