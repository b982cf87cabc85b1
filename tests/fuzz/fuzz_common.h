/* Shared by the libFuzzer targets in tests/fuzz/: an in-memory sink (a
 * real sink plugin descriptor whose objects live in memory), a repository
 * created on it with the engine's own repo_open, and a quiet log.
 *
 * The repository's id is set to FUZZ_REPO_ID after it is created, so seed
 * inputs (manifests, key objects) can name it. */
#ifndef TESTS_FUZZ_COMMON_H
#define TESTS_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "repo/repo.h"

#define FUZZ_REPO_ID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* Abort (a finding) with a message when cond is false: for invariants the
 * targets check beyond "no crash". */
#define FUZZ_CHECK(cond, ...)                                                                      \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                           \
  } while (0)
void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

/* Log only errors (the parsers warn about what they refuse). */
void fuzz_quiet(void);

/* An in-memory sink instance, and a repository sink holding a new one. */
struct memsink;
struct memsink *memsink_of(struct repo *r);
struct repo_sink *fuzz_sink_new(void);
struct memsink *memsink_of_sink(struct repo_sink *s);
void fuzz_sink_free(struct repo_sink *s);
void memsink_put(struct memsink *m, const char *name, const void *data, size_t len);
void memsink_del(struct memsink *m, const char *name);
/* Remove every object whose name starts with prefix. */
void memsink_clear(struct memsink *m, const char *prefix);

/* A repository on a new in-memory sink, created by repo_open (encryption
 * none when crypto is NULL; compression zstd). Aborts on failure. */
struct repo *fuzz_repo_new(const struct engine_plugin *crypto, const char *pass);
void fuzz_repo_free(struct repo *r);

/* Put a new, empty index in r (freeing the old one). */
void fuzz_repo_reset_index(struct repo *r);

#endif
