/* Builds a position-keeping YAML tree from libyaml's event API. libyaml's own
 * document loader drops the distinction we need for good messages (key
 * positions, duplicate keys), so the tree is assembled here from events with
 * an explicit stack. */
#include "config/yaml_tree.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util/log.h"

/* Pipelines are a few levels deep and a few kilobytes; the limits keep
 * hostile input (deep nesting, "billion laughs" alias expansion, a large
 * scalar aliased many times) from exhausting the stack or memory in the
 * recursive walks over the tree. Both count the tree after aliases and
 * merge keys are expanded, so a tree never holds more than YTREE_MAX_NODES
 * nodes and YTREE_MAX_TEXT bytes of scalar text (about 45 MiB in all). */
#define YTREE_MAX_DEPTH 128
#define YTREE_MAX_NODES 250000

#define YAML_STR_TAG "tag:yaml.org,2002:str"

struct anchor {
  char *name;
  const struct ytree_node *node; /* owned by the tree */
};

struct frame {
  struct ytree_node *node;
  char *anchor;           /* registered when the collection ends */
  struct ytree_node *key; /* mapping: key read, value not yet */
  /* mapping with many keys: open-addressing table of pair index + 1 (0 =
   * free), so duplicate checks and merges stay linear in the key count */
  size_t *slots;
  size_t n_slots; /* 0 or a power of two */
};

struct builder {
  const char *path;
  const char *text;
  size_t len;
  struct ytree_node *root;
  struct frame stack[YTREE_MAX_DEPTH];
  size_t depth;
  struct anchor *anchors;
  size_t n_anchors;
  size_t n_nodes;
  size_t text_bytes; /* scalar bytes in the tree, aliases expanded */
  int expanded;      /* an alias or merge key copied nodes */
  /* merge-key values whose pairs were copied into their mapping; kept until
   * the end because anchors may point into them */
  struct ytree_node **retired;
  size_t n_retired;
  int documents;
  FILE *errf;
  int n_errors;
};

static void berr(struct builder *b, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static char *pending_path(const struct builder *b);

static void berr(struct builder *b, int line, int col, const char *fmt, ...) {
  va_list ap;
  fprintf(b->errf, "%s:%d:%d: ", b->path, line, col);
  va_start(ap, fmt);
  vfprintf(b->errf, fmt, ap);
  va_end(ap);
  fputc('\n', b->errf);
  b->n_errors++;
}

void ytree_free(struct ytree_node *n) {
  if (!n)
    return;
  free(n->text);
  for (size_t i = 0; i < n->n_items; i++)
    ytree_free(n->items[i]);
  free(n->items);
  for (size_t i = 0; i < n->n_pairs; i++) {
    ytree_free(n->pairs[i].key);
    ytree_free(n->pairs[i].value);
  }
  free(n->pairs);
  free(n);
}

/* Charge `len` bytes of scalar text against the budget. */
static int charge_text(struct builder *b, size_t len, int line, int col) {
  if (len <= YTREE_MAX_TEXT && b->text_bytes <= YTREE_MAX_TEXT - len) {
    b->text_bytes += len;
    return 0;
  }
  char *p = pending_path(b);
  if (b->expanded)
    berr(b, line, col,
         "%s%sthe document expands to more than %u bytes through aliases (at most %u MiB of "
         "scalar text after expanding aliases and merge keys)",
         p, *p ? ": " : "", YTREE_MAX_TEXT, YTREE_MAX_TEXT >> 20);
  else
    berr(b, line, col, "%s%sthe document holds more than %u bytes (%u MiB) of scalar text", p,
         *p ? ": " : "", YTREE_MAX_TEXT, YTREE_MAX_TEXT >> 20);
  free(p);
  return -1;
}

static struct ytree_node *new_node(struct builder *b, enum ytree_kind kind, yaml_mark_t mark) {
  if (b->n_nodes >= YTREE_MAX_NODES) {
    berr(b, (int)mark.line + 1, (int)mark.column + 1,
         "document too large: more than %d nodes (after expanding aliases)", YTREE_MAX_NODES);
    return NULL;
  }
  b->n_nodes++;
  struct ytree_node *n = xcalloc(1, sizeof(*n));
  n->kind = kind;
  n->line = (int)mark.line + 1;
  n->col = (int)mark.column + 1;
  return n;
}

/* Deep copy for alias expansion; `depth` is the absolute depth the copy will
 * sit at, so the tree-wide depth limit keeps holding after expansion. */
static struct ytree_node *copy_node(struct builder *b, const struct ytree_node *src, size_t depth,
                                    int line, int col) {
  if (depth > YTREE_MAX_DEPTH) {
    berr(b, line, col, "nesting deeper than %d levels (after expanding aliases)", YTREE_MAX_DEPTH);
    return NULL;
  }
  if (b->n_nodes >= YTREE_MAX_NODES) {
    berr(b, line, col, "document too large: more than %d nodes (after expanding aliases)",
         YTREE_MAX_NODES);
    return NULL;
  }
  /* charged before anything is allocated: the budget, not malloc, stops a bomb */
  b->expanded = 1;
  if (src->text && charge_text(b, src->len, line, col) < 0)
    return NULL;
  b->n_nodes++;
  struct ytree_node *n = xcalloc(1, sizeof(*n));
  n->kind = src->kind;
  n->line = src->line;
  n->col = src->col;
  n->quoted = src->quoted;
  if (src->text) {
    n->text = xmalloc(src->len + 1);
    memcpy(n->text, src->text, src->len + 1);
    n->len = src->len;
  }
  if (src->n_items) {
    n->items = xcalloc(src->n_items, sizeof(*n->items));
    for (size_t i = 0; i < src->n_items; i++) {
      n->items[i] = copy_node(b, src->items[i], depth + 1, line, col);
      if (!n->items[i]) {
        n->n_items = i;
        ytree_free(n);
        return NULL;
      }
    }
    n->n_items = src->n_items;
  }
  if (src->n_pairs) {
    n->pairs = xcalloc(src->n_pairs, sizeof(*n->pairs));
    for (size_t i = 0; i < src->n_pairs; i++) {
      n->n_pairs = i + 1;
      n->pairs[i].key = copy_node(b, src->pairs[i].key, depth + 1, line, col);
      if (n->pairs[i].key)
        n->pairs[i].value = copy_node(b, src->pairs[i].value, depth + 1, line, col);
      if (!n->pairs[i].key || !n->pairs[i].value) {
        ytree_free(n);
        return NULL;
      }
    }
  }
  return n;
}

/* The dotted option path of the collection at stack index `upto` (e.g.
 * "sources[0].with"), "" for the root. malloc'd. */
static char *stack_path(const struct builder *b, size_t upto) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    return xstrdup("");
  for (size_t i = 0; i < upto; i++) {
    const struct ytree_node *parent = b->stack[i].node;
    if (parent->kind == YTREE_SEQUENCE) {
      fprintf(f, "[%zu]", parent->n_items ? parent->n_items - 1 : 0);
    } else if (parent->n_pairs) {
      const struct ytree_node *k = parent->pairs[parent->n_pairs - 1].key;
      fprintf(f, "%s%s", i ? "." : "", k && k->text ? k->text : "?");
    }
  }
  fclose(f);
  return buf;
}

/* The option path of the node about to be attached (e.g. "sinks[1].with"),
 * "" at the root. malloc'd. */
static char *pending_path(const struct builder *b) {
  if (b->depth == 0)
    return xstrdup("");
  char *up = stack_path(b, b->depth - 1);
  const struct frame *f = &b->stack[b->depth - 1];
  char *p;
  if (f->node->kind == YTREE_SEQUENCE)
    p = xasprintf("%s[%zu]", up, f->node->n_items);
  else if (f->key)
    p = xasprintf("%s%s%s", up, *up ? "." : "", f->key->text);
  else
    p = xstrdup(up);
  free(up);
  return p;
}

/* Arrays of collections being built grow geometrically: their capacity is
 * 4 below four entries and the next power of two above. */
static int needs_growth(size_t n) {
  return n == 0 || (n >= 4 && (n & (n - 1)) == 0);
}

static void append_item(struct ytree_node *seq, struct ytree_node *n) {
  if (needs_growth(seq->n_items))
    seq->items = xrealloc(seq->items, (seq->n_items ? 2 * seq->n_items : 4) * sizeof(*seq->items));
  seq->items[seq->n_items++] = n;
}

static int same_key(const struct ytree_node *a, const struct ytree_node *b) {
  return a->len == b->len && memcmp(a->text, b->text, a->len) == 0;
}

static size_t key_hash(const struct ytree_node *k) { /* FNV-1a */
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < k->len; i++)
    h = (h ^ (unsigned char)k->text[i]) * 1099511628211ull;
  return (size_t)h;
}

#define KEYS_INDEXED 16 /* below this many keys a linear scan is cheaper */

/* Put pair `i` of the frame's mapping in its table unless an equal key is
 * there already (the first definition is the one kept). */
static void slot_put(struct frame *f, size_t i) {
  const struct ytree_node *k = f->node->pairs[i].key;
  size_t mask = f->n_slots - 1;
  for (size_t s = key_hash(k) & mask;; s = (s + 1) & mask) {
    if (!f->slots[s]) {
      f->slots[s] = i + 1;
      return;
    }
    if (same_key(f->node->pairs[f->slots[s] - 1].key, k))
      return;
  }
}

/* (Re)build the table for the mapping's current pairs, at most half full. */
static void slots_rebuild(struct frame *f) {
  size_t want = 2 * KEYS_INDEXED;
  while (want < 2 * f->node->n_pairs)
    want *= 2;
  free(f->slots);
  f->slots = xcalloc(want, sizeof(*f->slots));
  f->n_slots = want;
  for (size_t i = 0; i < f->node->n_pairs; i++)
    slot_put(f, i);
}

/* The pair of the frame's mapping whose key equals k, or NULL. */
static const struct ytree_pair *frame_find(const struct frame *f, const struct ytree_node *k) {
  const struct ytree_node *map = f->node;
  if (!f->n_slots) {
    for (size_t i = 0; i < map->n_pairs; i++)
      if (same_key(map->pairs[i].key, k))
        return &map->pairs[i];
    return NULL;
  }
  size_t mask = f->n_slots - 1;
  for (size_t s = key_hash(k) & mask; f->slots[s]; s = (s + 1) & mask)
    if (same_key(map->pairs[f->slots[s] - 1].key, k))
      return &map->pairs[f->slots[s] - 1];
  return NULL;
}

static void frame_append_pair(struct frame *f, struct ytree_node *k, struct ytree_node *v) {
  struct ytree_node *map = f->node;
  if (needs_growth(map->n_pairs))
    map->pairs = xrealloc(map->pairs, (map->n_pairs ? 2 * map->n_pairs : 4) * sizeof(*map->pairs));
  map->pairs[map->n_pairs].key = k;
  map->pairs[map->n_pairs].value = v;
  map->n_pairs++;
  if (f->n_slots && 2 * map->n_pairs > f->n_slots)
    slots_rebuild(f);
  else if (f->n_slots)
    slot_put(f, map->n_pairs - 1);
  else if (map->n_pairs >= KEYS_INDEXED)
    slots_rebuild(f);
}

/* Hang a finished (scalar/alias) or just-opened (collection) node on its
 * parent. Returns -1 on an error that stops parsing; the caller still owns n
 * then. Duplicate keys are reported but do not stop parsing, so every one of
 * them is listed. */
static int attach(struct builder *b, struct ytree_node *n) {
  if (b->depth == 0) {
    b->root = n;
    return 0;
  }
  struct frame *f = &b->stack[b->depth - 1];
  struct ytree_node *parent = f->node;
  if (parent->kind == YTREE_SEQUENCE) {
    append_item(parent, n);
    return 0;
  }
  if (f->key) {
    frame_append_pair(f, f->key, n);
    f->key = NULL;
    return 0;
  }
  if (n->kind != YTREE_SCALAR) {
    char *p = stack_path(b, b->depth - 1);
    berr(b, n->line, n->col, "%s%smapping keys must be scalars, got %s", p, *p ? ": " : "",
         ytree_kind_name(n));
    free(p);
    return -1;
  }
  const struct ytree_pair *dup = frame_find(f, n);
  if (dup) {
    char *p = stack_path(b, b->depth - 1);
    berr(b, n->line, n->col, "%s%sduplicate key '%s' (first defined at line %d)", p, *p ? ": " : "",
         n->text, dup->key->line);
    free(p);
  }
  f->key = n;
  return 0;
}

static void add_anchor(struct builder *b, const char *name, const struct ytree_node *n) {
  b->anchors = xrealloc(b->anchors, (b->n_anchors + 1) * sizeof(*b->anchors));
  b->anchors[b->n_anchors].name = xstrdup(name);
  b->anchors[b->n_anchors].node = n;
  b->n_anchors++;
}

static const struct ytree_node *find_anchor(const struct builder *b, const char *name) {
  /* YAML allows re-defining an anchor; an alias refers to the latest one. */
  for (size_t i = b->n_anchors; i > 0; i--)
    if (strcmp(b->anchors[i - 1].name, name) == 0)
      return b->anchors[i - 1].node;
  return NULL;
}

static int is_merge_key(const struct ytree_node *k) {
  return k->kind == YTREE_SCALAR && !k->quoted && strcmp(k->text, "<<") == 0;
}

/* `<<: *defaults` (or a list of them): keys of the merged mappings are added
 * unless the mapping sets them itself; earlier sources win over later ones. */
static int apply_merge(struct builder *b, struct frame *f, size_t depth) {
  struct ytree_node *map = f->node;
  size_t m;
  for (m = 0; m < map->n_pairs; m++)
    if (is_merge_key(map->pairs[m].key))
      break;
  if (m == map->n_pairs)
    return 0;
  struct ytree_pair mp = map->pairs[m];
  memmove(&map->pairs[m], &map->pairs[m + 1], (map->n_pairs - m - 1) * sizeof(*map->pairs));
  map->n_pairs--;
  if (f->n_slots) /* the indexes after m moved */
    slots_rebuild(f);

  struct ytree_node **srcs = &mp.value;
  size_t n_srcs = 1;
  if (mp.value->kind == YTREE_SEQUENCE) {
    srcs = mp.value->items;
    n_srcs = mp.value->n_items;
  }
  int rc = 0;
  for (size_t s = 0; s < n_srcs && rc == 0; s++) {
    if (srcs[s]->kind != YTREE_MAPPING) {
      berr(b, srcs[s]->line, srcs[s]->col,
           "merge key '<<' takes a mapping or a list of mappings, got %s",
           ytree_kind_name(srcs[s]));
      rc = -1;
      break;
    }
    /* copied, not moved: an anchor may name the merged mapping or a node
     * in it (`<<: &base {...}`), and a later alias copies it whole */
    for (size_t i = 0; i < srcs[s]->n_pairs && rc == 0; i++) {
      const struct ytree_pair *sp = &srcs[s]->pairs[i];
      if (frame_find(f, sp->key))
        continue;
      struct ytree_node *k = copy_node(b, sp->key, depth + 1, mp.key->line, mp.key->col);
      struct ytree_node *v =
          k ? copy_node(b, sp->value, depth + 1, mp.key->line, mp.key->col) : NULL;
      if (!v) {
        ytree_free(k);
        rc = -1;
        break;
      }
      frame_append_pair(f, k, v);
    }
  }
  b->retired = xrealloc(b->retired, (b->n_retired + 2) * sizeof(*b->retired));
  b->retired[b->n_retired++] = mp.key;
  b->retired[b->n_retired++] = mp.value;
  return rc;
}

static int on_collection_start(struct builder *b, const yaml_event_t *ev, enum ytree_kind kind,
                               const yaml_char_t *anchor) {
  if (b->depth >= YTREE_MAX_DEPTH) {
    berr(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
         "nesting deeper than %d levels", YTREE_MAX_DEPTH);
    return -1;
  }
  struct ytree_node *n = new_node(b, kind, ev->start_mark);
  if (!n)
    return -1;
  if (attach(b, n) < 0) {
    ytree_free(n);
    return -1;
  }
  struct frame *f = &b->stack[b->depth++];
  f->node = n;
  f->key = NULL;
  f->anchor = anchor ? xstrdup((const char *)anchor) : NULL;
  f->slots = NULL;
  f->n_slots = 0;
  return 0;
}

static int on_collection_end(struct builder *b) {
  struct frame *f = &b->stack[--b->depth];
  int rc = 0;
  if (f->node->kind == YTREE_MAPPING)
    rc = apply_merge(b, f, b->depth + 1);
  free(f->slots);
  f->slots = NULL;
  f->n_slots = 0;
  if (f->anchor) {
    add_anchor(b, f->anchor, f->node);
    free(f->anchor);
    f->anchor = NULL;
  }
  return rc;
}

static int on_scalar(struct builder *b, const yaml_event_t *ev) {
  if (charge_text(b, ev->data.scalar.length, (int)ev->start_mark.line + 1,
                  (int)ev->start_mark.column + 1) < 0)
    return -1;
  struct ytree_node *n = new_node(b, YTREE_SCALAR, ev->start_mark);
  if (!n)
    return -1;
  n->len = ev->data.scalar.length;
  n->text = xmalloc(n->len + 1);
  memcpy(n->text, ev->data.scalar.value, n->len);
  n->text[n->len] = '\0';
  n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
              (ev->data.scalar.tag && strcmp((const char *)ev->data.scalar.tag, YAML_STR_TAG) == 0);
  if (attach(b, n) < 0) {
    ytree_free(n);
    return -1;
  }
  if (ev->data.scalar.anchor)
    add_anchor(b, (const char *)ev->data.scalar.anchor, n);
  return 0;
}

static int on_alias(struct builder *b, const yaml_event_t *ev) {
  const char *name = (const char *)ev->data.alias.anchor;
  int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
  const struct ytree_node *target = find_anchor(b, name);
  if (!target) {
    berr(b, line, col,
         "alias '*%s' refers to an unknown anchor (define '&%s' before using it; an alias cannot "
         "refer to a node that contains it)",
         name, name);
    return -1;
  }
  struct ytree_node *n = copy_node(b, target, b->depth + 1, line, col);
  if (!n)
    return -1;
  if (attach(b, n) < 0) {
    ytree_free(n);
    return -1;
  }
  return 0;
}

static int on_event(struct builder *b, const yaml_event_t *ev) {
  switch (ev->type) {
  case YAML_DOCUMENT_START_EVENT:
    if (++b->documents > 1) {
      berr(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
           "a second YAML document starts here; a pipeline file holds exactly one document");
      return -1;
    }
    return 0;
  case YAML_SCALAR_EVENT:
    return on_scalar(b, ev);
  case YAML_ALIAS_EVENT:
    return on_alias(b, ev);
  case YAML_SEQUENCE_START_EVENT:
    return on_collection_start(b, ev, YTREE_SEQUENCE, ev->data.sequence_start.anchor);
  case YAML_MAPPING_START_EVENT:
    return on_collection_start(b, ev, YTREE_MAPPING, ev->data.mapping_start.anchor);
  case YAML_SEQUENCE_END_EVENT:
  case YAML_MAPPING_END_EVENT:
    return on_collection_end(b);
  default:
    return 0;
  }
}

/* Reader errors (bad encoding) carry a byte offset rather than a mark. */
static void offset_position(const struct builder *b, size_t off, int *line, int *col) {
  *line = 1;
  *col = 1;
  for (size_t i = 0; i < off && i < b->len; i++) {
    if (b->text[i] == '\n') {
      (*line)++;
      *col = 1;
    } else {
      (*col)++;
    }
  }
}

static void report_parser_error(struct builder *b, const yaml_parser_t *p) {
  int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
  const char *problem = p->problem ? p->problem : "unknown error";
  switch (p->error) {
  case YAML_MEMORY_ERROR:
    berr(b, line, col, "out of memory while parsing YAML");
    break;
  case YAML_READER_ERROR:
    offset_position(b, p->problem_offset, &line, &col);
    if (p->problem_value != -1)
      berr(b, line, col, "YAML syntax error: %s (byte 0x%02X at offset %zu)", problem,
           (unsigned)p->problem_value, p->problem_offset);
    else
      berr(b, line, col, "YAML syntax error: %s (at offset %zu)", problem, p->problem_offset);
    break;
  default:
    if (p->context)
      berr(b, line, col, "YAML syntax error: %s (%s)", problem, p->context);
    else
      berr(b, line, col, "YAML syntax error: %s", problem);
    break;
  }
}

int ytree_parse(const char *path, const char *text, size_t len, struct ytree_node **root,
                char **err) {
  struct builder b;
  memset(&b, 0, sizeof(b));
  b.path = path;
  b.text = text;
  b.len = len;
  char *errbuf = NULL;
  size_t errlen = 0;
  b.errf = open_memstream(&errbuf, &errlen);
  if (!b.errf) {
    *err = xasprintf("%s: unable to allocate the error buffer", path);
    return -1;
  }

  yaml_parser_t p;
  if (!yaml_parser_initialize(&p)) {
    fclose(b.errf);
    free(errbuf);
    *err = xasprintf("%s: unable to initialise the YAML parser: out of memory", path);
    return -1;
  }
  yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
  for (;;) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&p, &ev)) {
      report_parser_error(&b, &p);
      break;
    }
    int done = ev.type == YAML_STREAM_END_EVENT;
    int rc = on_event(&b, &ev);
    yaml_event_delete(&ev);
    if (rc < 0 || done)
      break;
  }
  yaml_parser_delete(&p);

  /* After an early stop, frames may hold a key still waiting for its value
   * and a pending anchor name; the nodes themselves hang off the root. */
  for (size_t i = 0; i < b.depth; i++) {
    ytree_free(b.stack[i].key);
    free(b.stack[i].anchor);
    free(b.stack[i].slots);
  }
  for (size_t i = 0; i < b.n_anchors; i++)
    free(b.anchors[i].name);
  free(b.anchors);
  for (size_t i = 0; i < b.n_retired; i++)
    ytree_free(b.retired[i]);
  free(b.retired);
  fclose(b.errf);

  if (b.n_errors) {
    ytree_free(b.root);
    if (errlen && errbuf[errlen - 1] == '\n')
      errbuf[errlen - 1] = '\0';
    *err = errbuf;
    *root = NULL;
    return -1;
  }
  free(errbuf);
  *root = b.root;
  return 0;
}

const struct ytree_pair *ytree_map_find(const struct ytree_node *map, const char *key) {
  if (!map || map->kind != YTREE_MAPPING)
    return NULL;
  size_t klen = strlen(key);
  for (size_t i = 0; i < map->n_pairs; i++) {
    const struct ytree_node *k = map->pairs[i].key;
    if (k && k->len == klen && memcmp(k->text, key, klen) == 0)
      return &map->pairs[i];
  }
  return NULL;
}

struct ytree_node *ytree_map_get(const struct ytree_node *map, const char *key) {
  const struct ytree_pair *p = ytree_map_find(map, key);
  return p ? p->value : NULL;
}

int ytree_is_null(const struct ytree_node *n) {
  if (!n || n->kind != YTREE_SCALAR || n->quoted)
    return 0;
  return n->len == 0 || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
         strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0;
}

const char *ytree_kind_name(const struct ytree_node *n) {
  if (!n || ytree_is_null(n))
    return "nothing";
  switch (n->kind) {
  case YTREE_SEQUENCE:
    return "a sequence";
  case YTREE_MAPPING:
    return "a mapping";
  default:
    return "a scalar";
  }
}
