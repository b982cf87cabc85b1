/* Cron expressions (core/util/cron.c): parsing, matching and the next-run
 * computation used by `engine serve`'s scheduler, plus the OnCalendar
 * translation of `engine schedule` built on them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "util/cron.h"
#include "repo/repo.h"

static int set_utc(void **state) {
  (void)state;
  setenv("TZ", "UTC", 1);
  tzset();
  return 0;
}

static time_t at(const char *iso) {
  int64_t t = 0;
  assert_int_equal(parse_iso_time(iso, &t), 0);
  return (time_t)t;
}

/* Next run after `after` for `expr`, as ISO 8601 UTC. */
static void expect_next(const char *expr, const char *after, const char *want) {
  struct cron_expr c;
  char *err = NULL;
  if (cron_parse(expr, &c, &err) != 0)
    fail_msg("cron_parse('%s'): %s", expr, err);
  time_t n = 0;
  assert_int_equal(cron_next(&c, at(after), &n), 0);
  char *got = iso_time((int64_t)n);
  if (strcmp(got, want) != 0)
    fail_msg("next('%s' after %s) = %s, expected %s", expr, after, got, want);
  free(got);
}

static void test_next_basic(void **state) {
  (void)state;
  expect_next("* * * * *", "2026-03-10T10:15:00Z", "2026-03-10T10:16:00Z");
  expect_next("* * * * *", "2026-03-10T10:15:59Z", "2026-03-10T10:16:00Z");
  expect_next("0 3 * * *", "2026-03-10T03:00:00Z", "2026-03-11T03:00:00Z");
  expect_next("0 3 * * *", "2026-03-10T02:59:59Z", "2026-03-10T03:00:00Z");
  expect_next("30 2 1 * *", "2026-03-10T00:00:00Z", "2026-04-01T02:30:00Z");
}

static void test_next_boundaries(void **state) {
  (void)state;
  /* month and year boundaries */
  expect_next("0 0 * * *", "2026-01-31T23:59:00Z", "2026-02-01T00:00:00Z");
  expect_next("59 23 31 12 *", "2026-12-31T23:59:00Z", "2027-12-31T23:59:00Z");
  expect_next("0 0 1 1 *", "2026-06-15T12:00:00Z", "2027-01-01T00:00:00Z");
  expect_next("* * * * *", "2026-12-31T23:59:30Z", "2027-01-01T00:00:00Z");
  /* day 31 skips the months without one */
  expect_next("0 12 31 * *", "2026-04-01T00:00:00Z", "2026-05-31T12:00:00Z");
  /* February 29th: the next leap year, and 2100 is not one */
  expect_next("0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z");
  expect_next("0 0 29 2 *", "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z");
  expect_next("0 0 28 2 *", "2028-02-28T00:00:00Z", "2029-02-28T00:00:00Z");
}

static void test_lists_ranges_steps(void **state) {
  (void)state;
  expect_next("*/15 * * * *", "2026-03-10T10:16:00Z", "2026-03-10T10:30:00Z");
  expect_next("*/15 * * * *", "2026-03-10T10:45:00Z", "2026-03-10T11:00:00Z");
  expect_next("5,35 */6 * * *", "2026-03-10T06:35:00Z", "2026-03-10T12:05:00Z");
  expect_next("10-12 8-9 * * *", "2026-03-10T08:12:00Z", "2026-03-10T09:10:00Z");
  expect_next("0 9-17/4 * * *", "2026-03-10T13:00:00Z", "2026-03-10T17:00:00Z");
  expect_next("7/20 * * * *", "2026-03-10T10:47:00Z", "2026-03-10T11:07:00Z");
  expect_next("0 0 1 jan,jul *", "2026-02-01T00:00:00Z", "2026-07-01T00:00:00Z");
  /* 2026-03-10 is a Tuesday */
  expect_next("0 4 * * mon-fri", "2026-03-13T04:00:00Z", "2026-03-16T04:00:00Z");
  expect_next("0 4 * * 1-5", "2026-03-10T04:00:00Z", "2026-03-11T04:00:00Z");
}

static void test_shortcuts_and_sunday(void **state) {
  (void)state;
  expect_next("@daily", "2026-03-10T10:15:00Z", "2026-03-11T00:00:00Z");
  expect_next("@midnight", "2026-12-31T00:00:00Z", "2027-01-01T00:00:00Z");
  expect_next("@hourly", "2026-03-10T10:15:00Z", "2026-03-10T11:00:00Z");
  expect_next("@weekly", "2026-03-10T10:15:00Z", "2026-03-15T00:00:00Z");
  expect_next("@monthly", "2026-12-15T00:00:00Z", "2027-01-01T00:00:00Z");
  expect_next("@yearly", "2026-03-10T10:15:00Z", "2027-01-01T00:00:00Z");
  /* day-of-week 0 and 7 are both Sunday (2026-03-15) */
  expect_next("0 6 * * 0", "2026-03-10T00:00:00Z", "2026-03-15T06:00:00Z");
  expect_next("0 6 * * 7", "2026-03-10T00:00:00Z", "2026-03-15T06:00:00Z");
  expect_next("0 6 * * 5-7", "2026-03-14T06:00:00Z", "2026-03-15T06:00:00Z");
  expect_next("0 6 * * sun", "2026-03-10T00:00:00Z", "2026-03-15T06:00:00Z");
  struct cron_expr a, b;
  char *err = NULL;
  assert_int_equal(cron_parse("0 0 * * 0", &a, &err), 0);
  assert_int_equal(cron_parse("0 0 * * 7", &b, &err), 0);
  assert_int_equal(a.wdays, b.wdays);
  assert_int_equal(a.wdays, 1);
}

static void test_day_or_rule(void **state) {
  (void)state;
  /* both day fields restricted: either matches (the 13th, or a Friday) */
  expect_next("0 0 13 * 5", "2026-03-10T00:00:00Z", "2026-03-13T00:00:00Z");
  expect_next("0 0 13 * 5", "2026-03-13T00:00:00Z", "2026-03-20T00:00:00Z");
  expect_next("0 0 1 * 1", "2026-03-10T00:00:00Z", "2026-03-16T00:00:00Z");
  /* a '*'-led day-of-month field ANDs: odd days that are Mondays */
  expect_next("0 0 */2 * 1", "2026-03-10T00:00:00Z", "2026-03-23T00:00:00Z");
}

static void test_matches(void **state) {
  (void)state;
  struct cron_expr c;
  char *err = NULL;
  assert_int_equal(cron_parse("*/5 9-17 * * 1-5", &c, &err), 0);
  struct tm t;
  time_t x = at("2026-03-10T09:05:00Z"); /* Tuesday */
  gmtime_r(&x, &t);
  assert_true(cron_matches(&c, &t));
  x = at("2026-03-10T09:06:00Z");
  gmtime_r(&x, &t);
  assert_false(cron_matches(&c, &t));
  x = at("2026-03-14T09:05:00Z"); /* Saturday */
  gmtime_r(&x, &t);
  assert_false(cron_matches(&c, &t));
  x = at("2026-03-10T18:00:00Z");
  gmtime_r(&x, &t);
  assert_false(cron_matches(&c, &t));
}

static void expect_bad(const char *expr, const char *needle) {
  struct cron_expr c;
  char *err = NULL;
  if (cron_parse(expr, &c, &err) == 0)
    fail_msg("cron_parse accepted '%s'", expr);
  assert_non_null(err);
  if (!strstr(err, needle))
    fail_msg("error for '%s' is '%s', expected it to mention '%s'", expr, err, needle);
  free(err);
}

static void test_errors(void **state) {
  (void)state;
  expect_bad("61 3 * * *", "minute field '61'");
  expect_bad("0 24 * * *", "hour field");
  expect_bad("0 3 * *", "expected 5 cron fields");
  expect_bad("0 3 * * * *", "expected 5 cron fields");
  expect_bad("x * * * *", "minute field 'x'");
  expect_bad("0 0 0 * *", "day-of-month");
  expect_bad("0 0 * 13 *", "month field");
  expect_bad("0 0 * * 8", "day-of-week");
  expect_bad("*/0 * * * *", "minute");
  expect_bad("5-1 * * * *", "minute");
  expect_bad("1,,2 * * * *", "minute");
  expect_bad("1, * * * *", "minute");
  expect_bad("0 0 * foo *", "month");
  expect_bad("0 0 30 2 *", "never matches");
  expect_bad("0 0 31 4,6 *", "never matches");
  expect_bad("@sometimes", "expected 5 cron fields");
}

static void test_oncalendar(void **state) {
  (void)state;
  static const char *const cases[][2] = {
      {"0 3 * * *", "*-*-* 03:00:00"},
      {"*/15 * * * *", "*-*-* *:00,15,30,45:00"},
      {"0 4 * * 1-5", "Mon,Tue,Wed,Thu,Fri *-*-* 04:00:00"},
      {"0 4 * * 0,7", "Sun *-*-* 04:00:00"},
      {"@weekly", "Sun *-*-* 00:00:00"},
      {"0 0 1 1,7 *", "*-01,07-01 00:00:00"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *out = NULL, *err = NULL;
    if (cron_to_oncalendar(cases[i][0], &out, &err) != 0)
      fail_msg("cron_to_oncalendar('%s'): %s", cases[i][0], err);
    assert_string_equal(out, cases[i][1]);
    free(out);
  }
  char *out = NULL, *err = NULL;
  assert_int_not_equal(cron_to_oncalendar("0 3 1 * 1", &out, &err), 0);
  assert_non_null(strstr(err, "day-of-month and day-of-week"));
  free(err);
}

static void test_dst_gap_skipped(void **state) {
  (void)state;
  /* Europe/Berlin: 2026-03-29 02:00 local does not exist (clocks jump to
   * 03:00); a 02:30 job runs the next day, at 02:30 CEST = 00:30Z */
  setenv("TZ", "Europe/Berlin", 1);
  tzset();
  struct cron_expr c;
  char *err = NULL;
  assert_int_equal(cron_parse("30 2 * * *", &c, &err), 0);
  time_t n = 0;
  assert_int_equal(cron_next(&c, at("2026-03-28T12:00:00Z"), &n), 0);
  char *got = iso_time((int64_t)n);
  struct tm probe;
  time_t t0 = at("2026-01-01T12:00:00Z");
  localtime_r(&t0, &probe);
  /* only meaningful where the zone database is installed */
  if (probe.tm_gmtoff == 3600)
    assert_string_equal(got, "2026-03-30T00:30:00Z");
  free(got);
  set_utc(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_next_basic),
      cmocka_unit_test(test_next_boundaries),
      cmocka_unit_test(test_lists_ranges_steps),
      cmocka_unit_test(test_shortcuts_and_sunday),
      cmocka_unit_test(test_day_or_rule),
      cmocka_unit_test(test_matches),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_oncalendar),
      cmocka_unit_test(test_dst_gap_skipped),
  };
  return cmocka_run_group_tests(tests, set_utc, NULL);
}
