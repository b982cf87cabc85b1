/* emitter.item_cut (plugin ABI 1.6): a source ends the current chunk at a
 * point of its item's stream. Backs up items through the real pipeline
 * (a source plugin defined here, the local sink, aes-256-gcm, small chunker
 * parameters) and checks that chunk boundaries land on every cut, that a
 * cut at the start or right after another cut adds no chunk, that the part
 * after a cut gets the same chunks whatever came before it, and that the
 * bytes restored are the bytes written, with or without cuts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/pipeline.h"
#include "engine/plugin.h"
#include "pipeline/backup.h"
#include "pipeline/restore.h"
#include "plugin/host.h"
#include "plugin/loader.h"
#include "repo/index.h"
#include "repo/repo.h"
#include "repo/snapshot.h"
#include "repo/tree.h"
#include "compress/compress.h"
#include "util/encoding.h"

#define PAYLOAD 60000u
#define MAX_CUTS 8

/* What the test source emits: items of a prefix, a payload, and cuts at
 * the given offsets of the item's stream (0 and repeats included). */
struct spec {
  const char *name;
  size_t prefix_len;
  unsigned char prefix_byte;
  size_t cuts[MAX_CUTS];
  size_t n_cuts;
};

static unsigned char payload[PAYLOAD];
static struct spec specs[4];
static size_t n_specs;
static int cut_rc = ENGINE_OK;

/* restored content, per item */
static unsigned char *restored[4];
static size_t restored_len[4];

static void item_bytes(const struct spec *s, unsigned char **out, size_t *len) {
  *len = s->prefix_len + PAYLOAD;
  *out = malloc(*len);
  assert_non_null(*out);
  memset(*out, s->prefix_byte, s->prefix_len);
  memcpy(*out + s->prefix_len, payload, PAYLOAD);
}

static int t_create(const struct engine_host *h, void **inst) {
  *inst = (void *)h;
  return ENGINE_OK;
}

static void t_destroy(void *inst) {
  (void)inst;
}

/* Writes each item in odd-sized pieces (so cuts fall inside what one write
 * would have carried) and cuts where the spec says. */
static int t_backup(void *inst, const struct engine_emitter *em) {
  (void)inst;
  if (!ENGINE_HAS_FIELD(em, struct engine_emitter, item_cut) || em->item_cut == NULL)
    return ENGINE_ERROR;
  for (size_t i = 0; i < n_specs; i++) {
    const struct spec *s = &specs[i];
    unsigned char *buf;
    size_t len;
    item_bytes(s, &buf, &len);
    struct engine_item it = {.name = s->name,
                             .name_len = strlen(s->name),
                             .type = ENGINE_ITEM_STREAM,
                             .meta_json = NULL,
                             .size = len};
    if (em->item_begin(em, &it) != ENGINE_OK) {
      free(buf);
      return ENGINE_ERROR;
    }
    size_t pos = 0, c = 0;
    while (pos < len || c < s->n_cuts) {
      if (c < s->n_cuts && s->cuts[c] == pos) {
        cut_rc |= em->item_cut(em);
        c++;
        continue;
      }
      size_t next = c < s->n_cuts ? s->cuts[c] : len;
      size_t n = next - pos < 777 ? next - pos : 777;
      if (em->item_write(em, buf + pos, n) != ENGINE_OK) {
        free(buf);
        return ENGINE_ERROR;
      }
      pos += n;
    }
    free(buf);
    if (em->item_end(em, ENGINE_OK, NULL, NULL) != ENGINE_OK)
      return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

static int t_restore_begin(void *inst, const struct engine_restore_opts *o, void **rctx) {
  (void)o;
  *rctx = inst;
  return ENGINE_OK;
}

static int t_restore_item(void *rctx, const struct engine_item *item,
                          const struct engine_reader *rd) {
  (void)rctx;
  size_t k = n_specs;
  for (size_t i = 0; i < n_specs; i++)
    if (item->name_len == strlen(specs[i].name) &&
        memcmp(item->name, specs[i].name, item->name_len) == 0)
      k = i;
  if (k == n_specs || rd == NULL)
    return ENGINE_ERROR;
  size_t cap = rd->size + 1, len = 0;
  unsigned char *buf = malloc(cap);
  for (;;) {
    ssize_t n = rd->read(rd, buf + len, cap - len);
    if (n < 0) {
      free(buf);
      return ENGINE_ERROR;
    }
    if (n == 0)
      break;
    len += (size_t)n;
    if (len == cap)
      break;
  }
  free(restored[k]);
  restored[k] = buf;
  restored_len[k] = len;
  return ENGINE_OK;
}

static int t_restore_end(void *rctx, int status) {
  (void)rctx;
  (void)status;
  return ENGINE_OK;
}

static const struct engine_source_ops t_ops = {.struct_size = sizeof(struct engine_source_ops),
                                               .backup = t_backup,
                                               .restore_begin = t_restore_begin,
                                               .restore_item = t_restore_item,
                                               .restore_end = t_restore_end};

static const struct engine_plugin t_plugin = {
    ENGINE_PLUGIN_HEADER, .kind = ENGINE_PLUGIN_SOURCE, .name = "cutter", .version = "1",
    .create = t_create,   .destroy = t_destroy,         .source = &t_ops};

struct fixture {
  char dir[64];
  struct plugin_registry *reg;
  struct plugin_instance *sink_pi, *src_pi;
  struct repo_sink sink;
  struct repo *repo;
};

static int setup(void **state) {
  struct fixture *f = calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "%s", "/tmp/engine-test-cut-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  const char *dirs[] = {ENGINE_TEST_PLUGIN_DIR};
  assert_int_equal(registry_load(dirs, 1, &f->reg), 0);
  char *err = NULL;
  const struct engine_plugin *local = registry_find(f->reg, ENGINE_PLUGIN_SINK, "local", &err);
  assert_non_null(local);
  const struct engine_plugin *crypto =
      registry_find(f->reg, ENGINE_PLUGIN_CRYPTO, "aes-256-gcm", &err);
  assert_non_null(crypto);
  json_t *cfg = json_pack("{s:s, s:b}", "path", f->dir, "fsync", 0);
  assert_int_equal(plugin_instance_new(local, "local", cfg, &f->sink_pi, &err), 0);
  json_decref(cfg);
  cfg = json_object();
  assert_int_equal(plugin_instance_new(&t_plugin, "cuts", cfg, &f->src_pi, &err), 0);
  json_decref(cfg);
  f->sink.pi = f->sink_pi;
  f->sink.required = 1;
  struct repo_open_opts o;
  memset(&o, 0, sizeof(o));
  o.sinks = &f->sink;
  o.n_sinks = 1;
  o.crypto = crypto;
  o.passphrase = "cut test";
  o.passphrase_len = strlen(o.passphrase);
  o.create = 1;
  o.chunker.min_size = 1024;
  o.chunker.avg_size = 4096;
  o.chunker.max_size = 16384;
  o.compress_algo = COMPRESS_ZSTD;
  o.compress_level = 3;
  assert_int_equal(repo_open(&o, &f->repo, &err), 0);
  /* incompressible, content-defined boundaries all over it */
  uint64_t x = 0x9e3779b97f4a7c15u;
  for (size_t i = 0; i < PAYLOAD; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    payload[i] = (unsigned char)x;
  }
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  repo_close(f->repo);
  plugin_instance_free(f->src_pi);
  plugin_instance_free(f->sink_pi);
  registry_free(f->reg);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
  for (size_t i = 0; i < 4; i++) {
    free(restored[i]);
    restored[i] = NULL;
  }
  free(f);
  return 0;
}

static void run_backup(struct fixture *f, struct backup_result *res) {
  struct pipeline p;
  memset(&p, 0, sizeof(p));
  p.version = 1;
  p.name = "cuttest";
  p.n_sources = 1;
  p.n_sinks = 1;
  struct backup_opts bo;
  memset(&bo, 0, sizeof(bo));
  bo.pipeline = &p;
  bo.repo = f->repo;
  bo.sources = &f->src_pi;
  char *err = NULL;
  cut_rc = ENGINE_OK;
  int rc = backup_run(&bo, res, &err);
  if (rc != 0)
    fail_msg("backup failed: %s", err ? err : "?");
  assert_int_equal(cut_rc, ENGINE_OK);
  assert_int_equal(res->partial, 0);
}

/* The chunks of each item of the latest snapshot: ids and raw lengths. */
struct chunks {
  unsigned char ids[64][32];
  size_t ends[64]; /* end offset of each chunk in the item's stream */
  size_t n;
};

struct walk {
  struct repo *repo;
  struct chunks *out;
};

static int collect(void *ud, json_t *item) {
  struct walk *w = ud;
  const char *name = json_string_value(json_object_get(item, "name"));
  for (size_t k = 0; k < n_specs; k++) {
    if (name == NULL || strcmp(name, specs[k].name) != 0)
      continue;
    struct chunks *c = &w->out[k];
    json_t *ids = json_object_get(item, "chunks");
    size_t pos = 0;
    c->n = 0;
    for (size_t i = 0; i < json_array_size(ids) && i < 64; i++) {
      assert_int_equal(hex_decode(json_string_value(json_array_get(ids, i)), c->ids[i], 32), 0);
      struct index_entry e;
      assert_true(index_get(w->repo->index, c->ids[i], &e));
      pos += e.raw_length;
      c->ends[i] = pos;
      c->n++;
    }
  }
  return 0;
}

static void latest_chunks(struct fixture *f, struct chunks *out, struct snapshot **snap) {
  char *err = NULL;
  assert_int_equal(snapshot_find(f->repo, "latest", snap, &err), 0);
  struct walk w = {f->repo, out};
  const struct snapshot_source *s = &(*snap)->sources[0];
  assert_int_equal(
      tree_foreach_ids(f->repo, (const unsigned char(*)[32])s->tree, s->n_tree, collect, &w, &err),
      0);
}

static int has_end(const struct chunks *c, size_t off) {
  for (size_t i = 0; i < c->n; i++)
    if (c->ends[i] == off)
      return 1;
  return 0;
}

static void restore_all(struct fixture *f, const struct snapshot *snap) {
  struct restore_opts ro;
  memset(&ro, 0, sizeof(ro));
  ro.repo = f->repo;
  ro.snapshot = snap;
  ro.sources = &f->src_pi;
  ro.n_sources = 1;
  ro.yes = 1;
  struct restore_result rr;
  char *err = NULL;
  int rc = restore_run(&ro, &rr, &err);
  if (rc != 0)
    fail_msg("restore failed: %s", err ? err : "?");
  for (size_t k = 0; k < n_specs; k++) {
    unsigned char *want;
    size_t len;
    item_bytes(&specs[k], &want, &len);
    assert_int_equal(restored_len[k], len);
    assert_memory_equal(restored[k], want, len);
    free(want);
  }
}

static void test_cuts_are_chunk_boundaries(void **state) {
  struct fixture *f = *state;
  /* a: cuts at 0 (nothing), 5000, 5000 again (nothing), 5001 (a 1-byte
   * chunk, below min_size), 20000 and at the end (nothing);
   * b: the same stream, no cuts */
  n_specs = 2;
  specs[0] = (struct spec){"a", 3000, 'A', {0, 5000, 5000, 5001, 20000, 3000 + PAYLOAD}, 6};
  specs[1] = (struct spec){"b", 3000, 'A', {0}, 0};
  struct backup_result res;
  run_backup(f, &res);
  json_decref(res.warnings);
  struct chunks c[2];
  memset(c, 0, sizeof(c));
  struct snapshot *snap = NULL;
  latest_chunks(f, c, &snap);
  assert_true(has_end(&c[0], 5000));
  assert_true(has_end(&c[0], 5001));
  assert_true(has_end(&c[0], 20000));
  assert_int_equal(c[0].ends[c[0].n - 1], 3000 + PAYLOAD);
  /* no empty chunk from the cut at 0, the repeated cut or the final cut */
  for (size_t i = 0; i < c[0].n; i++)
    assert_true(i == 0 ? c[0].ends[0] > 0 : c[0].ends[i] > c[0].ends[i - 1]);
  /* without cuts the content-defined boundaries are elsewhere: a 1-byte
   * chunk at 5000 is not something the chunker makes on its own */
  assert_false(has_end(&c[1], 5001) && has_end(&c[1], 5000));
  /* the bytes restored are those written, with cuts or without */
  restore_all(f, snap);
  snapshot_free(snap);
}

static void test_after_a_cut_chunks_do_not_depend_on_what_came_before(void **state) {
  struct fixture *f = *state;
  /* the same payload after prefixes of different lengths and bytes, each
   * followed by a cut: the payload's chunks are the same blobs */
  n_specs = 3;
  specs[0] = (struct spec){"p1", 1500, 'x', {1500}, 1};
  specs[1] = (struct spec){"p2", 9999, 'y', {9999}, 1};
  specs[2] = (struct spec){"p3", 9999, 'z', {0}, 0}; /* no cut: payload chunked with the prefix */
  struct backup_result res;
  run_backup(f, &res);
  json_decref(res.warnings);
  struct chunks c[3];
  memset(c, 0, sizeof(c));
  struct snapshot *snap = NULL;
  latest_chunks(f, c, &snap);
  assert_int_equal(c[0].ends[0], 1500);
  assert_int_equal(c[1].ends[0], 9999);
  /* p1 and p2: one chunk of prefix, then the same payload chunks */
  assert_int_equal(c[0].n - 1, c[1].n - 1);
  for (size_t i = 1; i < c[0].n; i++) {
    assert_memory_equal(c[0].ids[i], c[1].ids[i], 32);
    assert_int_equal(c[0].ends[i] - 1500, c[1].ends[i] - 9999);
  }
  /* p3 (no cut) shares at most the tail of it: its first payload chunk
   * starts with prefix bytes */
  assert_memory_not_equal(c[2].ids[1], c[1].ids[1], 32);
  restore_all(f, snap);
  snapshot_free(snap);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_cuts_are_chunk_boundaries, setup, teardown),
      cmocka_unit_test_setup_teardown(test_after_a_cut_chunks_do_not_depend_on_what_came_before,
                                      setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
