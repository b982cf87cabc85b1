/* Snapshot manifests (core/repo/snapshot.c): manifests written by the engine
 * before struct snapshot existed read and write back byte for byte; a
 * manifest saved and loaded gives the same struct; a manifest of another
 * format version or repository is refused, and listed as unreadable. Uses
 * the real local sink plugin from the build tree (encryption none). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin/host.h"
#include "plugin/loader.h"
#include "repo/repo.h"
#include "repo/snapshot.h"
#include "compress/compress.h"

/* Manifests as the engine wrote them (decrypted from test repositories, item
 * paths shortened): a first run with a warning (test_changed_during_backup), a
 * repaired snapshot (test_damage), an incremental partial run
 * (test_partial), a run that stored no pack (index ""); and one made from
 * the third with fields a newer engine might add, an item name that is not
 * UTF-8, a failed source and no "indexes" (an older engine). */
static const char GOLDEN_1[] =
    "{\"compression\":{\"algorithm\":\"zstd\",\"level\":3},\"created_ns\":1796622033808117293,\""
    "duration_seconds\":0.47199999999999998,\"engine_version\":\"0.1.0\",\"hostname\":\"vm\",\""
    "index\":\"3f7a098664228a9256786b850e3b5537ccd1a522598755d6d47c7a150cacbc4f\",\"index"
    "es\":[\"3f7a098664228a9256786b850e3b5537ccd1a522598755d6d47c7a150cacbc4f\"],\"parent"
    "\":null,\"pipeline\":\"changed\",\"repository\":\"0396073bdacdc169390fe1c29cc347b1928661"
    "d7d5b38b8bde15fcdeddea1658\",\"sinks_missed\":[],\"sources\":[{\"bytes\":67292180,\"erro"
    "r\":null,\"failed_items\":0,\"items\":208,\"marks\":{\"file_flags\":true,\"xattrs\":true},\""
    "name\":\"files\",\"plugin_version\":\"1.1.0\",\"tree\":[\"c62a87cb27f349ac7aa10257aa256626"
    "5e77256c4c01f207259adb3312373125\"],\"tree_size\":91108,\"type\":\"files\",\"warnings\":["
    "{\"item\":\"/tmp/t/src/grow.bin\",\"message\":\"changed during backup (size/mtime diffe"
    "r before and after reading)\"}]}],\"stats\":{\"bytes_read\":67292180,\"chunks\":255,\"it"
    "ems\":208,\"new_bytes\":67292180,\"new_chunks\":255,\"packs\":4,\"reused_bytes\":0,\"reuse"
    "d_items\":0,\"stored_bytes\":67143417},\"status\":\"partial\",\"tags\":[],\"time\":\"2026-12"
    "-07T05:40:33Z\",\"time_end\":\"2026-12-07T05:40:33Z\",\"username\":\"root\",\"version\":1,\""
    "warnings\":[{\"item\":\"/tmp/t/src/grow.bin\",\"message\":\"changed during backup (size/"
    "mtime differ before and after reading)\",\"source\":\"files\"}]}";

static const char GOLDEN_2[] =
    "{\"compression\":{\"algorithm\":\"zstd\",\"level\":3},\"created_ns\":1796622019268347414,\""
    "duration_seconds\":0.039,\"engine_version\":\"0.1.0\",\"hostname\":\"vm\",\"index\":\"a373ee"
    "7100c7e7952ced1a612f1cd303a55831608e9d557e6e25c0d33b3bce8b\",\"indexes\":[\"23f7101d"
    "d54f304556fb48416dc120393fb52ca53a2eaa72367e410c2b15468c\"],\"parent\":\"2a7a818992e"
    "67a7d26370d425f87776503e2c497ff830b79c6fb171c78e199f9\",\"pipeline\":\"damage\",\"repa"
    "ired_from\":\"cada6d49dc857a716ebdb0021be4f62da760aad5e72069a87f1f891b208f0541\",\"r"
    "epository\":\"20530a16cfecb62110567fa1ea21dfee13f617416f5ea007446e3382655a2bd9\",\"s"
    "inks_missed\":[],\"sources\":[{\"bytes\":4194317,\"error\":null,\"failed_items\":1,\"items"
    "\":10,\"lost_items\":[{\"item\":\"/tmp/t/src/three.bin\",\"reason\":\"blob 43991546402c114"
    "4: its pack ffed4dcc3587cb77 is missing\"}],\"marks\":{\"file_flags\":true,\"xattrs\":t"
    "rue},\"name\":\"files\",\"plugin_version\":\"1.1.0\",\"tree\":[\"0e1e16e7b81f7dceac4d86a7c2"
    "a5b292f8c6d0d5eb76981d3f52d573104ae4dd\"],\"tree_size\":3543,\"type\":\"files\",\"warnin"
    "gs\":[{\"item\":\"/tmp/t/src/three.bin\",\"message\":\"lost, removed by repair: blob 439"
    "91546402c1144: its pack ffed4dcc3587cb77 is missing\"}]}],\"stats\":{\"bytes_read\":2"
    "097152,\"chunks\":8,\"items\":10,\"new_bytes\":2097152,\"new_chunks\":2,\"packs\":2,\"reuse"
    "d_bytes\":4194317,\"reused_items\":4,\"stored_bytes\":2098386},\"status\":\"partial\",\"ta"
    "gs\":[\"repaired\"],\"time\":\"2026-12-07T05:40:18Z\",\"time_end\":\"2026-12-07T05:40:18Z\""
    ",\"username\":\"root\",\"version\":1,\"warnings\":[{\"item\":\"/tmp/t/src/three.bin\",\"messa"
    "ge\":\"lost, removed by repair: blob 43991546402c1144: its pack ffed4dcc3587cb77 i"
    "s missing\",\"source\":\"files\"}]}";

static const char GOLDEN_3[] =
    "{\"compression\":{\"algorithm\":\"zstd\",\"level\":3},\"created_ns\":1796622022244113051,\""
    "duration_seconds\":0.028000000000000001,\"engine_version\":\"0.1.0\",\"hostname\":\"vm\","
    "\"index\":\"9bdaa468b02502d4ee7e579fcee0d704d1635eeedb5751c731f9fcb161814249\",\"inde"
    "xes\":[\"9bdaa468b02502d4ee7e579fcee0d704d1635eeedb5751c731f9fcb161814249\"],\"paren"
    "t\":\"03a136c1ae8b2f2cb42ad9970544cf1eaa2d677c6172a3d081ef1d449cb5b641\",\"pipeline\""
    ":\"partial\",\"repository\":\"5a08975098efff2c18e933feb84e3c9bc1860d18d88374948fe60b1"
    "0e8c58c3d\",\"sinks_missed\":[],\"sources\":[{\"bytes\":1048581,\"error\":null,\"failed_it"
    "ems\":0,\"items\":9,\"marks\":{\"file_flags\":true,\"xattrs\":true},\"name\":\"files\",\"plugi"
    "n_version\":\"1.1.0\",\"tree\":[\"cd0d775e2db09663a1cfd1b3ad88c8fac6dd0788b6bf34c8b352"
    "e006a092543c\"],\"tree_size\":2943,\"type\":\"files\",\"warnings\":[{\"item\":\"/tmp/t/does-"
    "not-exist\",\"message\":\"configured path does not exist\"}]}],\"stats\":{\"bytes_read\":"
    "0,\"chunks\":2,\"items\":9,\"new_bytes\":0,\"new_chunks\":0,\"packs\":1,\"reused_bytes\":104"
    "8581,\"reused_items\":2,\"stored_bytes\":756},\"status\":\"partial\",\"tags\":[],\"time\":\"2"
    "026-12-07T05:40:22Z\",\"time_end\":\"2026-12-07T05:40:22Z\",\"username\":\"root\",\"versio"
    "n\":1,\"warnings\":[{\"item\":\"/tmp/t/does-not-exist\",\"message\":\"configured path does"
    " not exist\",\"source\":\"files\"}]}";

static const char GOLDEN_4[] =
    "{\"compression\":{\"algorithm\":\"zstd\",\"level\":3},\"created_ns\":1796622884388197168,\""
    "duration_seconds\":0.0060000000000000001,\"engine_version\":\"0.1.0\",\"hostname\":\"vm\""
    ",\"index\":\"\",\"indexes\":[],\"parent\":\"d82226b17cad647eefa3b5db59614b80897a7d48a7458"
    "aa9bba9f198b7c0c05b\",\"pipeline\":\"p2\",\"repository\":\"a00d683398b6827badcf8ac19ce78"
    "482431c18a45f5fd0b9e7b601328132e968\",\"sinks_missed\":[],\"sources\":[{\"bytes\":30001"
    "3,\"error\":null,\"failed_items\":0,\"items\":11,\"marks\":{\"file_flags\":true,\"xattrs\":t"
    "rue},\"name\":\"files\",\"plugin_version\":\"1.1.0\",\"tree\":[\"0659c1c55788bf3965a1e21139"
    "efe78d744d44156c9c34db7d4ac1f6d935c9c3\"],\"tree_size\":3594,\"type\":\"files\",\"warnin"
    "gs\":[{\"item\":\"/tmp/t/missing\",\"message\":\"configured path does not exist\"}]},{\"by"
    "tes\":13,\"error\":null,\"failed_items\":0,\"items\":9,\"marks\":{\"file_flags\":true,\"xatt"
    "rs\":true},\"name\":\"more\",\"plugin_version\":\"1.1.0\",\"tree\":[\"6d295ba0a34be5fa668d83"
    "17ea2e2905d202b36286a66a82272bbc017d3ebb45\"],\"tree_size\":2885,\"type\":\"files\",\"wa"
    "rnings\":[]}],\"stats\":{\"bytes_read\":0,\"chunks\":7,\"items\":20,\"new_bytes\":0,\"new_ch"
    "unks\":0,\"packs\":0,\"reused_bytes\":300026,\"reused_items\":7,\"stored_bytes\":0},\"stat"
    "us\":\"partial\",\"tags\":[\"t1\",\"two "
    "words\"],\"time\":\"2026-01-04T00:00:00Z\",\"time_end\""
    ":\"2026-01-04T00:00:00Z\",\"username\":\"root\",\"version\":1,\"warnings\":[{\"item\":\"/tmp/"
    "t/missing\",\"message\":\"configured path does not exist\",\"source\":\"files\"}]}";

static const char GOLDEN_5[] =
    "{\"compression\":{\"algorithm\":\"zstd\",\"level\":3},\"created_ns\":1796622022244113051,\""
    "duration_seconds\":0.028000000000000001,\"engine_version\":\"0.1.0\",\"future_field\":{"
    "\"a\":[1,2]},\"hostname\":\"vm\",\"index\":\"9bdaa468b02502d4ee7e579fcee0d704d1635eeedb57"
    "51c731f9fcb161814249\",\"parent\":\"03a136c1ae8b2f2cb42ad9970544cf1eaa2d677c6172a3d0"
    "81ef1d449cb5b641\",\"pipeline\":\"partial\",\"repository\":\"5a08975098efff2c18e933feb84"
    "e3c9bc1860d18d88374948fe60b10e8c58c3d\",\"sinks_missed\":[],\"sources\":[{\"bytes\":104"
    "8581,\"error\":\"the source failed\",\"failed_items\":0,\"future_source_field\":\"x\",\"ite"
    "ms\":9,\"marks\":{\"lsn\":\"0/"
    "16B3748\",\"n\":3},\"name\":\"files\",\"plugin_version\":\"1.1.0\","
    "\"tree\":[\"cd0d775e2db09663a1cfd1b3ad88c8fac6dd0788b6bf34c8b352e006a092543c\"],\"tre"
    "e_size\":2943,\"type\":\"files\",\"warnings\":[{\"item\":\"/tmp/t/does-not-exist\",\"message"
    "\":\"configured path does not exist\"},{\"item_b64\":\"/25hbWU=\",\"message\":\"not UTF-8\""
    "}]}],\"stats\":{\"bytes_read\":0,\"chunks\":2,\"items\":9,\"new_bytes\":0,\"new_chunks\":0,\""
    "packs\":1,\"reused_bytes\":1048581,\"reused_items\":2,\"stored_bytes\":756},\"status\":\"p"
    "artial\",\"tags\":[],\"time\":\"2026-12-07T05:40:22Z\",\"time_end\":\"2026-12-07T05:40:22Z"
    "\",\"username\":\"root\",\"version\":1,\"warnings\":[{\"item\":\"/tmp/t/does-not-exist\",\"mes"
    "sage\":\"configured path does not exist\",\"source\":\"files\"},{\"item_b64\":\"/25hbWU=\","
    "\"message\":\"not UTF-8\",\"source\":\"files\"}]}";

static const char *const GOLDEN[] = {GOLDEN_1, GOLDEN_2, GOLDEN_3, GOLDEN_4, GOLDEN_5};

static char *manifest_text(const struct snapshot *s) {
  json_t *m = snapshot_json(s);
  char *t = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(m);
  return t;
}

/* Read back and written again, each manifest gives the same bytes. */
static void test_golden_round_trip(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(GOLDEN) / sizeof(GOLDEN[0]); i++) {
    json_error_t je;
    json_t *m = json_loads(GOLDEN[i], 0, &je);
    assert_non_null(m);
    const char *why = NULL;
    struct snapshot *s =
        snapshot_parse(m, json_string_value(json_object_get(m, "repository")), &why);
    assert_null(why);
    assert_non_null(s);
    char *t = manifest_text(s);
    assert_string_equal(t, GOLDEN[i]);
    free(t);
    struct snapshot *d = snapshot_dup(s);
    t = manifest_text(d);
    assert_string_equal(t, GOLDEN[i]);
    free(t);
    snapshot_free(d);
    snapshot_free(s);
    json_decref(m);
  }
}

/* What the struct says of GOLDEN_5 (typed fields, not JSON). */
static void test_typed_fields(void **state) {
  (void)state;
  json_error_t je;
  json_t *m = json_loads(GOLDEN_5, 0, &je);
  const char *why = NULL;
  struct snapshot *s = snapshot_parse(m, json_string_value(json_object_get(m, "repository")), &why);
  assert_non_null(s);
  assert_int_equal(s->version, 1);
  int64_t t;
  assert_int_equal(parse_iso_time(json_string_value(json_object_get(m, "time")), &t), 0);
  assert_true(s->time == t);
  assert_string_equal(s->status, "partial");
  assert_non_null(s->parent);
  assert_false(s->has_indexes);
  assert_int_equal(s->n_sources, 1);
  const struct snapshot_source *src = &s->sources[0];
  assert_string_equal(src->error, "the source failed");
  assert_int_equal(src->n_tree, 1);
  assert_int_equal(json_integer_value(json_object_get(src->marks, "n")), 3);
  assert_int_equal(src->n_warnings, 2);
  assert_int_equal(src->warnings[1].item_len, 5);
  assert_memory_equal(src->warnings[1].item, "\xffname", 5);
  assert_int_equal(s->n_warnings, 2);
  assert_string_equal(s->warnings[1].source, src->name);
  assert_non_null(json_object_get(s->extra, "future_field"));
  assert_non_null(json_object_get(src->extra, "future_source_field"));
  snapshot_free(s);
  json_decref(m);
}

struct fixture {
  char dir[64];
  struct plugin_registry *reg;
  struct plugin_instance *sink_pi;
  struct repo_sink sink;
  struct repo *repo;
};

static int setup(void **state) {
  struct fixture *f = calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "%s", "/tmp/engine-test-snapshot-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  const char *dirs[] = {ENGINE_TEST_PLUGIN_DIR};
  assert_int_equal(registry_load(dirs, 1, &f->reg), 0);
  char *err = NULL;
  const struct engine_plugin *local = registry_find(f->reg, ENGINE_PLUGIN_SINK, "local", &err);
  assert_non_null(local);
  json_t *cfg = json_pack("{s:s, s:b}", "path", f->dir, "fsync", 0);
  assert_int_equal(plugin_instance_new(local, "local", cfg, &f->sink_pi, &err), 0);
  json_decref(cfg);
  f->sink.pi = f->sink_pi;
  f->sink.required = 1;
  struct repo_open_opts o;
  memset(&o, 0, sizeof(o));
  o.sinks = &f->sink;
  o.n_sinks = 1;
  o.create = 1;
  o.compress_algo = COMPRESS_ZSTD;
  o.compress_level = 3;
  assert_int_equal(repo_open(&o, &f->repo, &err), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  repo_close(f->repo);
  plugin_instance_free(f->sink_pi);
  registry_free(f->reg);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

static char **strings(size_t n, ...) {
  char **v = calloc(n + 1, sizeof(char *));
  va_list ap;
  va_start(ap, n);
  for (size_t i = 0; i < n; i++)
    v[i] = strdup(va_arg(ap, const char *));
  va_end(ap);
  return v;
}

/* A snapshot with every field set, as a backup (or repair) would. */
static struct snapshot *full_snapshot(const struct repo *r, int64_t time, int64_t created_ns) {
  struct snapshot *s = snapshot_new();
  s->repository = strdup(r->id);
  s->pipeline = strdup("p");
  s->hostname = strdup("host");
  s->username = strdup("user");
  s->time = time;
  s->time_end = time + 3;
  s->created_ns = created_ns;
  s->duration = 2.5;
  s->engine_version = strdup("0.1.0");
  s->status = strdup("partial");
  s->parent = strdup("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  s->tags = strings(2, "a", "b c");
  s->n_tags = 2;
  s->compression = strdup("zstd");
  s->compression_level = 3;
  s->index = strdup("ab");
  s->indexes = strings(2, "aa", "ab");
  s->n_indexes = 2;
  s->has_indexes = 1;
  s->stats = (struct snapshot_stats){1, 2, 3, 4, 5, 6, 7, 8, 9};
  s->sinks_missed = strings(1, "s3");
  s->n_sinks_missed = 1;
  s->repaired_from = strdup("fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210");
  for (int k = 0; k < 2; k++) {
    struct snapshot_source *src = snapshot_add_source(s);
    src->name = strdup(k ? "db" : "files");
    src->type = strdup(k ? "postgres-schema" : "files");
    src->plugin_version = strdup("1.0.0");
    src->n_tree = (size_t)k + 1;
    src->tree = calloc(src->n_tree, 32);
    for (size_t i = 0; i < src->n_tree; i++)
      memset(src->tree[i], 0x10 + (int)i + 7 * k, 32);
    src->tree_size = 100;
    src->items = 10;
    src->bytes = 1000;
    src->failed_items = (uint64_t)k;
    src->marks = json_pack("{s:s, s:i}", "snapshot", "00000003-1", "n", k);
    snapshot_note_add(&src->warnings, &src->n_warnings, NULL, "\xff\x01", 2, "odd name");
    snapshot_note_add(&src->warnings, &src->n_warnings, NULL, NULL, 0, "whole source");
    snapshot_note_add(&s->warnings, &s->n_warnings, src->name, "\xff\x01", 2, "odd name");
    src->error = k ? strdup("connection lost") : NULL;
    snapshot_note_add(&src->lost_items, &src->n_lost_items, NULL, "gone.txt", 8, "pack missing");
    src->lost_tree_blobs = (uint64_t)k;
  }
  return s;
}

static void assert_notes_equal(const struct snapshot_note *a, size_t na,
                               const struct snapshot_note *b, size_t nb) {
  assert_int_equal(na, nb);
  for (size_t i = 0; i < na; i++) {
    if (a[i].source)
      assert_string_equal(a[i].source, b[i].source);
    else
      assert_null(b[i].source);
    assert_int_equal(a[i].item_len, b[i].item_len);
    if (a[i].item)
      assert_memory_equal(a[i].item, b[i].item, a[i].item_len);
    else
      assert_null(b[i].item);
    assert_string_equal(a[i].text, b[i].text);
  }
}

static void assert_strings_equal(char *const *a, size_t na, char *const *b, size_t nb) {
  assert_int_equal(na, nb);
  for (size_t i = 0; i < na; i++)
    assert_string_equal(a[i], b[i]);
}

static void assert_snapshots_equal(const struct snapshot *a, const struct snapshot *b) {
  assert_int_equal(a->version, b->version);
  assert_string_equal(a->repository, b->repository);
  assert_string_equal(a->pipeline, b->pipeline);
  assert_string_equal(a->hostname, b->hostname);
  assert_string_equal(a->username, b->username);
  assert_true(a->time == b->time && a->time_end == b->time_end);
  assert_true(a->created_ns == b->created_ns);
  assert_true(a->duration == b->duration);
  assert_string_equal(a->engine_version, b->engine_version);
  assert_string_equal(a->status, b->status);
  assert_string_equal(a->parent, b->parent);
  assert_strings_equal(a->tags, a->n_tags, b->tags, b->n_tags);
  assert_string_equal(a->compression, b->compression);
  assert_int_equal(a->compression_level, b->compression_level);
  assert_string_equal(a->index, b->index);
  assert_int_equal(a->has_indexes, b->has_indexes);
  assert_strings_equal(a->indexes, a->n_indexes, b->indexes, b->n_indexes);
  assert_memory_equal(&a->stats, &b->stats, sizeof(a->stats));
  assert_notes_equal(a->warnings, a->n_warnings, b->warnings, b->n_warnings);
  assert_strings_equal(a->sinks_missed, a->n_sinks_missed, b->sinks_missed, b->n_sinks_missed);
  assert_string_equal(a->repaired_from, b->repaired_from);
  assert_int_equal(a->n_sources, b->n_sources);
  for (size_t k = 0; k < a->n_sources; k++) {
    const struct snapshot_source *x = &a->sources[k], *y = &b->sources[k];
    assert_string_equal(x->name, y->name);
    assert_string_equal(x->type, y->type);
    assert_string_equal(x->plugin_version, y->plugin_version);
    assert_int_equal(x->n_tree, y->n_tree);
    assert_memory_equal(x->tree, y->tree, 32 * x->n_tree);
    assert_true(x->tree_size == y->tree_size && x->items == y->items && x->bytes == y->bytes);
    assert_true(x->failed_items == y->failed_items && x->lost_tree_blobs == y->lost_tree_blobs);
    assert_true(json_equal(x->marks, y->marks));
    assert_notes_equal(x->warnings, x->n_warnings, y->warnings, y->n_warnings);
    if (x->error)
      assert_string_equal(x->error, y->error);
    else
      assert_null(y->error);
    assert_notes_equal(x->lost_items, x->n_lost_items, y->lost_items, y->n_lost_items);
  }
}

/* A manifest saved and loaded gives the same struct; its id is the
 * object's, and raw (show --json) is the stored JSON with "id". */
static void test_save_load(void **state) {
  struct fixture *f = *state;
  struct snapshot *s = full_snapshot(f->repo, 1767225600, 5);
  char *err = NULL;
  assert_int_equal(snapshot_save(f->repo, s, &err), 0);
  assert_int_equal(strlen(s->id), 64);
  struct snapshot *l = NULL;
  assert_int_equal(snapshot_load(f->repo, s->id, &l, &err), 0);
  assert_string_equal(l->id, s->id);
  assert_snapshots_equal(s, l);
  assert_string_equal(json_string_value(json_object_get(l->raw, "id")), s->id);
  assert_string_equal(json_string_value(json_object_get(l->raw, "pipeline")), "p");
  /* the same content gives the same object */
  char again[65];
  memcpy(again, s->id, 65);
  assert_int_equal(snapshot_save(f->repo, s, &err), 0);
  assert_string_equal(s->id, again);
  struct snapshot *found = NULL;
  assert_int_equal(snapshot_find(f->repo, "latest", &found, &err), 0);
  assert_snapshots_equal(s, found);
  snapshot_free(found);
  snapshot_free(l);
  snapshot_free(s);
}

/* Oldest first: by time, then created_ns. */
static void test_list_order(void **state) {
  struct fixture *f = *state;
  char *err = NULL;
  int64_t times[][2] = {{300, 1}, {100, 9}, {300, 0}, {200, 5}};
  for (size_t i = 0; i < 4; i++) {
    struct snapshot *s = full_snapshot(f->repo, times[i][0], times[i][1]);
    assert_int_equal(snapshot_save(f->repo, s, &err), 0);
    snapshot_free(s);
  }
  struct snapshot_list l;
  json_t *bad = NULL;
  assert_int_equal(snapshot_list(f->repo, &l, &bad, &err), 0);
  assert_int_equal(l.n, 4);
  assert_int_equal(json_array_size(bad), 0);
  int64_t want[][2] = {{100, 9}, {200, 5}, {300, 0}, {300, 1}};
  for (size_t i = 0; i < 4; i++)
    assert_true(l.v[i]->time == want[i][0] && l.v[i]->created_ns == want[i][1]);
  struct snapshot *newest = snapshot_list_take(&l, 3);
  snapshot_list_free(&l);
  assert_true(newest->time == 300 && newest->created_ns == 1);
  snapshot_free(newest);
  json_decref(bad);
}

/* A manifest of format version 2, or of another repository, is refused by
 * snapshot_load, listed as unreadable, and keeps 'latest' from being
 * decided. */
static void test_refused(void **state) {
  struct fixture *f = *state;
  char *err = NULL;
  struct snapshot *good = full_snapshot(f->repo, 1000, 1);
  assert_int_equal(snapshot_save(f->repo, good, &err), 0);
  json_t *v2 = snapshot_json(good);
  json_object_set_new(v2, "version", json_integer(2));
  json_t *foreign = snapshot_json(good);
  json_object_set_new(foreign, "repository", json_string("00ff"));
  char id_v2[65], id_foreign[65];
  assert_int_equal(repo_save_json(f->repo, "snapshot", v2, id_v2, &err), 0);
  assert_int_equal(repo_save_json(f->repo, "snapshot", foreign, id_foreign, &err), 0);
  json_decref(v2);
  json_decref(foreign);

  struct snapshot *s = NULL;
  assert_int_not_equal(snapshot_load(f->repo, id_v2, &s, &err), 0);
  assert_non_null(strstr(err, "format version this engine does not read"));
  assert_non_null(strstr(err, id_v2));
  free(err);
  err = NULL;
  assert_int_not_equal(snapshot_load(f->repo, id_foreign, &s, &err), 0);
  assert_non_null(strstr(err, "belongs to another repository"));
  free(err);
  err = NULL;

  struct snapshot_list l;
  json_t *bad = NULL;
  assert_int_equal(snapshot_list(f->repo, &l, &bad, &err), 0);
  assert_int_equal(l.n, 1);
  assert_string_equal(l.v[0]->id, good->id);
  assert_int_equal(json_array_size(bad), 2);
  snapshot_list_free(&l);
  json_decref(bad);
  /* without a list for them, unreadable snapshots are an error */
  assert_int_not_equal(snapshot_list(f->repo, &l, NULL, &err), 0);
  assert_non_null(strstr(err, "2 snapshot(s) exist but cannot be read"));
  free(err);
  err = NULL;
  assert_int_not_equal(snapshot_find(f->repo, "latest", &s, &err), 0);
  assert_non_null(strstr(err, "'latest' cannot be decided"));
  free(err);
  err = NULL;
  assert_int_equal(snapshot_find(f->repo, good->id, &s, &err), 0);
  snapshot_free(s);
  snapshot_free(good);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_golden_round_trip),
      cmocka_unit_test(test_typed_fields),
      cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
