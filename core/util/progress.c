/* Progress line: bytes, items, rate and (when the total is known) percent
 * and ETA. The rate is smoothed over the whole run so it does not jump. */
#include "util/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "util/log.h"

struct progress {
  int enabled;
  int drawn;
  double t0;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *format_bytes(uint64_t n, char *buf, size_t len) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = (double)n;
  int u = 0;
  while (v >= 1024.0 && u < 5) {
    v /= 1024.0;
    u++;
  }
  if (u == 0)
    snprintf(buf, len, "%llu B", (unsigned long long)n);
  else
    snprintf(buf, len, "%.*f %s", v < 10 ? 2 : 1, v, units[u]);
  return buf;
}

struct progress *progress_new(int enabled) {
  struct progress *p = xcalloc(1, sizeof(*p));
  p->enabled = enabled;
  p->t0 = now_s();
  return p;
}

void progress_update(struct progress *p, uint64_t done, uint64_t total, uint64_t items,
                     uint64_t new_bytes) {
  if (!p || !p->enabled)
    return;
  double el = now_s() - p->t0;
  double rate = el > 0 ? (double)done / el : 0;
  char a[32], r[32], nb[32], t[32];
  format_bytes(done, a, sizeof(a));
  format_bytes((uint64_t)rate, r, sizeof(r));
  format_bytes(new_bytes, nb, sizeof(nb));
  if (total > 0 && done <= total && rate > 0) {
    double eta = (double)(total - done) / rate;
    format_bytes(total, t, sizeof(t));
    fprintf(stderr, "\r\033[K%s / %s (%.0f%%), %llu items, %s new, %s/s, ETA %d:%02d", a, t,
            100.0 * (double)done / (double)total, (unsigned long long)items, nb, r, (int)eta / 60,
            (int)eta % 60);
  } else {
    fprintf(stderr, "\r\033[K%s read, %llu items, %s new, %s/s, %d:%02d elapsed", a,
            (unsigned long long)items, nb, r, (int)el / 60, (int)el % 60);
  }
  fflush(stderr);
  p->drawn = 1;
}

void progress_finish(struct progress *p) {
  if (p && p->enabled && p->drawn) {
    fputs("\r\033[K", stderr);
    fflush(stderr);
  }
}

void progress_free(struct progress *p) {
  free(p);
}
