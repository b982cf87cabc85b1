/* Read side of the host's progress hints: what a plugin instance announced
 * through host->progress_total, for the progress display. */
#ifndef CORE_PLUGIN_HOST_PROGRESS_H
#define CORE_PLUGIN_HOST_PROGRESS_H

#include <stdint.h>

#include "engine/host.h"

/* Total bytes the instance expects to emit, 0 when it never said (unknown).
 * Safe to call from any thread while the plugin runs. */
uint64_t host_progress_total(const struct engine_host *h);

#endif
