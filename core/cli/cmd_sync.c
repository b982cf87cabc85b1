/* engine sync PIPELINE --from SINK --to SINK: copy the objects one sink has
 * and the other lacks (after an outage, or to seed a new sink), in the order
 * that keeps the target consistent at every moment: keys and config, then
 * packs, then index objects, then snapshots. Objects are copied as stored
 * (no key needed); existing objects are never overwritten. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "util/log.h"
#include "util/progress.h"

struct obj {
  char *name;
  uint64_t size;
};

struct listing {
  struct obj *v;
  size_t n, cap;
};

static int list_cb(void *ud, const char *name, uint64_t size) {
  struct listing *l = ud;
  if (strncmp(name, "locks/", 6) == 0)
    return 0; /* locks belong to the location they were taken on */
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 256;
    l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
  }
  l->v[l->n].name = xstrdup(name);
  l->v[l->n].size = size;
  l->n++;
  return 0;
}

static int cmp_obj(const void *a, const void *b) {
  return strcmp(((const struct obj *)a)->name, ((const struct obj *)b)->name);
}

static void listing_free(struct listing *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->v[i].name);
  free(l->v);
}

/* copy order: 0 keys/, keyring/ (format 2) + config, 1 data/, 2 index/, 3 snapshots/, 4
 * anything else */
static int phase_of(const char *name) {
  if (strncmp(name, "keys/", 5) == 0 || strncmp(name, "keyring/", 8) == 0 ||
      strcmp(name, "config") == 0)
    return 0;
  if (strncmp(name, "data/", 5) == 0)
    return 1;
  if (strncmp(name, "index/", 6) == 0)
    return 2;
  if (strncmp(name, "snapshots/", 10) == 0)
    return 3;
  return 4;
}

struct job {
  struct plugin_instance *from, *to;
  struct obj **todo;
  size_t n, next;
  pthread_mutex_t mu;
  uint64_t bytes, copied;
  char *err;
  struct progress *prog;
};

static void *copy_main(void *arg) {
  struct job *j = arg;
  for (;;) {
    pthread_mutex_lock(&j->mu);
    if (j->next >= j->n || j->err) {
      pthread_mutex_unlock(&j->mu);
      return NULL;
    }
    struct obj *o = j->todo[j->next++];
    pthread_mutex_unlock(&j->mu);
    void *buf = NULL;
    size_t n = 0;
    char *err = NULL;
    if (j->from->plugin->sink->get(j->from->inst, o->name, 0, 0, &buf, &n) != ENGINE_OK)
      err = xasprintf("sink '%s': unable to read '%s': %s", j->from->name, o->name,
                      host_last_error(j->from->host));
    else {
      int rc = j->to->plugin->sink->put(j->to->inst, o->name, buf, n, ENGINE_PUT_NO_OVERWRITE);
      if (rc != ENGINE_OK && rc != ENGINE_EXISTS)
        err = xasprintf("sink '%s': unable to write '%s': %s", j->to->name, o->name,
                        host_last_error(j->to->host));
    }
    free(buf);
    pthread_mutex_lock(&j->mu);
    if (err && !j->err)
      j->err = err;
    else
      free(err);
    j->bytes += n;
    j->copied++;
    progress_update(j->prog, j->bytes, 0, j->copied, 0);
    pthread_mutex_unlock(&j->mu);
  }
}

static struct plugin_instance *sink_by_name(struct cli_ctx *c, const char *name) {
  for (size_t i = 0; i < c->p->n_sinks; i++)
    if (strcmp(c->p->sinks[i].name, name) == 0)
      return c->sink_insts[i];
  return NULL;
}

/* "a, b": the pipeline's sink names, for messages */
static char *sink_names(struct cli_ctx *c) {
  char *out = xstrdup("");
  for (size_t i = 0; i < c->p->n_sinks; i++) {
    char *next = xasprintf("%s%s%s", out, i ? ", " : "", c->p->sinks[i].name);
    free(out);
    out = next;
  }
  return out;
}

/* Load the pipeline, make its sink instances and find --from and --to
 * among them. Returns EXIT_OK, or EXIT_ERROR / EXIT_USAGE after saying why
 * and closing c. */
static int sync_open(const struct cli_globals *g, const struct cli_args *a, struct cli_ctx *c,
                     struct plugin_instance **from, struct plugin_instance **to) {
  char *err = NULL;
  if (cli_load_pipeline(g, a->pos[0], c, &err) != 0) {
    cli_close(c);
    return cli_fail(err);
  }
  c->sink_insts = xcalloc(c->p->n_sinks, sizeof(*c->sink_insts));
  for (size_t i = 0; i < c->p->n_sinks; i++)
    if (plugin_instance_new(c->p->sinks[i].plugin, c->p->sinks[i].name, c->p->sinks[i].with,
                            &c->sink_insts[i], &err) != 0) {
      cli_close(c);
      return cli_fail(err);
    }
  *from = sink_by_name(c, a->from);
  *to = sink_by_name(c, a->to);
  if (!*from || !*to || *from == *to) {
    char *names = sink_names(c);
    if (*from && *from == *to)
      cli_usage_error("sync", "--from and --to name the same sink '%s'", a->from);
    else
      cli_usage_error("sync", "%s '%s': no sink of that name in the pipeline (its sinks: %s)",
                      *from ? "--to" : "--from", *from ? a->to : a->from, names);
    free(names);
    cli_close(c);
    return EXIT_USAGE;
  }
  return EXIT_OK;
}

/* Both must hold the same repository (or the target nothing at all; lt is
 * the target's listing). Returns 0, or -1 after saying why. */
static int sync_same_repository(struct plugin_instance *from, struct plugin_instance *to,
                                const struct listing *lt) {
  void *cf = NULL, *ct = NULL;
  size_t nf = 0, nt = 0;
  int rf = from->plugin->sink->get(from->inst, "config", 0, 0, &cf, &nf);
  int rt = to->plugin->sink->get(to->inst, "config", 0, 0, &ct, &nt);
  int hf = rf == ENGINE_OK, ht = rt == ENGINE_OK;
  int same = hf && (!ht || (nf == nt && memcmp(cf, ct, nf) == 0));
  free(cf);
  free(ct);
  /* only an absent config means "no repository": a sink that cannot be
   * read says why (and a target that cannot be read is never taken for
   * an empty one) */
  if (rf != ENGINE_OK && rf != ENGINE_NOT_FOUND) {
    log_error("sink '%s': unable to read 'config': %s", from->name, host_last_error(from->host));
    return -1;
  }
  if (rt != ENGINE_OK && rt != ENGINE_NOT_FOUND) {
    log_error("sink '%s': unable to read 'config': %s", to->name, host_last_error(to->host));
    return -1;
  }
  if (!hf) {
    log_error("sink '%s' holds no repository (no config)", from->name);
    return -1;
  }
  if (!same) {
    log_error("sinks '%s' and '%s' hold different repositories; refusing to mix them", from->name,
              to->name);
    return -1;
  }
  if (!ht && lt->n > 0) {
    log_error("sink '%s' holds '%s' but no engine repository; refusing to write "
              "into it",
              to->name, lt->v[0].name);
    return -1;
  }
  return 0;
}

/* Copy todo[0..n) on 4 threads. Returns 0, or -1 after saying why. */
static int sync_copy(const struct cli_globals *g, struct plugin_instance *from,
                     struct plugin_instance *to, struct obj **todo, size_t n) {
  struct job j = {from, to,
                  todo, n,
                  0,    PTHREAD_MUTEX_INITIALIZER,
                  0,    0,
                  NULL, progress_new(isatty(2) && !g->quiet)};
  pthread_t th[4];
  for (int t = 0; t < 4; t++)
    pthread_create(&th[t], NULL, copy_main, &j);
  for (int t = 0; t < 4; t++)
    pthread_join(th[t], NULL);
  progress_finish(j.prog);
  progress_free(j.prog);
  if (j.err) {
    log_error("%s; the target holds a consistent but incomplete copy, run sync "
              "again",
              j.err);
    free(j.err);
    return -1;
  }
  return 0;
}

/* Copy what lf (sorted) has and lt (sorted) lacks, phase by phase, each
 * completely before the next one starts. Returns 0, or -1 after saying
 * why. */
static int sync_phases(const struct cli_globals *g, struct plugin_instance *from,
                       struct plugin_instance *to, struct listing *lf, const struct listing *lt) {
  struct obj **todo = xcalloc(lf->n ? lf->n : 1, sizeof(*todo));
  size_t nt = 0;
  uint64_t bytes = 0;
  for (int phase = 0; phase <= 4; phase++) {
    size_t k = 0;
    for (size_t i = 0; i < lf->n; i++) {
      if (phase_of(lf->v[i].name) != phase)
        continue;
      while (k < lt->n && strcmp(lt->v[k].name, lf->v[i].name) < 0)
        k = k + 1;
      if (k < lt->n && strcmp(lt->v[k].name, lf->v[i].name) == 0) {
        if (lt->v[k].size != lf->v[i].size)
          log_warn("'%s' differs in size between '%s' (%llu) and '%s' (%llu); left as it is (run "
                   "check on both)",
                   lf->v[i].name, from->name, (unsigned long long)lf->v[i].size, to->name,
                   (unsigned long long)lt->v[k].size);
        continue;
      }
      todo[nt++] = &lf->v[i];
      bytes += lf->v[i].size;
    }
    if (phase < 4 && nt > 0) {
      if (sync_copy(g, from, to, todo, nt) != 0) {
        free(todo);
        return -1;
      }
      if (!g->quiet)
        printf("copied %zu %s object(s)\n", nt,
               phase == 0   ? "key/config"
               : phase == 1 ? "pack"
               : phase == 2 ? "index"
                            : "snapshot");
      nt = 0;
    }
  }
  char b[32];
  if (!g->quiet)
    printf("sync %s -> %s done: %s copied\n", from->name, to->name,
           format_bytes(bytes, b, sizeof(b)));
  free(todo);
  return 0;
}

int cmd_sync(const struct cli_globals *g, const struct cli_args *a) {
  /* --from and --to are required (cli/table.c) */
  struct cli_ctx c;
  struct plugin_instance *from = NULL, *to = NULL; /* set by sync_open */
  int orc = sync_open(g, a, &c, &from, &to);
  if (orc != EXIT_OK)
    return orc;
  struct listing lf = {0}, lt = {0};
  int rc = EXIT_ERROR;
  if (from->plugin->sink->list(from->inst, "", list_cb, &lf) != ENGINE_OK) {
    log_error("sink '%s': unable to list: %s", from->name, host_last_error(from->host));
    goto out;
  }
  if (to->plugin->sink->list(to->inst, "", list_cb, &lt) != ENGINE_OK) {
    log_error("sink '%s': unable to list: %s", to->name, host_last_error(to->host));
    goto out;
  }
  if (lf.n) /* qsort(NULL, 0, ...) is undefined behaviour (UBSan) */
    qsort(lf.v, lf.n, sizeof(*lf.v), cmp_obj);
  if (lt.n)
    qsort(lt.v, lt.n, sizeof(*lt.v), cmp_obj);
  if (sync_same_repository(from, to, &lt) == 0 && sync_phases(g, from, to, &lf, &lt) == 0)
    rc = EXIT_OK;
out:
  listing_free(&lf);
  listing_free(&lt);
  cli_close(&c);
  return rc;
}
