/* ABI test plugin: a descriptor that claims engine plugin ABI 2.0. It answers
 * the query whatever major the host asks for, as a careless plugin would, so
 * the loader's own major check is what refuses it. */
#include <engine/plugin.h>

static int bad_create(const struct engine_host *host, void **inst) {
  (void)host;
  *inst = 0;
  return ENGINE_OK;
}

static void bad_destroy(void *inst) {
  (void)inst;
}

static int bad_backup(void *inst, const struct engine_emitter *em) {
  (void)inst;
  (void)em;
  return ENGINE_OK;
}

static int bad_restore_begin(void *inst, const struct engine_restore_opts *opts, void **rctx) {
  (void)inst;
  (void)opts;
  *rctx = 0;
  return ENGINE_OK;
}

static int bad_restore_item(void *rctx, const struct engine_item *item,
                            const struct engine_reader *data) {
  (void)rctx;
  (void)item;
  (void)data;
  return ENGINE_OK;
}

static int bad_restore_end(void *rctx, int status) {
  (void)rctx;
  return status;
}

static const struct engine_source_ops bad_ops = {
    .struct_size = sizeof(struct engine_source_ops),
    .backup = bad_backup,
    .restore_begin = bad_restore_begin,
    .restore_item = bad_restore_item,
    .restore_end = bad_restore_end,
};

static const struct engine_plugin bad_plugin = {
    .abi_major = 2,
    .abi_minor = 0,
    .struct_size = sizeof(struct engine_plugin),
    .kind = ENGINE_PLUGIN_SOURCE,
    .name = "bad-major",
    .version = "2.0.0",
    .license = "MIT",
    .description = "Test plugin built for a future ABI major.",
    .create = bad_create,
    .destroy = bad_destroy,
    .source = &bad_ops,
};

ENGINE_PLUGIN_EXPORT const struct engine_plugin *engine_plugin_query(uint32_t host_abi_major) {
  (void)host_abi_major;
  return &bad_plugin;
}
