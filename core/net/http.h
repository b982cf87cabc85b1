/* The engine's shared HTTP client: one libcurl multi handle driven by a
 * libuv loop on a dedicated thread (curl_multi_socket_action with uv_poll
 * and a uv_timer). Any thread may submit a request and wait for it; all
 * transfers share the connection cache, and the number of parallel
 * transfers is bounded. Implements host->http_request. */
#ifndef CORE_NET_HTTP_H
#define CORE_NET_HTTP_H

#include <stdint.h>

#include "engine/host.h"

/* Maximum parallel transfers (default 8); call before the first request. */
void http_set_max_parallel(int n);
int http_request(const struct engine_http_request *req, struct engine_http_response *resp);
void http_response_free(struct engine_http_response *resp);
char *http_header(const struct engine_http_response *resp, const char *name);
/* Flow control for a receiver (engine_http_request.on_body) that cannot
 * keep up: called from inside on_body, pause_current asks that the
 * transfer receive no more bytes once on_body returns (the bytes of this
 * call are taken) and gives its id (0: not inside on_body on the HTTP
 * thread; nothing happens); any thread then calls http_resume(id) when it
 * wants the rest. Only that transfer waits; a resume for a transfer that
 * has ended is ignored. */
uint64_t http_pause_current(void);
void http_resume(uint64_t id);
/* Stop the loop thread (at exit). */
void http_shutdown(void);

#endif
