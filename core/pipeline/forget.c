/* engine forget: apply the pipeline's retention policy per group of
 * snapshots (same host and pipeline, like restic's default grouping by
 * host; snapshots of a `run --only` selection form a group per selection,
 * so they never displace the snapshots of everything), and delete the
 * snapshot objects it does not keep. Data is only removed by prune.
 *
 * A source's own `retention:` (per-item rules) is applied to each of its
 * items on its own, over the snapshots of the group whose tree holds that
 * item: what those rules keep is kept even when the pipeline's policy
 * would forget it (a departed tenant's last snapshot, say). Item names
 * come from the trees, so the index is loaded for them. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/prune.h"
#include "repo/index.h"
#include "repo/retention.h"
#include "repo/snapshot.h"
#include "repo/tree.h"
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

/* ---- per-item rules ------------------------------------------------------------ */

/* One item of a source: the snapshots of the group (indexes into g->v,
 * oldest first) whose tree holds it. */
struct item_seen {
  char *name;
  size_t *snaps;
  size_t n, cap;
};

struct item_table {
  json_t *by_name; /* name -> index into v */
  struct item_seen *v;
  size_t n, cap;
  size_t snap; /* the snapshot being read */
};

static int note_item(void *ud, json_t *item) {
  struct item_table *t = ud;
  const char *name = json_string_value(json_object_get(item, "name"));
  const char *b64 = json_string_value(json_object_get(item, "name_b64"));
  char *key = name ? xstrdup(name) : b64 ? xasprintf("base64:%s", b64) : NULL;
  if (!key)
    return 0;
  json_t *at = json_object_get(t->by_name, key);
  size_t i;
  if (at) {
    i = (size_t)json_integer_value(at);
    free(key);
  } else {
    if (t->n == t->cap) {
      t->cap = t->cap ? 2 * t->cap : 64;
      t->v = xrealloc(t->v, t->cap * sizeof(*t->v));
    }
    i = t->n++;
    t->v[i] = (struct item_seen){key, NULL, 0, 0};
    json_object_set_new(t->by_name, key, json_integer((json_int_t)i));
  }
  struct item_seen *e = &t->v[i];
  if (e->n > 0 && e->snaps[e->n - 1] == t->snap)
    return 0;
  if (e->n == e->cap) {
    e->cap = e->cap ? 2 * e->cap : 8;
    e->snaps = xrealloc(e->snaps, e->cap * sizeof(*e->snaps));
  }
  e->snaps[e->n++] = t->snap;
  return 0;
}

static void add_reason(struct retention_decision *d, char *reason) {
  d->reasons = xrealloc(d->reasons, (d->n_reasons + 1) * sizeof(*d->reasons));
  d->reasons[d->n_reasons++] = reason;
  d->keep = 1;
}

/* Apply one source's per-item rules to a group whose pipeline decisions
 * are d[]: a snapshot the pipeline forgets but an item's rules keep is
 * kept, with reasons such as "item retention: last snapshot of
 * tenants/tenant_old". A snapshot whose tree cannot be read is kept (its
 * items are unknown). */
static int apply_item_rules(struct repo *r, const struct pipeline_item_rules *ir,
                            const struct group *g, struct retention_decision *d, char **err) {
  const struct pipeline_retention *k = ir->keep;
  struct retention_policy ip = {k->keep_last,
                                k->keep_hourly,
                                k->keep_daily,
                                k->keep_weekly,
                                k->keep_monthly,
                                k->keep_yearly,
                                k->keep_within_ms / 1000,
                                NULL,
                                0};
  struct item_table t = {.by_name = json_object()};
  json_t **why = xcalloc(g->n ? g->n : 1, sizeof(*why)); /* per snapshot: reason -> items */
  int64_t now = (int64_t)time(NULL), anchor = INT64_MIN, newest = INT64_MIN;
  int rc = 0;
  for (size_t s = 0; s < g->n; s++) {
    const struct snapshot *m = g->v[s];
    newest = m->time > newest ? m->time : newest;
    if (m->time <= now && m->time > anchor)
      anchor = m->time;
    for (size_t x = 0; x < m->n_sources; x++) {
      const struct snapshot_source *src = &m->sources[x];
      if (!src->name || strcmp(src->name, ir->source) != 0 || src->n_tree == 0)
        continue;
      t.snap = s;
      char *e = NULL;
      if (tree_foreach_ids(r, (const unsigned char(*)[32])src->tree, src->n_tree, note_item, &t,
                           &e) != 0) {
        log_warn("forget: the items of source '%s' in snapshot %.8s cannot be read (%s); the "
                 "snapshot is kept",
                 ir->source, m->id, e ? e : "unknown error");
        if (!d[s].keep)
          add_reason(&d[s],
                     xasprintf("item retention: the items of %s could not be read", ir->source));
        free(e);
      }
    }
  }
  if (anchor == INT64_MIN)
    anchor = newest;
  int64_t expire_s = k->expire_after_ms / 1000;
  for (size_t i = 0; i < t.n && rc == 0; i++) {
    struct item_seen *e = &t.v[i];
    int64_t last = INT64_MIN;
    for (size_t j = 0; j < e->n; j++)
      last = g->v[e->snaps[j]]->time > last ? g->v[e->snaps[j]]->time : last;
    if (expire_s > 0 && anchor - last >= expire_s)
      continue; /* gone for longer than expire_after: only the pipeline's policy counts */
    struct retention_snapshot *rs = xcalloc(e->n, sizeof(*rs));
    for (size_t j = 0; j < e->n; j++) {
      const struct snapshot *m = g->v[e->snaps[j]];
      rs[j] = (struct retention_snapshot){m->id, m->time, (const char *const *)m->tags, m->n_tags,
                                          m->created_ns};
    }
    struct retention_decision *id = xcalloc(e->n, sizeof(*id));
    char *ierr = NULL;
    if (retention_apply(&ip, rs, e->n, id, &ierr) != 0) {
      *err = xasprintf("the retention of source '%s' (item '%s'): %s", ir->source, e->name, ierr);
      free(ierr);
      rc = -1;
    }
    for (size_t j = 0; j < e->n && rc == 0; j++) {
      size_t s = e->snaps[j];
      if (!id[j].keep || d[s].keep)
        continue; /* the pipeline's policy keeps it anyway */
      if (!why[s])
        why[s] = json_object();
      json_t *names = json_object_get(why[s], id[j].reasons[0]);
      if (!names)
        json_object_set_new(why[s], id[j].reasons[0], names = json_array());
      json_array_append_new(names, json_string(e->name));
    }
    retention_decisions_free(id, e->n);
    free(id);
    free(rs);
  }
  for (size_t s = 0; s < g->n; s++) {
    const char *reason;
    json_t *names;
    json_object_foreach(why[s], reason, names) {
      size_t n = json_array_size(names);
      const char *first = json_string_value(json_array_get(names, 0));
      if (n == 1)
        add_reason(&d[s], xasprintf("item retention: %s of %s/%s", reason, ir->source, first));
      else
        add_reason(&d[s], xasprintf("item retention: %s of %zu items of %s (%s, ...)", reason, n,
                                    ir->source, first));
    }
    json_decref(why[s]);
  }
  free(why);
  for (size_t i = 0; i < t.n; i++) {
    free(t.v[i].name);
    free(t.v[i].snaps);
  }
  free(t.v);
  json_decref(t.by_name);
  return rc;
}

/* Apply the policy to one group and delete what it does not keep (unless
 * dry_run); its report goes to out_groups, *removed counts deletions. */
static int forget_group(struct repo *r, const struct retention_policy *rp,
                        const struct pipeline_retention *pol, const struct group *g, int dry_run,
                        json_t *out_groups, size_t *removed, char **err) {
  size_t n = g->n;
  struct retention_snapshot *rs = xcalloc(n ? n : 1, sizeof(*rs));
  for (size_t k = 0; k < n; k++)
    rs[k] =
        (struct retention_snapshot){g->v[k]->id, g->v[k]->time, (const char *const *)g->v[k]->tags,
                                    g->v[k]->n_tags, g->v[k]->created_ns};
  struct retention_decision *d = xcalloc(n ? n : 1, sizeof(*d));
  int rc = retention_apply(rp, rs, n, d, err);
  free(rs);
  for (size_t i = 0; i < pol->n_items && rc == 0; i++)
    rc = apply_item_rules(r, &pol->items[i], g, d, err);
  if (rc != 0) {
    retention_decisions_free(d, n);
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
  if (pol->n_items > 0 && r->index->n_files == 0 && r->index->n_entries == 0) {
    /* per-item rules read the trees: their blobs are found through the index */
    rc = index_load(r, err);
    size_t i;
    json_t *dmg;
    json_array_foreach(r->index->damaged, i, dmg)
        log_warn("%s; trees stored in the packs it lists cannot be read",
                 json_string_value(json_object_get(dmg, "error")));
  }
  for (size_t k = 0; k < n_groups && rc == 0; k++)
    rc = forget_group(r, &rp, pol, &groups[k], dry_run, out_groups, &removed, err);
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
