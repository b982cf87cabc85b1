/* engine forget: apply the pipeline's retention policy per group of
 * snapshots (same host and pipeline, like restic's default grouping by
 * host), and delete the snapshot objects it does not keep. Data is only
 * removed by prune. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/prune.h"
#include "repo/retention.h"
#include "repo/snapshot.h"
#include "util/log.h"

int forget_run(struct repo *r, const struct pipeline_retention *pol, const char *pipeline,
               const char *hostname, int dry_run, json_t *forget_unreadable, json_t **report,
               char **err) {
  json_t *all, *unreadable, *dropped = json_array();
  if (snapshot_list(r, &all, &unreadable, err) != 0) {
    json_decref(dropped);
    return -1;
  }
  /* a snapshot that cannot be read may be one the policy must keep (or the
   * newest of its group): retention is only decided over a complete list */
  int urc =
      snapshot_forget_unreadable(r, unreadable, forget_unreadable, dry_run, "forget", dropped, err);
  json_decref(unreadable);
  if (urc != 0) {
    json_decref(all);
    json_decref(dropped);
    return -1;
  }
  if (!pol || !pol->set) {
    json_decref(all);
    if (json_array_size(forget_unreadable) > 0) { /* only the unreadable ones were asked for */
      *report = json_pack("{s:[], s:I, s:b, s:o}", "groups", "removed", (json_int_t)0, "dry_run",
                          dry_run, "unreadable_forgotten", dropped);
      return 0;
    }
    json_decref(dropped);
    *err = xstrdup("the pipeline has no retention block: nothing says which snapshots to keep");
    return -1;
  }
  struct retention_policy rp = {pol->keep_last,
                                pol->keep_hourly,
                                pol->keep_daily,
                                pol->keep_weekly,
                                pol->keep_monthly,
                                pol->keep_yearly,
                                pol->keep_within_ms / 1000,
                                (const char *const *)pol->keep_tags,
                                pol->n_keep_tags};
  /* group by host + pipeline */
  json_t *groups = json_object();
  size_t i;
  json_t *m;
  json_array_foreach(all, i, m) {
    const char *mp = json_string_value(json_object_get(m, "pipeline"));
    const char *mh = json_string_value(json_object_get(m, "hostname"));
    if (!mp || strcmp(mp, pipeline) != 0 || (hostname && (!mh || strcmp(mh, hostname) != 0)))
      continue;
    char *key = xasprintf("%s\n%s", json_string_value(json_object_get(m, "hostname")),
                          json_string_value(json_object_get(m, "pipeline")));
    json_t *g = json_object_get(groups, key);
    if (!g) {
      g = json_array();
      json_object_set_new(groups, key, g);
    }
    json_array_append(g, m);
    free(key);
  }
  json_t *out_groups = json_array();
  size_t removed = 0;
  int rc = 0;
  const char *key;
  json_t *g;
  json_object_foreach(groups, key, g) {
    size_t n = json_array_size(g);
    struct retention_snapshot *rs = xcalloc(n, sizeof(*rs));
    const char ***tags = xcalloc(n, sizeof(*tags));
    for (size_t k = 0; k < n; k++) {
      json_t *s = json_array_get(g, k);
      rs[k].id = json_string_value(json_object_get(s, "id"));
      int64_t t = 0;
      parse_iso_time(json_string_value(json_object_get(s, "time")), &t);
      rs[k].time = t;
      rs[k].created_ns = (int64_t)json_integer_value(json_object_get(s, "created_ns"));
      json_t *tg = json_object_get(s, "tags");
      tags[k] = xcalloc(json_array_size(tg) + 1, sizeof(char *));
      for (size_t x = 0; x < json_array_size(tg); x++)
        tags[k][x] = json_string_value(json_array_get(tg, x));
      rs[k].tags = tags[k];
      rs[k].n_tags = json_array_size(tg);
    }
    struct retention_decision *d = xcalloc(n, sizeof(*d));
    if (retention_apply(&rp, rs, n, d, err) != 0) {
      rc = -1;
    } else {
      json_t *keep = json_array(), *remove = json_array();
      const char *nl = strchr(key, '\n');
      for (size_t k = 0; k < n; k++) {
        json_t *s = json_array_get(g, k);
        if (d[k].keep) {
          json_t *reasons = json_array();
          for (size_t x = 0; x < d[k].n_reasons; x++)
            json_array_append_new(reasons, json_string(d[k].reasons[x]));
          json_array_append_new(keep,
                                json_pack("{s:O, s:O, s:o}", "id", json_object_get(s, "id"), "time",
                                          json_object_get(s, "time"), "reasons", reasons));
        } else {
          json_array_append_new(remove, json_pack("{s:O, s:O}", "id", json_object_get(s, "id"),
                                                  "time", json_object_get(s, "time")));
        }
      }
      json_array_append_new(out_groups,
                            json_pack("{s:s%, s:s, s:o, s:o}", "hostname", key, (size_t)(nl - key),
                                      "pipeline", nl + 1, "keep", keep, "remove", remove));
      if (!dry_run) {
        size_t x;
        json_t *s;
        json_array_foreach(remove, x, s) {
          char name[128];
          snprintf(name, sizeof(name), "snapshots/%s", json_string_value(json_object_get(s, "id")));
          if (repo_delete(r, name, err) != 0) {
            rc = -1;
            break;
          }
          removed++;
        }
      }
      retention_decisions_free(d, n);
    }
    free(d);
    for (size_t k = 0; k < n; k++)
      free(tags[k]);
    free(tags);
    free(rs);
    if (rc != 0)
      break;
  }
  json_decref(groups);
  json_decref(all);
  if (rc != 0) {
    json_decref(out_groups);
    json_decref(dropped);
    return -1;
  }
  *report = json_pack("{s:o, s:I, s:b, s:o}", "groups", out_groups, "removed", (json_int_t)removed,
                      "dry_run", dry_run, "unreadable_forgotten", dropped);
  return 0;
}

int forget_ids(struct repo *r, const char *const *ids, size_t n, int dry_run, json_t **report,
               char **err) {
  json_t *found = json_array();
  for (size_t i = 0; i < n; i++) {
    json_t *m;
    char *e = NULL;
    if (strlen(ids[i]) < 8 || snapshot_find(r, ids[i], &m, &e) != 0) {
      *err = e ? xasprintf("forget %s: %s", ids[i], e)
               : xasprintf("forget %s: give at least 8 hex digits of a snapshot id", ids[i]);
      free(e);
      json_decref(found);
      return -1;
    }
    json_array_append_new(found, json_pack("{s:O, s:O}", "id", json_object_get(m, "id"), "time",
                                           json_object_get(m, "time")));
    json_decref(m);
  }
  size_t i, removed = 0;
  json_t *v;
  json_array_foreach(found, i, v) {
    if (dry_run)
      continue;
    char *name = xasprintf("snapshots/%s", json_string_value(json_object_get(v, "id")));
    int d = repo_delete(r, name, err);
    free(name);
    if (d != 0) {
      json_decref(found);
      return -1;
    }
    removed++;
  }
  *report = json_pack("{s:[], s:I, s:b, s:[], s:o}", "groups", "removed", (json_int_t)removed,
                      "dry_run", dry_run, "unreadable_forgotten", "forgotten", found);
  return 0;
}
