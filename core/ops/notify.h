/* A pipeline's `notify:` webhooks (docs/CONFIG.md, "notify"): a JSON body
 * POSTed through the shared HTTP client (net/http.h) to every webhook whose
 * `on:` names the event, with retries and backoff on transport errors and
 * retryable statuses, within the entry's `timeout:` for the whole call. A
 * webhook that cannot be reached is a warning, never a failure of what
 * raised the event.
 *
 * Events and who raises them: success, failure, partial (the end of `engine
 * run`), consecutive_failures (the Nth failed run in a row), storage_low (a
 * local sink's file system fuller than the threshold, after a run),
 * verify_failed (`engine check` found damage, a restore test failed, or the
 * check could not run); stale, recovered and daily_summary (`engine serve`,
 * through notify_send). */
#ifndef CORE_OPS_NOTIFY_H
#define CORE_OPS_NOTIFY_H

#include <jansson.h>

#include "config/pipeline.h"

/* The fields every body has: event, pipeline, host, time (now, UTC) and
 * engine_version. A new reference; the caller adds the event's own fields. */
json_t *notify_body(const struct pipeline *p, const char *event);

/* Sends body (borrowed; see notify_body) to every webhook of p whose `on:`
 * names event. Blocks the calling thread until each call is answered or its
 * timeout passes (run it on a thread that may wait: at most the sum of the
 * matching entries' timeouts, 30 s each by default). Thread-safe. Returns
 * how many webhooks accepted it (a 2xx answer). */
int notify_send(const struct pipeline *p, const char *event, json_t *body);

/* Does some webhook of p want event? (so a body need not be built) */
int notify_wanted(const struct pipeline *p, const char *event);

/* consecutive_failures: sends to the entries whose N equals failures (once
 * per streak: at the Nth failure in a row). */
int notify_consecutive_failures(const struct pipeline *p, int failures, json_t *body);

/* storage_low: measures the file system of every `local` sink of p and
 * sends one body per sink (body's fields plus sink, path, used_percent,
 * threshold_percent, free_bytes, total_bytes) to the entries whose
 * storage_threshold it reaches. Returns how many were accepted. */
int notify_storage_low(const struct pipeline *p, json_t *body);

#endif
