/* Snapshot retention policy for `engine forget`, with restic's `forget --keep-*` semantics.
 *
 * Snapshots are evaluated newest first (ties: larger id first). A snapshot is kept when any
 * rule keeps it; every rule that matched is recorded, in this order and with these strings:
 *   "has tags [TAG]"        keep_tags: one entry per listed tag the snapshot carries; the empty
 *                           tag "" matches untagged snapshots only ("has tags []")
 *   "within DUR"            keep_within: time > newest - keep_within_s (DUR e.g. "30d", "1d12h",
 *                           "1h30min", "45s"); "newest" is the newest snapshot that is not in
 *                           the future, so a clock-skewed snapshot cannot anchor the window
 *   "last snapshot"         keep_last
 *   "hourly snapshot"       keep_hourly   (bucket: UTC year-month-day-hour)
 *   "daily snapshot"        keep_daily    (bucket: UTC calendar day)
 *   "weekly snapshot"       keep_weekly   (bucket: ISO 8601 year and week, UTC, weeks start Monday)
 *   "monthly snapshot"      keep_monthly  (bucket: UTC year-month)
 *   "yearly snapshot"       keep_yearly   (bucket: UTC year)
 * A count N keeps the newest snapshot of each of the N newest buckets that hold a snapshot;
 * -1 keeps one per bucket without limit. When a count rule still has buckets left after all
 * newer snapshots, the oldest snapshot is kept as well ("oldest daily snapshot" etc. when its
 * bucket was already counted), as current restic does, to maximize the history kept.
 *
 * Differences from restic, by design: times are bucketed in UTC (restic uses each snapshot's
 * local zone); keep_within is an exact number of seconds (restic counts calendar y/m/d/h);
 * each keep_tags entry is a single tag (restic's comma lists require all tags of a list). */
#ifndef CORE_REPO_RETENTION_H
#define CORE_REPO_RETENTION_H

#include <stddef.h>
#include <stdint.h>

struct retention_policy {
  /* 0 unset, N > 0 a count, -1 unlimited. */
  int keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly;
  int64_t keep_within_s; /* 0 unset */
  const char *const *keep_tags;
  size_t n_keep_tags;
};

struct retention_snapshot {
  const char *id;
  int64_t time; /* unix seconds, UTC */
  const char *const *tags;
  size_t n_tags;
  /* when the manifest was written (ns since the epoch, 0 if unknown): of two
   * snapshots with the same time, the later written is the newer, as in
   * snapshot listings (docs/FORMAT.md, snapshot manifest) */
  int64_t created_ns;
};

struct retention_decision {
  int keep;
  char **reasons; /* NULL and 0 when the snapshot is to be forgotten */
  size_t n_reasons;
};

/* Decide which of snaps[0..n) to keep. out[i] describes snaps[i] (input order is kept; any
 * order is accepted). Returns 0, or -1 with *err set (malloc'd) and out[] holding nothing to
 * free: on an invalid policy or snapshot, on a policy with no rule at all, and when keep_tags
 * is the only rule and no snapshot carries any of the tags (restic refuses both). */
int retention_apply(const struct retention_policy *p, const struct retention_snapshot *snaps,
                    size_t n, struct retention_decision *out, char **err);

/* Free the reasons in d[0..n) (not d itself) and reset each entry. */
void retention_decisions_free(struct retention_decision *d, size_t n);

#endif
