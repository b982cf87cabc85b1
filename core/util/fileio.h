/* Small files written whole: state, metrics textfiles, job records. */
#ifndef CORE_UTIL_FILEIO_H
#define CORE_UTIL_FILEIO_H

#include <stddef.h>
#include <sys/types.h>

/* Replace path with data atomically: a temporary file in the same
 * directory (mode `mode`), fsync, rename; a reader sees the old content or
 * the new, never a part. Returns 0, or -1 with *err naming the file. */
int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode, char **err);

/* The whole content of a regular file of at most max bytes (malloc'd,
 * NUL-terminated; *len its length). Returns 0, or -1 with *err (errno
 * ENOENT kept for the caller to tell "absent"). */
int file_read_all(const char *path, size_t max, char **out, size_t *len, char **err);

/* mkdir -p with mode for the directories it creates. 0, or -1 with *err. */
int file_mkdirs(const char *path, mode_t mode, char **err);

#endif
