/* Item tree encoding and the sequential blob reader used by restore and check. */
#include "repo/tree.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo/index.h"
#include "repo/prefetch.h"
#include "util/log.h"

static const char *const type_names[] = {NULL,       "file",   "dir",    "symlink",
                                         "hardlink", "stream", "special"};

const char *item_type_name(enum engine_item_type t) {
  if ((int)t >= 1 && (int)t <= 6)
    return type_names[t];
  return "unknown";
}

int item_type_from_name(const char *s) {
  for (int i = 1; i <= 6; i++)
    if (s && strcmp(s, type_names[i]) == 0)
      return i;
  return -1;
}

void json_set_bytes(json_t *obj, const char *key, const char *bytes, size_t len) {
  json_t *s = json_stringn(bytes, len); /* NULL when not valid UTF-8 */
  if (s) {
    json_object_set_new(obj, key, s);
    return;
  }
  char *k = xasprintf("%s_b64", key);
  char *b = b64_encode(bytes, len);
  json_object_set_new(obj, k, json_string(b));
  free(k);
  free(b);
}

char *json_get_bytes(json_t *obj, const char *key, size_t *len) {
  json_t *s = json_object_get(obj, key);
  if (json_is_string(s)) {
    size_t n = json_string_length(s);
    char *out = xmalloc(n + 1);
    memcpy(out, json_string_value(s), n);
    out[n] = '\0';
    if (len)
      *len = n;
    return out;
  }
  char *k = xasprintf("%s_b64", key);
  const char *b = json_string_value(json_object_get(obj, k));
  free(k);
  unsigned char *raw;
  size_t n;
  if (!b || b64_decode(b, &raw, &n) != 0)
    return NULL;
  raw = xrealloc(raw, n + 1);
  raw[n] = '\0';
  if (len)
    *len = n;
  return (char *)raw;
}

const char *item_name_problem(const char *name, size_t len) {
  if (len == 0)
    return "empty name";
  if (memchr(name, '\0', len))
    return "name contains a NUL byte";
  if (name[0] == '/')
    return "absolute name";
  size_t start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i == len || name[i] == '/') {
      size_t cl = i - start;
      if (cl == 0)
        return "empty path component";
      if (cl == 1 && name[start] == '.')
        return "'.' path component";
      if (cl == 2 && name[start] == '.' && name[start + 1] == '.')
        return "'..' path component";
      start = i + 1;
    }
  }
  return NULL;
}

static char *chunks_problem(json_t *item, struct index *ix) {
  json_t *chunks = json_object_get(item, "chunks");
  if (!chunks)
    return NULL;
  if (!json_is_array(chunks))
    return xstrdup("its chunk list is not an array");
  uint64_t sum = 0;
  size_t i;
  json_t *v;
  json_array_foreach(chunks, i, v) {
    const char *hex = json_string_value(v);
    unsigned char id[32];
    if (!hex || strlen(hex) != 64 || hex_decode(hex, id, 32) != 0)
      return xasprintf("malformed chunk id at position %zu", i);
    if (!ix)
      continue;
    struct index_entry e;
    if (!index_get(ix, id, &e) || e.pack == UINT32_MAX)
      return xasprintf("chunk %.16s is not in the index", hex);
    if (e.type != BLOB_DATA)
      return xasprintf("chunk %.16s is a tree blob, not data", hex);
    sum += e.raw_length;
  }
  if (ix && sum != (uint64_t)json_integer_value(json_object_get(item, "size")))
    return xasprintf("its chunks hold %llu bytes but its size is %lld", (unsigned long long)sum,
                     (long long)json_integer_value(json_object_get(item, "size")));
  return NULL;
}

char *tree_item_problem(json_t *item, struct index *ix, char **name_out) {
  size_t nlen = 0;
  char *name = json_get_bytes(item, "name", &nlen);
  if (name_out)
    *name_out = name ? printable_name(name, nlen) : xstrdup("?");
  if (!name)
    return xstrdup("the item has no name");
  const char *why = item_name_problem(name, nlen);
  free(name);
  if (why)
    return xasprintf("unsafe name (%s)", why);
  if (item_type_from_name(json_string_value(json_object_get(item, "type"))) < 0)
    return xstrdup("unknown item type");
  json_t *size = json_object_get(item, "size");
  if (!json_is_integer(size) || json_integer_value(size) < 0)
    return xstrdup("the item has no valid size");
  json_t *meta = json_object_get(item, "meta");
  if (meta && !json_is_object(meta))
    return xstrdup("its metadata is not an object");
  return chunks_problem(item, ix);
}

json_t *blob_ids_json(const unsigned char (*ids)[32], size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) {
    char hex[65];
    hex_encode(ids[i], 32, hex);
    json_array_append_new(a, json_string(hex));
  }
  return a;
}

void blob_stream_init(struct blob_stream *s, struct repo *r, json_t *ids, enum blob_type type) {
  memset(s, 0, sizeof(*s));
  s->repo = r;
  s->ids = ids;
  s->type = type;
}

void blob_stream_init_ids(struct blob_stream *s, struct repo *r, const unsigned char (*ids)[32],
                          size_t n, enum blob_type type) {
  memset(s, 0, sizeof(*s));
  s->repo = r;
  s->bin = ids;
  s->n_bin = n;
  s->type = type;
}

ssize_t blob_stream_read(struct blob_stream *s, void *buf, size_t len) {
  while (s->cur_off >= s->cur_len) {
    if (!s->lent)
      free(s->cur);
    s->cur = NULL;
    s->lent = NULL;
    s->cur_len = s->cur_off = 0;
    unsigned char id[32];
    if (s->bin) {
      if (s->next >= s->n_bin)
        return 0;
      memcpy(id, s->bin[s->next], 32);
    } else {
      if (s->next >= json_array_size(s->ids))
        return 0;
      const char *hex = json_string_value(json_array_get(s->ids, s->next));
      if (!hex || hex_decode(hex, id, 32) != 0) {
        s->err = xasprintf("malformed blob id at position %zu", s->next);
        return -1;
      }
    }
    int got = s->pf ? prefetch_take(s->pf, id, &s->lent, &s->cur_len, &s->err) : 0;
    if (got < 0)
      return -1;
    if (got > 0)
      s->cur = (void *)s->lent;
    if (got == 0 && repo_read_blob(s->repo, id, s->type, &s->cur, &s->cur_len, &s->err) != 0)
      return -1;
    s->next++;
  }
  size_t n = s->cur_len - s->cur_off;
  if (n > len)
    n = len;
  memcpy(buf, (char *)s->cur + s->cur_off, n);
  s->cur_off += n;
  s->total += n;
  return (ssize_t)n;
}

void blob_stream_free(struct blob_stream *s) {
  if (!s->lent)
    free(s->cur);
  free(s->err);
  s->cur = NULL;
  s->lent = NULL;
  s->err = NULL;
}

void tree_reader_init(struct tree_reader *t, struct repo *r, json_t *tree_ids) {
  memset(t, 0, sizeof(*t));
  blob_stream_init(&t->bs, r, tree_ids, BLOB_TREE);
  t->cap = 256 * 1024;
  t->buf = xmalloc(t->cap);
}

void tree_reader_init_ids(struct tree_reader *t, struct repo *r, const unsigned char (*ids)[32],
                          size_t n) {
  memset(t, 0, sizeof(*t));
  blob_stream_init_ids(&t->bs, r, ids, n, BLOB_TREE);
  t->cap = 256 * 1024;
  t->buf = xmalloc(t->cap);
}

/* The next line's text in t->line / t->line_len (valid until the next
 * call). 1: a line; 0: end; -1: error (*err). */
static int next_line(struct tree_reader *t, char **err) {
  for (;;) {
    char *nl = t->off < t->len ? memchr(t->buf + t->off, '\n', t->len - t->off) : NULL;
    if (nl) {
      size_t n = (size_t)(nl - (t->buf + t->off));
      t->lineno++;
      t->line = t->buf + t->off;
      t->line_len = n;
      t->off += n + 1;
      return 1;
    }
    if (t->eof) {
      if (t->off < t->len) {
        *err = xstrdup("item tree ends in the middle of a line (truncated)");
        return -1;
      }
      return 0;
    }
    /* compact, then refill */
    memmove(t->buf, t->buf + t->off, t->len - t->off);
    t->len -= t->off;
    t->off = 0;
    if (t->len == t->cap) {
      t->cap *= 2;
      t->buf = xrealloc(t->buf, t->cap);
    }
    ssize_t r = blob_stream_read(&t->bs, t->buf + t->len, t->cap - t->len);
    if (r < 0) {
      *err = xasprintf("reading the item tree: %s", t->bs.err);
      return -1;
    }
    if (r == 0)
      t->eof = 1;
    t->len += (size_t)r;
  }
}

int tree_reader_next(struct tree_reader *t, json_t **item, char **err) {
  int rc = next_line(t, err);
  if (rc <= 0)
    return rc;
  json_error_t je;
  *item = json_loadb(t->line, t->line_len, 0, &je);
  if (!*item) {
    *err = xasprintf("item tree line %zu is not valid JSON: %s", t->lineno, je.text);
    return -1;
  }
  return 1;
}

void tree_reader_free(struct tree_reader *t) {
  blob_stream_free(&t->bs);
  free(t->buf);
  memset(t, 0, sizeof(*t));
}

int tree_name_cmp(const char *a, size_t al, const char *b, size_t bl) {
  size_t i = 0, j = 0;
  for (;;) {
    if (i >= al || j >= bl)
      return (i >= al) == (j >= bl) ? 0 : (i >= al ? -1 : 1);
    size_t ie = i, je = j;
    while (ie < al && a[ie] != '/')
      ie++;
    while (je < bl && b[je] != '/')
      je++;
    size_t n = ie - i < je - j ? ie - i : je - j;
    int c = memcmp(a + i, b + j, n);
    if (c)
      return c;
    if (ie - i != je - j)
      return ie - i < je - j ? -1 : 1;
    i = ie + 1;
    j = je + 1;
    if (ie >= al || je >= bl)
      return (ie >= al) == (je >= bl) ? 0 : (ie >= al ? -1 : 1);
  }
}

/* ---- tree_foreach: lines parsed on two threads ----
 *
 * Parsing the JSON of every line is most of the cost of walking a tree
 * (restore validates every name before it writes anything, prune and check
 * walk every tree): lines are read in batches, a helper thread parses the
 * first half of each batch while the caller parses the second, and the
 * callback sees the items in order on the calling thread. (Having the
 * helper free what it allocated, to spare malloc's arena locks, made no
 * measurable difference.) */
#define PAR_BATCH 512

struct par_batch {
  char *text; /* the batch's lines, each NUL-terminated */
  size_t len, cap;
  size_t n;
  size_t off[PAR_BATCH], lens[PAR_BATCH];
  json_t *items[PAR_BATCH];
  char errs[2][160]; /* parse error text of the first bad line of each half */
};

struct par_helper {
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct par_batch *b;
  size_t from, to; /* the helper's half */
  int work, stop;
};

static void parse_range(struct par_batch *b, size_t from, size_t to, char err[160]) {
  err[0] = '\0';
  for (size_t i = from; i < to; i++) {
    json_error_t je;
    b->items[i] = json_loadb(b->text + b->off[i], b->lens[i], 0, &je);
    if (!b->items[i] && !err[0])
      snprintf(err, 160, "%s", je.text);
  }
}

static void *par_main(void *arg) {
  struct par_helper *h = arg;
  pthread_mutex_lock(&h->mu);
  for (;;) {
    while (!h->work && !h->stop)
      pthread_cond_wait(&h->cv, &h->mu);
    if (!h->work)
      break;
    pthread_mutex_unlock(&h->mu);
    parse_range(h->b, h->from, h->to, h->b->errs[0]);
    pthread_mutex_lock(&h->mu);
    h->work = 0;
    pthread_cond_broadcast(&h->cv);
  }
  pthread_mutex_unlock(&h->mu);
  return NULL;
}

/* Fill b with up to PAR_BATCH lines. Returns the count, or -1 (*err). */
static long fill_batch(struct tree_reader *t, struct par_batch *b, char **err) {
  b->n = b->len = 0;
  while (b->n < PAR_BATCH) {
    int rc = next_line(t, err);
    if (rc < 0)
      return -1;
    if (rc == 0)
      break;
    if (b->len + t->line_len + 1 > b->cap) {
      b->cap = (b->len + t->line_len + 1) * 2;
      b->text = xrealloc(b->text, b->cap);
    }
    memcpy(b->text + b->len, t->line, t->line_len);
    b->text[b->len + t->line_len] = '\0';
    b->off[b->n] = b->len;
    b->lens[b->n] = t->line_len;
    b->len += t->line_len + 1;
    b->n++;
  }
  return (long)b->n;
}

/* tree_foreach over a reader set up by the caller (freed here). */
static int foreach_read(struct tree_reader *tr, int (*cb)(void *ud, json_t *item), void *ud,
                        char **err) {
  struct tree_reader t = *tr;
  struct par_batch *b = xcalloc(1, sizeof(*b));
  struct par_helper h = {.b = b};
  pthread_mutex_init(&h.mu, NULL);
  pthread_cond_init(&h.cv, NULL);
  int threaded = pthread_create(&h.th, NULL, par_main, &h) == 0;
  int rc = 0;
  for (;;) {
    size_t first_line = t.lineno + 1;
    long n = fill_batch(&t, b, err);
    if (n <= 0) {
      rc = (int)n; /* 0 at the end, -1 on error */
      break;
    }
    size_t half = threaded ? (size_t)n / 2 : 0;
    if (half > 0) {
      pthread_mutex_lock(&h.mu);
      h.from = 0;
      h.to = half;
      h.work = 1;
      pthread_cond_signal(&h.cv);
      pthread_mutex_unlock(&h.mu);
    }
    parse_range(b, half, (size_t)n, b->errs[1]);
    if (half > 0) {
      pthread_mutex_lock(&h.mu);
      while (h.work)
        pthread_cond_wait(&h.cv, &h.mu);
      pthread_mutex_unlock(&h.mu);
    }
    size_t i = 0;
    for (; i < (size_t)n && rc == 0; i++) {
      if (!b->items[i]) {
        *err = xasprintf("item tree line %zu is not valid JSON: %s", first_line + i,
                         b->errs[i < half ? 0 : 1]);
        rc = -1;
        break;
      }
      rc = cb(ud, b->items[i]);
    }
    for (i = 0; i < (size_t)n; i++)
      json_decref(b->items[i]);
    if (rc != 0)
      break;
  }
  if (threaded) {
    pthread_mutex_lock(&h.mu);
    h.stop = 1;
    pthread_cond_signal(&h.cv);
    pthread_mutex_unlock(&h.mu);
    pthread_join(h.th, NULL);
  }
  pthread_mutex_destroy(&h.mu);
  pthread_cond_destroy(&h.cv);
  free(b->text);
  free(b);
  tree_reader_free(&t);
  return rc;
}

int tree_foreach(struct repo *r, json_t *tree_ids, int (*cb)(void *ud, json_t *item), void *ud,
                 char **err) {
  struct tree_reader t;
  tree_reader_init(&t, r, tree_ids);
  return foreach_read(&t, cb, ud, err);
}

int tree_foreach_ids(struct repo *r, const unsigned char (*ids)[32], size_t n,
                     int (*cb)(void *ud, json_t *item), void *ud, char **err) {
  struct tree_reader t;
  tree_reader_init_ids(&t, r, ids, n);
  return foreach_read(&t, cb, ud, err);
}
