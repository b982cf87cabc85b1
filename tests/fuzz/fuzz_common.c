/* See fuzz_common.h. */
#include "fuzz_common.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/host.h"
#include "plugin/host.h"
#include "repo/index.h"
#include "compress/compress.h"
#include "util/log.h"

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s:%d: invariant failed: %s: ", file, line, cond);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

void fuzz_quiet(void) {
  log_set_level(ENGINE_LOG_ERROR);
  host_set_log_level(ENGINE_LOG_ERROR);
}

/* ---- the in-memory sink ------------------------------------------------ */

struct memobj {
  char *name;
  unsigned char *data;
  size_t len;
};

struct memsink {
  pthread_mutex_t mu;
  struct memobj *o;
  size_t n, cap;
};

static struct memobj *find(struct memsink *m, const char *name) {
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->o[i].name, name) == 0)
      return &m->o[i];
  return NULL;
}

static void remove_at(struct memsink *m, size_t i) {
  free(m->o[i].name);
  free(m->o[i].data);
  m->o[i] = m->o[--m->n];
}

void memsink_put(struct memsink *m, const char *name, const void *data, size_t len) {
  pthread_mutex_lock(&m->mu);
  struct memobj *o = find(m, name);
  if (!o) {
    if (m->n == m->cap) {
      m->cap = m->cap ? 2 * m->cap : 16;
      m->o = xrealloc(m->o, m->cap * sizeof(*m->o));
    }
    o = &m->o[m->n++];
    o->name = xstrdup(name);
  } else {
    free(o->data);
  }
  o->data = xmalloc(len ? len : 1);
  if (len)
    memcpy(o->data, data, len);
  o->len = len;
  pthread_mutex_unlock(&m->mu);
}

void memsink_del(struct memsink *m, const char *name) {
  pthread_mutex_lock(&m->mu);
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->o[i].name, name) == 0) {
      remove_at(m, i);
      break;
    }
  pthread_mutex_unlock(&m->mu);
}

void memsink_clear(struct memsink *m, const char *prefix) {
  pthread_mutex_lock(&m->mu);
  for (size_t i = 0; i < m->n;) {
    if (strncmp(m->o[i].name, prefix, strlen(prefix)) == 0)
      remove_at(m, i);
    else
      i++;
  }
  pthread_mutex_unlock(&m->mu);
}

static int ms_create(const struct engine_host *host, void **inst) {
  (void)host;
  struct memsink *m = xcalloc(1, sizeof(*m));
  pthread_mutex_init(&m->mu, NULL);
  *inst = m;
  return ENGINE_OK;
}

static void ms_destroy(void *inst) {
  struct memsink *m = inst;
  while (m->n)
    remove_at(m, m->n - 1);
  free(m->o);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

static int ms_put(void *inst, const char *name, const void *buf, size_t len, unsigned flags) {
  struct memsink *m = inst;
  pthread_mutex_lock(&m->mu);
  int exists = find(m, name) != NULL;
  pthread_mutex_unlock(&m->mu);
  if (exists && (flags & ENGINE_PUT_NO_OVERWRITE))
    return ENGINE_EXISTS;
  memsink_put(m, name, buf, len);
  return ENGINE_OK;
}

/* As the local sink: len 0 reads to the end; a range past the end fails. */
static int ms_get(void *inst, const char *name, uint64_t off, uint64_t len, void **buf,
                  size_t *out_len) {
  struct memsink *m = inst;
  *buf = NULL;
  *out_len = 0;
  pthread_mutex_lock(&m->mu);
  struct memobj *o = find(m, name);
  int rc = ENGINE_OK;
  if (!o) {
    rc = ENGINE_NOT_FOUND;
  } else {
    uint64_t want = len == 0 && off <= o->len ? o->len - off : len;
    if (off > o->len || want > o->len - off) {
      rc = ENGINE_ERROR;
    } else {
      *buf = xmalloc(want ? (size_t)want : 1);
      memcpy(*buf, o->data + off, (size_t)want);
      *out_len = (size_t)want;
    }
  }
  pthread_mutex_unlock(&m->mu);
  return rc;
}

static int ms_stat(void *inst, const char *name, uint64_t *size) {
  struct memsink *m = inst;
  pthread_mutex_lock(&m->mu);
  struct memobj *o = find(m, name);
  if (o)
    *size = o->len;
  pthread_mutex_unlock(&m->mu);
  return o ? ENGINE_OK : ENGINE_NOT_FOUND;
}

static int ms_list(void *inst, const char *prefix,
                   int (*cb)(void *ud, const char *name, uint64_t size), void *ud) {
  struct memsink *m = inst;
  /* a copy of the names: the callback may call back into the sink */
  pthread_mutex_lock(&m->mu);
  size_t n = 0;
  struct memobj *copy = xcalloc(m->n ? m->n : 1, sizeof(*copy));
  for (size_t i = 0; i < m->n; i++)
    if (strncmp(m->o[i].name, prefix, strlen(prefix)) == 0) {
      copy[n].name = xstrdup(m->o[i].name);
      copy[n++].len = m->o[i].len;
    }
  pthread_mutex_unlock(&m->mu);
  int stop = 0;
  for (size_t i = 0; i < n; i++) {
    if (!stop)
      stop = cb(ud, copy[i].name, copy[i].len);
    free(copy[i].name);
  }
  free(copy);
  return ENGINE_OK;
}

static int ms_del(void *inst, const char *name) {
  struct memsink *m = inst;
  pthread_mutex_lock(&m->mu);
  int found = find(m, name) != NULL;
  pthread_mutex_unlock(&m->mu);
  memsink_del(m, name);
  return found ? ENGINE_OK : ENGINE_NOT_FOUND;
}

static const char *ms_describe(void *inst) {
  (void)inst;
  return "memory";
}

static const struct engine_sink_ops memsink_ops = {
    .struct_size = sizeof(struct engine_sink_ops),
    .put = ms_put,
    .get = ms_get,
    .stat = ms_stat,
    .list = ms_list,
    .del = ms_del,
    .describe = ms_describe,
};

static const struct engine_plugin memsink_plugin = {
    ENGINE_PLUGIN_HEADER, .kind = ENGINE_PLUGIN_SINK,
    .name = "memory",     .version = "1",
    .license = "MIT",     .description = "objects in memory (fuzz targets)",
    .create = ms_create,  .destroy = ms_destroy,
    .sink = &memsink_ops,
};

struct memsink *memsink_of(struct repo *r) {
  return r->sinks[0].pi->inst;
}

struct memsink *memsink_of_sink(struct repo_sink *s) {
  return s->pi->inst;
}

struct repo_sink *fuzz_sink_new(void) {
  char *err = NULL;
  struct repo_sink *sink = xcalloc(1, sizeof(*sink));
  json_t *cfg = json_object();
  if (plugin_instance_new(&memsink_plugin, "memory", cfg, &sink->pi, &err) != 0)
    fuzz_fail(__FILE__, __LINE__, "plugin_instance_new", "%s", err);
  json_decref(cfg);
  sink->required = 1;
  return sink;
}

void fuzz_sink_free(struct repo_sink *s) {
  plugin_instance_free(s->pi);
  free(s);
}

/* ---- the repository ---------------------------------------------------- */

struct repo *fuzz_repo_new(const struct engine_plugin *crypto, const char *pass) {
  char *err = NULL;
  struct repo_sink *sink = fuzz_sink_new();
  struct repo_open_opts o;
  memset(&o, 0, sizeof(o));
  o.sinks = sink;
  o.n_sinks = 1;
  o.crypto = crypto;
  o.passphrase = pass;
  o.passphrase_len = pass ? strlen(pass) : 0;
  o.create = 1;
  o.compress_algo = COMPRESS_ZSTD;
  o.compress_level = 3;
  struct repo *r;
  if (repo_open(&o, &r, &err) != 0)
    fuzz_fail(__FILE__, __LINE__, "repo_open", "%s", err);
  snprintf(r->id, sizeof(r->id), "%s", FUZZ_REPO_ID);
  return r;
}

void fuzz_repo_free(struct repo *r) {
  struct repo_sink *sink = r->sinks;
  repo_close(r);
  fuzz_sink_free(sink);
}

void fuzz_repo_reset_index(struct repo *r) {
  index_free(r->index);
  r->index = index_new();
}
