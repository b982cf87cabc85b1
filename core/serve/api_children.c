/* engine serve: the endpoints a child `engine` answers, with its --json
 * output (docs/SERVE.md): one pipeline's snapshots (`engine snapshots`),
 * one snapshot (`engine show`), and the snapshots of every pipeline
 * (`engine snapshots [--contains]` for each, one after another, merged and
 * filtered). At most SERVE_MAX_LISTINGS requests at once, each child at
 * most LISTING_TIMEOUT_MS. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "serve/serve_int.h"
#include "util/encoding.h"
#include "util/log.h"

#define LISTING_OUT_CAP (32u << 20)
#define LISTING_ERR_TAIL 4096
#define LISTING_TIMEOUT_MS 120000

enum listing_kind { L_SNAPSHOTS, L_SHOW, L_ALL };

/* The filters of GET /v1/snapshots. */
struct filters {
  char **pipelines; /* NULL: every valid pipeline */
  size_t n_pipelines;
  int64_t since, until; /* 0: no bound */
  char *status;         /* complete, partial, or NULL */
  char *contains;       /* SOURCE/ITEM-GLOB (item=, tenant=), or NULL */
};

struct serve_listing {
  struct serve *srv;
  struct httpd_req *req;
  struct proc *proc;
  uv_timer_t timer;
  int timer_on;
  int timed_out, cancelled;
  enum listing_kind kind;
  char *pipeline; /* of the child running now */
  /* L_ALL: the pipelines still to list, what was gathered */
  char **todo;
  size_t n_todo, next;
  struct filters f;
  json_t *gathered, *errors;
  struct serve_listing *prev, *next_l;
};

static void filters_free(struct filters *f) {
  for (size_t i = 0; i < f->n_pipelines; i++)
    free(f->pipelines[i]);
  free(f->pipelines);
  free(f->status);
  free(f->contains);
}

static void listing_free(struct serve_listing *l) {
  free(l->pipeline);
  for (size_t i = 0; i < l->n_todo; i++)
    free(l->todo[i]);
  free(l->todo);
  filters_free(&l->f);
  json_decref(l->gathered);
  json_decref(l->errors);
  free(l);
}

static void on_listing_closed(uv_handle_t *h) {
  listing_free(h->data);
}

/* The last non-empty line of a child's stderr: its error message. */
static char *last_line(const char *err) {
  const char *end = err + strlen(err);
  while (end > err && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
    end--;
  const char *start = end;
  while (start > err && start[-1] != '\n')
    start--;
  return xasprintf("%.*s", (int)(end - start), start);
}

static void unlink_listing(struct serve *s, struct serve_listing *l) {
  if (l->prev)
    l->prev->next_l = l->next_l;
  else
    s->listings = l->next_l;
  if (l->next_l)
    l->next_l->prev = l->prev;
  s->n_listings--;
}

static void finish(struct serve_listing *l) {
  struct serve *s = l->srv;
  unlink_listing(s, l);
  if (l->timer_on)
    uv_close((uv_handle_t *)&l->timer, on_listing_closed);
  else
    listing_free(l);
  serve_maybe_stopped(s);
}

static int spawn_child(struct serve_listing *l, const char *const *args, char **err);

/* L_ALL: the next pipeline's listing, or the answer. */
static void all_next(struct serve_listing *l);

/* Does snapshot o (an element of `engine snapshots --json`) pass? */
static int passes(const struct filters *f, json_t *o) {
  if (json_is_string(json_object_get(o, "error")))
    return 1; /* unreadable snapshots are always shown */
  int64_t t = 0;
  const char *ts = json_string_value(json_object_get(o, "time"));
  if ((f->since || f->until) && (!ts || parse_iso_time(ts, &t) != 0))
    return 0;
  if (f->since && t < f->since)
    return 0;
  if (f->until && t > f->until)
    return 0;
  const char *st = json_string_value(json_object_get(o, "status"));
  if (f->status && (!st || strcmp(st, f->status) != 0))
    return 0;
  return 1;
}

static void on_listing_done(void *ud, const struct proc_result *r) {
  struct serve_listing *l = ud;
  struct httpd_req *req = l->req;
  l->proc = NULL; /* freed after this call */
  if (l->timer_on)
    uv_timer_stop(&l->timer);
  char *fail = NULL;
  int fail_status = 502;
  json_t *doc = NULL;
  if (l->timed_out) {
    fail =
        xasprintf("engine %s for pipeline '%s' did not finish within %d s",
                  l->kind == L_SHOW ? "show" : "snapshots", l->pipeline, LISTING_TIMEOUT_MS / 1000);
    fail_status = 504;
  } else if (l->cancelled) {
    fail = xstrdup("the server is stopping");
    fail_status = 503;
  } else if (r->term_signal) {
    fail = xasprintf("engine %s for pipeline '%s' was killed by signal %d",
                     l->kind == L_SHOW ? "show" : "snapshots", l->pipeline, r->term_signal);
  } else if (r->exit_status != 0) {
    char *msg = last_line(r->err);
    /* `engine show` of an id that names nothing */
    if (l->kind == L_SHOW && (strstr(msg, "no snapshot '") || strstr(msg, "is not a snapshot id")))
      fail_status = 404;
    fail =
        xasprintf("engine %s for pipeline '%s' failed (exit status %d): %s",
                  l->kind == L_SHOW ? "show" : "snapshots", l->pipeline, (int)r->exit_status, msg);
    free(msg);
  } else if (r->out_truncated) {
    fail = xasprintf("the output for pipeline '%s' is larger than %u bytes", l->pipeline,
                     LISTING_OUT_CAP);
  } else {
    json_error_t je;
    doc = json_loadb(r->out, r->out_len, 0, &je);
    if (!(l->kind == L_SHOW ? json_is_object(doc) : json_is_array(doc))) {
      json_decref(doc);
      doc = NULL;
      fail = xasprintf("unable to parse the output for pipeline '%s': %s", l->pipeline, je.text);
    }
  }
  if (l->kind != L_ALL) {
    if (fail)
      serve_respond_error(req, fail_status, NULL, "%s", fail);
    else
      serve_respond_json(req, 200, doc, NULL);
    free(fail);
    finish(l);
    return;
  }
  /* L_ALL: gather, go on with the next pipeline */
  if (fail) {
    json_array_append_new(l->errors,
                          json_pack("{s:s, s:s}", "pipeline", l->pipeline, "error", fail));
  } else {
    size_t i;
    json_t *o;
    json_array_foreach(doc, i, o) {
      if (!passes(&l->f, o))
        continue;
      if (!json_object_get(o, "pipeline") || json_is_null(json_object_get(o, "pipeline")))
        json_object_set_new(o, "pipeline", json_string(l->pipeline));
      json_object_set_new(o, "listed_by", json_string(l->pipeline));
      json_array_append(l->gathered, o);
    }
    json_decref(doc);
  }
  free(fail);
  if (l->timed_out || l->cancelled) {
    serve_respond_error(req, l->cancelled ? 503 : 504, NULL, "%s",
                        l->cancelled ? "the server is stopping"
                                     : "a snapshot listing did not finish in time");
    finish(l);
    return;
  }
  all_next(l);
}

static void on_listing_timeout(uv_timer_t *t) {
  struct serve_listing *l = t->data;
  l->timed_out = 1;
  if (l->proc)
    proc_kill(l->proc, SIGTERM);
}

static int spawn_child(struct serve_listing *l, const char *const *args, char **err) {
  struct serve *s = l->srv;
  char **argv = serve_child_argv(s, args);
  int pid;
  int rc = proc_spawn(&s->loop, "/proc/self/exe", argv, LISTING_OUT_CAP, LISTING_ERR_TAIL,
                      on_listing_done, l, &l->proc, &pid, err);
  serve_free_argv(argv);
  if (rc != 0)
    return -1;
  if (!l->timer_on) {
    uv_timer_init(&s->loop, &l->timer);
    l->timer.data = l;
    l->timer_on = 1;
  }
  uv_timer_start(&l->timer, on_listing_timeout, LISTING_TIMEOUT_MS, 0);
  return 0;
}

static struct serve_listing *new_listing(struct serve *s, struct httpd_req *req,
                                         enum listing_kind kind) {
  if (s->n_listings >= SERVE_MAX_LISTINGS) {
    serve_respond_error(req, 503, "Retry-After: 5\r\n",
                        "%d snapshot listings are already running; try again shortly",
                        s->n_listings);
    return NULL;
  }
  struct serve_listing *l = xcalloc(1, sizeof(*l));
  l->srv = s;
  l->req = req;
  l->kind = kind;
  l->next_l = s->listings;
  if (s->listings)
    s->listings->prev = l;
  s->listings = l;
  s->n_listings++;
  return l;
}

static void run_one(struct serve *s, struct httpd_req *req, const struct serve_pipeline *p,
                    enum listing_kind kind, const char *const *args) {
  struct serve_listing *l = new_listing(s, req, kind);
  if (!l)
    return;
  l->pipeline = xstrdup(p->name);
  char *err = NULL;
  if (spawn_child(l, args, &err) != 0) {
    serve_respond_error(req, 500, NULL, "%s", err);
    free(err);
    finish(l);
  }
}

void serve_list_snapshots(struct serve *s, struct httpd_req *req, const struct serve_pipeline *p) {
  const char *args[] = {"snapshots", p->path, "--json", NULL};
  run_one(s, req, p, L_SNAPSHOTS, args);
}

void serve_show_snapshot(struct serve *s, struct httpd_req *req, const struct serve_pipeline *p,
                         const char *id) {
  const char *args[] = {"show", p->path, id, "--json", NULL};
  run_one(s, req, p, L_SHOW, args);
}

/* ---- every pipeline --------------------------------------------------------------------- */

static int by_time(const void *a, const void *b) {
  json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  const char *tx = json_string_value(json_object_get(x, "time"));
  const char *ty = json_string_value(json_object_get(y, "time"));
  int c = strcmp(tx ? tx : "", ty ? ty : "");
  if (c)
    return c;
  const char *px = json_string_value(json_object_get(x, "listed_by"));
  const char *py = json_string_value(json_object_get(y, "listed_by"));
  return strcmp(px ? px : "", py ? py : "");
}

static void all_next(struct serve_listing *l) {
  struct serve *s = l->srv;
  while (l->next < l->n_todo && !s->stopping) {
    const struct serve_pipeline *p = serve_find_pipeline(s, l->todo[l->next++]);
    if (!p || !p->valid)
      continue; /* removed by a reload meanwhile */
    free(l->pipeline);
    l->pipeline = xstrdup(p->name);
    const char *args[] = {"snapshots", p->path, "--json", NULL, NULL, NULL};
    if (l->f.contains) {
      args[3] = "--contains";
      args[4] = l->f.contains;
    }
    char *err = NULL;
    if (spawn_child(l, args, &err) == 0)
      return;
    json_array_append_new(l->errors, json_pack("{s:s, s:s}", "pipeline", p->name, "error", err));
    free(err);
  }
  /* done: oldest first over every pipeline */
  size_t n = json_array_size(l->gathered);
  json_t **v = xcalloc(n ? n : 1, sizeof(*v));
  for (size_t i = 0; i < n; i++)
    v[i] = json_array_get(l->gathered, i);
  qsort(v, n, sizeof(*v), by_time);
  json_t *sorted = json_array();
  for (size_t i = 0; i < n; i++) {
    json_object_del(v[i], "listed_by");
    json_array_append(sorted, v[i]);
  }
  free(v);
  serve_respond_json(l->req, 200,
                     json_pack("{s:o, s:O, s:I}", "snapshots", sorted, "errors", l->errors, "count",
                               (json_int_t)n),
                     NULL);
  finish(l);
}

/* The query value of key, percent-decoded ('+' is a space), or NULL. */
static char *query_get(const char *query, const char *key) {
  size_t kl = strlen(key);
  for (const char *p = query; p && *p;) {
    const char *amp = strchr(p, '&');
    size_t len = amp ? (size_t)(amp - p) : strlen(p);
    if (len > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
      const char *v = p + kl + 1;
      size_t vl = len - kl - 1;
      char *out = xmalloc(vl + 1);
      size_t o = 0;
      for (size_t i = 0; i < vl; i++) {
        int hi, lo;
        if (v[i] == '+') {
          out[o++] = ' ';
        } else if (v[i] == '%' && i + 2 < vl + 1 && sscanf(v + i + 1, "%1x%1x", &hi, &lo) == 2) {
          out[o++] = (char)(hi * 16 + lo);
          i += 2;
        } else {
          out[o++] = v[i];
        }
      }
      out[o] = '\0';
      return out;
    }
    p = amp ? amp + 1 : NULL;
  }
  return NULL;
}

/* Parse the query into f; 0, or -1 having answered 400. */
static int parse_filters(struct serve *s, struct httpd_req *req, struct filters *f) {
  memset(f, 0, sizeof(*f));
  static const char *const known[] = {"pipeline", "since", "until", "status", "item", "tenant"};
  for (const char *p = req->query; p && *p;) {
    size_t len = strcspn(p, "&"), kl = strcspn(p, "=&");
    int ok = 0;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
      ok |= strlen(known[i]) == kl && strncmp(p, known[i], kl) == 0;
    if (!ok && kl) {
      serve_respond_error(req, 400, NULL,
                          "unknown query parameter '%.*s' (expected pipeline, since, until, "
                          "status, item or tenant)",
                          (int)kl, p);
      return -1;
    }
    p += len + (p[len] == '&');
  }
  char *v = query_get(req->query, "pipeline");
  if (v) {
    for (char *save = NULL, *t = strtok_r(v, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      const struct serve_pipeline *sp = serve_find_pipeline(s, t);
      if (!sp || !sp->valid) {
        serve_respond_error(req, sp ? 422 : 404, NULL, "no %spipeline named '%s' in %s",
                            sp ? "valid " : "", t, s->config_dir);
        free(v);
        return -1;
      }
      f->pipelines = xrealloc(f->pipelines, (f->n_pipelines + 1) * sizeof(char *));
      f->pipelines[f->n_pipelines++] = xstrdup(t);
    }
    free(v);
  }
  static const char *const times[] = {"since", "until"};
  for (int k = 0; k < 2; k++) {
    v = query_get(req->query, times[k]);
    int64_t *dst = k == 0 ? &f->since : &f->until;
    if (v && parse_iso_time(v, dst) != 0) {
      serve_respond_error(req, 400, NULL,
                          "%s '%s': expected an ISO 8601 time such as "
                          "2026-01-31T03:00:00Z",
                          times[k], v);
      free(v);
      return -1;
    }
    free(v);
  }
  f->status = query_get(req->query, "status");
  if (f->status && strcmp(f->status, "complete") != 0 && strcmp(f->status, "partial") != 0) {
    serve_respond_error(req, 400, NULL, "status '%s': expected complete or partial", f->status);
    return -1;
  }
  char *item = query_get(req->query, "item"), *tenant = query_get(req->query, "tenant");
  if (item && tenant) {
    serve_respond_error(req, 400, NULL, "give item or tenant, not both");
    free(item);
    free(tenant);
    return -1;
  }
  if (item && (!strchr(item, '/') || item[0] == '/')) {
    serve_respond_error(req, 400, NULL, "item '%s': expected SOURCE/ITEM-GLOB", item);
    free(item);
    return -1;
  }
  /* a tenant is an item of any source: */
  f->contains = item ? item : tenant ? xasprintf("*/%s", tenant) : NULL;
  free(tenant);
  return 0;
}

void serve_list_all_snapshots(struct serve *s, struct httpd_req *req) {
  struct filters f;
  if (parse_filters(s, req, &f) != 0) {
    filters_free(&f);
    return;
  }
  struct serve_listing *l = new_listing(s, req, L_ALL);
  if (!l) {
    filters_free(&f);
    return;
  }
  l->f = f;
  l->gathered = json_array();
  l->errors = json_array();
  if (f.n_pipelines) {
    l->todo = f.pipelines;
    l->n_todo = f.n_pipelines;
    l->f.pipelines = NULL;
    l->f.n_pipelines = 0;
  } else {
    l->todo = xcalloc(s->n_pipelines + 1, sizeof(char *));
    for (size_t i = 0; i < s->n_pipelines; i++)
      if (s->pipelines[i].valid)
        l->todo[l->n_todo++] = xstrdup(s->pipelines[i].name);
  }
  all_next(l);
}

void serve_cancel_listings(struct serve *s) {
  for (struct serve_listing *l = s->listings; l; l = l->next_l) {
    l->cancelled = 1;
    if (l->proc)
      proc_kill(l->proc, SIGTERM);
  }
}
