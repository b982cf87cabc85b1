/* Retention policy (`engine forget`): fixed UTC calendars whose expected keep sets and reasons
 * were derived by hand from restic's `forget --keep-*` rules (ApplyPolicy). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "repo/retention.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static int64_t utc(int y, int mo, int d, int h, int mi, int s) {
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return (int64_t)timegm(&tm);
}

static struct retention_snapshot snap(const char *id, int64_t t) {
  struct retention_snapshot s = {.id = id, .time = t, .tags = NULL, .n_tags = 0};
  return s;
}

/* expected: NULL-terminated reasons, or NULL for "forget this snapshot". */
static void expect_decision(const struct retention_snapshot *s, const struct retention_decision *d,
                            const char *const *expected) {
  if (!expected) {
    if (d->keep)
      fail_msg("snapshot '%s' kept (first reason '%s'), expected it to be forgotten", s->id,
               d->n_reasons ? d->reasons[0] : "-");
    assert_int_equal(d->n_reasons, 0);
    assert_null(d->reasons);
    return;
  }
  if (!d->keep)
    fail_msg("snapshot '%s' forgotten, expected it to be kept for '%s'", s->id, expected[0]);
  size_t n = 0;
  while (expected[n])
    n++;
  if (d->n_reasons != n) {
    for (size_t i = 0; i < d->n_reasons; i++)
      print_message("  '%s' reason %zu: %s\n", s->id, i, d->reasons[i]);
    fail_msg("snapshot '%s': %zu reasons, expected %zu", s->id, d->n_reasons, n);
  }
  for (size_t i = 0; i < n; i++) {
    if (strcmp(d->reasons[i], expected[i]) != 0)
      fail_msg("snapshot '%s' reason %zu is '%s', expected '%s'", s->id, i, d->reasons[i],
               expected[i]);
  }
}

/* Apply p and compare every decision with want[i] (parallel to snaps). */
static void check(const struct retention_policy *p, const struct retention_snapshot *snaps,
                  size_t n, const char *const *const *want) {
  struct retention_decision *out = calloc(n ? n : 1, sizeof(*out));
  assert_non_null(out);
  char *err = NULL;
  int rc = retention_apply(p, snaps, n, out, &err);
  if (rc != 0)
    fail_msg("retention_apply failed: %s", err ? err : "(no message)");
  assert_null(err);
  for (size_t i = 0; i < n; i++)
    expect_decision(&snaps[i], &out[i], want[i]);
  retention_decisions_free(out, n);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(out[i].keep, 0);
    assert_null(out[i].reasons);
  }
  free(out);
}

static void expect_error(const struct retention_policy *p, const struct retention_snapshot *snaps,
                         size_t n, const char *substring) {
  struct retention_decision out[8];
  assert_true(n <= ARRAY_LEN(out));
  char *err = NULL;
  assert_int_equal(retention_apply(p, snaps, n, out, &err), -1);
  assert_non_null(err);
  if (!strstr(err, substring))
    fail_msg("error '%s' does not mention '%s'", err, substring);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(out[i].keep, 0);
    assert_null(out[i].reasons);
  }
  free(err);
}

static const char *const R_LAST[] = {"last snapshot", NULL};
static const char *const R_HOURLY[] = {"hourly snapshot", NULL};
static const char *const R_OLDEST_HOURLY[] = {"oldest hourly snapshot", NULL};
static const char *const R_DAILY[] = {"daily snapshot", NULL};
static const char *const R_OLDEST_DAILY[] = {"oldest daily snapshot", NULL};
static const char *const R_WEEKLY[] = {"weekly snapshot", NULL};
static const char *const R_OLDEST_WEEKLY[] = {"oldest weekly snapshot", NULL};
static const char *const R_MONTHLY[] = {"monthly snapshot", NULL};
static const char *const R_YEARLY[] = {"yearly snapshot", NULL};
static const char *const R_LAST_DAILY[] = {"last snapshot", "daily snapshot", NULL};
static const char *const R_MONTHLY_YEARLY[] = {"monthly snapshot", "yearly snapshot", NULL};

static void test_utc_helper_matches_known_epochs(void **state) {
  (void)state;
  /* Guards the fixtures below against a broken timegm. */
  assert_int_equal(utc(2020, 12, 31, 0, 0, 0), 1609372800);
  assert_int_equal(utc(2024, 12, 30, 0, 0, 0), 1735516800);
}

static void test_daily_keeps_newest_of_each_day(void **state) {
  (void)state;
  struct retention_snapshot s[] = {
      snap("d1-0800", utc(2024, 3, 1, 8, 0, 0)),    snap("d1-1200", utc(2024, 3, 1, 12, 0, 0)),
      snap("d1-2000", utc(2024, 3, 1, 20, 0, 0)),   snap("d2-0900", utc(2024, 3, 2, 9, 0, 0)),
      snap("d2-2359", utc(2024, 3, 2, 23, 59, 59)), snap("d3-0000", utc(2024, 3, 3, 0, 0, 0)),
  };
  struct retention_policy p = {.keep_daily = 2};
  const char *const *want2[] = {NULL, NULL, NULL, NULL, R_DAILY, R_DAILY};
  check(&p, s, ARRAY_LEN(s), want2);

  /* Only three days exist, so the rule has buckets to spare: restic then also keeps the oldest
   * snapshot, which shares 2024-03-01 with the kept d1-2000. */
  p.keep_daily = 5;
  const char *const *want5[] = {R_OLDEST_DAILY, NULL, R_DAILY, NULL, R_DAILY, R_DAILY};
  check(&p, s, ARRAY_LEN(s), want5);
}

/* restic doc/060_forget.rst: one backup every Sunday for 12 weeks, `forget --keep-daily 4`
 * keeps the four most recent Sundays (8f8018c0, 59403279, dfee9fb4, e1ae2f40). */
static void test_restic_documentation_keep_daily_4(void **state) {
  (void)state;
  struct retention_snapshot s[] = {
      snap("0a1f9759", utc(2019, 9, 1, 11, 0, 0)),   snap("46cfe4d5", utc(2019, 9, 8, 11, 0, 0)),
      snap("f6b1f037", utc(2019, 9, 15, 11, 0, 0)),  snap("eb430a5d", utc(2019, 9, 22, 11, 0, 0)),
      snap("8cf1cb9a", utc(2019, 9, 29, 11, 0, 0)),  snap("5d33b116", utc(2019, 10, 6, 11, 0, 0)),
      snap("b9553125", utc(2019, 10, 13, 11, 0, 0)), snap("e1a7b58b", utc(2019, 10, 20, 11, 0, 0)),
      snap("8f8018c0", utc(2019, 10, 27, 11, 0, 0)), snap("59403279", utc(2019, 11, 3, 11, 0, 0)),
      snap("dfee9fb4", utc(2019, 11, 10, 11, 0, 0)), snap("e1ae2f40", utc(2019, 11, 17, 11, 0, 0)),
  };
  struct retention_policy p = {.keep_daily = 4};
  const char *const *want[] = {NULL, NULL, NULL,    NULL,    NULL,    NULL,
                               NULL, NULL, R_DAILY, R_DAILY, R_DAILY, R_DAILY};
  check(&p, s, ARRAY_LEN(s), want);
}

static void test_last_and_daily_reasons_union(void **state) {
  (void)state;
  struct retention_snapshot s[] = {
      snap("d1-10", utc(2023, 5, 1, 10, 0, 0)), snap("d1-18", utc(2023, 5, 1, 18, 0, 0)),
      snap("d2-09", utc(2023, 5, 2, 9, 0, 0)),  snap("d2-21", utc(2023, 5, 2, 21, 0, 0)),
      snap("d3-12", utc(2023, 5, 3, 12, 0, 0)),
  };
  struct retention_policy p = {.keep_last = 2, .keep_daily = 3};
  /* d3-12 and d2-21 are both the two newest and the newest of their day; d2-09 is neither;
   * d1-18 takes the third day; d1-10 finds both counts spent, so no "oldest" either. */
  const char *const *want[] = {NULL, R_DAILY, NULL, R_LAST_DAILY, R_LAST_DAILY};
  check(&p, s, ARRAY_LEN(s), want);
}

static void test_hourly_boundaries(void **state) {
  (void)state;
  struct retention_snapshot s[] = {
      snap("10:00", utc(2022, 7, 1, 10, 0, 0)),      snap("10:30", utc(2022, 7, 1, 10, 30, 0)),
      snap("10:59:59", utc(2022, 7, 1, 10, 59, 59)), snap("11:00", utc(2022, 7, 1, 11, 0, 0)),
      snap("12:15", utc(2022, 7, 1, 12, 15, 0)),
  };
  struct retention_policy p = {.keep_hourly = 2};
  const char *const *want2[] = {NULL, NULL, NULL, R_HOURLY, R_HOURLY};
  check(&p, s, ARRAY_LEN(s), want2);

  p.keep_hourly = 4;
  const char *const *want4[] = {R_OLDEST_HOURLY, NULL, R_HOURLY, R_HOURLY, R_HOURLY};
  check(&p, s, ARRAY_LEN(s), want4);
}

/* ISO 8601: 2020-12-28 (Mon) .. 2021-01-03 (Sun) is 2020-W53; 2021-01-04 starts 2021-W01;
 * 2024-12-30 (Mon) .. 2025-01-05 (Sun) is 2025-W01; 2024-12-29 (Sun) is 2024-W52. A bucket
 * keyed on the calendar year would split the first and merge the second wrongly. */
static void test_iso_week_year_boundaries(void **state) {
  (void)state;
  struct retention_snapshot s[] = {
      snap("2020-12-28", utc(2020, 12, 28, 12, 0, 0)),
      snap("2020-12-31", utc(2020, 12, 31, 12, 0, 0)),
      snap("2021-01-03", utc(2021, 1, 3, 23, 0, 0)),
      snap("2021-01-04", utc(2021, 1, 4, 1, 0, 0)),
      snap("2024-12-29", utc(2024, 12, 29, 12, 0, 0)),
      snap("2024-12-30", utc(2024, 12, 30, 12, 0, 0)),
      snap("2025-01-05", utc(2025, 1, 5, 23, 59, 59)),
      snap("2025-01-06", utc(2025, 1, 6, 0, 0, 0)),
  };
  struct retention_policy p = {.keep_weekly = -1};
  /* Unlimited always has buckets to spare, so the oldest snapshot is kept too; "oldest" proves
   * 2020-12-28 shares 2020-W53 with the kept 2021-01-03. */
  const char *const *want_all[] = {R_OLDEST_WEEKLY, NULL, R_WEEKLY, R_WEEKLY,
                                   R_WEEKLY,        NULL, R_WEEKLY, R_WEEKLY};
  check(&p, s, ARRAY_LEN(s), want_all);

  /* 2025-W02, 2025-W01 (2025-01-05 beats 2024-12-30), 2024-W52. */
  p.keep_weekly = 3;
  const char *const *want3[] = {NULL, NULL, NULL, NULL, R_WEEKLY, NULL, R_WEEKLY, R_WEEKLY};
  check(&p, s, ARRAY_LEN(s), want3);
}

static void test_iso_week_53_of_2015(void **state) {
  (void)state;
  /* 2016-01-01 (Fri) and 2016-01-03 (Sun) belong to 2015-W53; 2016-01-04 is 2016-W01. */
  struct retention_snapshot s[] = {
      snap("2015-12-28", utc(2015, 12, 28, 0, 0, 0)),
      snap("2016-01-01", utc(2016, 1, 1, 9, 0, 0)),
      snap("2016-01-03", utc(2016, 1, 3, 9, 0, 0)),
      snap("2016-01-04", utc(2016, 1, 4, 9, 0, 0)),
  };
  /* Two weeks exist, so a count of 3 has one to spare and keeps the oldest snapshot too;
   * "oldest" proves 2015-12-28 shares 2015-W53 with the kept 2016-01-03. */
  struct retention_policy p = {.keep_weekly = 3};
  const char *const *want[] = {R_OLDEST_WEEKLY, NULL, R_WEEKLY, R_WEEKLY};
  check(&p, s, ARRAY_LEN(s), want);
}

static void test_month_and_year_boundaries(void **state) {
  (void)state;
  struct retention_snapshot s[] = {
      snap("2022-12-31", utc(2022, 12, 31, 23, 59, 59)),
      snap("2023-01-01", utc(2023, 1, 1, 0, 0, 0)),
      snap("2023-01-31", utc(2023, 1, 31, 23, 59, 59)),
      snap("2023-02-01", utc(2023, 2, 1, 0, 0, 0)),
      snap("2023-02-28", utc(2023, 2, 28, 12, 0, 0)),
  };
  struct retention_policy p = {.keep_monthly = 2};
  const char *const *want_m[] = {NULL, NULL, R_MONTHLY, NULL, R_MONTHLY};
  check(&p, s, ARRAY_LEN(s), want_m);

  p.keep_monthly = 0;
  p.keep_yearly = 2;
  const char *const *want_y[] = {R_YEARLY, NULL, NULL, NULL, R_YEARLY};
  check(&p, s, ARRAY_LEN(s), want_y);

  p.keep_monthly = 2;
  const char *const *want_my[] = {R_YEARLY, NULL, R_MONTHLY, NULL, R_MONTHLY_YEARLY};
  check(&p, s, ARRAY_LEN(s), want_my);
}

static void test_within_measured_from_newest(void **state) {
  (void)state;
  /* Years in the past: a "now"-based window would keep nothing. The cutoff is the newest
   * snapshot minus 7 days, exclusive, as restic's time.After. */
  struct retention_snapshot s[] = {
      snap("06-01", utc(2021, 6, 1, 0, 0, 0)),
      snap("06-03-exact", utc(2021, 6, 3, 12, 0, 0)),
      snap("06-03-plus1s", utc(2021, 6, 3, 12, 0, 1)),
      snap("06-05", utc(2021, 6, 5, 0, 0, 0)),
      snap("06-10", utc(2021, 6, 10, 12, 0, 0)),
  };
  static const char *const r7d[] = {"within 7d", NULL};
  struct retention_policy p = {.keep_within_s = 7 * 86400};
  const char *const *want[] = {NULL, NULL, r7d, r7d, r7d};
  check(&p, s, ARRAY_LEN(s), want);

  /* Durations that are not whole days keep a readable spelling. */
  static const char *const r36h[] = {"within 1d12h", NULL};
  p.keep_within_s = 36 * 3600;
  const char *const *want36[] = {NULL, NULL, NULL, NULL, r36h};
  check(&p, s, ARRAY_LEN(s), want36);

  static const char *const r90m[] = {"within 5d12h1min30s", NULL};
  p.keep_within_s = 5 * 86400 + 12 * 3600 + 90;
  const char *const *want90[] = {NULL, NULL, NULL, r90m, r90m};
  check(&p, s, ARRAY_LEN(s), want90);
}

static void test_within_ignores_future_snapshot(void **state) {
  (void)state;
  /* A snapshot dated ten years ahead (clock skew) is kept but does not become the reference:
   * restic measures from the newest snapshot that is not in the future. */
  int64_t future = (int64_t)time(NULL) + 10 * 366 * 86400;
  struct retention_snapshot s[] = {
      snap("old", utc(2021, 6, 1, 0, 0, 0)),
      snap("recent", utc(2021, 6, 5, 0, 0, 0)),
      snap("newest", utc(2021, 6, 10, 12, 0, 0)),
      snap("future", future),
  };
  static const char *const r7d[] = {"within 7d", NULL};
  struct retention_policy p = {.keep_within_s = 7 * 86400};
  const char *const *want[] = {NULL, r7d, r7d, r7d};
  check(&p, s, ARRAY_LEN(s), want);
}

static void test_keep_tags(void **state) {
  (void)state;
  const char *const keep_only[] = {"keep"};
  const char *const both[] = {"audit", "keep"};
  const char *const other[] = {"nightly"};
  struct retention_snapshot s[] = {
      {.id = "t-both", .time = utc(2020, 1, 1, 0, 0, 0), .tags = both, .n_tags = 2},
      {.id = "t-other", .time = utc(2020, 1, 2, 0, 0, 0), .tags = other, .n_tags = 1},
      {.id = "t-keep", .time = utc(2020, 1, 3, 0, 0, 0), .tags = keep_only, .n_tags = 1},
      {.id = "t-none", .time = utc(2020, 1, 4, 0, 0, 0), .tags = NULL, .n_tags = 0},
      {.id = "t-newest", .time = utc(2020, 1, 5, 0, 0, 0), .tags = other, .n_tags = 1},
  };
  const char *const policy_tags[] = {"keep", "audit"};
  struct retention_policy p = {.keep_last = 1, .keep_tags = policy_tags, .n_keep_tags = 2};
  static const char *const r_both[] = {"has tags [keep]", "has tags [audit]", NULL};
  static const char *const r_keep[] = {"has tags [keep]", NULL};
  const char *const *want[] = {r_both, NULL, r_keep, NULL, R_LAST};
  check(&p, s, ARRAY_LEN(s), want);

  /* restic: the empty tag matches untagged snapshots only. */
  const char *const untagged[] = {""};
  struct retention_policy pu = {.keep_tags = untagged, .n_keep_tags = 1};
  static const char *const r_untagged[] = {"has tags []", NULL};
  const char *const *want_u[] = {NULL, NULL, NULL, r_untagged, NULL};
  check(&pu, s, ARRAY_LEN(s), want_u);

  /* A tags-only policy that matches nothing would empty the repository: refused. */
  const char *const missing[] = {"gone", "lost"};
  struct retention_policy pm = {.keep_tags = missing, .n_keep_tags = 2};
  expect_error(&pm, s, ARRAY_LEN(s),
               "none of the 5 snapshots has any of the keep_tags [gone, lost]; refusing to "
               "forget every snapshot");
}

static void test_unlimited(void **state) {
  (void)state;
  char ids[20][16];
  struct retention_snapshot s[20];
  const char *const *want_daily[20];
  const char *const *want_last[20];
  for (int i = 0; i < 20; i++) {
    snprintf(ids[i], sizeof(ids[i]), "s%02d", i);
    /* Two per day over ten days: the evening one (odd i) is the newest of its day. */
    s[i] = snap(ids[i], utc(2021, 3, 1 + i / 2, i % 2 ? 20 : 8, 0, 0));
    want_daily[i] = i % 2 ? R_DAILY : NULL;
    want_last[i] = R_LAST;
  }
  want_daily[0] = R_OLDEST_DAILY;
  struct retention_policy p = {.keep_daily = -1};
  check(&p, s, 20, want_daily);

  struct retention_policy pl = {.keep_last = -1};
  check(&pl, s, 20, want_last);
}

static void test_combined_policy_exact_reasons(void **state) {
  (void)state;
  const char *const x[] = {"x"};
  /* Given out of order on purpose: decisions must come back in input order. */
  struct retention_snapshot s[] = {
      {.id = "D", .time = utc(2024, 2, 29, 12, 0, 0)}, /* Thu, 2024-W09, February */
      {.id = "F", .time = utc(2023, 12, 31, 12, 0, 0), .tags = x, .n_tags = 1},
      {.id = "B", .time = utc(2024, 3, 3, 22, 0, 0)},                         /* Sun, 2024-W09 */
      {.id = "A", .time = utc(2024, 3, 4, 10, 0, 0), .tags = x, .n_tags = 1}, /* Mon, W10 */
      {.id = "E", .time = utc(2024, 2, 20, 12, 0, 0)},                        /* Tue, 2024-W08 */
      {.id = "C", .time = utc(2024, 3, 3, 8, 0, 0)}, /* before the 1d window */
  };
  const char *const tags[] = {"x"};
  struct retention_policy p = {.keep_last = 1,
                               .keep_daily = 2,
                               .keep_weekly = 2,
                               .keep_monthly = 2,
                               .keep_yearly = 1,
                               .keep_within_s = 86400,
                               .keep_tags = tags,
                               .n_keep_tags = 1};
  static const char *const rA[] = {
      "has tags [x]",    "within 1d",        "last snapshot",   "daily snapshot",
      "weekly snapshot", "monthly snapshot", "yearly snapshot", NULL};
  static const char *const rB[] = {"within 1d", "daily snapshot", "weekly snapshot", NULL};
  static const char *const rF[] = {"has tags [x]", NULL};
  const char *const *want[] = {R_MONTHLY, rF, rB, rA, NULL, NULL};
  check(&p, s, ARRAY_LEN(s), want);
}

static void test_equal_times_break_ties_by_id(void **state) {
  (void)state;
  int64_t t = utc(2022, 1, 1, 0, 0, 0);
  struct retention_snapshot ab[] = {snap("aaaa", t), snap("bbbb", t)};
  struct retention_snapshot ba[] = {snap("bbbb", t), snap("aaaa", t)};
  struct retention_policy p = {.keep_last = 1};
  const char *const *want_ab[] = {NULL, R_LAST};
  const char *const *want_ba[] = {R_LAST, NULL};
  check(&p, ab, 2, want_ab);
  check(&p, ba, 2, want_ba);
}

/* Two runs in the same second: the manifest written later is the newer
 * one, whatever the ids (keep_last must never drop the newest snapshot). */
static void test_equal_times_ordered_by_creation(void **state) {
  (void)state;
  int64_t t = utc(2022, 1, 1, 0, 0, 0);
  struct retention_snapshot older = snap("ffff", t), newer = snap("0000", t);
  older.created_ns = t * 1000000000 + 100;
  newer.created_ns = t * 1000000000 + 900;
  struct retention_snapshot on[] = {older, newer};
  struct retention_snapshot no[] = {newer, older};
  struct retention_policy p = {.keep_last = 1};
  const char *const *want_on[] = {NULL, R_LAST};
  const char *const *want_no[] = {R_LAST, NULL};
  check(&p, on, 2, want_on);
  check(&p, no, 2, want_no);
}

static void test_empty_policy_refused(void **state) {
  (void)state;
  struct retention_snapshot s[] = {snap("only", utc(2022, 1, 1, 0, 0, 0))};
  struct retention_policy p;
  memset(&p, 0, sizeof(p));
  const char *msg = "no retention rule set; refusing to forget every snapshot";
  expect_error(&p, s, 1, msg);
  expect_error(&p, NULL, 0, msg);
  /* A tag list of length zero is no rule either. */
  const char *const tags[] = {"x"};
  p.keep_tags = tags;
  expect_error(&p, s, 1, msg);
}

static void test_invalid_input_rejected(void **state) {
  (void)state;
  struct retention_snapshot s[] = {snap("a", utc(2022, 1, 1, 0, 0, 0)),
                                   snap("b", utc(2022, 1, 2, 0, 0, 0))};
  struct retention_policy p = {.keep_daily = -2};
  expect_error(&p, s, 2, "keep_daily is -2");

  struct retention_policy pw = {.keep_within_s = -5};
  expect_error(&pw, s, 2, "keep_within is -5 seconds");

  struct retention_policy pl = {.keep_last = 1};
  struct retention_snapshot noid[] = {snap("a", 1), snap(NULL, 2)};
  expect_error(&pl, noid, 2, "snapshot #1 has no id");

  struct retention_snapshot huge[] = {snap("a", 1), snap("far", INT64_MAX)};
  expect_error(&pl, huge, 2, "snapshot 'far' (#1): time 9223372036854775807 is outside");

  struct retention_snapshot badtags[] = {{.id = "t", .time = 1, .tags = NULL, .n_tags = 2}};
  expect_error(&pl, badtags, 1, "snapshot 't' (#0): 2 tags announced");

  /* No snapshots at all is not an error: nothing to decide. */
  char *err = NULL;
  assert_int_equal(retention_apply(&pl, NULL, 0, NULL, &err), 0);
  assert_null(err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_utc_helper_matches_known_epochs),
      cmocka_unit_test(test_daily_keeps_newest_of_each_day),
      cmocka_unit_test(test_restic_documentation_keep_daily_4),
      cmocka_unit_test(test_last_and_daily_reasons_union),
      cmocka_unit_test(test_hourly_boundaries),
      cmocka_unit_test(test_iso_week_year_boundaries),
      cmocka_unit_test(test_iso_week_53_of_2015),
      cmocka_unit_test(test_month_and_year_boundaries),
      cmocka_unit_test(test_within_measured_from_newest),
      cmocka_unit_test(test_within_ignores_future_snapshot),
      cmocka_unit_test(test_keep_tags),
      cmocka_unit_test(test_unlimited),
      cmocka_unit_test(test_combined_policy_exact_reasons),
      cmocka_unit_test(test_equal_times_break_ties_by_id),
      cmocka_unit_test(test_equal_times_ordered_by_creation),
      cmocka_unit_test(test_empty_policy_refused),
      cmocka_unit_test(test_invalid_input_rejected),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
