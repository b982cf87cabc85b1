/* Dump workers: pg_dump processes run in parallel, all importing the run's
 * exported snapshot, their archives split into one archive per schema.
 *
 * The selected schemas are dealt round-robin to `jobs` workers (schema i to
 * worker i mod jobs), so the emitter, which takes the schemas in name
 * order, takes them from each worker in turn. A worker runs ONE pg_dump
 * for all its schemas (pg_dump reads the whole catalog once per process:
 * one per schema would cost that for every tenant) and splits its archive
 * as it streams: the header is copied, the table of contents is parsed and
 * each schema gets a table of contents of its own entries (and the shared
 * ENCODING / STDSTRINGS / SEARCHPATH ones), dump ids renumbered from 1, so
 * the bytes of an unchanged schema do not depend on the other schemas; the
 * data blocks, which pg_dump writes in table-of-contents order (schema by
 * schema), follow, each block's id renumbered the same way. Each schema's
 * archive is then exactly what pg_restore reads from a pipe, and a restore
 * of one tenant reads only that tenant's bytes.
 *
 * The worker cuts the chunk (emitter.item_cut) after the header (whose
 * creation time changes every run), after the table of contents and after
 * each table's data, so an unchanged table or tenant deduplicates whatever
 * changed around it. It counts each table's COPY rows and hashes them (an
 * order-independent digest the restore test compares) as they pass.
 *
 * Memory: a worker may hold `limit` bytes of pieces for schemas the emitter
 * has not reached, then waits; it never waits while the emitter is waiting
 * for one of its own schemas, so the run cannot deadlock.
 *
 * Failures: when a pg_dump fails, the schemas it completed are kept, and the
 * others are dumped again on their own or in smaller groups (the schema
 * pg_dump's message names first: a table it could not lock) until each
 * failing schema fails alone, with pg_dump's message. A schema the emitter
 * already began to store fails with the message instead (its bytes cannot
 * be taken back). Plain-format dumps are one pg_dump per schema, cut around
 * each COPY block; archives of a version this plugin does not read are
 * stored as pg_dump wrote them, one pg_dump per schema. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "archive.h"
#include "pgschema.h"

/* Bytes handed to the emitter at once. */
#define PIECE_SIZE (256u * 1024u)
/* Schema names per --schema pattern, and pattern bytes per pg_dump
 * (each argument must stay below the kernel's 128 KiB: 500 names of at
 * most 63 bytes, quotes doubled, are 65 KB as a plain list). */
#define PATTERN_NAMES 500
#define BATCH_PATTERN_BYTES (512u * 1024u)

/* ---- pieces ---------------------------------------------------------------- */

static int stopped(struct pgs_run *r) {
  pthread_mutex_lock(&r->mu);
  if (!r->stop && r->h->cancelled(r->h)) {
    r->stop = 1;
    pthread_cond_broadcast(&r->cv);
  }
  int s = r->stop;
  pthread_mutex_unlock(&r->mu);
  return s;
}

static void drop_pieces(struct pgs_worker *w, struct pgs_tenant *t) {
  struct pgs_piece *p = t->head;
  while (p != NULL) {
    struct pgs_piece *n = p->next;
    w->buffered -= p->len;
    free(p);
    p = n;
  }
  t->head = t->tail = NULL;
}

/* Queue what the worker filled for its open tenant (and a cut after it). */
static int flush_open(struct pgs_worker *w, int cut) {
  struct pgs_run *r = w->run;
  struct pgs_tenant *t = w->open_t;
  if (t == NULL || (w->open_len == 0 && !cut))
    return 0;
  struct pgs_piece *p = malloc(sizeof(*p) + w->open_len);
  if (p == NULL)
    return -1;
  p->next = NULL;
  p->len = w->open_len;
  p->cut = cut;
  memcpy(p->data, w->open_buf, w->open_len);
  w->open_len = 0;
  pthread_mutex_lock(&r->mu);
  while (!r->stop && w->buffered > 0 && w->buffered + p->len > r->limit &&
         r->emit_worker != (long)w->idx)
    pthread_cond_wait(&r->cv, &r->mu);
  int stop = r->stop;
  if (!stop) {
    if (t->tail)
      t->tail->next = p;
    else
      t->head = p;
    t->tail = p;
    w->buffered += p->len;
    pthread_cond_broadcast(&r->cv);
  }
  pthread_mutex_unlock(&r->mu);
  if (stop) {
    free(p);
    return -1;
  }
  return 0;
}

static int open_for(struct pgs_worker *w, struct pgs_tenant *t) {
  if (w->open_t == t)
    return 0;
  if (flush_open(w, 0) != 0)
    return -1;
  w->open_t = t;
  w->open_len = 0;
  return 0;
}

static int put(struct pgs_worker *w, struct pgs_tenant *t, const void *data, size_t n) {
  if (open_for(w, t) != 0)
    return -1;
  const unsigned char *p = data;
  while (n > 0) {
    size_t room = PIECE_SIZE - w->open_len;
    size_t k = n < room ? n : room;
    memcpy(w->open_buf + w->open_len, p, k);
    w->open_len += k;
    p += k;
    n -= k;
    t->size += k;
    if (w->open_len == PIECE_SIZE && flush_open(w, 0) != 0)
      return -1;
  }
  return 0;
}

static int cut(struct pgs_worker *w, struct pgs_tenant *t) {
  if (open_for(w, t) != 0)
    return -1;
  return flush_open(w, 1);
}

static void tenant_done(struct pgs_worker *w, struct pgs_tenant *t, json_t *found) {
  struct pgs_run *r = w->run;
  if (w->open_t == t && flush_open(w, 0) != 0) {
    json_decref(found);
    return; /* stopped */
  }
  if (w->open_t == t)
    w->open_t = NULL;
  pthread_mutex_lock(&r->mu);
  t->state = PGS_T_DONE;
  t->found = found;
  t->ms = r->h->now_ms(r->h) - t->started_ms;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

/* msg is taken. */
static void tenant_fail(struct pgs_worker *w, struct pgs_tenant *t, char *msg) {
  struct pgs_run *r = w->run;
  if (w->open_t == t) {
    w->open_t = NULL;
    w->open_len = 0;
  }
  pthread_mutex_lock(&r->mu);
  drop_pieces(w, t);
  t->state = PGS_T_FAILED;
  free(t->error);
  t->error = msg ? msg : strdup("pg_dump failed (out of memory describing why)");
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

/* Forget what was dumped of t so it can be dumped again: 1, or 0 when the
 * emitter already stored some of it. */
static int tenant_reset(struct pgs_worker *w, struct pgs_tenant *t) {
  struct pgs_run *r = w->run;
  if (w->open_t == t) {
    w->open_t = NULL;
    w->open_len = 0;
  }
  pthread_mutex_lock(&r->mu);
  int ok = !t->emitting;
  if (ok) {
    drop_pieces(w, t);
    t->size = 0;
    pthread_cond_broadcast(&r->cv);
  }
  pthread_mutex_unlock(&r->mu);
  return ok;
}

int pgs_dump_next(struct pgs_run *r, struct pgs_tenant *t, struct pgs_piece **p) {
  *p = NULL;
  pthread_mutex_lock(&r->mu);
  if (r->emit_worker != (long)t->worker) {
    r->emit_worker = (long)t->worker;
    pthread_cond_broadcast(&r->cv);
  }
  while (t->head == NULL && t->state == PGS_T_PENDING && !r->stop)
    pthread_cond_wait(&r->cv, &r->mu);
  int rc;
  if (t->head != NULL) {
    *p = t->head;
    t->head = (*p)->next;
    if (t->head == NULL)
      t->tail = NULL;
    t->emitting = 1;
    rc = 1;
  } else {
    rc = t->state == PGS_T_PENDING ? -1 : 0;
  }
  pthread_mutex_unlock(&r->mu);
  return rc;
}

void pgs_piece_done(struct pgs_run *r, struct pgs_tenant *t, struct pgs_piece *p) {
  pthread_mutex_lock(&r->mu);
  r->workers[t->worker].buffered -= p->len;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  free(p);
}

int pgs_dump_all_finished(struct pgs_run *r) {
  pthread_mutex_lock(&r->mu);
  int all = 1;
  for (size_t i = 0; i < r->n_workers; i++)
    all &= !r->workers[i].started || r->workers[i].finished;
  pthread_mutex_unlock(&r->mu);
  return all;
}

/* ---- one pg_dump ------------------------------------------------------------- */

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
  char *s = NULL;
  va_list ap;
  va_start(ap, f);
  if (vasprintf(&s, f, ap) < 0)
    s = NULL;
  va_end(ap);
  return s;
}

static ssize_t fd_read(void *ctx, void *buf, size_t len) {
  return read(*(int *)ctx, buf, len);
}

/* How a pg_dump went: ok, or why not. */
struct dres {
  int ok;
  int raw;       /* the archive's version is not one this plugin reads */
  char *why;     /* "failed (exit status 1) after 123 bytes: <stderr>" */
  long culprit;  /* position in the batch of the schema the failure points at, -1 */
  int in_data;   /* it failed while that schema's data was read */
  uint64_t read; /* bytes read from it */
};

struct dump {
  struct pgs_worker *w;
  struct pgs_run *r;
  const size_t *idx; /* the batch: indexes into r->tenants */
  size_t n;
  struct engine_child *child;
  struct pgs_in in;
  char *perr; /* what the archive reader found wrong */
};

/* ---- --schema patterns ---------------------------------------------------------- */

/* Names are split into tokens: an ASCII byte, or a run of non-ASCII bytes
 * (never split: a multibyte character of any server encoding is in one
 * run). The length of the token at s. */
static size_t token_len(const char *s) {
  if ((unsigned char)s[0] < 0x80)
    return 1;
  size_t k = 0;
  while (s[k] != '\0' && (unsigned char)s[k] >= 0x80)
    k++;
  return k;
}

/* How far a and b agree from `from` on, in whole tokens. */
static size_t common_tokens(const char *a, const char *b, size_t from) {
  size_t p = from;
  while (a[p] != '\0' && b[p] != '\0') {
    size_t la = token_len(a + p), lb = token_len(b + p);
    if (la != lb || memcmp(a + p, b + p, la) != 0)
      break;
    p += la;
  }
  return p;
}

/* A quoted pattern literal: "..." with quotes doubled (pg_dump matches it
 * exactly, case and regex characters included). */
static void add_literal(struct pgs_buf *b, const char *s, size_t n) {
  pgs_buf_add(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"')
      pgs_buf_add(b, "\"", 1);
    pgs_buf_add(b, s + i, 1);
  }
  pgs_buf_add(b, "\"", 1);
}

/* names[0..n) (sorted bytewise, distinct, all agreeing up to `from`) as
 * their radix tree, written as a pattern: "tenant_0"("01"|"03"|"1"("0"|"2"))
 * for tenant_001, tenant_003, tenant_010, tenant_012. The server matches
 * each schema name against it in time proportional to the name's length;
 * a list ("a"|"b"|...) costs time proportional to its length for every
 * schema of the database, which for thousands of tenants took seconds of
 * server CPU per pg_dump. */
static void add_tree(struct pgs_buf *b, const char *const *names, size_t n, size_t from) {
  if (n == 1) {
    add_literal(b, names[0] + from, strlen(names[0] + from));
    return;
  }
  size_t lcp = common_tokens(names[0], names[n - 1], from);
  if (lcp > from)
    add_literal(b, names[0] + from, lcp - from);
  size_t i = 0;
  int end_here = names[0][lcp] == '\0'; /* sorted first: a prefix of the others */
  if (end_here)
    i = 1;
  pgs_buf_add(b, "(", 1);
  for (int first = 1; i < n; first = 0) {
    size_t tl = token_len(names[i] + lcp), j = i + 1;
    while (j < n && token_len(names[j] + lcp) == tl &&
           memcmp(names[j] + lcp, names[i] + lcp, tl) == 0)
      j++;
    if (!first)
      pgs_buf_add(b, "|", 1);
    add_tree(b, names + i, j - i, lcp);
    i = j;
  }
  /* outside quotes, pg_dump's patterns pass ( | ) { } through to the
   * regular expression, but read ? as any character */
  pgs_buf_add(b, end_here ? "){0,1}" : ")", end_here ? 6 : 1);
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static char **dump_argv(struct pgs_run *r, const size_t *idx, size_t n, int single, int plain) {
  const struct pgs_inst *in = r->in;
  size_t cap = 8 + (single ? 1 : n / PATTERN_NAMES + 1), k = 0;
  char **v = calloc(cap + 1, sizeof(*v));
  if (v == NULL)
    return NULL;
  int ok = 1;
  v[k++] = strdup(r->pg_dump);
  v[k++] = strdup(plain ? "--format=plain" : "--format=custom");
  if (!plain)
    ok &= asprintf(&v[k++], "--compress=%d", in->compress_level) >= 0;
  v[k++] = strdup("--no-password");
  ok &= asprintf(&v[k++], "--snapshot=%s", r->snapshot) >= 0;
  /* quoted parts of a pattern are literal: the pattern matches exactly
   * those schemas */
  const char **names = calloc(n > 0 ? n : 1, sizeof(*names));
  ok &= names != NULL;
  for (size_t i = 0; i < n && ok; i++)
    names[i] = r->tenants[idx[i]].name;
  if (ok) /* in byte order (they come so: the tree needs it) */
    qsort(names, n, sizeof(*names), cmp_name);
  for (size_t i = 0; i < n && ok; i += PATTERN_NAMES) {
    struct pgs_buf pat = {0};
    pgs_buf_add(&pat, "--schema=", 9);
    size_t end = i + PATTERN_NAMES < n ? i + PATTERN_NAMES : n;
    if (single)
      add_literal(&pat, names[i], strlen(names[i]));
    else
      add_tree(&pat, names + i, end - i, 0);
    pgs_buf_add(&pat, "", 1);
    ok &= !pat.oom;
    v[k++] = (char *)pat.p;
  }
  free(names);
  ok &= asprintf(&v[k++], "--dbname=%s", r->conninfo) >= 0;
  for (size_t i = 0; i < k; i++)
    ok &= v[i] != NULL;
  if (!ok) {
    for (size_t i = 0; i < k; i++)
      free(v[i]);
    free(v);
    return NULL;
  }
  return v;
}

static void free_argv(char **v) {
  for (size_t i = 0; v && v[i]; i++)
    free(v[i]);
  free(v);
}

static int spawn_dump(struct dump *d, int plain) {
  struct pgs_run *r = d->r;
  char **argv = dump_argv(r, d->idx, d->n, d->n == 1, plain);
  if (argv == NULL)
    return -1;
  struct engine_spawn_opts o = {.struct_size = sizeof(o),
                                .file = r->pg_dump,
                                .argv = (const char *const *)argv,
                                .stdin_mode = ENGINE_STDIO_NULL,
                                .stdout_mode = ENGINE_STDIO_PIPE,
                                .stderr_mode = ENGINE_STDIO_PIPE};
  pgs_target_spawn_opts(r->t, &o);
  int rc = r->h->spawn(r->h, &o, &d->child);
  free_argv(argv);
  if (rc != ENGINE_OK)
    return -1;
  /* fewer, larger reads: a 1 MiB pipe instead of the default 64 KiB */
  (void)fcntl(d->child->stdout_fd, F_SETPIPE_SZ, (int)PGS_IO_BLOCK);
  pthread_mutex_lock(&r->mu);
  r->dumps++;
  d->w->child = d->child;
  pthread_mutex_unlock(&r->mu);
  d->w->dumps++;
  int64_t now = r->h->now_ms(r->h);
  for (size_t i = 0; i < d->n; i++)
    r->tenants[d->idx[i]].started_ms = now;
  pgs_in_init(&d->in, fd_read, &d->child->stdout_fd, PGS_IO_BLOCK);
  return d->in.buf != NULL ? 0 : -1;
}

/* pg_dump's message names the table it could not lock ("Query was: LOCK
 * TABLE sch.tab IN ACCESS SHARE MODE"): the schema, as a batch position. */
static long culprit_from_stderr(struct dump *d, const char *err) {
  const char *p = err ? strstr(err, "LOCK TABLE ") : NULL;
  if (p == NULL)
    return -1;
  p += 11;
  if (strncmp(p, "ONLY ", 5) == 0)
    p += 5;
  char name[256];
  size_t n = 0;
  if (*p == '"') {
    for (p++; *p && n + 1 < sizeof(name); p++) {
      if (*p == '"') {
        if (p[1] != '"')
          break;
        p++;
      }
      name[n++] = *p;
    }
  } else {
    while (*p && *p != '.' && *p != ' ' && n + 1 < sizeof(name))
      name[n++] = *p++;
  }
  name[n] = '\0';
  for (size_t i = 0; i < d->n; i++)
    if (strcmp(d->r->tenants[d->idx[i]].name, name) == 0)
      return (long)i;
  return -1;
}

/* Reap the child (killed first when kill_it) and describe how it ended. */
static void finish_child(struct dump *d, int kill_it, struct dres *res) {
  struct pgs_run *r = d->r;
  const struct engine_host *h = r->h;
  if (kill_it)
    h->child_kill(h, d->child, SIGTERM);
  close(d->child->stdout_fd);
  d->child->stdout_fd = -1;
  int status = 0;
  int wrc = h->child_wait(h, d->child, &status);
  int exited_ok = wrc == ENGINE_OK && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  res->read = d->in.offset;
  if (!exited_ok && !kill_it) {
    char st[96];
    if (wrc != ENGINE_OK)
      snprintf(st, sizeof(st), "could not be waited for");
    else
      pgs_describe_status(status, st, sizeof(st));
    const char *tail = pgs_stderr_tail(r->in, d->child);
    res->ok = 0;
    res->why = fmt("failed (%s) after %llu bytes: %s", st, (unsigned long long)d->in.offset, tail);
    if (res->culprit < 0)
      res->culprit = culprit_from_stderr(d, h->child_stderr(h, d->child));
  } else if (!exited_ok || !res->ok) {
    res->ok = 0;
    if (res->why == NULL)
      res->why = fmt("could not be read after %llu bytes: %s", (unsigned long long)d->in.offset,
                     d->perr ? d->perr : "the run was stopped");
  } else {
    const char *warn = h->child_stderr(h, d->child);
    if (warn != NULL && warn[0] != '\0')
      h->log(h, ENGINE_LOG_WARN, "pg_dump said: %s", pgs_stderr_tail(r->in, d->child));
  }
  pthread_mutex_lock(&r->mu);
  d->w->child = NULL;
  pthread_mutex_unlock(&r->mu);
  h->child_free(h, d->child);
  d->child = NULL;
  pgs_in_free(&d->in);
  if (!res->ok)
    d->w->failed_dumps++;
}

/* ---- the custom format: split one archive ------------------------------------- */

struct part {
  struct pgs_tenant *t;
  size_t *list; /* its entries and the shared ones, archive order */
  size_t n_list, cap_list;
  size_t pending; /* data blocks still to come */
  int opened;     /* header and table of contents queued */
  json_t *tables; /* [{name, kind, rows, digest}] */
  json_t *by_name;
};

struct split {
  struct dump *d;
  struct pgs_arc_head head;
  struct pgs_toc toc;
  struct part *parts;
  int *map, max_id;
  int *pos;
  int *newid; /* entry -> its id in its schema's archive */
};

static int lookup_cb(void *ud, const char *schema) {
  struct split *s = ud;
  size_t lo = 0, hi = s->d->n;
  while (lo < hi) { /* names are in byte order */
    size_t mid = (lo + hi) / 2;
    int c = strcmp(s->d->r->tenants[s->d->idx[mid]].name, schema);
    if (c == 0)
      return (int)mid;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return -1;
}

static int list_add(struct part *p, size_t e) {
  if (p->n_list == p->cap_list) {
    size_t nc = p->cap_list ? p->cap_list * 2 : 16;
    size_t *nl = realloc(p->list, nc * sizeof(*nl));
    if (nl == NULL)
      return -1;
    p->list = nl;
    p->cap_list = nc;
  }
  p->list[p->n_list++] = e;
  return 0;
}

static void split_free(struct split *s) {
  for (size_t i = 0; s->parts && i < s->d->n; i++) {
    free(s->parts[i].list);
    json_decref(s->parts[i].tables);
    json_decref(s->parts[i].by_name);
  }
  free(s->parts);
  free(s->map);
  free(s->pos);
  free(s->newid);
  pgs_toc_free(&s->toc);
  pgs_arc_head_free(&s->head);
}

/* Each schema's entries, its tables, its data blocks to come. */
static int plan_parts(struct split *s) {
  size_t n = s->d->n;
  s->parts = calloc(n, sizeof(*s->parts));
  s->pos = malloc((s->toc.n + 1) * sizeof(*s->pos));
  s->newid = calloc(s->toc.n + 1, sizeof(*s->newid));
  s->map = pgs_toc_id_map(&s->toc, &s->max_id);
  if (s->parts == NULL || s->pos == NULL || s->newid == NULL || s->map == NULL)
    return -1;
  for (size_t i = 0; i <= s->toc.n; i++)
    s->pos[i] = -1;
  pgs_toc_assign(&s->toc, lookup_cb, s);
  for (size_t k = 0; k < n; k++) {
    s->parts[k].t = &s->d->r->tenants[s->d->idx[k]];
    s->parts[k].tables = json_array();
    s->parts[k].by_name = json_object();
    if (s->parts[k].tables == NULL || s->parts[k].by_name == NULL)
      return -1;
  }
  /* shared entries go into every schema's list; build the lists in one
   * pass (the shared entries are few: ENCODING, STDSTRINGS, SEARCHPATH) */
  for (size_t i = 0; i < s->toc.n; i++) {
    struct pgs_toc_entry *e = &s->toc.e[i];
    if (e->group < 0) {
      if (e->had_dumper) {
        free(s->d->perr);
        s->d->perr = fmt("the archive holds data of no selected schema (%s %s)",
                         e->desc ? e->desc : "?", e->tag ? e->tag : "?");
        return -1;
      }
      for (size_t k = 0; k < n; k++)
        if (list_add(&s->parts[k], i) != 0)
          return -1;
      continue;
    }
    struct part *p = &s->parts[e->group];
    if (list_add(p, i) != 0)
      return -1;
    s->newid[i] = (int)p->n_list;
    if (e->had_dumper)
      p->pending++;
    const char *kind = e->desc && strcmp(e->desc, "TABLE") == 0               ? "table"
                       : e->desc && strcmp(e->desc, "MATERIALIZED VIEW") == 0 ? "materialized view"
                                                                              : NULL;
    if (kind != NULL && e->tag != NULL) {
      json_t *row = json_pack("{s:s, s:s, s:n}", "name", e->tag, "kind", kind, "rows");
      if (row == NULL || json_array_append_new(p->tables, row) != 0 ||
          json_object_set(p->by_name, e->tag, row) != 0)
        return -1;
    }
  }
  return 0;
}

/* Queue a schema's header and table of contents, each ending a chunk. */
static int open_part(struct split *s, struct part *p) {
  if (p->opened)
    return 0;
  struct pgs_worker *w = s->d->w;
  if (put(w, p->t, s->head.raw, s->head.raw_len) != 0 || cut(w, p->t) != 0)
    return -1;
  struct pgs_buf b = {0};
  pgs_toc_write(&s->toc, &s->head, p->list, p->n_list, s->pos, s->map, s->max_id, &b);
  int rc = b.oom ? -1 : put(w, p->t, b.p, b.len);
  pgs_buf_free(&b);
  if (rc != 0 || cut(w, p->t) != 0)
    return -1;
  p->opened = 1;
  return 0;
}

static void close_part(struct split *s, size_t k) {
  struct part *p = &s->parts[k];
  char def[64], own[64];
  size_t objects = 0;
  pgs_toc_digests(&s->toc, (int)k, def, own, sizeof(def), &objects);
  json_int_t total = 0;
  size_t i;
  json_t *row;
  json_array_foreach(p->tables, i, row) total += json_integer_value(json_object_get(row, "rows"));
  json_t *found = json_pack("{s:i, s:I, s:O, s:s, s:s, s:I}", "table_count",
                            (json_int_t)json_array_size(p->tables), "total_rows", total, "tables",
                            p->tables, "schema_digest", def, "ownership_digest", own,
                            "schema_objects", (json_int_t)objects);
  tenant_done(s->d->w, p->t, found);
}

/* One data block (BLK_DATA: sub-blocks of COPY text until a 0 length;
 * BLK_BLOBS: large objects, each an oid and sub-blocks). */
static int copy_block(struct split *s, struct part *p, int type, int newid, struct pgs_rows *rows,
                      int *hash_ok) {
  struct dump *d = s->d;
  struct pgs_worker *w = d->w;
  int is = s->head.int_size;
  unsigned char hdr[1 + 9];
  hdr[0] = (unsigned char)type;
  struct pgs_buf b = {0};
  pgs_arc_put_int(&b, is, newid);
  if (b.oom)
    return -1;
  memcpy(hdr + 1, b.p, b.len);
  pgs_buf_free(&b);
  if (put(w, p->t, hdr, 1 + (size_t)is + 1) != 0)
    return -1;
  z_stream z;
  int zinit = 0;
  unsigned char zout[64 * 1024];
  int blobs = type == PGS_BLK_BLOBS;
  for (;;) {
    const unsigned char *q;
    if (blobs) { /* an oid, 0 at the end */
      if (pgs_in_peek(&d->in, &q, (size_t)is + 1) < (size_t)is + 1)
        goto truncated;
      int zero = 1;
      for (int i = 1; i <= is; i++)
        zero &= q[i] == 0;
      if (put(w, p->t, q, (size_t)is + 1) != 0)
        return -1;
      pgs_in_consume(&d->in, (size_t)is + 1);
      if (zero)
        break;
    }
    for (;;) { /* sub-blocks */
      if (pgs_in_peek(&d->in, &q, (size_t)is + 1) < (size_t)is + 1)
        goto truncated;
      unsigned long long len = 0;
      for (int i = 0; i < is; i++)
        len |= (unsigned long long)q[1 + i] << (8 * i);
      if (q[0] != 0 && len != 0) {
        free(d->perr);
        d->perr = fmt("a data block of the archive has a negative length");
        return -1;
      }
      if (put(w, p->t, q, (size_t)is + 1) != 0)
        return -1;
      pgs_in_consume(&d->in, (size_t)is + 1);
      if (len == 0)
        break;
      while (len > 0) {
        size_t got = pgs_in_peek(&d->in, &q, len < PGS_IO_BLOCK ? (size_t)len : PGS_IO_BLOCK);
        if (got == 0)
          goto truncated;
        if (put(w, p->t, q, got) != 0)
          return -1;
        if (rows != NULL && *hash_ok) {
          if (!s->head.gzip) {
            *hash_ok = pgs_rows_feed(rows, q, got) == 0;
          } else {
            if (!zinit) {
              memset(&z, 0, sizeof(z));
              zinit = inflateInit(&z) == Z_OK ? 1 : -1;
              *hash_ok = zinit == 1;
            }
            z.next_in = (unsigned char *)q;
            z.avail_in = (uInt)got;
            while (*hash_ok && z.avail_in > 0) {
              z.next_out = zout;
              z.avail_out = sizeof(zout);
              int zr = inflate(&z, Z_NO_FLUSH);
              if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
                *hash_ok = 0;
              else if (pgs_rows_feed(rows, zout, sizeof(zout) - z.avail_out) != 0)
                *hash_ok = 0;
              if (zr == Z_STREAM_END || (zr == Z_BUF_ERROR && z.avail_out != 0))
                break;
            }
          }
        }
        pgs_in_consume(&d->in, got);
        len -= got;
      }
    }
    if (!blobs)
      break;
  }
  if (zinit == 1) {
    /* what inflate still holds */
    z.next_in = NULL;
    z.avail_in = 0;
    for (int zr = Z_OK; *hash_ok && zr == Z_OK;) {
      z.next_out = zout;
      z.avail_out = sizeof(zout);
      zr = inflate(&z, Z_FINISH);
      if (pgs_rows_feed(rows, zout, sizeof(zout) - z.avail_out) != 0)
        *hash_ok = 0;
      if (zr == Z_BUF_ERROR && z.avail_out != 0)
        break;
    }
    inflateEnd(&z);
  }
  return cut(w, p->t);
truncated:
  if (zinit == 1)
    inflateEnd(&z);
  free(d->perr);
  d->perr = d->in.err ? fmt("reading pg_dump's output failed: %s", strerror(d->in.err))
                      : fmt("the archive ends in the middle of a data block");
  return -1;
}

/* Read the data blocks to the end. *at: the batch position whose data was
 * being read when it failed. */
static int split_data(struct split *s, long *at) {
  struct dump *d = s->d;
  for (;;) {
    if (stopped(d->r))
      return -1;
    const unsigned char *q;
    size_t got = pgs_in_peek(&d->in, &q, 1);
    if (got == 0) {
      if (d->in.err) {
        d->perr = fmt("reading pg_dump's output failed: %s", strerror(d->in.err));
        return -1;
      }
      return 0; /* the end */
    }
    int type = q[0];
    pgs_in_consume(&d->in, 1);
    int is = s->head.int_size;
    if (pgs_in_peek(&d->in, &q, (size_t)is + 1) < (size_t)is + 1) {
      d->perr = fmt("the archive ends in the middle of a data block's header");
      return -1;
    }
    unsigned long long id = 0;
    for (int i = 0; i < is; i++)
      id |= (unsigned long long)q[1 + i] << (8 * i);
    pgs_in_consume(&d->in, (size_t)is + 1);
    int k = id <= (unsigned long long)s->max_id ? s->map[id] : -1;
    if ((type != PGS_BLK_DATA && type != PGS_BLK_BLOBS) || k < 0 || s->toc.e[k].group < 0) {
      d->perr = fmt("the archive has a data block (type %d) for entry %llu, which its table of "
                    "contents does not list with data of a selected schema",
                    type, id);
      return -1;
    }
    struct pgs_toc_entry *e = &s->toc.e[k];
    struct part *p = &s->parts[e->group];
    *at = e->group;
    if (open_part(s, p) != 0)
      return -1;
    int is_table = type == PGS_BLK_DATA && e->desc && strcmp(e->desc, "TABLE DATA") == 0;
    struct pgs_rows rows;
    pgs_rows_init(&rows);
    int hash_ok = is_table;
    int rc = copy_block(s, p, type, s->newid[k], is_table ? &rows : NULL, &hash_ok);
    if (rc == 0 && is_table && e->tag != NULL) {
      json_t *row = json_object_get(p->by_name, e->tag);
      if (row != NULL && hash_ok && pgs_rows_done(&rows) == 0) {
        char dg[64];
        pgs_rows_text(&rows, dg, sizeof(dg));
        json_object_set_new(row, "rows", json_integer((json_int_t)rows.rows));
        json_object_set_new(row, "digest", json_string(dg));
      }
    }
    pgs_rows_free(&rows);
    if (rc != 0)
      return -1;
    *at = -1;
    if (p->pending > 0 && --p->pending == 0)
      close_part(s, (size_t)e->group);
  }
}

/* One pg_dump -Fc for the batch, split per schema. */
static void dump_custom(struct pgs_worker *w, const size_t *idx, size_t n, struct dres *res) {
  struct pgs_run *r = w->run;
  struct dump d = {.w = w, .r = r, .idx = idx, .n = n};
  struct split s = {.d = &d};
  res->ok = 1;
  res->culprit = -1;
  if (spawn_dump(&d, 0) != 0) {
    res->ok = 0;
    res->why = fmt("could not be started ('%s')", r->pg_dump);
    if (d.child != NULL)
      finish_child(&d, 1, res);
    return;
  }
  char *err = NULL;
  int failed = 0;
  long at = -1;
  if (pgs_arc_read_head(&d.in, &s.head, &err) != 0) {
    failed = 1;
    res->raw = d.in.offset >= 8 && err && strstr(err, "format version") != NULL;
  } else if (pgs_arc_read_toc(&d.in, &s.head, &s.toc, &err) != 0 || plan_parts(&s) != 0) {
    failed = 1;
  } else {
    pgs_arc_head_fix_time(&s.head);
    /* schemas without data are complete now */
    for (size_t k = 0; k < n && !failed; k++)
      if (s.parts[k].pending == 0) {
        failed = open_part(&s, &s.parts[k]) != 0;
        if (!failed)
          close_part(&s, k);
      }
    if (!failed)
      failed = split_data(&s, &at) != 0;
    for (size_t k = 0; k < n && !failed; k++)
      if (s.parts[k].pending > 0) {
        d.perr = fmt("the archive ended before the data of schema '%s'", s.parts[k].t->name);
        at = (long)k;
        failed = 1;
      }
  }
  if (err != NULL && d.perr == NULL)
    d.perr = err;
  else
    free(err);
  if (failed) {
    res->ok = 0;
    res->culprit = at;
    res->in_data = at >= 0;
  }
  /* after a failure with pg_dump's output at its end, pg_dump died (its
   * status says why); otherwise this side gave up: stop it */
  finish_child(&d, failed && !d.in.eof, res);
  free(d.perr);
  split_free(&s);
}

/* ---- one schema per pg_dump: plain SQL, or an archive kept verbatim ---------------- */

/* "COPY sch.tab (a, b) FROM stdin;" -> "tab" (identifiers as pg_dump quotes
 * them); NULL when the line is not a COPY header. */
static char *copy_table(const unsigned char *line, size_t len) {
  static const char tail[] = " FROM stdin;";
  size_t tl = sizeof(tail) - 1;
  if (len < 5 + tl || memcmp(line, "COPY ", 5) != 0 || memcmp(line + len - tl, tail, tl) != 0)
    return NULL;
  const unsigned char *p = line + 5, *end = line + len - tl;
  char *names[2] = {NULL, NULL};
  for (int part = 0; part < 2 && p < end; part++) {
    struct pgs_buf b = {0};
    if (*p == '"') {
      for (p++; p < end; p++) {
        if (*p == '"') {
          if (p + 1 < end && p[1] == '"') {
            pgs_buf_add(&b, p, 1);
            p++;
            continue;
          }
          p++;
          break;
        }
        pgs_buf_add(&b, p, 1);
      }
    } else {
      while (p < end && *p != '.' && *p != ' ')
        pgs_buf_add(&b, p++, 1);
    }
    pgs_buf_add(&b, "", 1);
    names[part] = b.oom ? NULL : (char *)b.p;
    if (part == 0) {
      if (p >= end || *p != '.')
        break;
      p++;
    }
  }
  free(names[0]);
  return names[1];
}

/* Plain SQL: bytes as pg_dump wrote them; cuts before each COPY header and
 * after its "\." line, rows hashed in between. Line by line outside COPY
 * blocks (a header line longer than the buffer is not looked at). */
static int stream_plain(struct dump *d, struct pgs_tenant *t, json_t *tables) {
  struct pgs_worker *w = d->w;
  int in_copy = 0, line_start = 1;
  struct pgs_rows rows;
  char *table = NULL;
  pgs_rows_init(&rows);
  int rc = 0;
  while (rc == 0) {
    if (stopped(d->r)) {
      rc = -1;
      break;
    }
    const unsigned char *q;
    size_t got = pgs_in_avail(&d->in, &q);
    if (got == 0)
      break;
    const unsigned char *nl = memchr(q, '\n', got);
    /* a whole line when one fits: a COPY header, or the end of a COPY block */
    if (((!nl && !in_copy) || (in_copy && line_start && got < 3)) && got < d->in.cap &&
        !d->in.eof && !d->in.err) {
      pgs_in_peek(&d->in, &q, got + 1);
      continue;
    }
    size_t take = nl ? (size_t)(nl - q) + 1 : got;
    if (in_copy) {
      if (line_start && take == 3 && memcmp(q, "\\.\n", 3) == 0) {
        rc = put(w, t, q, take) != 0 || cut(w, t) != 0 ? -1 : 0;
        if (rc == 0 && table != NULL && pgs_rows_done(&rows) == 0) {
          char dg[64];
          pgs_rows_text(&rows, dg, sizeof(dg));
          json_array_append_new(tables,
                                json_pack("{s:s, s:s, s:I, s:s}", "name", table, "kind", "table",
                                          "rows", (json_int_t)rows.rows, "digest", dg));
        }
        pgs_rows_free(&rows);
        pgs_rows_init(&rows);
        free(table);
        table = NULL;
        in_copy = 0;
      } else {
        if (pgs_rows_feed(&rows, q, take) != 0 || put(w, t, q, take) != 0)
          rc = -1;
      }
    } else {
      char *tab = line_start && nl ? copy_table(q, take - 1) : NULL;
      if (tab != NULL) {
        rc = cut(w, t);
        table = tab;
        in_copy = 1;
      }
      if (rc == 0 && put(w, t, q, take) != 0)
        rc = -1;
    }
    line_start = nl != NULL;
    pgs_in_consume(&d->in, take);
  }
  pgs_rows_free(&rows);
  free(table);
  if (rc == 0 && d->in.err) {
    d->perr = fmt("reading pg_dump's output failed: %s", strerror(d->in.err));
    rc = -1;
  }
  return rc;
}

static int stream_raw(struct dump *d, struct pgs_tenant *t) {
  for (;;) {
    if (stopped(d->r))
      return -1;
    const unsigned char *q;
    size_t got = pgs_in_avail(&d->in, &q);
    if (got == 0)
      break;
    if (put(d->w, t, q, got) != 0)
      return -1;
    pgs_in_consume(&d->in, got);
  }
  if (d->in.err) {
    d->perr = fmt("reading pg_dump's output failed: %s", strerror(d->in.err));
    return -1;
  }
  return 0;
}

static void dump_single(struct pgs_worker *w, size_t ti, int plain, struct dres *res) {
  struct pgs_run *r = w->run;
  struct pgs_tenant *t = &r->tenants[ti];
  struct dump d = {.w = w, .r = r, .idx = &ti, .n = 1};
  res->ok = 1;
  res->culprit = 0;
  if (spawn_dump(&d, plain) != 0) {
    res->ok = 0;
    res->why = fmt("could not be started ('%s')", r->pg_dump);
    if (d.child != NULL)
      finish_child(&d, 1, res);
    return;
  }
  json_t *tables = json_array();
  int failed = (plain ? stream_plain(&d, t, tables) : stream_raw(&d, t)) != 0;
  if (!failed && d.in.offset == 0) {
    d.perr = fmt("pg_dump wrote nothing");
    failed = 1;
  }
  res->ok = !failed;
  res->in_data = failed;
  finish_child(&d, failed && !d.in.eof, res);
  free(d.perr);
  if (res->ok) {
    json_int_t total = 0;
    size_t i;
    json_t *row;
    json_array_foreach(tables, i, row) total += json_integer_value(json_object_get(row, "rows"));
    json_t *found =
        plain ? json_pack("{s:i, s:I, s:O}", "table_count", (json_int_t)json_array_size(tables),
                          "total_rows", total, "tables", tables)
              : json_object();
    tenant_done(w, t, found);
  }
  json_decref(tables);
}

/* ---- a worker ------------------------------------------------------------------- */

static char *tenant_message(struct pgs_run *r, const size_t *idx, size_t n, size_t k,
                            const struct dres *res) {
  char *ps = pgs_printable(r->tenants[idx[k]].name);
  char *m;
  if (n == 1)
    m = fmt("pg_dump of schema '%s' %s", ps ? ps : "?", res->why ? res->why : "failed");
  else
    m = fmt("pg_dump of schema '%s' %s (one pg_dump for %zu schemas, from '%s' to '%s')",
            ps ? ps : "?", res->why ? res->why : "failed", n, r->tenants[idx[0]].name,
            r->tenants[idx[n - 1]].name);
  free(ps);
  return m;
}

static int is_pending(struct pgs_run *r, size_t ti) {
  pthread_mutex_lock(&r->mu);
  int p = r->tenants[ti].state == PGS_T_PENDING;
  pthread_mutex_unlock(&r->mu);
  return p;
}

static void run_batch(struct pgs_worker *w, const size_t *idx, size_t n);

static void run_list(struct pgs_worker *w, const size_t *idx, size_t n) {
  /* at most BATCH_PATTERN_BYTES of patterns per pg_dump */
  size_t start = 0, bytes = 0;
  for (size_t i = 0; i < n; i++) {
    bytes += strlen(w->run->tenants[idx[i]].name) + 4;
    if (bytes > BATCH_PATTERN_BYTES && i > start) {
      run_batch(w, idx + start, i - start);
      start = i;
      bytes = strlen(w->run->tenants[idx[i]].name) + 4;
    }
  }
  if (start < n)
    run_batch(w, idx + start, n - start);
}

/* Failed pg_dump runs a worker tries before it gives up on the rest: enough
 * to isolate a few failing schemas among many, not to try every schema
 * alone when the server refuses everything. */
static int give_up(struct pgs_worker *w) {
  int limit = 16;
  for (size_t n = w->n; n > 1; n /= 2)
    limit += 2;
  return w->failed_dumps > limit;
}

static void run_batch(struct pgs_worker *w, const size_t *idx, size_t n) {
  struct pgs_run *r = w->run;
  if (n == 0 || stopped(r))
    return;
  if (give_up(w)) {
    for (size_t k = 0; k < n; k++)
      if (is_pending(r, idx[k]))
        tenant_fail(w, &r->tenants[idx[k]],
                    fmt("not dumped: %d pg_dump runs of this worker failed before it "
                        "(see the other schemas' messages)",
                        w->failed_dumps));
    return;
  }
  int raw = 0;
  pthread_mutex_lock(&r->mu);
  raw = r->raw;
  pthread_mutex_unlock(&r->mu);
  if (raw || r->in->format == PGS_FORMAT_PLAIN) {
    for (size_t i = 0; i < n && !stopped(r); i++) {
      struct dres res = {0};
      dump_single(w, idx[i], !raw, &res);
      if (!res.ok && !stopped(r)) {
        if (!tenant_reset(w, &r->tenants[idx[i]]))
          r->h->log(r->h, ENGINE_LOG_DEBUG, "schema '%s' was being stored",
                    r->tenants[idx[i]].name);
        tenant_fail(w, &r->tenants[idx[i]], tenant_message(r, idx + i, 1, 0, &res));
      }
      free(res.why);
    }
    return;
  }
  struct dres res = {0};
  dump_custom(w, idx, n, &res);
  if (res.ok || stopped(r)) {
    free(res.why);
    return;
  }
  if (res.raw) {
    pthread_mutex_lock(&r->mu);
    if (!r->raw)
      r->h->log(r->h, ENGINE_LOG_WARN,
                "%s; storing each schema's archive as pg_dump writes it, one pg_dump per schema "
                "(no per-table chunks or digests)",
                res.why ? res.why : "pg_dump's archive format is not understood");
    r->raw = 1;
    pthread_mutex_unlock(&r->mu);
  }
  /* the schemas not complete: those the emitter began fail, the others are
   * dumped again */
  size_t *again = malloc(n * sizeof(*again));
  size_t n_again = 0;
  long culprit = -1;
  for (size_t k = 0; k < n; k++) {
    size_t ti = idx[k];
    if (!is_pending(r, ti))
      continue;
    if (n > 1 && tenant_reset(w, &r->tenants[ti])) {
      if ((long)k == res.culprit)
        culprit = (long)n_again;
      if (again != NULL)
        again[n_again++] = ti;
      continue;
    }
    tenant_fail(w, &r->tenants[ti], tenant_message(r, idx, n, k, &res));
  }
  if (n > 1 && n_again > 0)
    r->h->log(r->h, ENGINE_LOG_INFO,
              "pg_dump of %zu schemas %s; dumping the %zu schema(s) it did not complete again%s", n,
              res.why ? res.why : "failed", n_again,
              culprit >= 0 ? ", the one it names on its own first" : ", in smaller groups");
  free(res.why);
  if (again == NULL)
    return;
  if (res.raw) {
    run_batch(w, again, n_again);
  } else if (culprit >= 0) {
    run_batch(w, again, (size_t)culprit);
    run_batch(w, again + culprit, 1);
    run_batch(w, again + culprit + 1, n_again - (size_t)culprit - 1);
  } else if (n_again > 1) {
    run_batch(w, again, n_again / 2);
    run_batch(w, again + n_again / 2, n_again - n_again / 2);
  } else if (n_again == 1) {
    run_batch(w, again, 1);
  }
  free(again);
}

static void *worker_main(void *arg) {
  struct pgs_worker *w = arg;
  struct pgs_run *r = w->run;
  run_list(w, w->tenants, w->n);
  /* whatever is still pending failed with the run */
  for (size_t i = 0; i < w->n; i++)
    if (is_pending(r, w->tenants[i]))
      tenant_fail(w, &r->tenants[w->tenants[i]],
                  strdup("the run was stopped before it was dumped"));
  pthread_mutex_lock(&r->mu);
  w->finished = 1;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

int pgs_dump_start(struct pgs_run *r) {
  const struct engine_host *h = r->h;
  r->emit_worker = -1;
  for (size_t i = 0; i < r->n_tenants; i++)
    r->tenants[i].worker = i % r->n_workers;
  for (size_t k = 0; k < r->n_workers; k++) {
    struct pgs_worker *w = &r->workers[k];
    w->run = r;
    w->idx = k;
    w->tenants = malloc((r->n_tenants / r->n_workers + 1) * sizeof(*w->tenants));
    w->open_buf = malloc(PIECE_SIZE);
    if (w->tenants == NULL || w->open_buf == NULL) {
      h->set_error(h, "out of memory");
      return -1;
    }
    for (size_t i = k; i < r->n_tenants; i += r->n_workers)
      w->tenants[w->n++] = i;
  }
  for (size_t k = 0; k < r->n_workers; k++) {
    struct pgs_worker *w = &r->workers[k];
    int e = pthread_create(&w->th, NULL, worker_main, w);
    if (e != 0) {
      h->set_error(h, "unable to start a dump worker thread: %s", strerror(e));
      return -1;
    }
    w->started = 1;
  }
  return 0;
}

void pgs_dump_join(struct pgs_run *r) {
  pthread_mutex_lock(&r->mu);
  for (size_t k = 0; k < r->n_workers; k++)
    if (!r->workers[k].finished) {
      r->stop = 1;
      /* a pg_dump waiting on the server would keep its worker reading */
      if (r->workers[k].child != NULL)
        r->h->child_kill(r->h, r->workers[k].child, SIGTERM);
    }
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  for (size_t k = 0; k < r->n_workers; k++) {
    struct pgs_worker *w = &r->workers[k];
    if (w->started)
      pthread_join(w->th, NULL);
    w->started = 0;
    free(w->tenants);
    w->tenants = NULL;
    free(w->open_buf);
    w->open_buf = NULL;
  }
  for (size_t i = 0; i < r->n_tenants; i++) {
    struct pgs_tenant *t = &r->tenants[i];
    struct pgs_piece *p = t->head;
    while (p != NULL) {
      struct pgs_piece *n = p->next;
      free(p);
      p = n;
    }
    t->head = t->tail = NULL;
  }
}
