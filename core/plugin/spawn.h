/* Child processes for plugins (core/plugin/spawn.c): the host table's
 * spawn, child_wait, child_stderr, child_kill and child_free, as
 * docs/PLUGINS.md 4.1 describes them. Errors and warnings go through the
 * calling instance's table (h->set_error, h->log). */
#ifndef CORE_PLUGIN_SPAWN_H
#define CORE_PLUGIN_SPAWN_H

#include "engine/host.h"

int spawn_child(const struct engine_host *h, const struct engine_spawn_opts *o,
                struct engine_child **child);
/* The same for the core's own children (hooks): the child leads a new
 * process group, and spawn_kill and spawn_free signal the whole group, so a
 * shell command's own children go with it. */
int spawn_child_group(const struct engine_host *h, const struct engine_spawn_opts *o,
                      struct engine_child **child);
int spawn_wait(const struct engine_host *h, struct engine_child *child, int *status);
const char *spawn_stderr(const struct engine_host *h, struct engine_child *child);
void spawn_kill(const struct engine_host *h, struct engine_child *child, int sig);
void spawn_free(const struct engine_host *h, struct engine_child *child);

#endif
