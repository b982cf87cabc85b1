/* The pipeline YAML loader (core/config: yaml_tree.c through libyaml, then
 * pipeline.c): the input is a pipeline file. It is loaded with
 * pipeline_load_string, as validate, run and serve load pipelines, once with
 * the real plugins of the build tree (every option checked against the
 * schemas of files, postgres-schema, local, s3, minio, gcs, aes-256-gcm)
 * and once without a plugin lookup (structure only).
 *
 * Checked beyond "no crash": a refused pipeline comes with a message naming
 * the file, and an accepted one has what the engine relies on (a name, at
 * least one source and one sink, each with a type, a resolved plugin and
 * its options). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/pipeline.h"
#include "fuzz_common.h"
#include "plugin/loader.h"

static struct plugin_registry *reg;

static const struct engine_plugin *lookup(void *ud, enum engine_plugin_kind kind, const char *type,
                                          char **err) {
  return registry_find(ud, kind, type, err);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet();
  const char *dirs[] = {ENGINE_BUILD_PLUGIN_DIR};
  if (registry_load(dirs, 1, &reg) != 0)
    fuzz_fail(__FILE__, __LINE__, "registry_load", "no plugins in %s", ENGINE_BUILD_PLUGIN_DIR);
  char *err = NULL;
  const struct engine_plugin *s3 = registry_find(reg, ENGINE_PLUGIN_SINK, "s3", &err);
  if (!s3)
    fuzz_fail(__FILE__, __LINE__, "registry_find", "%s", err);
  return 0;
}

static void check(struct pipeline *p, int with_lookup) {
  FUZZ_CHECK(p->name && p->n_sources > 0 && p->n_sinks > 0, "an accepted pipeline lacks a name, "
                                                            "a source or a sink");
  for (size_t i = 0; i < p->n_sources + p->n_sinks; i++) {
    struct pipeline_plugin_cfg *c = i < p->n_sources ? &p->sources[i] : &p->sinks[i - p->n_sources];
    FUZZ_CHECK(c->name && c->type && json_is_object(c->with), "an entry without name, type or "
                                                              "options");
    if (with_lookup)
      FUZZ_CHECK(c->plugin != NULL, "an accepted entry without its plugin");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  for (int with_lookup = 1; with_lookup >= 0; with_lookup--) {
    struct pipeline *p = NULL;
    char *err = NULL;
    int rc = pipeline_load_string("fuzz.yml", (const char *)data, size, with_lookup ? lookup : NULL,
                                  reg, &p, &err);
    if (rc == 0) {
      check(p, with_lookup);
      pipeline_free(p);
    } else {
      FUZZ_CHECK(err && strstr(err, "fuzz.yml"), "refused without a message naming the file");
    }
    free(err);
  }
  return 0;
}
