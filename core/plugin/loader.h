/* Plugin loader: finds `*.so` files on the search path, dlopens them, calls
 * engine_plugin_query(ENGINE_ABI_MAJOR) and checks the descriptor.
 *
 * Search path, in order (first plugin of a given kind+name wins, later
 * duplicates are reported as shadowed):
 *   1. --plugin-dir DIR (repeatable)
 *   2. $ENGINE_PLUGIN_PATH (colon-separated)
 *   3. the build tree (ENGINE_BUILD_PLUGIN_DIR, compiled in; only used when
 *      the running binary lives in the build tree)
 *   4. the install prefix (ENGINE_INSTALL_PLUGIN_DIR, compiled in)
 * Each directory is scanned flat plus its immediate subdirectories (the
 * build tree keeps one directory per plugin).
 */
#ifndef CORE_PLUGIN_LOADER_H
#define CORE_PLUGIN_LOADER_H

#include <stddef.h>

#include "engine/plugin.h"

struct plugin_entry {
  char *path;                         /* the .so */
  const struct engine_plugin *plugin; /* NULL if it failed to load */
  char *error;                        /* why it was refused, or NULL */
  int shadowed;                       /* another plugin of the same kind+name came first */
  void *handle;                       /* dlopen handle */
};

struct plugin_registry {
  struct plugin_entry *entries;
  size_t n_entries;
  char **dirs; /* the search path actually used */
  size_t n_dirs;
};

/* Build the registry. extra_dirs: the --plugin-dir values (may be NULL/0). */
int registry_load(const char *const *extra_dirs, size_t n_extra, struct plugin_registry **out);
void registry_free(struct plugin_registry *r);

/* Find a usable plugin by kind and name. On failure returns NULL and *err
 * (malloc'd) says why: not found (listing the available names of that kind
 * and the search path), or found but refused (with the loader's reason). */
const struct engine_plugin *registry_find(struct plugin_registry *r, enum engine_plugin_kind kind,
                                          const char *name, char **err);

/* Check a descriptor returned by a query function (also used by tests).
 * Returns 0 or -1 with *err (malloc'd), e.g.
 *   "plugin /x/libfoo.so was built for engine plugin ABI 2.0, but this engine
 *    provides ABI 1.0; rebuild the plugin against engine 1.x headers" */
int plugin_check_descriptor(const char *path, const struct engine_plugin *p, char **err);

/* The bounds a checked descriptor declares for option `name` (ABI 1.5
 * option_bounds): 1 with *min / *max (either may be NULL), or 0 when it
 * declares none (a plugin of an older ABI never does). */
int plugin_option_bounds(const struct engine_plugin *p, const char *name, const char **min,
                         const char **max);

/* Load one .so: dlopen, dlsym, query, check. */
int plugin_load_file(const char *path, struct plugin_entry *out);

const char *plugin_kind_name(enum engine_plugin_kind k); /* "source", "sink", "crypto" */

#endif
