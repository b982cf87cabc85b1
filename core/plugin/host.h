/* Host side of the plugin API: builds the engine_host table handed to each
 * plugin instance (config accessors over the validated `with:` object,
 * secrets, child processes, worker pool, logging). */
#ifndef CORE_PLUGIN_HOST_H
#define CORE_PLUGIN_HOST_H

#include <jansson.h>

#include "engine/plugin.h"

/* instance_name is used to prefix log lines ("source tenants: ...").
 * config is the normalised `with:` object (borrowed reference is taken:
 * json_incref). */
struct engine_host *host_new(const char *instance_name, json_t *config);
void host_free(struct engine_host *h);

/* The message of the last set_error on this host (or "" ). */
const char *host_last_error(const struct engine_host *h);
void host_clear_error(struct engine_host *h);

/* Create a plugin instance with its own host table. On failure returns -1
 * and *err (malloc'd) holds "<kind> '<name>' (<type>): <plugin message>". */
struct plugin_instance {
  const struct engine_plugin *plugin;
  struct engine_host *host;
  void *inst;
  char *name;
};
int plugin_instance_new(const struct engine_plugin *p, const char *name, json_t *config,
                        struct plugin_instance **out, char **err);
void plugin_instance_free(struct plugin_instance *pi);

/* Global log verbosity for log lines from plugins and the core. */
void host_set_log_level(int lvl);
int host_get_log_level(void);

#endif
