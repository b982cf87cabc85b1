/* engine forget: apply the pipeline's retention policy per group of
 * snapshots (same host and pipeline, like restic's default grouping by
 * host; snapshots of a `run --only` selection form a group per selection,
 * so they never displace the snapshots of everything), and delete the
 * snapshot objects it does not keep. Data is only removed by prune. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/prune.h"
#include "repo/retention.h"
#include "repo/snapshot.h"
#include "util/log.h"

/* The snapshots of one host, pipeline and selection, oldest first. */
struct group {
  const char *hostname, *pipeline;
  char *only; /* the manifests' "only" as compact JSON; NULL: snapshots of everything */
  const struct snapshot **v;
  size_t n;
};

/* A snapshot's `run --only` selection as compact JSON, or NULL. */
static char *selection_of(const struct snapshot *m) {
  json_t *only = json_object_get(m->extra, "only");
  return json_is_array(only) && json_array_size(only) ? json_dumps(only, JSON_COMPACT) : NULL;
}

/* Group the snapshots of pipeline (and of hostname, unless NULL) by host,
 * pipeline and selection, in the order their groups first appear. */
static struct group *group_snapshots(const struct snapshot_list *all, const char *pipeline,
                                     const char *hostname, size_t *n_groups) {
  struct group *g = xcalloc(all->n + 1, sizeof(*g));
  *n_groups = 0;
  for (size_t i = 0; i < all->n; i++) {
    const struct snapshot *m = all->v[i];
    const char *mh = m->hostname ? m->hostname : "";
    if (!m->pipeline || strcmp(m->pipeline, pipeline) != 0 ||
        (hostname && (!m->hostname || strcmp(m->hostname, hostname) != 0)))
      continue;
    char *only = selection_of(m);
    size_t k = 0;
    while (k < *n_groups &&
           (strcmp(g[k].hostname, mh) != 0 || (g[k].only == NULL) != (only == NULL) ||
            (only && strcmp(g[k].only, only) != 0)))
      k++;
    if (k == *n_groups) {
      g[k] = (struct group){mh, m->pipeline, only, xcalloc(all->n, sizeof(*g[k].v)), 0};
      (*n_groups)++;
    } else {
      free(only);
    }
    g[k].v[g[k].n++] = m;
  }
  return g;
}

static json_t *id_time(const struct snapshot *m) {
  char *t = iso_time(m->time);
  json_t *o = json_pack("{s:s, s:s}", "id", m->id, "time", t);
  free(t);
  return o;
}

/* Apply the policy to one group and delete what it does not keep (unless
 * dry_run); its report goes to out_groups, *removed counts deletions. */
static int forget_group(struct repo *r, const struct retention_policy *rp, const struct group *g,
                        int dry_run, json_t *out_groups, size_t *removed, char **err) {
  size_t n = g->n;
  struct retention_snapshot *rs = xcalloc(n ? n : 1, sizeof(*rs));
  for (size_t k = 0; k < n; k++)
    rs[k] =
        (struct retention_snapshot){g->v[k]->id, g->v[k]->time, (const char *const *)g->v[k]->tags,
                                    g->v[k]->n_tags, g->v[k]->created_ns};
  struct retention_decision *d = xcalloc(n ? n : 1, sizeof(*d));
  int rc = retention_apply(rp, rs, n, d, err);
  free(rs);
  if (rc != 0) {
    free(d);
    return -1;
  }
  json_t *keep = json_array(), *remove = json_array();
  for (size_t k = 0; k < n; k++) {
    json_t *e = id_time(g->v[k]);
    if (d[k].keep) {
      json_t *reasons = json_array();
      for (size_t x = 0; x < d[k].n_reasons; x++)
        json_array_append_new(reasons, json_string(d[k].reasons[x]));
      json_object_set_new(e, "reasons", reasons);
      json_array_append_new(keep, e);
      continue;
    }
    json_array_append_new(remove, e);
  }
  json_t *go = json_pack("{s:s, s:s, s:o, s:o}", "hostname", g->hostname, "pipeline", g->pipeline,
                         "keep", keep, "remove", remove);
  json_t *only = g->only ? json_loads(g->only, 0, NULL) : NULL;
  if (only)
    json_object_set_new(go, "only", only);
  json_array_append_new(out_groups, go);
  for (size_t k = 0; k < n && !dry_run; k++) {
    if (d[k].keep)
      continue;
    char name[128];
    snprintf(name, sizeof(name), "snapshots/%s", g->v[k]->id);
    if (repo_delete(r, name, err) != 0) {
      rc = -1;
      break;
    }
    (*removed)++;
  }
  retention_decisions_free(d, n);
  free(d);
  return rc;
}

int forget_run(struct repo *r, const struct pipeline_retention *pol, const char *pipeline,
               const char *hostname, int dry_run, json_t *forget_unreadable, json_t **report,
               char **err) {
  struct snapshot_list all;
  json_t *unreadable, *dropped = json_array();
  if (snapshot_list(r, &all, &unreadable, err) != 0) {
    json_decref(dropped);
    return -1;
  }
  /* a snapshot that cannot be read may be one the policy must keep (or the
   * newest of its group): retention is only decided over a complete list */
  int urc =
      snapshot_forget_unreadable(r, unreadable, forget_unreadable, dry_run, "forget", dropped, err);
  json_decref(unreadable);
  if (urc != 0 || !pol || !pol->set) {
    snapshot_list_free(&all);
    if (urc == 0 && json_array_size(forget_unreadable) > 0) {
      /* only the unreadable ones were asked for */
      *report = json_pack("{s:[], s:I, s:b, s:o}", "groups", "removed", (json_int_t)0, "dry_run",
                          dry_run, "unreadable_forgotten", dropped);
      return 0;
    }
    json_decref(dropped);
    if (urc == 0)
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
  size_t n_groups, removed = 0;
  struct group *groups = group_snapshots(&all, pipeline, hostname, &n_groups);
  json_t *out_groups = json_array();
  int rc = 0;
  for (size_t k = 0; k < n_groups && rc == 0; k++)
    rc = forget_group(r, &rp, &groups[k], dry_run, out_groups, &removed, err);
  for (size_t k = 0; k < n_groups; k++) {
    free(groups[k].v);
    free(groups[k].only);
  }
  free(groups);
  snapshot_list_free(&all);
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
    struct snapshot *m;
    char *e = NULL;
    if (strlen(ids[i]) < 8 || snapshot_find(r, ids[i], &m, &e) != 0) {
      *err = e ? xasprintf("forget %s: %s", ids[i], e)
               : xasprintf("forget %s: give at least 8 hex digits of a snapshot id", ids[i]);
      free(e);
      json_decref(found);
      return -1;
    }
    json_array_append_new(found, id_time(m));
    snapshot_free(m);
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
