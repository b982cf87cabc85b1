/* Prometheus metrics in the text exposition format 0.0.4: a set of samples
 * grouped in families (HELP and TYPE once each), rendered for `engine
 * serve`'s /metrics and for `engine run --metrics-file` (a node_exporter
 * textfile, written atomically). A previous textfile can be read back, so a
 * run carries forward what it cannot measure itself (counters, the last
 * success after a failed run). Label values are escaped as the format
 * requires; families keep the order they were declared in, samples the
 * order they were added. Not thread-safe (one owner). */
#ifndef CORE_OPS_METRICS_H
#define CORE_OPS_METRICS_H

#include <stddef.h>

struct metrics;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* Declare a family (type "gauge" or "counter"); declaring it again does
 * nothing. Samples of an undeclared family are refused. */
void metrics_family(struct metrics *m, const char *name, const char *type, const char *help);

/* Set the sample name{labels} (labels: NULL-terminated name, value pairs;
 * none is just NULL) to value, replacing a sample with the same labels. */
void metrics_set(struct metrics *m, const char *name, double value, ...) __attribute__((sentinel));

/* The value of name{labels} (same label order as given when set); 0 and
 * *found 0 when there is none. */
double metrics_get(const struct metrics *m, const char *name, int *found, ...)
    __attribute__((sentinel));

/* The exposition text (malloc'd, NUL-terminated; *len its length). */
char *metrics_text(const struct metrics *m, size_t *len);

/* Write the text to path atomically: a temporary file in the same
 * directory, fsync, rename (node_exporter must never read half a file).
 * Returns 0, or -1 with *err. */
int metrics_write_file(const struct metrics *m, const char *path, char **err);

/* Samples read from exposition text (comments skipped; families
 * undeclared, so only metrics_get works on the result). Lines that are not
 * samples are ignored. */
struct metrics *metrics_parse(const char *text, size_t len);

/* The text of path parsed, or NULL when it cannot be read. */
struct metrics *metrics_read_file(const char *path);

#endif
