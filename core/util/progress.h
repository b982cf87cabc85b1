/* Progress display for long operations: one line on stderr, redrawn in
 * place, only when enabled (a terminal, or --progress always). */
#ifndef CORE_UTIL_PROGRESS_H
#define CORE_UTIL_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

struct progress;
struct progress *progress_new(int enabled);
/* done/total bytes (total 0 = unknown), items so far, new bytes stored. */
void progress_update(struct progress *p, uint64_t done, uint64_t total, uint64_t items,
                     uint64_t new_bytes);
void progress_finish(struct progress *p); /* clear the line */
void progress_free(struct progress *p);

/* "1.5 GiB" into buf */
const char *format_bytes(uint64_t n, char *buf, size_t len);

#endif
