/* Cron expressions: the 5-field "minute hour day-of-month month day-of-week"
 * syntax of Vixie cron (numbers, '*', ranges a-b, steps /n, lists, month and
 * weekday names, day-of-week 0 and 7 both Sunday) and the @hourly/@daily/
 * @weekly/@monthly/@yearly shortcuts. Parsed into bit sets shared by the
 * scheduler of `engine serve` (matching, next run) and `engine schedule`
 * (translation to systemd OnCalendar=). */
#ifndef CORE_UTIL_CRON_H
#define CORE_UTIL_CRON_H

#include <stdint.h>
#include <time.h>

enum cron_field { CRON_MINUTE, CRON_HOUR, CRON_MDAY, CRON_MONTH, CRON_WDAY, CRON_NFIELDS };

struct cron_expr {
  uint64_t minutes; /* bit m set: minute m (0..59) matches */
  uint32_t hours;   /* 0..23 */
  uint32_t mdays;   /* 1..31 */
  uint16_t months;  /* 1..12 */
  uint8_t wdays;    /* 0..6, Sunday 0 (a 7 in the text sets bit 0) */
  /* The field was written as exactly "*" (every value). */
  unsigned char any[CRON_NFIELDS];
  /* Vixie cron's rule: when day-of-month or day-of-week starts with '*'
   * (also "*\/2") both must match, otherwise either one is enough. */
  unsigned char mday_star, wday_star;
};

/* Parse; on error returns -1 and *err (malloc'd) names the expression, the
 * field and what was expected. Expressions that can never match (such as
 * "0 0 30 2 *") are refused too. */
int cron_parse(const char *text, struct cron_expr *out, char **err);

/* Does the minute described by the broken-down time match? (seconds ignored) */
int cron_matches(const struct cron_expr *c, const struct tm *t);

/* The first minute strictly after `after` (local time, like cron) that
 * matches. Local times skipped by a daylight-saving change never match; a
 * repeated hour matches once. Returns 0, or -1 when nothing matches within
 * the next 28 years. */
int cron_next(const struct cron_expr *c, time_t after, time_t *next);

/* The systemd OnCalendar= form of a cron expression ("m h dom mon dow" ->
 * "DOW *-MON-DOM HH:MM:00"): 0, or -1 with *err for expressions systemd
 * cannot express (both day-of-month and day-of-week restricted). */
int cron_to_oncalendar(const char *cron, char **out, char **err);

#endif
