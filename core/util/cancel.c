/* Process-wide cancellation flag (util/cancel.h). */
#include "util/cancel.h"

#include <signal.h>

static volatile sig_atomic_t g_cancelled;

void cancel_request(void) {
  __atomic_store_n(&g_cancelled, 1, __ATOMIC_SEQ_CST);
}

int cancel_requested(void) {
  return __atomic_load_n(&g_cancelled, __ATOMIC_SEQ_CST) != 0;
}
