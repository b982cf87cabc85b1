/* engine snapshots | show */
#include "cli/commands.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cmd_common.h"
#include "cli/dispatch.h"
#include "ops/status.h"
#include "pipeline/selection.h"
#include "repo/keys2.h"
#include "repo/tree.h"
#include "util/log.h"
#include "util/progress.h"

static json_t *strings_array(char *const *v, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(a, json_string(v[i]));
  return a;
}

/* engine snapshots --json: one object per snapshot, then the unreadable. */
static void print_snapshots_json(const struct snapshot_list *all, json_t *unreadable) {
  json_t *out = json_array();
  for (size_t i = 0; i < all->n; i++) {
    const struct snapshot *m = all->v[i];
    json_t *names = json_array();
    for (size_t k = 0; k < m->n_sources; k++)
      json_array_append_new(names, json_string(m->sources[k].name));
    char *t = iso_time(m->time);
    json_t *o = json_pack("{s:s, s:s, s:s?, s:s?, s:s?, s:I, s:I, s:I, s:o, s:o, s:s?}", "id",
                          m->id, "time", t, "hostname", m->hostname, "username", m->username,
                          "status", m->status, "items", (json_int_t)m->stats.items, "bytes_read",
                          (json_int_t)m->stats.bytes_read, "stored_bytes",
                          (json_int_t)m->stats.stored_bytes, "sources", names, "tags",
                          strings_array(m->tags, m->n_tags), "pipeline", m->pipeline);
    /* a snapshot of a selection (run --only) says which */
    json_t *only = status_snapshot_only(m);
    if (only)
      json_object_set(o, "only", only);
    json_array_append_new(out, o);
    free(t);
  }
  size_t i;
  json_t *u;
  json_array_foreach(unreadable, i, u) {
    json_array_append_new(out,
                          json_pack("{s:O, s:s, s:O}", "id", json_object_get(u, "id"), "status",
                                    "unreadable", "error", json_object_get(u, "error")));
  }
  cli_print_json(out);
  json_decref(out);
}

/* engine snapshots: a table, then the unreadable ones, then the count. */
static void print_snapshots_table(const struct snapshot_list *all, json_t *unreadable) {
  printf("%-10s %-20s %-16s %-9s %8s %12s  %s\n", "ID", "TIME", "HOST", "STATUS", "ITEMS", "SIZE",
         "SOURCES");
  for (size_t i = 0; i < all->n; i++) {
    const struct snapshot *m = all->v[i];
    char b[32], srcs[256] = "";
    uint64_t total = 0;
    for (size_t k = 0; k < m->n_sources; k++) {
      total += m->sources[k].bytes;
      if (k)
        strncat(srcs, ",", sizeof(srcs) - strlen(srcs) - 1);
      strncat(srcs, m->sources[k].name, sizeof(srcs) - strlen(srcs) - 1);
    }
    char *t = iso_time(m->time);
    printf("%-10.8s %-20s %-16.16s %-9s %8lld %12s  %s\n", m->id, t,
           m->hostname ? m->hostname : "?", m->status ? m->status : "?", (long long)m->stats.items,
           format_bytes(total, b, sizeof(b)), srcs);
    free(t);
  }
  size_t i;
  json_t *u;
  json_array_foreach(unreadable, i, u) {
    printf("%-10.8s %-20s %-16s %-9s  %s\n", json_string_value(json_object_get(u, "id")), "?", "?",
           "UNREADABLE", json_string_value(json_object_get(u, "error")));
  }
  printf("%zu snapshot(s)", all->n + json_array_size(unreadable));
  if (json_array_size(unreadable))
    printf(", %zu UNREADABLE (run 'engine check')", json_array_size(unreadable));
  printf("\n");
}

/* snapshots --contains SOURCE/GLOB: does an item name match one of the
 * selection's item globs (or is it below a match)? */
struct contains {
  const struct selection *sel;
};

static int contains_cb(void *ud, json_t *item) {
  const struct contains *k = ud;
  size_t n;
  char *name = json_get_bytes(item, "name", &n);
  int hit = 0;
  for (size_t i = 0; name && !hit && i < k->sel->n_globs; i++) {
    const char *g = k->sel->globs[i];
    size_t gl = strlen(g);
    hit = fnmatch(g, name, 0) == 0 || (strncmp(name, g, gl) == 0 && name[gl] == '/');
  }
  free(name);
  return hit;
}

/* The source ops of the plugin of this type, to read GLOB in its terms (ABI
 * 1.8); NULL when this engine has no such plugin (GLOB is an item glob). */
static const struct engine_source_ops *contains_ops(struct cli_ctx *c, const char *type) {
  char *e = NULL;
  const struct engine_plugin *p =
      c->reg && type ? registry_find(c->reg, ENGINE_PLUGIN_SOURCE, type, &e) : NULL;
  free(e);
  return p ? p->source : NULL;
}

/* Keep the snapshots holding an item the selection matches (a selection
 * without a glob: the snapshots that have the source). */
static int filter_contains(struct cli_ctx *c, const char *spec, struct snapshot_list *all,
                           char **err) {
  struct selection sel;
  if (selection_parse(spec, &sel, err) != 0)
    return -1;
  if (sel.glob && cli_load_index(c, err) != 0) {
    selection_free(&sel);
    return -1;
  }
  size_t kept = 0;
  int rc = 0;
  for (size_t i = 0; i < all->n; i++) {
    struct snapshot *m = all->v[i];
    int hit = 0;
    for (size_t k = 0; k < m->n_sources && !hit && rc == 0; k++) {
      const struct snapshot_source *ss = &m->sources[k];
      if (strcmp(sel.source, "*") != 0 && strcmp(ss->name, sel.source) != 0)
        continue; /* "*": any source */
      /* sel, with GLOB read in the terms of this source's type */
      struct selection ts = {0};
      char *e = NULL;
      if (sel.glob && selection_parse(spec, &ts, &e) == 0)
        selection_translate(&ts, contains_ops(c, ss->type));
      struct contains ct = {&ts};
      int r = sel.glob ? tree_foreach_ids(c->repo, (const unsigned char(*)[32])ss->tree, ss->n_tree,
                                          contains_cb, &ct, &e)
                       : 1;
      selection_free(&ts);
      if (r < 0) {
        *err = xasprintf("snapshot %.8s: %s", m->id, e);
        free(e);
        rc = -1;
      }
      hit = r > 0;
    }
    if (hit)
      all->v[kept++] = m;
    else
      snapshot_free(m);
  }
  all->n = kept;
  selection_free(&sel);
  return rc;
}

/* snapshots --tenant NAME: the snapshots whose manifest lists the tenant
 * among a source's tenants (per_tenant pipelines record them). */
static void filter_tenant(const char *name, struct snapshot_list *all) {
  size_t kept = 0;
  for (size_t i = 0; i < all->n; i++) {
    struct snapshot *m = all->v[i];
    int hit = 0;
    for (size_t k = 0; k < m->n_sources && !hit; k++) {
      size_t j;
      json_t *t;
      json_array_foreach(m->sources[k].tenants, j, t) hit |=
          json_is_string(t) && strcmp(json_string_value(t), name) == 0;
    }
    if (hit)
      all->v[kept++] = m;
    else
      snapshot_free(m);
  }
  all->n = kept;
}

/* A write-only host cannot open manifests (sealed to the public key): it
 * lists what the object store shows, each snapshot's id and size, and for
 * the snapshots it wrote itself what its journal kept of them. */
static int snapshots_write_only(struct cli_ctx *c, const struct cli_args *a) {
  json_t *list;
  char *err = NULL;
  if (a->contains) {
    cli_close(c);
    return cli_fail(xstrdup("--contains needs to read snapshot trees, which a write-only host "
                            "cannot decrypt (stages.encrypt.mode is write-only)"));
  }
  if (repo_list(c->repo, "snapshots/", &list, &err) != 0) {
    cli_close(c);
    return cli_fail(err);
  }
  struct snapshot_list own;
  if (snapshot_list(c->repo, &own, NULL, &err) != 0) {
    json_decref(list);
    cli_close(c);
    return cli_fail(err);
  }
  json_t *out = json_array();
  size_t i;
  json_t *e;
  json_array_foreach(list, i, e) {
    const char *id = json_string_value(json_object_get(e, "name")) + strlen("snapshots/");
    json_t *o = json_pack("{s:s, s:O, s:b}", "id", id, "object_size", json_object_get(e, "size"),
                          "sealed", 1);
    for (size_t k = 0; k < own.n; k++)
      if (strcmp(own.v[k]->id, id) == 0) {
        char *t = iso_time(own.v[k]->time);
        json_object_set_new(o, "own", json_true());
        json_object_set_new(o, "time", json_string(t));
        json_object_set_new(o, "status", json_string(own.v[k]->status ? own.v[k]->status : ""));
        json_object_set_new(o, "pipeline",
                            json_string(own.v[k]->pipeline ? own.v[k]->pipeline : ""));
        free(t);
      }
    json_array_append_new(out, o);
  }
  snapshot_list_free(&own);
  json_decref(list);
  if (a->json) {
    cli_print_json(out);
  } else {
    printf("%-64s %11s  %s\n", "ID", "OBJECT SIZE", "THIS HOST'S: TIME STATUS");
    json_array_foreach(out, i, e) {
      json_t *t = json_object_get(e, "time"), *st = json_object_get(e, "status");
      printf("%-64s %11lld  %s %s\n", json_string_value(json_object_get(e, "id")),
             (long long)json_integer_value(json_object_get(e, "object_size")),
             t ? json_string_value(t) : "", st ? json_string_value(st) : "");
    }
    printf("%zu snapshot(s); this host's credential is write-only: times, hosts, status and "
           "contents are sealed to the repository's public key (shown for this host's own "
           "snapshots only, from its journal)\n",
           json_array_size(out));
  }
  json_decref(out);
  cli_close(c);
  return EXIT_OK;
}

int cmd_snapshots(const struct cli_globals *g, const struct cli_args *a) {
  struct cli_ctx c;
  int rc = cli_open_existing(g, a->pos[0], &c, 0, 1);
  if (rc)
    return rc;
  if (c.repo->write_only)
    return snapshots_write_only(&c, a);
  struct snapshot_list all;
  json_t *unreadable;
  char *err = NULL;
  if (snapshot_list(c.repo, &all, &unreadable, &err) != 0) {
    cli_close(&c);
    return cli_fail(err);
  }
  if (a->contains && filter_contains(&c, a->contains, &all, &err) != 0) {
    snapshot_list_free(&all);
    json_decref(unreadable);
    cli_close(&c);
    return cli_fail(err);
  }
  if (a->tenant) {
    filter_tenant(a->tenant, &all);
    const struct repo_tenant *t = c.repo->format >= 2 ? keys2_tenant_find(c.repo, a->tenant) : NULL;
    if (!t)
      log_warn("the repository has no key of tenant '%s' (no per_tenant backup stored it)",
               a->tenant);
    else if (t->shredded)
      log_warn("tenant '%s' was shredded on %s: these snapshots list it, but its data can no "
               "longer be read",
               a->tenant, t->shredded);
  }
  size_t n_bad = json_array_size(unreadable);
  if (a->json)
    print_snapshots_json(&all, unreadable);
  else
    print_snapshots_table(&all, unreadable);
  if (n_bad)
    log_error("%zu snapshot(s) exist but cannot be read; the repository is damaged or a sink is "
              "failing (run 'engine check')",
              n_bad);
  snapshot_list_free(&all);
  json_decref(unreadable);
  cli_close(&c);
  return n_bad ? EXIT_ERROR : EXIT_OK;
}

/* engine show: the manifest in words. */
static void print_snapshot(const struct repo *r, const struct snapshot *m) {
  char b1[32], b2[32];
  char *t0 = iso_time(m->time), *t1 = m->time_end ? iso_time(m->time_end) : xstrdup("?");
  printf("snapshot   %s\n", m->id);
  printf("pipeline   %s\n", m->pipeline ? m->pipeline : "?");
  printf("time       %s .. %s\n", t0, t1);
  printf("host/user  %s / %s\n", m->hostname ? m->hostname : "?", m->username ? m->username : "?");
  printf("status     %s\n", m->status ? m->status : "?");
  printf("engine     %s\n", m->engine_version ? m->engine_version : "?");
  printf("items      %lld, %s read, %s stored\n", (long long)m->stats.items,
         format_bytes(m->stats.bytes_read, b1, sizeof(b1)),
         format_bytes(m->stats.stored_bytes, b2, sizeof(b2)));
  free(t0);
  free(t1);
  for (size_t i = 0; i < m->n_sources; i++) {
    const struct snapshot_source *s = &m->sources[i];
    printf("source     %s (%s %s): %lld items, %lld failed\n", s->name, s->type,
           s->plugin_version ? s->plugin_version : "?", (long long)s->items,
           (long long)s->failed_items);
    size_t j;
    json_t *tn;
    json_array_foreach(s->tenants, j, tn) {
      const struct repo_tenant *t =
          r->format >= 2 ? keys2_tenant_find(r, json_string_value(tn)) : NULL;
      printf("  tenant   %s%s%s\n", json_string_value(tn), t && t->shredded ? ": SHREDDED on " : "",
             t && t->shredded ? t->shredded : "");
    }
    for (size_t k = 0; k < s->n_warnings; k++) {
      const struct snapshot_note *w = &s->warnings[k];
      /* only a name stored as "item" (UTF-8), not as "item_b64" */
      json_t *probe = w->item ? json_stringn(w->item, w->item_len) : NULL;
      const char *item = probe ? w->item : NULL;
      printf("  warning  %s%s%s\n", item ? item : "", item ? ": " : "", w->text ? w->text : "");
      json_decref(probe);
    }
  }
}

int cmd_show(const struct cli_globals *g, const struct cli_args *a) {
  struct cli_ctx c;
  int rc = cli_open_existing(g, a->pos[0], &c, 0, 1);
  if (rc)
    return rc;
  struct snapshot *m;
  char *err = NULL;
  if (snapshot_find(c.repo, a->pos[1], &m, &err) != 0) {
    cli_close(&c);
    return cli_fail(err);
  }
  if (a->json)
    cli_print_json(m->raw);
  else
    print_snapshot(c.repo, m);
  snapshot_free(m);
  cli_close(&c);
  return EXIT_OK;
}
