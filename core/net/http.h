/* The engine's shared HTTP client: one libcurl multi handle driven by a
 * libuv loop on a dedicated thread (curl_multi_socket_action with uv_poll
 * and a uv_timer). Any thread may submit a request and wait for it; all
 * transfers share the connection cache, and the number of parallel
 * transfers is bounded. Implements host->http_request. */
#ifndef CORE_NET_HTTP_H
#define CORE_NET_HTTP_H

#include "engine/host.h"

/* Maximum parallel transfers (default 8); call before the first request. */
void http_set_max_parallel(int n);
int http_request(const struct engine_http_request *req, struct engine_http_response *resp);
void http_response_free(struct engine_http_response *resp);
char *http_header(const struct engine_http_response *resp, const char *name);
/* Stop the loop thread (at exit). */
void http_shutdown(void);

#endif
