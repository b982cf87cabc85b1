/* Snapshot retention (`engine forget`): restic's ApplyPolicy, bucketed in UTC. See retention.h
 * for the rules, the reason strings and where we differ from restic. */
#include "repo/retention.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"

enum bucket_kind { B_LAST, B_HOURLY, B_DAILY, B_WEEKLY, B_MONTHLY, B_YEARLY, B_COUNT };

/* Reason strings and option names are restic's, in restic's evaluation order. */
static const char *const bucket_reason[B_COUNT] = {
    "last snapshot",   "hourly snapshot",  "daily snapshot",
    "weekly snapshot", "monthly snapshot", "yearly snapshot",
};
static const char *const bucket_option[B_COUNT] = {
    "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly",
};

struct entry {
  const struct retention_snapshot *snap;
  size_t idx; /* position in the caller's array */
  int64_t key[B_COUNT];
};

static void set_err(char **err, char *msg) {
  if (err)
    *err = msg;
  else
    free(msg);
}

static int is_leap(int64_t year) {
  return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

static int64_t days_in_year(int64_t year) {
  return is_leap(year) ? 366 : 365;
}

/* ISO 8601 week: the week belongs to the year holding its Thursday, so the first days of
 * January can fall in week 52/53 of the previous year and the last days of December in week 1
 * of the next. Returns year*100 + week like restic's yw(). */
static int64_t iso_year_week(const struct tm *tm) {
  int64_t year = (int64_t)tm->tm_year + 1900;
  int64_t weekday = (tm->tm_wday + 6) % 7; /* Monday = 0 */
  int64_t thursday_yday = tm->tm_yday - weekday + 3;
  if (thursday_yday < 0) {
    year--;
    thursday_yday += days_in_year(year);
  } else if (thursday_yday >= days_in_year(year)) {
    thursday_yday -= days_in_year(year);
    year++;
  }
  return year * 100 + thursday_yday / 7 + 1;
}

static int compute_keys(struct entry *e, size_t input_pos, char **err) {
  time_t t = (time_t)e->snap->time;
  struct tm tm;
  if ((int64_t)t != e->snap->time || !gmtime_r(&t, &tm)) {
    set_err(err, xasprintf("snapshot '%s' (#%zu): time %" PRId64
                           " is outside the range this system's calendar can represent",
                           e->snap->id, input_pos, e->snap->time));
    return -1;
  }
  int64_t year = (int64_t)tm.tm_year + 1900;
  int64_t month = tm.tm_mon + 1;
  e->key[B_YEARLY] = year;
  e->key[B_MONTHLY] = year * 100 + month;
  e->key[B_DAILY] = e->key[B_MONTHLY] * 100 + tm.tm_mday;
  e->key[B_HOURLY] = e->key[B_DAILY] * 100 + tm.tm_hour;
  e->key[B_WEEKLY] = iso_year_week(&tm);
  return 0;
}

/* Newest first; equal times by the time the manifest was written (two runs
 * in the same second: the later one is newer, as `latest` has it), then by id
 * descending, then input position, so the result never depends on the
 * order the caller listed the snapshots in (except for duplicate ids). */
static int entry_cmp(const void *a, const void *b) {
  const struct entry *x = a, *y = b;
  if (x->snap->time != y->snap->time)
    return x->snap->time > y->snap->time ? -1 : 1;
  if (x->snap->created_ns != y->snap->created_ns)
    return x->snap->created_ns > y->snap->created_ns ? -1 : 1;
  int c = strcmp(x->snap->id, y->snap->id);
  if (c != 0)
    return c > 0 ? -1 : 1;
  return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

static int policy_counts(const struct retention_policy *p, int counts[B_COUNT]) {
  counts[B_LAST] = p->keep_last;
  counts[B_HOURLY] = p->keep_hourly;
  counts[B_DAILY] = p->keep_daily;
  counts[B_WEEKLY] = p->keep_weekly;
  counts[B_MONTHLY] = p->keep_monthly;
  counts[B_YEARLY] = p->keep_yearly;
  int any = 0;
  for (int b = 0; b < B_COUNT; b++)
    any |= counts[b] != 0;
  return any;
}

static int validate_policy(const struct retention_policy *p, const int counts[B_COUNT],
                           char **err) {
  for (int b = 0; b < B_COUNT; b++) {
    if (counts[b] < -1) {
      set_err(err, xasprintf("retention policy: %s is %d; expected 0 (unset), a positive count "
                             "or -1 (unlimited)",
                             bucket_option[b], counts[b]));
      return -1;
    }
  }
  if (p->keep_within_s < 0) {
    set_err(err, xasprintf("retention policy: keep_within is %" PRId64
                           " seconds; expected 0 (unset) or a positive duration",
                           p->keep_within_s));
    return -1;
  }
  if (p->n_keep_tags > 0 && !p->keep_tags) {
    set_err(err, xasprintf("retention policy: %zu keep_tags announced but the list is missing",
                           p->n_keep_tags));
    return -1;
  }
  for (size_t i = 0; i < p->n_keep_tags; i++) {
    if (!p->keep_tags[i]) {
      set_err(err, xasprintf("retention policy: keep_tags entry #%zu is missing (NULL)", i));
      return -1;
    }
  }
  return 0;
}

static int validate_snapshot(const struct retention_snapshot *s, size_t pos, char **err) {
  if (!s->id) {
    set_err(err, xasprintf("snapshot #%zu has no id", pos));
    return -1;
  }
  if (s->n_tags > 0 && !s->tags) {
    set_err(err, xasprintf("snapshot '%s' (#%zu): %zu tags announced but the list is missing",
                           s->id, pos, s->n_tags));
    return -1;
  }
  for (size_t j = 0; j < s->n_tags; j++) {
    if (!s->tags[j]) {
      set_err(err, xasprintf("snapshot '%s' (#%zu): tag #%zu is missing (NULL)", s->id, pos, j));
      return -1;
    }
  }
  return 0;
}

/* restic's HasTags for a one-tag list: "" stands for "has no tags at all". */
static int snapshot_has_tag(const struct retention_snapshot *s, const char *tag) {
  if (tag[0] == '\0' && s->n_tags == 0)
    return 1;
  for (size_t j = 0; j < s->n_tags; j++)
    if (strcmp(s->tags[j], tag) == 0)
      return 1;
  return 0;
}

/* Days and hours like restic's duration syntax; restic has no unit below the hour and uses "m"
 * for months, so a sub-hour remainder is spelled "min"/"s" to stay unambiguous. */
static char *format_duration(int64_t s) {
  static const struct {
    int64_t secs;
    const char *unit;
  } units[] = {{86400, "d"}, {3600, "h"}, {60, "min"}, {1, "s"}};
  char buf[128];
  size_t len = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    int64_t v = s / units[i].secs;
    s %= units[i].secs;
    if (v != 0)
      len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%" PRId64 "%s", v, units[i].unit);
  }
  return xstrdup(buf);
}

/* "[a, b]", restic's TagList formatting. */
static char *format_tag_list(const char *const *tags, size_t n) {
  size_t len = 3;
  for (size_t i = 0; i < n; i++)
    len += strlen(tags[i]) + 2;
  char *out = xmalloc(len);
  char *w = out;
  *w++ = '[';
  for (size_t i = 0; i < n; i++) {
    if (i > 0) {
      *w++ = ',';
      *w++ = ' ';
    }
    size_t l = strlen(tags[i]);
    memcpy(w, tags[i], l);
    w += l;
  }
  *w++ = ']';
  *w = '\0';
  return out;
}

/* The reference point of keep_within: restic ignores snapshots dated in the future (clock skew)
 * when picking the newest one. Returns 0 when every snapshot is in the future; restic then
 * measures from the zero time, which keeps every snapshot. */
static int within_cutoff(const struct entry *sorted, size_t n, int64_t within_s, int64_t *cutoff) {
  int64_t now = (int64_t)time(NULL);
  for (size_t k = 0; k < n; k++) {
    int64_t t = sorted[k].snap->time;
    if (t <= now) {
      if (__builtin_sub_overflow(t, within_s, cutoff))
        return 0;
      return 1;
    }
  }
  return 0;
}

int retention_apply(const struct retention_policy *p, const struct retention_snapshot *snaps,
                    size_t n, struct retention_decision *out, char **err) {
  if (out)
    memset(out, 0, n * sizeof(*out));
  if (!p) {
    set_err(err, xstrdup("retention policy is missing"));
    return -1;
  }
  if (n > 0 && (!snaps || !out)) {
    set_err(err, xasprintf("retention: %zu snapshots announced but the %s array is missing", n,
                           snaps ? "decision" : "snapshot"));
    return -1;
  }
  int counts[B_COUNT];
  int any_count = policy_counts(p, counts);
  if (validate_policy(p, counts, err) != 0)
    return -1;
  if (!any_count && p->keep_within_s == 0 && p->n_keep_tags == 0) {
    set_err(err, xstrdup("no retention rule set; refusing to forget every snapshot"));
    return -1;
  }
  if (n == 0)
    return 0;

  struct entry *sorted = xcalloc(n, sizeof(*sorted));
  for (size_t i = 0; i < n; i++) {
    sorted[i].snap = &snaps[i];
    sorted[i].idx = i;
    if (validate_snapshot(&snaps[i], i, err) != 0 || compute_keys(&sorted[i], i, err) != 0) {
      free(sorted);
      return -1;
    }
  }
  qsort(sorted, n, sizeof(*sorted), entry_cmp);
  for (size_t k = 0; k < n; k++)
    sorted[k].key[B_LAST] = (int64_t)k; /* every snapshot is its own "last" bucket */

  int64_t cutoff = 0;
  int has_cutoff = 0;
  char *within_reason = NULL;
  if (p->keep_within_s > 0) {
    has_cutoff = within_cutoff(sorted, n, p->keep_within_s, &cutoff);
    char *dur = format_duration(p->keep_within_s);
    within_reason = xasprintf("within %s", dur);
    free(dur);
  }

  int64_t last_key[B_COUNT];
  int has_last[B_COUNT] = {0};
  memset(last_key, 0, sizeof(last_key));
  size_t max_reasons = p->n_keep_tags + 1 + B_COUNT;
  char **reasons = xcalloc(max_reasons, sizeof(*reasons));
  size_t kept = 0;

  for (size_t k = 0; k < n; k++) {
    const struct entry *e = &sorted[k];
    size_t nr = 0;
    for (size_t t = 0; t < p->n_keep_tags; t++) {
      if (snapshot_has_tag(e->snap, p->keep_tags[t]))
        reasons[nr++] = xasprintf("has tags [%s]", p->keep_tags[t]);
    }
    /* Strictly after the cutoff, as restic's time.After. */
    if (within_reason && (!has_cutoff || e->snap->time > cutoff))
      reasons[nr++] = xstrdup(within_reason);
    int oldest = k == n - 1;
    for (int b = 0; b < B_COUNT; b++) {
      if (counts[b] == 0)
        continue;
      int new_bucket = !has_last[b] || e->key[b] != last_key[b];
      /* A rule with buckets to spare also keeps the oldest snapshot, to stretch the history. */
      if (!new_bucket && !oldest)
        continue;
      reasons[nr++] =
          new_bucket ? xstrdup(bucket_reason[b]) : xasprintf("oldest %s", bucket_reason[b]);
      last_key[b] = e->key[b];
      has_last[b] = 1;
      if (counts[b] > 0)
        counts[b]--;
    }
    if (nr == 0)
      continue;
    struct retention_decision *d = &out[e->idx];
    d->keep = 1;
    d->n_reasons = nr;
    d->reasons = xmalloc(nr * sizeof(*d->reasons));
    memcpy(d->reasons, reasons, nr * sizeof(*reasons));
    kept++;
  }
  free(reasons);
  free(within_reason);
  free(sorted);

  /* Only a tags-only policy can keep nothing; restic refuses to empty a group that way. */
  if (kept == 0) {
    char *tags = format_tag_list(p->keep_tags, p->n_keep_tags);
    set_err(err, xasprintf("none of the %zu snapshots has any of the keep_tags %s; refusing to "
                           "forget every snapshot",
                           n, tags));
    free(tags);
    return -1;
  }
  return 0;
}

void retention_decisions_free(struct retention_decision *d, size_t n) {
  if (!d)
    return;
  for (size_t i = 0; i < n; i++) {
    for (size_t r = 0; r < d[i].n_reasons; r++)
      free(d[i].reasons[r]);
    free(d[i].reasons);
    d[i].reasons = NULL;
    d[i].n_reasons = 0;
    d[i].keep = 0;
  }
}
