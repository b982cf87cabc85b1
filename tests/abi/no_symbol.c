/* ABI test plugin: a shared object that is not an engine plugin (it exports
 * a function, but not engine_plugin_query), e.g. a stray library dropped
 * into a plugin directory. */
#include <engine/plugin.h>

ENGINE_PLUGIN_EXPORT int engine_plugin_version(void);

ENGINE_PLUGIN_EXPORT int engine_plugin_version(void) {
  return ENGINE_ABI_MAJOR;
}
