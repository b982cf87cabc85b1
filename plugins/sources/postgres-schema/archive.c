/* pg_dump custom archives: header, table of contents, digests (archive.h). */
#include "archive.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the reader ----------------------------------------------------------- */

void pgs_in_init(struct pgs_in *in, ssize_t (*read)(void *, void *, size_t), void *ctx,
                 size_t bufsize) {
  memset(in, 0, sizeof(*in));
  in->read = read;
  in->ctx = ctx;
  in->buf = malloc(bufsize);
  in->cap = in->buf ? bufsize : 0;
  if (in->buf == NULL)
    in->err = ENOMEM;
}

void pgs_in_mem(struct pgs_in *in, const void *data, size_t len) {
  memset(in, 0, sizeof(*in));
  in->buf = (unsigned char *)data;
  in->cap = in->len = len;
  in->eof = 1;
}

void pgs_in_free(struct pgs_in *in) {
  if (in->read != NULL)
    free(in->buf);
  free(in->rec);
  memset(in, 0, sizeof(*in));
}

size_t pgs_in_peek(struct pgs_in *in, const unsigned char **p, size_t want) {
  if (want > in->cap)
    want = in->cap;
  while (in->len - in->pos < want && !in->eof && !in->err) {
    if (in->pos > 0) {
      memmove(in->buf, in->buf + in->pos, in->len - in->pos);
      in->len -= in->pos;
      in->pos = 0;
    }
    ssize_t n = in->read(in->ctx, in->buf + in->len, in->cap - in->len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      in->err = errno ? errno : EIO;
      break;
    }
    if (n == 0)
      in->eof = 1;
    in->len += (size_t)n;
  }
  *p = in->buf + in->pos;
  size_t have = in->len - in->pos;
  return have < want ? have : want;
}

size_t pgs_in_avail(struct pgs_in *in, const unsigned char **p) {
  if (in->pos == in->len)
    return pgs_in_peek(in, p, 1) == 0 ? 0 : in->len - in->pos;
  *p = in->buf + in->pos;
  return in->len - in->pos;
}

void pgs_in_consume(struct pgs_in *in, size_t n) {
  if (in->recording) {
    if (in->rec_len + n > in->rec_cap) {
      size_t nc = in->rec_cap ? in->rec_cap * 2 : 4096;
      while (nc < in->rec_len + n)
        nc *= 2;
      unsigned char *r = realloc(in->rec, nc);
      if (r == NULL) {
        in->err = ENOMEM;
        in->recording = 0;
      } else {
        in->rec = r;
        in->rec_cap = nc;
      }
    }
    if (in->recording)
      memcpy(in->rec + in->rec_len, in->buf + in->pos, n);
    in->rec_len += in->recording ? n : 0;
  }
  in->pos += n;
  in->offset += n;
}

/* ---- reading the archive ------------------------------------------------------ */

struct rd {
  struct pgs_in *in;
  const struct pgs_arc_head *h;
  const char *where; /* "header" / "table of contents" */
  char **err;
  int failed;
};

static void rd_fail(struct rd *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rd_fail(struct rd *r, const char *fmt, ...) {
  if (r->failed)
    return;
  r->failed = 1;
  char *m = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&m, fmt, ap) < 0)
    m = NULL;
  va_end(ap);
  *r->err = m;
}

static void rd_short(struct rd *r) {
  if (r->in->err)
    rd_fail(r, "reading the archive's %s failed: %s", r->where, strerror(r->in->err));
  else
    rd_fail(r, "the archive ends in the middle of its %s (after %llu bytes)", r->where,
            (unsigned long long)r->in->offset);
}

static int rd_bytes(struct rd *r, void *dst, size_t n) {
  unsigned char *d = dst;
  while (n > 0 && !r->failed) {
    const unsigned char *p;
    size_t got = pgs_in_peek(r->in, &p, n);
    if (got == 0) {
      rd_short(r);
      break;
    }
    if (d != NULL) {
      memcpy(d, p, got);
      d += got;
    }
    pgs_in_consume(r->in, got);
    n -= got;
  }
  return r->failed ? -1 : 0;
}

static int rd_byte(struct rd *r) {
  unsigned char b = 0;
  if (rd_bytes(r, &b, 1) != 0)
    return -1;
  return b;
}

static int rd_int(struct rd *r, int *v) {
  unsigned char b[1 + 8];
  int sz = r->h->int_size;
  if (rd_bytes(r, b, (size_t)sz + 1) != 0)
    return -1;
  unsigned long long x = 0;
  for (int i = 0; i < sz; i++)
    x |= (unsigned long long)b[1 + i] << (8 * i);
  if (x > 0x7fffffffULL) {
    rd_fail(r, "the archive's %s holds an integer out of range", r->where);
    return -1;
  }
  *v = b[0] ? -(int)x : (int)x;
  return 0;
}

/* NULL (length -1) and "" are different and kept apart. *s NULL on error
 * too; check r->failed. */
static int rd_str(struct rd *r, char **s) {
  *s = NULL;
  int l;
  if (rd_int(r, &l) != 0)
    return -1;
  if (l < 0)
    return 0;
  char *p = malloc((size_t)l + 1);
  if (p == NULL) {
    rd_fail(r, "out of memory reading the archive's %s", r->where);
    return -1;
  }
  if (rd_bytes(r, p, (size_t)l) != 0) {
    free(p);
    return -1;
  }
  p[l] = '\0';
  *s = p;
  return 0;
}

void pgs_arc_head_fix_time(struct pgs_arc_head *h) {
  /* struct tm's fields as pg_dump writes them: sec, min, hour, mday, mon,
   * year - 1900, isdst; each int a sign byte then int_size bytes, least
   * significant first */
  static const int fixed[7] = {0, 0, 0, 1, 0, 100, 0};
  size_t one = 1 + (size_t)h->int_size;
  if (h->raw == NULL || h->time_len != 7 * one || h->time_off + h->time_len > h->raw_len)
    return;
  unsigned char *p = h->raw + h->time_off;
  for (int i = 0; i < 7; i++, p += one) {
    p[0] = 0;
    for (int b = 0; b < h->int_size; b++)
      p[1 + b] = b < 4 ? (unsigned char)((unsigned)fixed[i] >> (8 * b)) : 0;
  }
}

int pgs_arc_read_head(struct pgs_in *in, struct pgs_arc_head *h, char **err) {
  memset(h, 0, sizeof(*h));
  *err = NULL;
  in->recording = 1;
  in->rec_len = 0;
  struct rd r = {in, h, "header", err, 0};
  unsigned char magic[5];
  if (rd_bytes(&r, magic, 5) != 0)
    goto fail;
  if (memcmp(magic, "PGDMP", 5) != 0) {
    rd_fail(&r, "not a pg_dump custom archive (it does not start with PGDMP)");
    goto fail;
  }
  int vmaj = rd_byte(&r), vmin = rd_byte(&r), vrev = rd_byte(&r);
  if (r.failed)
    goto fail;
  h->version = PGS_VERS(vmaj, vmin, vrev);
  if (h->version < PGS_VERS_MIN || h->version > PGS_VERS_MAX) {
    rd_fail(&r,
            "the archive is of format version %d.%d, which this plugin does not read (it reads "
            "1.12 to 1.16: pg_dump 9.0 to 18)",
            vmaj, vmin);
    goto fail;
  }
  h->int_size = rd_byte(&r);
  h->off_size = rd_byte(&r);
  h->format = rd_byte(&r);
  if (r.failed)
    goto fail;
  if (h->int_size < 1 || h->int_size > 8 || h->off_size < 1 || h->off_size > 32) {
    rd_fail(&r, "the archive's integer sizes (%d, %d) are not plausible", h->int_size, h->off_size);
    goto fail;
  }
  if (h->format != 1) {
    rd_fail(&r, "the archive is not in the custom format (format %d)", h->format);
    goto fail;
  }
  if (h->version >= PGS_VERS(1, 15, 0)) {
    h->compression = rd_byte(&r);
    h->gzip = h->compression == 1;
  } else {
    rd_int(&r, &h->compression);
    h->gzip = h->compression != 0;
  }
  h->time_off = in->rec_len;
  for (int i = 0; i < 7 && !r.failed; i++) { /* the creation time */
    int junk;
    rd_int(&r, &junk);
  }
  h->time_len = in->rec_len - h->time_off;
  rd_str(&r, &h->dbname);
  char *s = NULL;
  rd_str(&r, &s); /* server version */
  free(s);
  s = NULL;
  rd_str(&r, &s); /* pg_dump version */
  free(s);
  if (r.failed)
    goto fail;
  h->raw = in->rec;
  h->raw_len = in->rec_len;
  in->rec = NULL;
  in->rec_len = in->rec_cap = 0;
  in->recording = 0;
  return 0;
fail:
  in->recording = 0;
  free(in->rec);
  in->rec = NULL;
  in->rec_len = in->rec_cap = 0;
  pgs_arc_head_free(h);
  if (*err == NULL)
    *err = strdup("out of memory reading the archive's header");
  return -1;
}

void pgs_arc_head_free(struct pgs_arc_head *h) {
  free(h->dbname);
  free(h->raw);
  memset(h, 0, sizeof(*h));
}

static void entry_free(struct pgs_toc_entry *e) {
  free(e->tableoid);
  free(e->oid);
  free(e->tag);
  free(e->desc);
  free(e->defn);
  free(e->drop_stmt);
  free(e->copy_stmt);
  free(e->nspname);
  free(e->tablespace);
  free(e->tableam);
  free(e->owner);
  free(e->with_oids);
  free(e->deps);
}

void pgs_toc_free(struct pgs_toc *toc) {
  for (size_t i = 0; i < toc->n; i++)
    entry_free(&toc->e[i]);
  free(toc->e);
  toc->e = NULL;
  toc->n = 0;
}

static int read_entry(struct rd *r, struct pgs_toc_entry *e) {
  const struct pgs_arc_head *h = r->h;
  rd_int(r, &e->dump_id);
  rd_int(r, &e->had_dumper);
  rd_str(r, &e->tableoid);
  rd_str(r, &e->oid);
  rd_str(r, &e->tag);
  rd_str(r, &e->desc);
  rd_int(r, &e->section);
  rd_str(r, &e->defn);
  rd_str(r, &e->drop_stmt);
  rd_str(r, &e->copy_stmt);
  rd_str(r, &e->nspname);
  rd_str(r, &e->tablespace);
  if (h->version >= PGS_VERS(1, 14, 0))
    rd_str(r, &e->tableam);
  if (h->version >= PGS_VERS(1, 16, 0))
    rd_int(r, &e->relkind);
  rd_str(r, &e->owner);
  rd_str(r, &e->with_oids);
  if (r->failed)
    return -1;
  if (e->dump_id <= 0) {
    rd_fail(r, "the archive's table of contents has an entry with id %d", e->dump_id);
    return -1;
  }
  size_t cap = 0;
  for (;;) {
    char *d = NULL;
    if (rd_str(r, &d) != 0)
      return -1;
    if (d == NULL)
      break;
    if (e->n_deps == cap) {
      cap = cap ? cap * 2 : 4;
      int *nd = realloc(e->deps, cap * sizeof(*nd));
      if (nd == NULL) {
        free(d);
        rd_fail(r, "out of memory reading the archive's table of contents");
        return -1;
      }
      e->deps = nd;
    }
    e->deps[e->n_deps++] = atoi(d);
    free(d);
  }
  /* the custom format's data offset: a flag and off_size bytes; written
   * back as "not set" (the archive is read as a stream) */
  int flag = rd_byte(r);
  if (flag < 0 || rd_bytes(r, NULL, (size_t)h->off_size) != 0)
    return -1;
  if (flag < 1 || flag > 3) {
    rd_fail(r, "the archive's table of contents has an invalid data offset flag %d", flag);
    return -1;
  }
  memset(e->extra, 0, sizeof(e->extra));
  e->extra[0] = (unsigned char)(flag == 3 ? 3 : 1);
  e->extra_len = 1 + (size_t)h->off_size;
  e->group = -1;
  return 0;
}

int pgs_arc_read_toc(struct pgs_in *in, const struct pgs_arc_head *h, struct pgs_toc *toc,
                     char **err) {
  memset(toc, 0, sizeof(*toc));
  *err = NULL;
  struct rd r = {in, h, "table of contents", err, 0};
  int n = 0;
  if (rd_int(&r, &n) != 0)
    goto fail;
  if (n < 0 || n > 50000000) {
    rd_fail(&r, "the archive's table of contents claims %d entries", n);
    goto fail;
  }
  toc->e = calloc((size_t)n + 1, sizeof(*toc->e));
  if (toc->e == NULL) {
    rd_fail(&r, "out of memory reading the archive's table of contents (%d entries)", n);
    goto fail;
  }
  for (int i = 0; i < n; i++) {
    toc->n = (size_t)i + 1;
    if (read_entry(&r, &toc->e[i]) != 0)
      goto fail;
  }
  return 0;
fail:
  pgs_toc_free(toc);
  if (*err == NULL)
    *err = strdup("out of memory reading the archive's table of contents");
  return -1;
}

/* ---- splitting ------------------------------------------------------------------ */

/* dump id -> entry index, -1 when none */
int *pgs_toc_id_map(const struct pgs_toc *toc, int *max_out) {
  int max = 0;
  for (size_t i = 0; i < toc->n; i++)
    if (toc->e[i].dump_id > max)
      max = toc->e[i].dump_id;
  int *m = malloc(((size_t)max + 1) * sizeof(*m));
  if (m == NULL)
    return NULL;
  for (int i = 0; i <= max; i++)
    m[i] = -1;
  for (size_t i = 0; i < toc->n; i++)
    m[toc->e[i].dump_id] = (int)i;
  *max_out = max;
  return m;
}

void pgs_toc_assign(struct pgs_toc *toc, int (*lookup)(void *ud, const char *schema), void *ud) {
  for (size_t i = 0; i < toc->n; i++) {
    struct pgs_toc_entry *e = &toc->e[i];
    e->group = -1;
    if (e->nspname != NULL && e->nspname[0] != '\0')
      e->group = lookup(ud, e->nspname);
    else if (e->desc != NULL && strcmp(e->desc, "SCHEMA") == 0 && e->tag != NULL)
      e->group = lookup(ud, e->tag);
  }
  /* entries of no namespace that depend on a schema's entry (a comment, a
   * grant or a security label on the schema) go with it; dependencies may
   * point forward, so repeat until nothing moves */
  int max = 0;
  int *m = pgs_toc_id_map(toc, &max);
  if (m == NULL)
    return;
  for (int changed = 1, round = 0; changed && round < 8; round++) {
    changed = 0;
    for (size_t i = 0; i < toc->n; i++) {
      struct pgs_toc_entry *e = &toc->e[i];
      if (e->group >= 0 || (e->nspname != NULL && e->nspname[0] != '\0'))
        continue;
      for (size_t d = 0; d < e->n_deps; d++) {
        int k = e->deps[d] >= 0 && e->deps[d] <= max ? m[e->deps[d]] : -1;
        if (k >= 0 && toc->e[k].group >= 0) {
          e->group = toc->e[k].group;
          changed = 1;
          break;
        }
      }
    }
  }
  free(m);
}

void pgs_buf_add(struct pgs_buf *b, const void *p, size_t n) {
  if (b->oom || n == 0)
    return;
  if (b->len + n > b->cap) {
    size_t nc = b->cap ? b->cap * 2 : 1024;
    while (nc < b->len + n)
      nc *= 2;
    unsigned char *np = realloc(b->p, nc);
    if (np == NULL) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = nc;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

void pgs_buf_free(struct pgs_buf *b) {
  free(b->p);
  memset(b, 0, sizeof(*b));
}

void pgs_arc_put_int(struct pgs_buf *b, int int_size, int v) {
  unsigned char t[1 + 8];
  unsigned long long x = v < 0 ? (unsigned long long)(-(long long)v) : (unsigned long long)v;
  t[0] = v < 0;
  for (int i = 0; i < int_size; i++)
    t[1 + i] = (unsigned char)(x >> (8 * i));
  pgs_buf_add(b, t, (size_t)int_size + 1);
}

static void put_str(struct pgs_buf *b, int int_size, const char *s) {
  if (s == NULL) {
    pgs_arc_put_int(b, int_size, -1);
    return;
  }
  size_t l = strlen(s);
  pgs_arc_put_int(b, int_size, (int)l);
  pgs_buf_add(b, s, l);
}

void pgs_toc_write(const struct pgs_toc *toc, const struct pgs_arc_head *h, const size_t *list,
                   size_t n, int *pos, const int *map, int max_id, struct pgs_buf *out) {
  for (size_t i = 0; i < n; i++)
    pos[list[i]] = (int)i;
  int is = h->int_size;
  char num[16];
  pgs_arc_put_int(out, is, (int)n);
  for (size_t i = 0; i < n; i++) {
    const struct pgs_toc_entry *e = &toc->e[list[i]];
    pgs_arc_put_int(out, is, (int)i + 1);
    pgs_arc_put_int(out, is, e->had_dumper);
    put_str(out, is, e->tableoid);
    put_str(out, is, e->oid);
    put_str(out, is, e->tag);
    put_str(out, is, e->desc);
    pgs_arc_put_int(out, is, e->section);
    put_str(out, is, e->defn);
    put_str(out, is, e->drop_stmt);
    put_str(out, is, e->copy_stmt);
    put_str(out, is, e->nspname);
    put_str(out, is, e->tablespace);
    if (h->version >= PGS_VERS(1, 14, 0))
      put_str(out, is, e->tableam);
    if (h->version >= PGS_VERS(1, 16, 0))
      pgs_arc_put_int(out, is, e->relkind);
    put_str(out, is, e->owner);
    put_str(out, is, e->with_oids);
    for (size_t d = 0; d < e->n_deps; d++) {
      int k = e->deps[d] >= 0 && e->deps[d] <= max_id ? map[e->deps[d]] : -1;
      if (k < 0 || pos[k] < 0)
        continue; /* an entry of another schema */
      snprintf(num, sizeof(num), "%d", pos[k] + 1);
      put_str(out, is, num);
    }
    put_str(out, is, NULL);
    pgs_buf_add(out, e->extra, e->extra_len);
  }
  for (size_t i = 0; i < n; i++)
    pos[list[i]] = -1;
}

/* ---- digests --------------------------------------------------------------------- */

void pgs_rows_init(struct pgs_rows *r) {
  memset(r, 0, sizeof(*r));
}

static void rows_add(struct pgs_rows *r, XXH128_hash_t h) {
  r->lo += h.low64;
  r->hi += h.high64;
  r->rows++;
}

static int is_end(const char *line, size_t len) {
  return len == 2 && line[0] == '\\' && line[1] == '.';
}

int pgs_rows_feed(struct pgs_rows *r, const void *p, size_t n) {
  const char *s = p, *end = s + n;
  while (s < end && !r->ended) {
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    size_t len = (size_t)((nl ? nl : end) - s);
    if (r->partial || nl == NULL) {
      if (!r->partial) {
        if (r->st == NULL)
          r->st = XXH3_createState();
        if (r->st == NULL || XXH3_128bits_reset(r->st) != XXH_OK)
          return -1;
        r->partial = 1;
        r->plen = 0;
      }
      for (size_t i = 0; i < len && r->plen + i < 2; i++)
        r->head[r->plen + i] = s[i];
      r->plen += len;
      if (XXH3_128bits_update(r->st, s, len) != XXH_OK)
        return -1;
      if (nl == NULL)
        return 0;
      r->partial = 0;
      if (is_end(r->head, r->plen))
        r->ended = 1;
      else
        rows_add(r, XXH3_128bits_digest(r->st));
    } else if (is_end(s, len)) {
      r->ended = 1;
    } else {
      rows_add(r, XXH3_128bits(s, len));
    }
    s = nl + 1;
  }
  return 0;
}

int pgs_rows_done(struct pgs_rows *r) {
  return r->partial ? -1 : 0;
}

void pgs_rows_free(struct pgs_rows *r) {
  if (r->st != NULL)
    XXH3_freeState(r->st);
  r->st = NULL;
}

void pgs_rows_text(const struct pgs_rows *r, char *out, size_t len) {
  snprintf(out, len, "xxh3-128-sum:%016llx%016llx", (unsigned long long)r->hi,
           (unsigned long long)r->lo);
}

static int desc_is(const struct pgs_toc_entry *e, const char *d) {
  return e->desc != NULL && strcmp(e->desc, d) == 0;
}

/* Entries pg_dump -s does not write, or writes differently. */
static int data_entry(const struct pgs_toc_entry *e) {
  return e->section == PGS_SECTION_DATA || desc_is(e, "TABLE DATA") || desc_is(e, "SEQUENCE SET") ||
         desc_is(e, "MATERIALIZED VIEW DATA") || desc_is(e, "BLOBS") || desc_is(e, "BLOB") ||
         desc_is(e, "LARGE OBJECT") || desc_is(e, "BLOB METADATA");
}

static int ownership_entry(const struct pgs_toc_entry *e) {
  return desc_is(e, "ACL") || desc_is(e, "DEFAULT ACL");
}

static void hash_field(struct pgs_buf *b, const char *s) {
  int64_t l = s ? (int64_t)strlen(s) : -1;
  pgs_buf_add(b, &l, sizeof(l));
  if (s)
    pgs_buf_add(b, s, (size_t)l);
}

static XXH128_hash_t hash_fields(const char *const *f, size_t n) {
  struct pgs_buf b = {0};
  for (size_t i = 0; i < n; i++)
    hash_field(&b, f[i]);
  XXH128_hash_t h = XXH3_128bits(b.p ? b.p : (const unsigned char *)"", b.len);
  pgs_buf_free(&b);
  return h;
}

int pgs_toc_entry_hash(const struct pgs_toc_entry *e, int ownership, XXH128_hash_t *out) {
  if (data_entry(e))
    return 0;
  if (ownership_entry(e)) {
    if (!ownership)
      return 0;
    const char *f[] = {e->desc, e->tag, e->nspname, e->defn};
    *out = hash_fields(f, 4);
    return 1;
  }
  if (ownership) {
    const char *f[] = {"OWNER", e->desc, e->tag, e->nspname, e->owner};
    *out = hash_fields(f, 5);
    return 1;
  }
  const char *f[] = {e->desc, e->tag, e->nspname, e->tablespace, e->tableam, e->defn};
  *out = hash_fields(f, sizeof(f) / sizeof(f[0]));
  return 1;
}

void pgs_toc_digests(const struct pgs_toc *toc, int g, char *def, char *own, size_t len,
                     size_t *count) {
  uint64_t lo[2] = {0, 0}, hi[2] = {0, 0};
  size_t n = 0;
  for (size_t i = 0; i < toc->n; i++) {
    const struct pgs_toc_entry *e = &toc->e[i];
    if (e->group != g)
      continue;
    for (int w = 0; w < 2; w++) {
      XXH128_hash_t h;
      if (!pgs_toc_entry_hash(e, w, &h))
        continue;
      lo[w] += h.low64;
      hi[w] += h.high64;
      n += w == 0;
    }
  }
  if (def != NULL)
    snprintf(def, len, "xxh3-128-sum:%016llx%016llx", (unsigned long long)hi[0],
             (unsigned long long)lo[0]);
  if (own != NULL)
    snprintf(own, len, "xxh3-128-sum:%016llx%016llx", (unsigned long long)hi[1],
             (unsigned long long)lo[1]);
  if (count != NULL)
    *count = n;
}
