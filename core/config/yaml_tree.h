/* A small YAML document tree built from libyaml's event stream, keeping the
 * 1-based line and column of every node so configuration errors can point at
 * the exact spot. Scalars stay text (typing is the schema's job); mapping keys
 * must be scalars and unique; anchors/aliases are expanded by copy and `<<`
 * merge keys are applied; a stream may hold at most one document. */
#ifndef CORE_CONFIG_YAML_TREE_H
#define CORE_CONFIG_YAML_TREE_H

#include <stddef.h>

/* Limits on what one parse may build, counted after anchors/aliases and `<<`
 * merge keys are expanded: the bytes of scalar text (a large scalar aliased
 * many times is refused here) and, in yaml_tree.c, the nodes and depth. */
#define YTREE_MAX_TEXT (16u * 1024u * 1024u)

enum ytree_kind { YTREE_SCALAR = 1, YTREE_SEQUENCE = 2, YTREE_MAPPING = 3 };

struct ytree_node;

struct ytree_pair {
  struct ytree_node *key; /* always a scalar */
  struct ytree_node *value;
};

struct ytree_node {
  enum ytree_kind kind;
  int line, col; /* 1-based */

  /* YTREE_SCALAR: NUL-terminated text (may contain NULs from "\0" escapes:
   * len is authoritative). quoted is non-zero for any non-plain style
   * (single/double quoted, literal, folded) or an explicit !!str tag, so a
   * quoted "null" or "yes" can be told from the plain one. */
  char *text;
  size_t len;
  int quoted;

  /* YTREE_SEQUENCE */
  struct ytree_node **items;
  size_t n_items;

  /* YTREE_MAPPING: pairs in document order */
  struct ytree_pair *pairs;
  size_t n_pairs;
};

/* Parse one YAML document. `path` is used in messages only. On success
 * returns 0 and *root (NULL for an empty stream). On failure returns -1 and
 * *err (malloc'd) holds one or more lines "path:line:col: message", e.g.
 *   x.yml:4:3: YAML syntax error: mapping values are not allowed here (while scanning ...)
 *   x.yml:9:3: stages.compress: duplicate key 'level' (first defined at line 7) */
int ytree_parse(const char *path, const char *text, size_t len, struct ytree_node **root,
                char **err);
void ytree_free(struct ytree_node *n);

/* The value stored under `key` in a mapping, or NULL. */
struct ytree_node *ytree_map_get(const struct ytree_node *map, const char *key);
/* The pair whose key is `key`, or NULL. */
const struct ytree_pair *ytree_map_find(const struct ytree_node *map, const char *key);

/* A plain scalar spelling null: empty, "~", "null", "Null", "NULL". */
int ytree_is_null(const struct ytree_node *n);

/* For messages: "a scalar", "a sequence", "a mapping" or "nothing" (null). */
const char *ytree_kind_name(const struct ytree_node *n);

#endif
