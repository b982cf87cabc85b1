/* Process-wide cancellation (SIGINT/SIGTERM): cancel_request() is
 * async-signal-safe; cancel_requested() may be called from any thread. */
#ifndef CORE_UTIL_CANCEL_H
#define CORE_UTIL_CANCEL_H

void cancel_request(void);
int cancel_requested(void);

#endif
