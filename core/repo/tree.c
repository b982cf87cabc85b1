/* Item tree encoding and the sequential blob reader used by restore and check. */
#include "repo/tree.h"

#include <stdlib.h>
#include <string.h>

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

char *printable_name(const char *bytes, size_t len) {
  char *out = xmalloc(len * 4 + 1);
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)bytes[i];
    if (c == '\n') {
      out[o++] = '\\';
      out[o++] = 'n';
    } else if (c < 0x20 || c == 0x7f || c >= 0x80) {
      /* every non-ASCII byte is escaped: unambiguous in logs and terminals */
      o += (size_t)sprintf(out + o, "\\x%02x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  out[o] = '\0';
  return out;
}

void blob_stream_init(struct blob_stream *s, struct repo *r, json_t *ids, enum blob_type type) {
  memset(s, 0, sizeof(*s));
  s->repo = r;
  s->ids = ids;
  s->type = type;
}

ssize_t blob_stream_read(struct blob_stream *s, void *buf, size_t len) {
  while (s->cur_off >= s->cur_len) {
    free(s->cur);
    s->cur = NULL;
    s->cur_len = s->cur_off = 0;
    if (s->next >= json_array_size(s->ids))
      return 0;
    const char *hex = json_string_value(json_array_get(s->ids, s->next));
    unsigned char id[32];
    if (!hex || hex_decode(hex, id, 32) != 0) {
      s->err = xasprintf("malformed blob id at position %zu", s->next);
      return -1;
    }
    int got = s->pf ? prefetch_take(s->pf, id, &s->cur, &s->cur_len, &s->err) : 0;
    if (got < 0)
      return -1;
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
  free(s->cur);
  free(s->err);
  s->cur = NULL;
  s->err = NULL;
}

void tree_reader_init(struct tree_reader *t, struct repo *r, json_t *tree_ids) {
  memset(t, 0, sizeof(*t));
  blob_stream_init(&t->bs, r, tree_ids, BLOB_TREE);
  t->cap = 256 * 1024;
  t->buf = xmalloc(t->cap);
}

int tree_reader_next(struct tree_reader *t, json_t **item, char **err) {
  for (;;) {
    char *nl = t->off < t->len ? memchr(t->buf + t->off, '\n', t->len - t->off) : NULL;
    if (nl) {
      size_t n = (size_t)(nl - (t->buf + t->off));
      json_error_t je;
      t->lineno++;
      t->line = t->buf + t->off;
      t->line_len = n;
      *item = json_loadb(t->buf + t->off, n, 0, &je);
      t->off += n + 1;
      if (!*item) {
        *err = xasprintf("item tree line %zu is not valid JSON: %s", t->lineno, je.text);
        return -1;
      }
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

int tree_foreach(struct repo *r, json_t *tree_ids, int (*cb)(void *ud, json_t *item), void *ud,
                 char **err) {
  struct tree_reader t;
  tree_reader_init(&t, r, tree_ids);
  int rc = 0;
  for (;;) {
    json_t *item;
    int got = tree_reader_next(&t, &item, err);
    if (got <= 0) {
      rc = got; /* 0 at the end, -1 on error */
      break;
    }
    rc = cb(ud, item);
    json_decref(item);
    if (rc != 0)
      break;
  }
  tree_reader_free(&t);
  return rc;
}
