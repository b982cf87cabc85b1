/* Pipeline configuration: the layout of a pipeline file. The top-level keys
 * are declared in one table (top_keys), each with its parser; blocks of
 * plain typed fields (repository, limits, retention, hooks) are field tables
 * for the schema engine (config/schema.h), which does the typed checking,
 * the error collection and the plugin option schemas. All problems are
 * collected, each as "file:line:col: option: message". Secret values are
 * never echoed. */
#include "config/pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/pipeline_notify.h"
#include "config/schema.h"
#include "config/yaml_tree.h"
#include "plugin/loader.h"
#include "compress/compress.h"
#include "util/log.h"

/* A pipeline is a few kilobytes; anything this large is a mistake (wrong
 * file) and would only make the parser allocate for nothing. */
#define PIPELINE_MAX_FILE (4u * 1024u * 1024u)

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* The schema engine's problem list, and how plugins are found. */
struct pctx {
  struct cfg cfg;
  pipeline_lookup_fn lookup; /* NULL: structure only, `with:` kept as written */
  void *ud;
};

/* Resolve a plugin; reports and returns NULL when it cannot be used. */
static const struct engine_plugin *resolve(struct pctx *pc, enum engine_plugin_kind kind,
                                           const char *type, const struct ytree_node *at,
                                           const char *opt) {
  struct cfg *c = &pc->cfg;
  char *lerr = NULL;
  const struct engine_plugin *pl = pc->lookup(pc->ud, kind, type, &lerr);
  if (!pl) {
    if (lerr)
      cfg_error(c, at, opt, "%s", lerr);
    else
      cfg_error(c, at, opt, "no %s plugin named '%s'", plugin_kind_name(kind), type);
    free(lerr);
    return NULL;
  }
  free(lerr);
  if (pl->kind != kind) {
    cfg_error(c, at, opt, "plugin '%s' is a %s plugin, not a %s plugin", type,
              plugin_kind_name(pl->kind), plugin_kind_name(kind));
    return NULL;
  }
  return pl;
}

/* ---- sources and sinks ---------------------------------------------- */

static const char *const source_keys[] = {"name", "type", "with", "retention"};

static struct pipeline_retention *parse_item_retention(struct cfg *c, const struct ytree_node *n,
                                                       const char *opt);
static const char *const sink_keys[] = {"name", "type", "with", "required"};

static void parse_plugin_entry(struct pctx *pc, const struct ytree_node *item, const char *opt,
                               enum engine_plugin_kind kind, struct pipeline_plugin_cfg *cfg,
                               const struct ytree_node **name_at) {
  struct cfg *c = &pc->cfg;
  cfg->line = item->line;
  cfg->col = item->col;
  cfg->required = 1;
  *name_at = item;
  if (item->kind != YTREE_MAPPING) {
    struct cfg_got g;
    cfg_error(c, item, opt, "expected a mapping such as { type: %s, with: {...} }, got %s",
              kind == ENGINE_PLUGIN_SOURCE ? "files" : "local", cfg_got(item, &g));
    return;
  }
  if (kind == ENGINE_PLUGIN_SINK)
    cfg_check_keys(c, item, opt, sink_keys, NELEM(sink_keys), 0);
  else
    cfg_check_keys(c, item, opt, source_keys, NELEM(source_keys), 0);

  const struct ytree_node *type = ytree_map_get(item, "type");
  char *o = cfg_opt_key(opt, "type");
  if (!type)
    cfg_error(c, item, o, "required but not given (expected the name of a %s plugin)",
              plugin_kind_name(kind));
  else if (cfg_get_name(c, type, o, &cfg->type) == 0)
    *name_at = type;
  free(o);

  const struct ytree_node *name = ytree_map_get(item, "name");
  if (name) {
    o = cfg_opt_key(opt, "name");
    if (cfg_get_name(c, name, o, &cfg->name) == 0)
      *name_at = name;
    free(o);
  } else if (cfg->type) {
    cfg->name = xstrdup(cfg->type);
  }

  const struct ytree_node *req = ytree_map_get(item, "required");
  if (req) {
    o = cfg_opt_key(opt, "required");
    cfg_get_bool(c, req, o, &cfg->required);
    free(o);
  }

  const struct ytree_node *ret = ytree_map_get(item, "retention");
  if (ret && kind == ENGINE_PLUGIN_SOURCE) {
    o = cfg_opt_key(opt, "retention");
    cfg->retention = parse_item_retention(c, ret, o);
    free(o);
  }

  const struct ytree_node *with = ytree_map_get(item, "with");
  char *ow = cfg_opt_key(opt, "with");
  if (with && cfg_want_mapping(c, with, ow, "a mapping of plugin options") < 0)
    with = NULL;
  if (cfg->type && pc->lookup) {
    o = cfg_opt_key(opt, "type");
    cfg->plugin = resolve(pc, kind, cfg->type, type, o);
    free(o);
    if (cfg->plugin)
      cfg->with = cfg_check_plugin_options(c, cfg->plugin, with,
                                           with ? ytree_map_find(item, "with")->key : item, ow);
  } else if (!pc->lookup) {
    cfg->with = with ? cfg_natural_json(with) : json_object();
    if (json_is_null(cfg->with)) {
      json_decref(cfg->with);
      cfg->with = json_object();
    }
  }
  free(ow);
}

/* `sources:` or `sinks:` (key), given as `list` */
static void parse_plugin_list(struct pctx *pc, const struct ytree_node *list, const char *key,
                              enum engine_plugin_kind kind, struct pipeline_plugin_cfg **out,
                              size_t *n_out) {
  struct cfg *c = &pc->cfg;
  const char *what = plugin_kind_name(kind);
  if (list->kind != YTREE_SEQUENCE || list->n_items == 0) {
    struct cfg_got g;
    cfg_error(c, list, key, "expected a non-empty list of %ss, got %s", what,
              list->kind == YTREE_SEQUENCE ? "an empty list" : cfg_got(list, &g));
    return;
  }
  *out = xcalloc(list->n_items, sizeof(**out));
  *n_out = list->n_items;
  const struct ytree_node **name_at = xcalloc(list->n_items, sizeof(*name_at));
  for (size_t i = 0; i < list->n_items; i++) {
    char *opt = cfg_opt_index(key, i);
    parse_plugin_entry(pc, list->items[i], opt, kind, &(*out)[i], &name_at[i]);
    for (size_t j = 0; j < i && (*out)[i].name; j++) {
      if ((*out)[j].name && strcmp((*out)[i].name, (*out)[j].name) == 0) {
        int explicit_name = ytree_map_get(list->items[i], "name") != NULL;
        char *o = explicit_name ? cfg_opt_key(opt, "name") : xstrdup(opt);
        cfg_error(c, name_at[i], o,
                  "duplicate %s name '%s' (%salready used by %s[%zu] at line %d); "
                  "give each %s its own name",
                  what, (*out)[i].name, explicit_name ? "" : "the name defaults to the type; ", key,
                  j, (*out)[j].line, what);
        free(o);
        break;
      }
    }
    free(opt);
  }
  free(name_at);
}

/* ---- stages ----------------------------------------------------------- */

static const char *const stages_keys[] = {"compress", "encrypt"};
static const char *const compress_keys[] = {"algorithm", "level"};
static const char *const encrypt_keys[] = {"algorithm", "passphrase", "key_file",
                                           "mode",      "per_tenant", "tenant_of"};
static const char *const compress_algos[] = {"zstd", "gzip", "none"};

static void parse_compress(struct cfg *c, const struct ytree_node *n, struct pipeline *p) {
  p->compress_algorithm = xstrdup("zstd");
  p->compress_level = -1;
  if (!n ||
      cfg_want_mapping(c, n, "stages.compress", "a mapping such as { algorithm: zstd, level: 3 }") <
          0 ||
      n->kind != YTREE_MAPPING)
    return;
  cfg_check_keys(c, n, "stages.compress", compress_keys, NELEM(compress_keys), 0);
  int algo = COMPRESS_ZSTD;
  const struct ytree_node *a = ytree_map_get(n, "algorithm");
  const char *name;
  if (a) {
    if (cfg_get_choice(c, a, "stages.compress.algorithm", compress_algos, 3, &name) == 0 &&
        compress_algo_from_name(name) >= 0) {
      algo = compress_algo_from_name(name);
      free(p->compress_algorithm);
      p->compress_algorithm = xstrdup(name);
    } else {
      algo = -1;
    }
  }
  const struct ytree_node *l = ytree_map_get(n, "level");
  if (l) {
    int64_t v;
    if (algo < 0) {
      /* range unknown: only the shape can be checked */
      cfg_get_int(c, l, "stages.compress.level", INT_MIN, INT_MAX, "an integer", &v);
      return;
    }
    int min, max;
    compress_level_range((enum compress_algo)algo, &min, &max);
    char *expected =
        min == max ? xasprintf("%d (the only level of %s)", min, p->compress_algorithm)
                   : xasprintf("an integer from %d to %d for %s", min, max, p->compress_algorithm);
    if (cfg_get_int(c, l, "stages.compress.level", min, max, expected, &v) == 0)
      p->compress_level = (int)v;
    free(expected);
  }
}

#define ENCRYPT_HINT                                                                               \
  "a mapping such as { algorithm: aes-256-gcm, passphrase: env:ENGINE_PASSPHRASE }, or "           \
  "{ algorithm: none } to store backups unencrypted"

static void parse_encrypt(struct pctx *pc, const struct ytree_node *n, const struct ytree_node *at,
                          struct pipeline *p) {
  struct cfg *c = &pc->cfg;
  if (!n) {
    cfg_missing(c, at, "stages.encrypt", ENCRYPT_HINT);
    return;
  }
  if (n->kind != YTREE_MAPPING) {
    /* not quoted back: it may be a passphrase written in the wrong place */
    cfg_error(c, n, "stages.encrypt", "expected %s, got %s", ENCRYPT_HINT, ytree_kind_name(n));
    return;
  }
  cfg_check_keys(c, n, "stages.encrypt", encrypt_keys, NELEM(encrypt_keys), 1);
  const struct ytree_node *a = ytree_map_get(n, "algorithm");
  const struct ytree_pair *pass = ytree_map_find(n, "passphrase");
  const struct ytree_pair *kf = ytree_map_find(n, "key_file");
  const struct ytree_node *mode = ytree_map_get(n, "mode");
  if (mode) {
    char *m = NULL;
    if (cfg_get_string(c, mode, "stages.encrypt.mode", &m) == 0) {
      if (strcmp(m, "write-only") == 0)
        p->encrypt_write_only = 1;
      else if (strcmp(m, "read-write") != 0)
        cfg_error(c, mode, "stages.encrypt.mode",
                  "expected read-write (the default: a passphrase opens everything) or "
                  "write-only (key_file is a writer credential), got '%s'",
                  m);
    }
    free(m);
    if (p->encrypt_write_only && pass) {
      cfg_error(c, pass->key, "stages.encrypt.passphrase",
                "not allowed with mode write-only: give the writer credential as key_file "
                "(made by 'engine key add PIPELINE --write-only --out FILE')");
      return;
    }
    if (p->encrypt_write_only && !kf) {
      cfg_error(c, n, "stages.encrypt",
                "mode write-only needs key_file: the writer credential made by 'engine key add "
                "PIPELINE --write-only --out FILE'");
      return;
    }
  }
  if (!a && p->encrypt_write_only) {
    /* format 2's only AEAD */
    p->encrypt_algorithm = xstrdup("aes-256-gcm");
    if (pc->lookup)
      p->crypto = resolve(pc, ENGINE_PLUGIN_CRYPTO, p->encrypt_algorithm, n, "stages.encrypt");
  } else if (!a) {
    cfg_missing(c, n, "stages.encrypt.algorithm",
                "the name of a crypto plugin such as aes-256-gcm, or none");
    return;
  }
  if (a && cfg_get_name(c, a, "stages.encrypt.algorithm", &p->encrypt_algorithm) < 0)
    return;
  if (strcmp(p->encrypt_algorithm, "none") == 0) {
    if (pass)
      cfg_error(c, pass->key, "stages.encrypt.passphrase",
                "not allowed with algorithm none (remove it, or choose a crypto algorithm)");
    if (kf)
      cfg_error(c, kf->key, "stages.encrypt.key_file",
                "not allowed with algorithm none (remove it, or choose a crypto algorithm)");
    return;
  }
  if (pc->lookup && a)
    p->crypto =
        resolve(pc, ENGINE_PLUGIN_CRYPTO, p->encrypt_algorithm, a, "stages.encrypt.algorithm");
  if (pass && kf) {
    cfg_error(c, kf->key, "stages.encrypt.key_file",
              "not allowed together with passphrase (give exactly one of passphrase or key_file)");
    return;
  }
  if (!pass && !kf) {
    cfg_error(
        c, n, "stages.encrypt",
        "algorithm '%s' needs a passphrase (env:NAME or file:/path) or a key_file, neither was "
        "given",
        p->encrypt_algorithm);
    return;
  }
  if (pass) {
    cfg_get_secret(c, pass->value, "stages.encrypt.passphrase", &p->encrypt_passphrase_ref);
  } else if (cfg_get_string(c, kf->value, "stages.encrypt.key_file", &p->encrypt_key_file) == 0 &&
             !*p->encrypt_key_file) {
    cfg_error(c, kf->value, "stages.encrypt.key_file", "expected a file path, got ''");
  } else if (p->encrypt_key_file && strncmp(p->encrypt_key_file, "file:", 5) == 0) {
    /* key_file: file:/path says the same as key_file: /path */
    memmove(p->encrypt_key_file, p->encrypt_key_file + 5, strlen(p->encrypt_key_file + 5) + 1);
  }
}

/* stages.encrypt.per_tenant and tenant_of (after parse_encrypt). */
static void parse_tenants(struct pctx *pc, const struct ytree_node *n, struct pipeline *p) {
  struct cfg *c = &pc->cfg;
  if (!n || n->kind != YTREE_MAPPING)
    return;
  const struct ytree_pair *pt = ytree_map_find(n, "per_tenant");
  const struct ytree_pair *to = ytree_map_find(n, "tenant_of");
  if (pt && cfg_get_bool(c, pt->value, "stages.encrypt.per_tenant", &p->encrypt_per_tenant) < 0)
    return;
  if (to && !p->encrypt_per_tenant) {
    cfg_error(c, to->key, "stages.encrypt.tenant_of",
              "only meaningful with per_tenant: true (add it, or remove tenant_of)");
    return;
  }
  if (!p->encrypt_per_tenant)
    return;
  if (p->encrypt_algorithm && strcmp(p->encrypt_algorithm, "none") == 0) {
    cfg_error(c, pt->key, "stages.encrypt.per_tenant",
              "needs encryption: tenant keys are what it adds (choose a crypto algorithm)");
    return;
  }
  if (p->encrypt_write_only) {
    cfg_error(c, pt->key, "stages.encrypt.per_tenant",
              "not available with mode write-only: a new tenant's key is added to the keyring, "
              "which a write-only host cannot open (back up tenants from a host that holds the "
              "passphrase)");
    return;
  }
  if (!to || ytree_is_null(to->value))
    return;
  if (cfg_want_mapping(c, to->value, "stages.encrypt.tenant_of",
                       "a mapping of SOURCE/ITEM-GLOB to a tenant name, such as "
                       "{ \"home/alice/*\": alice }") < 0)
    return;
  const struct ytree_node *m = to->value;
  p->tenant_of = xcalloc(m->n_pairs ? m->n_pairs : 1, sizeof(*p->tenant_of));
  for (size_t i = 0; i < m->n_pairs; i++) {
    const struct ytree_pair *kv = &m->pairs[i];
    const char *k = kv->key->text;
    const char *slash = strchr(k, '/');
    char *tenant = NULL;
    if (!slash || slash == k || !slash[1]) {
      cfg_error(c, kv->key, "stages.encrypt.tenant_of",
                "expected SOURCE/ITEM-GLOB (a source's name, '/', a glob of its item names, "
                "as --only takes them), got '%s'",
                k);
      continue;
    }
    if (cfg_get_string(c, kv->value, "stages.encrypt.tenant_of", &tenant) < 0)
      continue;
    if (!tenant[0] || strlen(tenant) > 128 || strchr(tenant, '/') || strchr(tenant, '\n')) {
      cfg_error(c, kv->value, "stages.encrypt.tenant_of",
                "expected a tenant name (1 to 128 characters, no '/'), got '%s'", tenant);
      free(tenant);
      continue;
    }
    struct pipeline_tenant_rule *t = &p->tenant_of[p->n_tenant_of++];
    t->source = xasprintf("%.*s", (int)(slash - k), k);
    t->glob = xstrdup(slash + 1);
    t->tenant = tenant;
  }
}

/* Also when absent (st NULL): compression has a default, encrypt is required. */
static void parse_stages(struct pctx *pc, const struct ytree_node *root,
                         const struct ytree_node *st, struct pipeline *p) {
  struct cfg *c = &pc->cfg;
  const struct ytree_pair *sp = ytree_map_find(root, "stages");
  if (st && cfg_want_mapping(c, st, "stages", "a mapping with compress and encrypt") < 0)
    return;
  if (st && st->kind == YTREE_MAPPING) {
    cfg_check_keys(c, st, "stages", stages_keys, NELEM(stages_keys), 0);
    parse_compress(c, ytree_map_get(st, "compress"), p);
    parse_encrypt(pc, ytree_map_get(st, "encrypt"), sp->key, p);
    parse_tenants(pc, ytree_map_get(st, "encrypt"), p);
  } else {
    parse_compress(c, NULL, p);
    parse_encrypt(pc, NULL, sp ? sp->key : root, p);
  }
}

/* ---- repository, limits, retention, hooks, notify ----------------------- */

static const struct cfg_field repository_fields[] = {
    {.key = "chunk_min",
     .type = CFG_SIZE32,
     .offset = offsetof(struct pipeline, chunk_min),
     .umin = 1,
     .umax = UINT32_MAX},
    {.key = "chunk_avg",
     .type = CFG_SIZE32,
     .offset = offsetof(struct pipeline, chunk_avg),
     .umin = 1,
     .umax = UINT32_MAX},
    {.key = "chunk_max",
     .type = CFG_SIZE32,
     .offset = offsetof(struct pipeline, chunk_max),
     .umin = 1,
     .umax = UINT32_MAX},
    {.key = "pack_size",
     .type = CFG_SIZE64,
     .offset = offsetof(struct pipeline, pack_size),
     .umin = 1024 * 1024,
     .umax = 1024ull * 1024 * 1024},
    {.key = "format",
     .type = CFG_INT,
     .offset = offsetof(struct pipeline, repo_format),
     .imin = 1,
     .imax = 2,
     .expected = "1 or 2 (the repository format a new repository gets; docs/FORMAT.md)"},
};

static const struct cfg_field limits_fields[] = {
    {.key = "memory",
     .type = CFG_SIZE64,
     .offset = offsetof(struct pipeline, max_inflight),
     .umin = 1,
     .umax = UINT64_MAX},
    {.key = "timeout", .type = CFG_DURATION, .offset = offsetof(struct pipeline, timeout_ms)},
};

static const struct cfg_field objectives_fields[] = {
    {.key = "rpo", .type = CFG_DURATION, .offset = offsetof(struct pipeline, rpo_ms)},
    {.key = "rto", .type = CFG_DURATION, .offset = offsetof(struct pipeline, rto_ms)},
};

#define KEEP_N(k)                                                                                  \
  {                                                                                                \
    .key = #k, .type = CFG_INT, .offset = offsetof(struct pipeline_retention, k), .imin = 0,       \
    .imax = INT_MAX, .expected = "a non-negative integer"                                          \
  }
static const char *const apply_values[] = {"after-run", "never"};
static const struct cfg_field retention_fields[] = {
    KEEP_N(keep_last),
    KEEP_N(keep_hourly),
    KEEP_N(keep_daily),
    KEEP_N(keep_weekly),
    KEEP_N(keep_monthly),
    KEEP_N(keep_yearly),
    {.key = "keep_within",
     .type = CFG_DURATION,
     .offset = offsetof(struct pipeline_retention, keep_within_ms)},
    {.key = "keep_tags",
     .type = CFG_STRINGS,
     .offset = offsetof(struct pipeline_retention, keep_tags),
     .count_offset = offsetof(struct pipeline_retention, n_keep_tags)},
    {.key = "apply",
     .type = CFG_CHOICE,
     .offset = offsetof(struct pipeline_retention, apply),
     .choices = apply_values,
     .n_choices = NELEM(apply_values)},
};

static const struct cfg_field hooks_fields[] = {
    {.key = "before",
     .type = CFG_STRINGS,
     .offset = offsetof(struct pipeline, hooks_before),
     .count_offset = offsetof(struct pipeline, n_hooks_before)},
    {.key = "after",
     .type = CFG_STRINGS,
     .offset = offsetof(struct pipeline, hooks_after),
     .count_offset = offsetof(struct pipeline, n_hooks_after)},
    {.key = "timeout", .type = CFG_DURATION, .offset = offsetof(struct pipeline, hooks_timeout_ms)},
};

json_t *pipeline_secret_refs(const struct pipeline *p) {
  json_t *out = json_array();
  if (p->encrypt_passphrase_ref)
    json_array_append_new(out, json_pack("{s:s, s:s}", "option", "stages.encrypt.passphrase", "ref",
                                         p->encrypt_passphrase_ref));
  for (int sinks = 0; sinks < 2; sinks++) {
    const struct pipeline_plugin_cfg *v = sinks ? p->sinks : p->sources;
    size_t n = sinks ? p->n_sinks : p->n_sources;
    for (size_t i = 0; i < n; i++) {
      for (const struct engine_option *o = v[i].plugin ? v[i].plugin->options : NULL; o && o->name;
           o++) {
        const char *ref = json_string_value(json_object_get(v[i].with, o->name));
        if (o->type != ENGINE_OPT_SECRET || !ref)
          continue;
        char *opt = xasprintf("%s[%zu].with.%s", sinks ? "sinks" : "sources", i, o->name);
        json_array_append_new(out, json_pack("{s:s, s:s}", "option", opt, "ref", ref));
        free(opt);
      }
    }
  }
  for (size_t i = 0; i < p->n_notify; i++)
    for (size_t k = 0; k < p->notify[i].n_headers; k++) {
      const struct pipeline_notify_header *h = &p->notify[i].headers[k];
      if (!h->secret)
        continue;
      char *opt = xasprintf("notify[%zu].headers.%s", i, h->name);
      json_array_append_new(out, json_pack("{s:s, s:s}", "option", opt, "ref", h->value));
      free(opt);
    }
  return out;
}

static void parse_retention(struct pctx *pc, const struct ytree_node *root,
                            const struct ytree_node *n, struct pipeline *p) {
  (void)root;
  struct cfg *c = &pc->cfg;
  struct pipeline_retention *r = &p->retention;
  if (cfg_want_mapping(c, n, "retention", "a mapping such as { keep_last: 7, keep_daily: 30 }") < 0)
    return;
  r->set = 1;
  if (n->kind != YTREE_MAPPING) {
    cfg_error(c, n, "retention",
              "no keep_* rule given; a policy that keeps nothing would forget every snapshot");
    return;
  }
  size_t given = cfg_get_fields(c, n, "retention", retention_fields, NELEM(retention_fields), r);
  if (r->apply && strcmp(r->apply, "after-run") != 0) {
    free(r->apply); /* never: the default */
    r->apply = NULL;
  }
  if (given == (ytree_map_get(n, "apply") ? 1u : 0u))
    cfg_error(c, n, "retention",
              "no keep_* rule given; a policy that keeps nothing would forget every snapshot");
}

/* sources[].retention: keep_* rules (no keep_tags: tags belong to whole
 * snapshots) and expire_after, applied by engine forget to each of the
 * source's items on its own (forget.c). */
static const struct cfg_field item_retention_fields[] = {
    KEEP_N(keep_last),
    KEEP_N(keep_hourly),
    KEEP_N(keep_daily),
    KEEP_N(keep_weekly),
    KEEP_N(keep_monthly),
    KEEP_N(keep_yearly),
    {.key = "keep_within",
     .type = CFG_DURATION,
     .offset = offsetof(struct pipeline_retention, keep_within_ms)},
    {.key = "expire_after",
     .type = CFG_DURATION,
     .offset = offsetof(struct pipeline_retention, expire_after_ms)},
};

static struct pipeline_retention *parse_item_retention(struct cfg *c, const struct ytree_node *n,
                                                       const char *opt) {
  if (cfg_want_mapping(c, n, opt, "a mapping such as { keep_last: 1, expire_after: 90d }") < 0)
    return NULL;
  struct pipeline_retention *r = xcalloc(1, sizeof(*r));
  r->set = 1;
  size_t given = n->kind == YTREE_MAPPING ? cfg_get_fields(c, n, opt, item_retention_fields,
                                                           NELEM(item_retention_fields), r)
                                          : 0;
  if (given == (n->kind == YTREE_MAPPING && ytree_map_get(n, "expire_after") ? 1u : 0u))
    cfg_error(c, n, opt,
              "no keep_* rule given; the rules say which snapshots of each item to keep beyond "
              "the pipeline's retention (e.g. keep_last: 1)");
  return r;
}

/* After every key is parsed: the sources' per-item rules, listed in the
 * pipeline's retention block for engine forget. They only ever keep more
 * than the pipeline's own policy, so they need one. */
static void collect_item_retention(struct pctx *pc, const struct ytree_node *root,
                                   struct pipeline *p) {
  const struct ytree_node *list = ytree_map_get(root, "sources");
  for (size_t i = 0; i < p->n_sources; i++) {
    if (!p->sources[i].retention)
      continue;
    if (!p->retention.set) {
      const struct ytree_node *at = list && list->kind == YTREE_SEQUENCE && i < list->n_items
                                        ? ytree_map_get(list->items[i], "retention")
                                        : NULL;
      char *opt = xasprintf("sources[%zu].retention", i);
      cfg_error(&pc->cfg, at ? at : root, opt,
                "per-item rules keep snapshots the pipeline's retention would forget, but the "
                "pipeline has no retention block (engine forget would keep everything); add a "
                "top-level retention such as { keep_daily: 7 }");
      free(opt);
      continue;
    }
    p->retention.items =
        xrealloc(p->retention.items, (p->retention.n_items + 1) * sizeof(*p->retention.items));
    p->retention.items[p->retention.n_items++] =
        (struct pipeline_item_rules){p->sources[i].name, p->sources[i].retention};
  }
}

/* objectives: { rpo: 1h, rto: 4h }; both durations above zero. */
static void parse_objectives(struct pctx *pc, const struct ytree_node *root,
                             const struct ytree_node *n, struct pipeline *p) {
  (void)root;
  struct cfg *c = &pc->cfg;
  if (cfg_want_mapping(c, n, "objectives", "a mapping such as { rpo: 1h, rto: 4h }") < 0 ||
      n->kind != YTREE_MAPPING)
    return;
  cfg_get_fields(c, n, "objectives", objectives_fields, NELEM(objectives_fields), p);
  for (size_t i = 0; i < NELEM(objectives_fields); i++) {
    const struct ytree_node *v = ytree_map_get(n, objectives_fields[i].key);
    int64_t ms = -1;
    if (v && v->kind == YTREE_SCALAR && config_parse_duration(v->text, &ms) == 0 && ms == 0) {
      struct cfg_got g;
      char *o = cfg_opt_key("objectives", objectives_fields[i].key);
      cfg_error(c, v, o, "expected a duration above zero such as 1h, got %s", cfg_got(v, &g));
      free(o);
    }
  }
}

static void parse_hooks(struct pctx *pc, const struct ytree_node *root, const struct ytree_node *n,
                        struct pipeline *p) {
  (void)root;
  struct cfg *c = &pc->cfg;
  if (cfg_want_mapping(c, n, "hooks", "a mapping such as { before: [cmd], after: [cmd] }") < 0 ||
      n->kind != YTREE_MAPPING)
    return;
  cfg_get_fields(c, n, "hooks", hooks_fields, NELEM(hooks_fields), p);
  const struct ytree_node *t = ytree_map_get(n, "timeout");
  if (t && p->hooks_timeout_ms < 1000) {
    struct cfg_got g;
    cfg_error(c, t, "hooks.timeout", "expected a duration of at least 1s, got %s", cfg_got(t, &g));
  }
}

static void parse_notify(struct pctx *pc, const struct ytree_node *root, const struct ytree_node *n,
                         struct pipeline *p) {
  (void)root;
  struct cfg_got g;
  if (n->kind != YTREE_SEQUENCE) {
    cfg_error(&pc->cfg, n, "notify",
              "expected a list such as [ { webhook: https://..., on: [failure] } ], got %s",
              cfg_got(n, &g));
    return;
  }
  p->notify = xcalloc(n->n_items, sizeof(*p->notify));
  p->n_notify = n->n_items;
  for (size_t i = 0; i < n->n_items; i++) {
    char *opt = cfg_opt_index("notify", i);
    pipeline_parse_notify_entry(&pc->cfg, n->items[i], opt, &p->notify[i]);
    free(opt);
  }
}

/* ---- top level -------------------------------------------------------- */

static void parse_version(struct pctx *pc, const struct ytree_node *root,
                          const struct ytree_node *v, struct pipeline *p) {
  (void)root;
  struct cfg_got g;
  int64_t version;
  if (cfg_get_int(&pc->cfg, v, "version", INT_MIN, INT_MAX, "an integer", &version) != 0)
    return;
  if (version != 1)
    cfg_error(&pc->cfg, v, "version", "unsupported version %s (this engine reads version 1)",
              cfg_got(v, &g));
  else
    p->version = 1;
}

static void parse_name(struct pctx *pc, const struct ytree_node *root, const struct ytree_node *v,
                       struct pipeline *p) {
  (void)root;
  cfg_get_name(&pc->cfg, v, "name", &p->name);
}

static void parse_schedule(struct pctx *pc, const struct ytree_node *root,
                           const struct ytree_node *v, struct pipeline *p) {
  (void)root;
  if (cfg_get_string(&pc->cfg, v, "schedule", &p->schedule) == 0 && !*p->schedule)
    cfg_error(&pc->cfg, v, "schedule", "expected a cron expression such as \"0 3 * * *\", got ''");
}

static void parse_tags(struct pctx *pc, const struct ytree_node *root, const struct ytree_node *v,
                       struct pipeline *p) {
  (void)root;
  cfg_get_string_list(&pc->cfg, v, "tags", 1, &p->tags, &p->n_tags);
}

static void parse_sources(struct pctx *pc, const struct ytree_node *root,
                          const struct ytree_node *v, struct pipeline *p) {
  (void)root;
  parse_plugin_list(pc, v, "sources", ENGINE_PLUGIN_SOURCE, &p->sources, &p->n_sources);
}

static void parse_sinks(struct pctx *pc, const struct ytree_node *root, const struct ytree_node *v,
                        struct pipeline *p) {
  (void)root;
  parse_plugin_list(pc, v, "sinks", ENGINE_PLUGIN_SINK, &p->sinks, &p->n_sinks);
}

/* The pipeline's top-level keys, in the order they are checked (problems at
 * one position are reported in this order). A key is parsed by its function,
 * or, when it is a block of plain fields, by the schema engine from its
 * field table. */
static const struct top_key {
  const char *key;
  /* required: what is expected when it is absent; NULL: optional */
  const char *required;
  /* called with the value; when absent only if `absent` is set (v NULL) */
  void (*parse)(struct pctx *pc, const struct ytree_node *root, const struct ytree_node *v,
                struct pipeline *p);
  int absent;
  /* a block of fields (parse NULL): its fields and what it must look like */
  const struct cfg_field *fields;
  size_t n_fields;
  const char *shape;
} top_keys[] = {
    {"version", "1", parse_version, 0, NULL, 0, NULL},
    {"name", CFG_NAME_EXPECTED, parse_name, 0, NULL, 0, NULL},
    {"schedule", NULL, parse_schedule, 0, NULL, 0, NULL},
    {"tags", NULL, parse_tags, 0, NULL, 0, NULL},
    {"sources", "a non-empty list of sources, each { type: ..., with: {...} }", parse_sources, 0,
     NULL, 0, NULL},
    {"stages", NULL, parse_stages, 1, NULL, 0, NULL},
    {"sinks", "a non-empty list of sinks, each { type: ..., with: {...} }", parse_sinks, 0, NULL, 0,
     NULL},
    {"repository", NULL, NULL, 0, repository_fields, NELEM(repository_fields),
     "a mapping with chunk_min, chunk_avg, chunk_max, pack_size, format"},
    {"limits", NULL, NULL, 0, limits_fields, NELEM(limits_fields),
     "a mapping such as { memory: 256MiB, timeout: 2h }"},
    {"objectives", NULL, parse_objectives, 0, NULL, 0, NULL},
    {"retention", NULL, parse_retention, 0, NULL, 0, NULL},
    {"hooks", NULL, parse_hooks, 0, NULL, 0, NULL},
    {"notify", NULL, parse_notify, 0, NULL, 0, NULL},
};

static void parse_top(struct pctx *pc, const struct ytree_node *root, struct pipeline *p) {
  const char *names[NELEM(top_keys)];
  for (size_t i = 0; i < NELEM(top_keys); i++)
    names[i] = top_keys[i].key;
  cfg_check_keys(&pc->cfg, root, "", names, NELEM(top_keys), 0);
  for (size_t i = 0; i < NELEM(top_keys); i++) {
    const struct top_key *k = &top_keys[i];
    const struct ytree_node *v = ytree_map_get(root, k->key);
    if (!v && k->required)
      cfg_missing(&pc->cfg, root, k->key, k->required);
    else if (k->parse && (v || k->absent))
      k->parse(pc, root, v, p);
    else if (v && cfg_want_mapping(&pc->cfg, v, k->key, k->shape) == 0 && v->kind == YTREE_MAPPING)
      cfg_get_fields(&pc->cfg, v, k->key, k->fields, k->n_fields, p);
  }
}

int pipeline_load_string(const char *path, const char *text, size_t len, pipeline_lookup_fn lookup,
                         void *ud, struct pipeline **out, char **err) {
  *out = NULL;
  *err = NULL;
  struct ytree_node *root = NULL;
  if (ytree_parse(path, text, len, &root, err) < 0)
    return -1;
  if (!root || root->kind != YTREE_MAPPING || root->n_pairs == 0) {
    struct cfg_got g;
    *err = xasprintf("%s:%d:%d: expected a mapping with version, name, sources, stages and sinks "
                     "at top level, got %s",
                     path, root ? root->line : 1, root ? root->col : 1,
                     root && root->kind == YTREE_MAPPING ? "an empty mapping" : cfg_got(root, &g));
    ytree_free(root);
    return -1;
  }

  struct pctx pc = {.cfg = {.path = path}, .lookup = lookup, .ud = ud};
  struct pipeline *p = xcalloc(1, sizeof(*p));
  p->path = xstrdup(path);
  p->hooks_timeout_ms = PIPELINE_HOOKS_TIMEOUT_MS;
  parse_top(&pc, root, p);
  collect_item_retention(&pc, root, p);
  ytree_free(root);
  if (p->rpo_ms == 0)
    p->rpo_ms = PIPELINE_DEFAULT_RPO_MS;

  if (pc.cfg.n_errs) {
    *err = cfg_take_errors(&pc.cfg);
    pipeline_free(p);
    return -1;
  }
  *out = p;
  return 0;
}

static const char *file_type_name(mode_t m) {
  return S_ISDIR(m)    ? "a directory"
         : S_ISFIFO(m) ? "a FIFO"
         : S_ISCHR(m)  ? "a character device"
         : S_ISBLK(m)  ? "a block device"
         : S_ISSOCK(m) ? "a socket"
                       : "not a regular file";
}

/* Read a whole pipeline file. Only regular files of at most
 * PIPELINE_MAX_FILE bytes: the open does not block (a FIFO would wait for a
 * writer) and the type is checked on the opened file, not on the name. */
static int read_pipeline_file(const char *path, char **text_out, size_t *len_out, char **err) {
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    *err = xasprintf("unable to open '%s': %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    *err = xasprintf("unable to stat '%s': %s", path, strerror(errno));
    close(fd);
    return -1;
  }
  if (!S_ISREG(st.st_mode)) {
    *err = xasprintf("unable to read '%s': it is %s; a pipeline must be a regular file", path,
                     file_type_name(st.st_mode));
    close(fd);
    return -1;
  }
  if (st.st_size > (off_t)PIPELINE_MAX_FILE) {
    *err = xasprintf("unable to read '%s': it is %jd bytes; a pipeline file may be at most %u "
                     "bytes (%u MiB)",
                     path, (intmax_t)st.st_size, PIPELINE_MAX_FILE, PIPELINE_MAX_FILE >> 20);
    close(fd);
    return -1;
  }
  /* a regular file never blocks, but reads are plain from here on */
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0)
    (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  /* read to EOF rather than trusting st_size (the file may change under
   * us), never past the limit */
  size_t cap = (size_t)st.st_size + 1, len = 0;
  char *text = xmalloc(cap);
  for (;;) {
    if (len == cap) {
      if (cap > PIPELINE_MAX_FILE) {
        *err = xasprintf("unable to read '%s': it grew past %u bytes (%u MiB), the limit for a "
                         "pipeline file",
                         path, PIPELINE_MAX_FILE, PIPELINE_MAX_FILE >> 20);
        free(text);
        close(fd);
        return -1;
      }
      cap = cap * 2 > PIPELINE_MAX_FILE + 1 ? PIPELINE_MAX_FILE + 1 : cap * 2;
      text = xrealloc(text, cap);
    }
    ssize_t n = read(fd, text + len, cap - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      *err = xasprintf("unable to read '%s': %s", path, strerror(errno));
      free(text);
      close(fd);
      return -1;
    }
    if (n == 0)
      break;
    len += (size_t)n;
  }
  close(fd);
  *text_out = text;
  *len_out = len;
  return 0;
}

int pipeline_load(const char *path, pipeline_lookup_fn lookup, void *ud, struct pipeline **out,
                  char **err) {
  *out = NULL;
  *err = NULL;
  char *text;
  size_t len;
  if (read_pipeline_file(path, &text, &len, err) < 0)
    return -1;
  int rc = pipeline_load_string(path, text, len, lookup, ud, out, err);
  free(text);
  return rc;
}

static void free_plugin_cfgs(struct pipeline_plugin_cfg *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(v[i].name);
    free(v[i].type);
    json_decref(v[i].with);
    free(v[i].retention);
  }
  free(v);
}

void pipeline_free(struct pipeline *p) {
  if (!p)
    return;
  free(p->path);
  free(p->name);
  free(p->schedule);
  cfg_free_strv(p->tags, p->n_tags);
  free_plugin_cfgs(p->sources, p->n_sources);
  free_plugin_cfgs(p->sinks, p->n_sinks);
  free(p->compress_algorithm);
  free(p->encrypt_algorithm);
  free(p->encrypt_passphrase_ref);
  free(p->encrypt_key_file);
  for (size_t i = 0; i < p->n_tenant_of; i++) {
    free(p->tenant_of[i].source);
    free(p->tenant_of[i].glob);
    free(p->tenant_of[i].tenant);
  }
  free(p->tenant_of);
  cfg_free_strv(p->retention.keep_tags, p->retention.n_keep_tags);
  free(p->retention.apply);
  free(p->retention.items);
  cfg_free_strv(p->hooks_before, p->n_hooks_before);
  cfg_free_strv(p->hooks_after, p->n_hooks_after);
  for (size_t i = 0; i < p->n_notify; i++) {
    free(p->notify[i].webhook);
    cfg_free_strv(p->notify[i].on, p->notify[i].n_on);
    for (size_t k = 0; k < p->notify[i].n_headers; k++) {
      free(p->notify[i].headers[k].name);
      free(p->notify[i].headers[k].value);
    }
    free(p->notify[i].headers);
  }
  free(p->notify);
  free(p);
}
