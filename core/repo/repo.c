/* Opening a repository (repo.h): probe every sink, read and check the
 * config, open the keys; or initialise an empty location. */
#include "repo/repo.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "repo/index.h"
#include "repo/keys2.h"
#include "util/log.h"

/* ---- config ----------------------------------------------------------- */

/* A size field of the config object: an integer from min to max, reported
 * as written otherwise (a negative number is not wrapped to a huge one). */
static int config_size(json_t *obj, const char *label, const char *key, uint64_t min, uint64_t max,
                       uint64_t *out, const char *where, char **err) {
  json_t *v = json_object_get(obj, key);
  if (json_is_integer(v) && json_integer_value(v) >= 0 && (uint64_t)json_integer_value(v) >= min &&
      (uint64_t)json_integer_value(v) <= max) {
    *out = (uint64_t)json_integer_value(v);
    return 0;
  }
  char *got = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
  *err =
      xasprintf("%s: %s in config is %s; expected a whole number of bytes from %llu to %llu", where,
                label, got ? got : "missing", (unsigned long long)min, (unsigned long long)max);
  free(got);
  return -1;
}

static int parse_config(struct repo *r, const char *text, size_t len, const char *where,
                        char **err) {
  json_error_t je;
  json_t *c = json_loadb(text, len, 0, &je);
  if (!c || json_integer_value(json_object_get(c, "engine_repository")) != 1) {
    json_decref(c);
    *err = xasprintf("%s: 'config' is not an engine repository configuration", where);
    return -1;
  }
  json_int_t v = json_integer_value(json_object_get(c, "version"));
  if (v < 1 || v > REPO_FORMAT_MAX) {
    json_decref(c);
    *err = xasprintf("%s: repository format version %lld is not supported by this engine (it "
                     "reads versions 1 to %d)",
                     where, (long long)v, REPO_FORMAT_MAX);
    return -1;
  }
  r->format = (int)v;
  const char *id = json_string_value(json_object_get(c, "id"));
  const char *enc = json_string_value(json_object_get(c, "encryption"));
  json_t *ch = json_object_get(c, "chunker");
  if (!id || strlen(id) != 2 * REPO_ID_LEN || !enc || !ch) {
    json_decref(c);
    *err = xasprintf("%s: malformed repository config", where);
    return -1;
  }
  snprintf(r->id, sizeof(r->id), "%s", id);
  const char *want = r->crypto ? r->crypto->name : "none";
  int rc = 0;
  const char *cerr = NULL;
  uint64_t cmin = 0, cavg = 0, cmax = 0;
  if (strcmp(enc, want) != 0) {
    *err = xasprintf("%s: the repository is encrypted with '%s' but the pipeline configures '%s'",
                     where, enc, want);
    rc = -1;
  } else if (config_size(ch, "chunker.min", "min", 1, UINT32_MAX, &cmin, where, err) != 0 ||
             config_size(ch, "chunker.avg", "avg", 1, UINT32_MAX, &cavg, where, err) != 0 ||
             config_size(ch, "chunker.max", "max", 1, UINT32_MAX, &cmax, where, err) != 0 ||
             config_size(c, "pack_size", "pack_size", REPO_MIN_PACK_SIZE, REPO_MAX_PACK_SIZE,
                         &r->pack_size, where, err) != 0) {
    rc = -1;
  } else {
    r->chunker.min_size = (uint32_t)cmin;
    r->chunker.avg_size = (uint32_t)cavg;
    r->chunker.max_size = (uint32_t)cmax;
    if (chunker_params_check(&r->chunker, &cerr) != 0) {
      *err = xasprintf("%s: invalid chunker parameters in config: %s", where, cerr);
      rc = -1;
    }
  }
  json_decref(c);
  return rc;
}

struct probe_ctx {
  char first[512];
  int any;
};

static int probe_cb(void *ud, const char *name, uint64_t size) {
  (void)size;
  struct probe_ctx *p = ud;
  snprintf(p->first, sizeof(p->first), "%s", name);
  p->any = 1;
  return 1; /* one is enough */
}

/* 0 empty, 1 holds a repository config, -1 error, 2 holds something else */
static int probe_sink(struct repo_sink *s, void **cfg, size_t *cfg_len, char **err) {
  host_clear_error(s->pi->host);
  int rc = s->pi->plugin->sink->get(s->pi->inst, "config", 0, 0, cfg, cfg_len);
  if (rc == ENGINE_OK)
    return 1;
  if (rc != ENGINE_NOT_FOUND) {
    *err = repo_sink_error(s, "unable to read", "config");
    return -1;
  }
  struct probe_ctx p = {{0}, 0};
  host_clear_error(s->pi->host);
  if (s->pi->plugin->sink->list(s->pi->inst, "", probe_cb, &p) != ENGINE_OK) {
    *err = repo_sink_error(s, "unable to list", "");
    return -1;
  }
  if (!p.any)
    return 0;
  if (strncmp(p.first, "keys/", 5) == 0) {
    *err = xasprintf("sink '%s': %s holds a key ('%s') but no 'config': an interrupted repository "
                     "initialisation; "
                     "remove the location's contents or choose another location",
                     repo_sink_name(s), repo_sink_where(s), p.first);
    return 2;
  }
  *err = xasprintf(
      "sink '%s': %s holds '%s' but no engine repository; refusing to use it (choose an empty "
      "location)",
      repo_sink_name(s), repo_sink_where(s), p.first);
  return 2;
}

static int init_repo(struct repo *r, const struct repo_open_opts *o, char **err) {
  unsigned char rid[REPO_ID_LEN];
  r->format = o->format ? o->format : REPO_FORMAT_VERSION;
  if (o->write_only) {
    *err = xstrdup("a write-only host cannot create a repository: create it (with 'repository: "
                   "{format: 2}') on a host that holds the passphrase");
    return -1;
  }
  if (RAND_bytes(rid, sizeof(rid)) != 1 || RAND_bytes(r->enc_key, REPO_KEY_LEN) != 1 ||
      RAND_bytes(r->mac_key, REPO_KEY_LEN) != 1 ||
      RAND_bytes((unsigned char *)&r->chunker_seed, sizeof(r->chunker_seed)) != 1) {
    *err = xstrdup("the system random number generator failed");
    return -1;
  }
  if (r->format >= 2 && keys2_init(r, err) != 0)
    return -1;
  hex_encode(rid, sizeof(rid), r->id);
  r->chunker = o->chunker;
  if (!r->chunker.min_size)
    r->chunker.min_size = CHUNKER_DEFAULT_MIN;
  if (!r->chunker.avg_size)
    r->chunker.avg_size = CHUNKER_DEFAULT_AVG;
  if (!r->chunker.max_size)
    r->chunker.max_size = CHUNKER_DEFAULT_MAX;
  const char *cerr = NULL;
  if (chunker_params_check(&r->chunker, &cerr) != 0) {
    *err = xasprintf("repository chunker parameters: %s", cerr);
    return -1;
  }
  r->pack_size = o->pack_size ? o->pack_size : REPO_DEFAULT_PACK_SIZE;
  /* pack offsets are 32-bit: a pack (plus one chunk past the target) must stay well below 4 GiB */
  if (r->pack_size < REPO_MIN_PACK_SIZE || r->pack_size > REPO_MAX_PACK_SIZE) {
    *err = xasprintf("repository.pack_size %llu is outside %u..%u bytes (1 MiB .. 1 GiB)",
                     (unsigned long long)r->pack_size, REPO_MIN_PACK_SIZE, REPO_MAX_PACK_SIZE);
    return -1;
  }
  char *now = iso_time(time(NULL));
  json_t *c =
      json_pack("{s:i, s:i, s:s, s:s, s:s, s:s, s:{s:s, s:I, s:I, s:I}, s:I}", "engine_repository",
                1, "version", r->format, "id", r->id, "created", now, "encryption",
                r->crypto ? r->crypto->name : "none", "id_hash", "hmac-sha256", "chunker",
                "algorithm", "fastcdc-gear64", "min", (json_int_t)r->chunker.min_size, "avg",
                (json_int_t)r->chunker.avg_size, "max", (json_int_t)r->chunker.max_size,
                "pack_size", (json_int_t)r->pack_size);
  free(now);
  char *ctext = json_dumps(c, JSON_INDENT(2) | JSON_SORT_KEYS);
  json_decref(c);
  char *ktext = NULL;
  if (repo_key_make(r, o->passphrase, o->passphrase_len, &ktext, err) != 0) {
    free(ctext);
    return -1;
  }
  char kid[65], kname[80];
  sha256_hex(ktext, strlen(ktext), kid);
  snprintf(kname, sizeof(kname), "keys/%s", kid);
  if (o->dry_run) {
    free(ktext);
    free(ctext);
    return 0;
  }
  /* The key first: a location with a config but no key would be unusable. */
  int rc = repo_put(r, kname, ktext, strlen(ktext), ENGINE_PUT_NO_OVERWRITE, err);
  if (rc == 0 && r->format >= 2)
    rc = keys2_keyring_save(r, err);
  if (rc == 0)
    rc = repo_put(r, "config", ctext, strlen(ctext), ENGINE_PUT_NO_OVERWRITE, err);
  if (rc == 0)
    snprintf(r->key_id, sizeof(r->key_id), "%s", kid);
  free(ktext);
  free(ctext);
  return rc == 0 ? 0 : -1;
}

/* With several sinks, one that missed runs (an optional sink during an
 * outage) lacks index objects the others have: say so, with the fix. */
static void warn_sinks_behind(struct repo *r) {
  if (r->n_sinks < 2)
    return;
  json_t **lists = xcalloc(r->n_sinks, sizeof(*lists));
  for (size_t i = 0; i < r->n_sinks; i++) {
    char *e = NULL;
    if (r->sinks[i].failed || repo_sink_list(&r->sinks[i], "snapshots/", &lists[i], &e) != 0)
      lists[i] = NULL;
    free(e);
  }
  for (size_t i = 0; i < r->n_sinks; i++)
    for (size_t k = 0; k < r->n_sinks; k++) {
      if (i == k || !lists[i] || !lists[k])
        continue;
      size_t missing = 0, a, b;
      json_t *x, *y;
      json_array_foreach(lists[k], a, x) {
        int found = 0;
        json_array_foreach(lists[i], b, y) if (json_equal(json_object_get(x, "name"),
                                                          json_object_get(y, "name"))) {
          found = 1;
          break;
        }
        missing += !found;
      }
      if (missing)
        log_warn("sink '%s' lacks %zu snapshot(s) that sink '%s' has; run 'engine sync PIPELINE "
                 "--from %s --to %s'",
                 repo_sink_name(&r->sinks[i]), missing, repo_sink_name(&r->sinks[k]),
                 repo_sink_name(&r->sinks[k]), repo_sink_name(&r->sinks[i]));
    }
  for (size_t i = 0; i < r->n_sinks; i++)
    json_decref(lists[i]);
  free(lists);
}

/* A handle for the sinks and crypto of o, before anything is read. */
static struct repo *repo_new(const struct repo_open_opts *o, char **err) {
  const struct engine_plugin *crypto = o->crypto;
  if (crypto && crypto->crypto->key_len != REPO_KEY_LEN) {
    *err = xasprintf("crypto plugin '%s' uses %zu-byte keys; the repository format needs %d",
                     crypto->name, crypto->crypto->key_len, REPO_KEY_LEN);
    return NULL;
  }
  if (crypto && (!o->passphrase || !o->passphrase_len)) {
    *err = xstrdup("no passphrase or key file given for an encrypted repository");
    return NULL;
  }
  struct repo *r = xcalloc(1, sizeof(*r));
  r->sinks = o->sinks;
  r->n_sinks = o->n_sinks;
  r->crypto = crypto;
  if (crypto) {
    r->nonce_len = crypto->crypto->nonce_len;
    r->tag_len = crypto->crypto->tag_len;
  }
  r->compress_algo = o->compress_algo;
  r->compress_level = o->compress_level;
  r->index = index_new();
  keys2_dk_cache_init(r);
  return r;
}

/* What probing the sinks found: the config (of sink cfg_from), how many
 * sinks hold the repository and how many are empty. */
struct probe_result {
  void *cfg;
  size_t cfg_len;
  ssize_t cfg_from;
  size_t with_repo, empty;
};

/* Probe every sink: all empty, or all holding the same repository. A sink
 * that cannot be reached is skipped (marked failed) by read-only commands,
 * and when it is optional. */
static int probe_sinks(struct repo *r, const struct repo_open_opts *o, struct probe_result *p,
                       char **err) {
  for (size_t i = 0; i < r->n_sinks; i++) {
    void *c = NULL;
    size_t cl = 0;
    int st = probe_sink(&r->sinks[i], &c, &cl, err);
    if (st < 0 && r->n_sinks > 1 && (o->read_only || !r->sinks[i].required)) {
      if (o->read_only)
        log_warn("%s; skipping sink '%s'", *err, repo_sink_name(&r->sinks[i]));
      else /* an optional sink that cannot be reached misses this run */
        log_warn("%s; sink '%s' is not required: continuing without it (it will miss this "
                 "snapshot; 'engine sync' copies what it missed)",
                 *err, repo_sink_name(&r->sinks[i]));
      free(*err);
      *err = NULL;
      r->sinks[i].failed = 1;
      continue;
    }
    if (st < 0 || st == 2)
      return -1;
    if (st == 0) {
      p->empty++;
      continue;
    }
    p->with_repo++;
    if (!p->cfg) {
      p->cfg = c;
      p->cfg_len = cl;
      p->cfg_from = (ssize_t)i;
      continue;
    }
    int differ = cl != p->cfg_len || memcmp(c, p->cfg, cl) != 0;
    free(c);
    if (differ) {
      *err =
          xasprintf("sinks '%s' and '%s' hold different repositories (their config objects differ)",
                    repo_sink_name(&r->sinks[p->cfg_from]), repo_sink_name(&r->sinks[i]));
      return -1;
    }
  }
  size_t n_failed = 0;
  for (size_t i = 0; i < r->n_sinks; i++)
    n_failed += r->sinks[i].failed;
  if (n_failed == r->n_sinks) {
    *err = xstrdup("no sink could be reached (see the warnings above)");
    return -1;
  }
  return 0;
}

/* Sinks that hold nothing while sink p->cfg_from holds the repository:
 * read-only commands read from the others (warned), every other command
 * refuses (-1, *err says how to copy the repository there). */
static int empty_sinks(struct repo *r, const struct repo_open_opts *o, const struct probe_result *p,
                       char **err) {
  const char *from = repo_sink_name(&r->sinks[p->cfg_from]);
  for (size_t i = 0; i < r->n_sinks; i++) {
    void *c = NULL;
    size_t cl = 0;
    char *e = NULL;
    int empty = !r->sinks[i].failed && probe_sink(&r->sinks[i], &c, &cl, &e) == 0;
    free(c);
    free(e);
    if (!empty)
      continue;
    const char *name = repo_sink_name(&r->sinks[i]), *where = repo_sink_where(&r->sinks[i]);
    if (!o->read_only) {
      *err = xasprintf(
          "sink '%s' (%s) is empty but sink '%s' holds the repository; copy the repository to it "
          "first with 'engine sync PIPELINE --from %s --to %s' (or remove the sink from the "
          "pipeline)",
          name, where, from, from, name);
      return -1;
    }
    log_warn("sink '%s' (%s) holds no repository; reading from sink '%s' instead ('engine sync "
             "PIPELINE --from %s --to %s' copies it back)",
             name, where, from, from, name);
    r->sinks[i].failed = 1;
  }
  return 0;
}

int repo_open(const struct repo_open_opts *o, struct repo **out, char **err) {
  *err = NULL;
  struct repo *r = repo_new(o, err);
  if (!r)
    return -1;
  struct probe_result p = {NULL, 0, -1, 0, 0};
  if (probe_sinks(r, o, &p, err) != 0)
    goto fail;
  if (p.with_repo == 0) {
    if (!o->create) {
      *err = xasprintf("no repository at sink '%s' (%s); run the pipeline once to create it",
                       repo_sink_name(&r->sinks[0]), repo_sink_where(&r->sinks[0]));
      goto fail;
    }
    if (init_repo(r, o, err) != 0)
      goto fail;
    r->created = 1;
    *out = r;
    return 0;
  }
  if (p.empty > 0 && empty_sinks(r, o, &p, err) != 0)
    goto fail;
  char where[600];
  snprintf(where, sizeof(where), "sink '%s' (%s)", repo_sink_name(&r->sinks[p.cfg_from]),
           repo_sink_where(&r->sinks[p.cfg_from]));
  if (parse_config(r, p.cfg, p.cfg_len, where, err) != 0)
    goto fail;
  free(p.cfg);
  p.cfg = NULL;
  if (o->write_only ? keys2_writer_open(r, o->passphrase, o->passphrase_len,
                                        "stages.encrypt.key_file", err) != 0
                    : repo_keys_open(r, o->passphrase, o->passphrase_len, err) != 0)
    goto fail;
  warn_sinks_behind(r);
  *out = r;
  return 0;
fail:
  free(p.cfg);
  repo_close(r);
  return -1;
}

void repo_close(struct repo *r) {
  if (!r)
    return;
  index_free(r->index);
  keys2_free(r);
  free(r->journal_dir);
  OPENSSL_cleanse(r->enc_key, sizeof(r->enc_key));
  OPENSSL_cleanse(r->mac_key, sizeof(r->mac_key));
  free(r);
}
