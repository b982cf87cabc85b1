/* Parsers for the value syntaxes of the configuration, shared with the
 * command line (--lock-wait): sizes, durations, booleans. */
#ifndef CORE_CONFIG_VALUES_H
#define CORE_CONFIG_VALUES_H

#include <stdint.h>

/* Each returns 0, or -1 when s is not of the form. */
int config_parse_size(const char *s, uint64_t *bytes); /* "512", "64KiB", "16MiB", "1G", "2GB" */
int config_parse_duration(const char *s,
                          int64_t *ms);       /* "500ms", "30s", "5m", "2h", "7d", "2w", "1y" */
int config_parse_bool(const char *s, int *b); /* true/false/yes/no/on/off */

#endif
