/* What the object-store sinks need of the host (objstore.h). */
#include "objstore.h"

int objstore_need_http(const struct engine_host *h, const char *sink) {
  if (h->abi_minor >= 1 && ENGINE_HAS_FIELD(h, struct engine_host, http_header) &&
      h->http_request != NULL && h->http_response_free != NULL && h->http_header != NULL)
    return ENGINE_OK;
  h->set_error(h,
               "this engine does not provide the HTTP client (plugin ABI 1.1) that the %s sink "
               "needs; upgrade the engine",
               sink);
  return ENGINE_ERROR;
}
