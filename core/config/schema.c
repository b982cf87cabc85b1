/* The schema engine (config/schema.h): typed checks of YAML values, the
 * collected "file:line:col: option: message" problems, "did you mean",
 * blocks declared as field tables, and plugin option schemas. Secret
 * values are never echoed. */
#include "config/schema.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/loader.h"
#include "util/log.h"

/* Longest scalar quoted back in a message (fits struct cfg_got). */
#define GOT_MAX 60
_Static_assert(sizeof(((struct cfg_got *)0)->s) >= GOT_MAX + 6, "struct cfg_got is too small");

struct cfg_error {
  int line, col;
  size_t seq; /* keeps the order of messages at the same position */
  char *msg;
};

void cfg_error(struct cfg *c, const struct ytree_node *at, const char *opt, const char *fmt, ...) {
  va_list ap;
  char *msg = NULL;
  va_start(ap, fmt);
  int n = vasprintf(&msg, fmt, ap);
  va_end(ap);
  if (n < 0)
    msg = NULL;
  struct cfg_error *e;
  c->errs = xrealloc(c->errs, (c->n_errs + 1) * sizeof(*c->errs));
  e = &c->errs[c->n_errs];
  e->line = at ? at->line : 1;
  e->col = at ? at->col : 1;
  e->seq = c->n_errs++;
  e->msg = xasprintf("%s:%d:%d: %s%s%s", c->path, e->line, e->col, opt && *opt ? opt : "",
                     opt && *opt ? ": " : "", msg ? msg : "out of memory formatting a message");
  free(msg);
}

static int cmp_error(const void *a, const void *b) {
  const struct cfg_error *x = a, *y = b;
  if (x->line != y->line)
    return x->line < y->line ? -1 : 1;
  if (x->col != y->col)
    return x->col < y->col ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Errors in file order, one per line; frees the list. */
char *cfg_take_errors(struct cfg *c) {
  qsort(c->errs, c->n_errs, sizeof(*c->errs), cmp_error);
  size_t total = 1;
  for (size_t i = 0; i < c->n_errs; i++)
    total += strlen(c->errs[i].msg) + 1;
  char *out = xmalloc(total), *o = out;
  for (size_t i = 0; i < c->n_errs; i++) {
    size_t l = strlen(c->errs[i].msg);
    if (i)
      *o++ = '\n';
    memcpy(o, c->errs[i].msg, l);
    o += l;
    free(c->errs[i].msg);
  }
  *o = '\0';
  free(c->errs);
  c->errs = NULL;
  c->n_errs = 0;
  return out;
}

void cfg_drop_errors(struct cfg *c) {
  for (size_t i = 0; i < c->n_errs; i++)
    free(c->errs[i].msg);
  free(c->errs);
  c->errs = NULL;
  c->n_errs = 0;
}

/* ---- small helpers -------------------------------------------------- */

char *cfg_opt_key(const char *base, const char *key) {
  return *base ? xasprintf("%s.%s", base, key) : xstrdup(key);
}

char *cfg_opt_index(const char *base, size_t i) {
  return xasprintf("%s[%zu]", base, i);
}

const char *cfg_got(const struct ytree_node *n, struct cfg_got *b) {
  if (!n || n->kind != YTREE_SCALAR || ytree_is_null(n))
    return ytree_kind_name(n);
  size_t o = 0;
  b->s[o++] = '\'';
  for (size_t i = 0; i < n->len && i < GOT_MAX; i++)
    b->s[o++] = (unsigned char)n->text[i] < 0x20 || n->text[i] == 0x7f ? '?' : n->text[i];
  if (n->len > GOT_MAX) {
    memcpy(b->s + o, "...", 3);
    o += 3;
  }
  b->s[o++] = '\'';
  b->s[o] = '\0';
  return b->s;
}

static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64)
    return SIZE_MAX;
  size_t row[65];
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
      size_t best = diag + cost;
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* Closest candidate within edit distance 2, or NULL. */
const char *cfg_closest(const char *word, const char *const *cands, size_t n) {
  const char *best = NULL;
  size_t best_d = 3;
  for (size_t i = 0; i < n; i++) {
    size_t d = edit_distance(word, cands[i]);
    if (d < best_d) {
      best_d = d;
      best = cands[i];
    }
  }
  return best;
}

char *cfg_join(const char *const *items, size_t n, const char *sep) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    return xstrdup("");
  for (size_t i = 0; i < n; i++)
    fprintf(f, "%s%s", i ? sep : "", items[i]);
  fclose(f);
  return buf;
}

/* "; did you mean 'x'?" or "" */
char *cfg_suggestion(const char *word, const char *const *cands, size_t n) {
  const char *s = cfg_closest(word, cands, n);
  return s ? xasprintf("; did you mean '%s'?", s) : xstrdup("");
}

void cfg_check_keys(struct cfg *c, const struct ytree_node *map, const char *opt,
                    const char *const *valid, size_t nv, int secret_block) {
  for (size_t i = 0; i < map->n_pairs; i++) {
    const struct ytree_node *k = map->pairs[i].key;
    int known = 0;
    for (size_t j = 0; j < nv && !known; j++)
      known = strcmp(k->text, valid[j]) == 0;
    if (known)
      continue;
    size_t shown = secret_block ? strcspn(k->text, ":= \t") : strlen(k->text);
    char *key = xasprintf("%.*s", (int)shown, k->text);
    const char *cut = k->text[shown] ? "..." : "";
    char *sugg = cfg_suggestion(key, valid, nv);
    char *list = cfg_join(valid, nv, ", ");
    if (*opt)
      cfg_error(c, k, opt, "unknown key '%s%s'%s (expected one of: %s)", key, cut, sugg, list);
    else
      cfg_error(c, k, NULL, "unknown key '%s%s' at top level%s (expected one of: %s)", key, cut,
                sugg, list);
    free(key);
    free(sugg);
    free(list);
  }
}

void cfg_missing(struct cfg *c, const struct ytree_node *at, const char *opt,
                 const char *expected) {
  cfg_error(c, at, opt, "required but not given (expected %s)", expected);
}

/* Mapping-valued blocks may be written empty (`with:`): null counts as an
 * empty mapping. Returns 0 when `n` can be walked as a mapping. */
int cfg_want_mapping(struct cfg *c, const struct ytree_node *n, const char *opt,
                     const char *expected) {
  if (n->kind == YTREE_MAPPING || ytree_is_null(n))
    return 0;
  struct cfg_got g;
  cfg_error(c, n, opt, "expected %s, got %s", expected, cfg_got(n, &g));
  return -1;
}

int cfg_want_scalar(struct cfg *c, const struct ytree_node *n, const char *opt,
                    const char *expected) {
  struct cfg_got g;
  if (n->kind != YTREE_SCALAR || ytree_is_null(n)) {
    cfg_error(c, n, opt, "expected %s, got %s", expected, cfg_got(n, &g));
    return -1;
  }
  if (strlen(n->text) != n->len) {
    cfg_error(c, n, opt, "expected %s, got a value containing a NUL character", expected);
    return -1;
  }
  return 0;
}

int cfg_get_string(struct cfg *c, const struct ytree_node *n, const char *opt, char **out) {
  if (cfg_want_scalar(c, n, opt, "a string") < 0)
    return -1;
  *out = xstrdup(n->text);
  return 0;
}

static int valid_name(const char *s) {
  if (!*s)
    return 0;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
      return 0;
  return 1;
}

int cfg_get_name(struct cfg *c, const struct ytree_node *n, const char *opt, char **out) {
  struct cfg_got g;
  if (cfg_want_scalar(c, n, opt, CFG_NAME_EXPECTED) < 0)
    return -1;
  if (!valid_name(n->text)) {
    cfg_error(c, n, opt, "expected %s, got %s", CFG_NAME_EXPECTED, cfg_got(n, &g));
    return -1;
  }
  *out = xstrdup(n->text);
  return 0;
}

static int parse_int64(const char *s, int64_t *out) {
  const char *d = s + (*s == '-' || *s == '+');
  if (!isdigit((unsigned char)*d))
    return -1;
  for (const char *q = d; *q; q++)
    if (!isdigit((unsigned char)*q))
      return -1;
  errno = 0;
  long long v = strtoll(s, NULL, 10);
  if (errno == ERANGE)
    return -1;
  *out = v;
  return 0;
}

int cfg_get_int(struct cfg *c, const struct ytree_node *n, const char *opt, int64_t min,
                int64_t max, const char *expected, int64_t *out) {
  struct cfg_got g;
  int64_t v;
  if (cfg_want_scalar(c, n, opt, expected) < 0)
    return -1;
  if (parse_int64(n->text, &v) < 0 || v < min || v > max) {
    cfg_error(c, n, opt, "expected %s, got %s", expected, cfg_got(n, &g));
    return -1;
  }
  *out = v;
  return 0;
}

int cfg_get_bool(struct cfg *c, const struct ytree_node *n, const char *opt, int *out) {
  struct cfg_got g;
  if (cfg_want_scalar(c, n, opt, CFG_BOOL_EXPECTED) < 0)
    return -1;
  if (config_parse_bool(n->text, out) < 0) {
    cfg_error(c, n, opt, "expected %s, got %s", CFG_BOOL_EXPECTED, cfg_got(n, &g));
    return -1;
  }
  return 0;
}

/* Pipeline-level sizes use 0 for "default", so there they start at 1;
 * plugin options may give 0 a meaning of their own. */
int cfg_get_size(struct cfg *c, const struct ytree_node *n, const char *opt, uint64_t min,
                 uint64_t max, uint64_t *out) {
  struct cfg_got g;
  uint64_t v;
  if (cfg_want_scalar(c, n, opt, CFG_SIZE_EXPECTED) < 0)
    return -1;
  if (config_parse_size(n->text, &v) < 0) {
    cfg_error(c, n, opt, "expected %s, got %s", CFG_SIZE_EXPECTED, cfg_got(n, &g));
    return -1;
  }
  if (v < min || v > max) {
    cfg_error(c, n, opt, "expected a size between %" PRIu64 " and %" PRIu64 " bytes, got %s", min,
              max, cfg_got(n, &g));
    return -1;
  }
  *out = v;
  return 0;
}

int cfg_get_duration(struct cfg *c, const struct ytree_node *n, const char *opt, int64_t *out) {
  struct cfg_got g;
  if (cfg_want_scalar(c, n, opt, CFG_DURATION_EXPECTED) < 0)
    return -1;
  if (config_parse_duration(n->text, out) < 0) {
    cfg_error(c, n, opt, "expected %s, got %s", CFG_DURATION_EXPECTED, cfg_got(n, &g));
    return -1;
  }
  return 0;
}

static int valid_secret_ref(const char *s) {
  if (strncmp(s, "env:", 4) == 0) {
    s += 4;
    if (!isalpha((unsigned char)*s) && *s != '_')
      return 0;
    for (; *s; s++)
      if (!isalnum((unsigned char)*s) && *s != '_')
        return 0;
    return 1;
  }
  return strncmp(s, "file:", 5) == 0 && s[5] != '\0';
}

/* The value may be the secret itself, so unlike every other check this one
 * never quotes what it found. */
int cfg_get_secret(struct cfg *c, const struct ytree_node *n, const char *opt, char **out) {
  if (n->kind != YTREE_SCALAR || ytree_is_null(n)) {
    cfg_error(c, n, opt, "expected %s, got %s", CFG_SECRET_EXPECTED, ytree_kind_name(n));
    return -1;
  }
  if (strlen(n->text) != n->len || !valid_secret_ref(n->text)) {
    if (strncmp(n->text, "env:", 4) == 0 || strncmp(n->text, "file:", 5) == 0)
      cfg_error(c, n, opt,
                "expected %s, got a malformed reference (NAME is letters, digits and '_'; the path "
                "must not be empty)",
                CFG_SECRET_EXPECTED);
    else
      cfg_error(c, n, opt,
                "a literal secret is not accepted (the value is not shown); expected %s, e.g. "
                "env:ENGINE_PASSPHRASE",
                CFG_SECRET_EXPECTED);
    return -1;
  }
  *out = xstrdup(n->text);
  return 0;
}

void cfg_free_strv(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

/* A sequence of strings, or a single string standing for a one-item list. */
int cfg_get_string_list(struct cfg *c, const struct ytree_node *n, const char *opt, int nonempty,
                        char ***out, size_t *n_out) {
  struct cfg_got g;
  const char *expected = nonempty ? "a list of non-empty strings" : "a list of strings";
  *out = NULL;
  *n_out = 0;
  if (n->kind == YTREE_SCALAR && !ytree_is_null(n)) {
    if (cfg_want_scalar(c, n, opt, expected) < 0)
      return -1;
    if (nonempty && n->len == 0) {
      cfg_error(c, n, opt, "expected %s, got ''", expected);
      return -1;
    }
    *out = xcalloc(1, sizeof(char *));
    (*out)[0] = xstrdup(n->text);
    *n_out = 1;
    return 0;
  }
  if (n->kind != YTREE_SEQUENCE) {
    cfg_error(c, n, opt, "expected %s, got %s", expected, cfg_got(n, &g));
    return -1;
  }
  char **v = xcalloc(n->n_items, sizeof(char *));
  size_t k = 0;
  int rc = 0;
  for (size_t i = 0; i < n->n_items; i++) {
    const struct ytree_node *it = n->items[i];
    char *o = cfg_opt_index(opt, i);
    if (cfg_want_scalar(c, it, o, nonempty ? "a non-empty string" : "a string") < 0) {
      rc = -1;
    } else if (nonempty && it->len == 0) {
      cfg_error(c, it, o, "expected a non-empty string, got ''");
      rc = -1;
    } else {
      v[k++] = xstrdup(it->text);
    }
    free(o);
  }
  if (rc < 0) {
    cfg_free_strv(v, k);
    return -1;
  }
  *out = v;
  *n_out = k;
  return 0;
}

/* One of a fixed set of words (NULL-terminated), with a suggestion. */
int cfg_get_choice(struct cfg *c, const struct ytree_node *n, const char *opt,
                   const char *const *choices, size_t n_choices, const char **out) {
  struct cfg_got g;
  char *list = cfg_join(choices, n_choices, ", ");
  char *expected = xasprintf("one of: %s", list);
  free(list);
  int rc = cfg_want_scalar(c, n, opt, expected);
  if (rc == 0) {
    rc = -1;
    for (size_t i = 0; i < n_choices && rc < 0; i++) {
      if (strcmp(n->text, choices[i]) == 0) {
        *out = choices[i];
        rc = 0;
      }
    }
    if (rc < 0) {
      char *sugg = cfg_suggestion(n->text, choices, n_choices);
      cfg_error(c, n, opt, "expected %s, got %s%s", expected, cfg_got(n, &g), sugg);
      free(sugg);
    }
  }
  free(expected);
  return rc;
}

/* ---- blocks declared in a table ------------------------------------------ */

static void get_field(struct cfg *c, const struct cfg_field *f, const struct ytree_node *v,
                      const char *opt, void *base) {
  char *at = (char *)base + f->offset;
  switch (f->type) {
  case CFG_INT: {
    int64_t k;
    if (cfg_get_int(c, v, opt, f->imin, f->imax, f->expected, &k) == 0)
      *(int *)at = (int)k;
    return;
  }
  case CFG_SIZE32: {
    uint64_t sz;
    if (cfg_get_size(c, v, opt, f->umin, f->umax, &sz) == 0)
      *(uint32_t *)at = (uint32_t)sz;
    return;
  }
  case CFG_SIZE64:
    cfg_get_size(c, v, opt, f->umin, f->umax, (uint64_t *)at);
    return;
  case CFG_DURATION:
    cfg_get_duration(c, v, opt, (int64_t *)at);
    return;
  case CFG_STRINGS:
    cfg_get_string_list(c, v, opt, 1, (char ***)at, (size_t *)((char *)base + f->count_offset));
    return;
  case CFG_CHOICE: {
    const char *choice;
    if (cfg_get_choice(c, v, opt, f->choices, f->n_choices, &choice) == 0)
      *(char **)at = xstrdup(choice);
    return;
  }
  }
}

size_t cfg_get_fields(struct cfg *c, const struct ytree_node *map, const char *block,
                      const struct cfg_field *fields, size_t n, void *base) {
  const char **keys = xcalloc(n, sizeof(char *));
  for (size_t i = 0; i < n; i++)
    keys[i] = fields[i].key;
  cfg_check_keys(c, map, block, keys, n, 0);
  free(keys);
  size_t given = 0;
  for (size_t i = 0; i < n; i++) {
    const struct ytree_node *v = ytree_map_get(map, fields[i].key);
    if (!v)
      continue;
    given++;
    char *opt = cfg_opt_key(block, fields[i].key);
    get_field(c, &fields[i], v, opt, base);
    free(opt);
  }
  return given;
}

/* ---- plugin options ------------------------------------------------- */

/* "a|b|c" -> {"a","b","c"}; one malloc'd block for the array and the copy. */
static char **split_enum(const char *values, size_t *n) {
  size_t count = 1, len = strlen(values);
  for (const char *p = values; *p; p++)
    count += *p == '|';
  char **v = xmalloc(count * sizeof(char *) + len + 1);
  char *copy = (char *)(v + count);
  memcpy(copy, values, len + 1);
  size_t k = 0;
  v[k++] = copy;
  for (char *p = copy; *p; p++) {
    if (*p == '|') {
      *p = '\0';
      v[k++] = p + 1;
    }
  }
  *n = count;
  return v;
}

static json_t *string_json(struct cfg *c, const struct ytree_node *n, const char *opt,
                           const char *s) {
  json_t *j = json_string(s);
  if (!j)
    cfg_error(c, n, opt, "expected a string, got a value that is not valid UTF-8");
  return j;
}

static json_t *convert_option(struct cfg *c, const struct engine_option *o,
                              const struct ytree_node *n, const char *opt) {
  switch (o->type) {
  case ENGINE_OPT_STRING:
    if (cfg_want_scalar(c, n, opt, "a string") < 0)
      return NULL;
    return string_json(c, n, opt, n->text);
  case ENGINE_OPT_SECRET: {
    char *ref;
    if (cfg_get_secret(c, n, opt, &ref) < 0)
      return NULL;
    json_t *j = string_json(c, n, opt, ref);
    free(ref);
    return j;
  }
  case ENGINE_OPT_INT: {
    int64_t v;
    if (cfg_get_int(c, n, opt, INT64_MIN, INT64_MAX, "an integer", &v) < 0)
      return NULL;
    return json_integer((json_int_t)v);
  }
  case ENGINE_OPT_BOOL: {
    int b;
    if (cfg_get_bool(c, n, opt, &b) < 0)
      return NULL;
    return json_boolean(b);
  }
  case ENGINE_OPT_SIZE: {
    uint64_t v;
    if (cfg_get_size(c, n, opt, 0, INT64_MAX, &v) < 0)
      return NULL;
    return json_integer((json_int_t)v);
  }
  case ENGINE_OPT_DURATION: {
    int64_t v;
    if (cfg_get_duration(c, n, opt, &v) < 0)
      return NULL;
    return json_integer((json_int_t)v);
  }
  case ENGINE_OPT_STRING_LIST: {
    char **v;
    size_t k;
    if (cfg_get_string_list(c, n, opt, 0, &v, &k) < 0)
      return NULL;
    json_t *a = json_array();
    for (size_t i = 0; i < k && a; i++) {
      json_t *s = string_json(c, n, opt, v[i]);
      if (!s) {
        json_decref(a);
        a = NULL;
      } else {
        json_array_append_new(a, s);
      }
    }
    cfg_free_strv(v, k);
    return a;
  }
  case ENGINE_OPT_ENUM: {
    size_t k;
    const char *choice;
    char **v = split_enum(o->enum_values ? o->enum_values : "", &k);
    json_t *j = NULL;
    if (cfg_get_choice(c, n, opt, (const char *const *)v, k, &choice) == 0)
      j = string_json(c, n, opt, choice);
    free(v);
    return j;
  }
  }
  cfg_error(c, n, opt, "the plugin's schema gives this option an unknown type (%d)", (int)o->type);
  return NULL;
}

/* ---- option bounds (ABI 1.5 option_bounds) ---- */

/* A bound as the plugin wrote it, parsed as the option's values are. */
static int bound_value(const struct engine_option *o, const char *text, int64_t *out) {
  uint64_t u;
  switch (o->type) {
  case ENGINE_OPT_INT:
    return parse_int64(text, out);
  case ENGINE_OPT_SIZE:
    if (config_parse_size(text, &u) < 0 || u > INT64_MAX)
      return -1;
    *out = (int64_t)u;
    return 0;
  case ENGINE_OPT_DURATION:
    return config_parse_duration(text, out) < 0 ? -1 : 0;
  default:
    return -1;
  }
}

/* v (the option's converted value), or NULL when it lies outside the
 * plugin's bounds for the option (reported at n; v released). A bound that
 * is no value of the option's type, and a default outside the bounds, are
 * reported as the plugin's bug. */
static json_t *check_bounds(struct cfg *c, const struct engine_plugin *pl,
                            const struct engine_option *o, const struct ytree_node *n,
                            const char *opt, json_t *v, int is_default) {
  const char *min, *max;
  if (v == NULL || !plugin_option_bounds(pl, o->name, &min, &max))
    return v;
  int64_t lo = INT64_MIN, hi = INT64_MAX, x = (int64_t)json_integer_value(v);
  const char *kind = o->type == ENGINE_OPT_INT    ? "an integer"
                     : o->type == ENGINE_OPT_SIZE ? "a size"
                                                  : "a duration";
  struct cfg_got g;
  if ((min && bound_value(o, min, &lo) < 0) || (max && bound_value(o, max, &hi) < 0))
    cfg_error(c, n, opt,
              "plugin '%s' declares bounds for this option that are not %s ('%s' to '%s'; a bug in "
              "the plugin)",
              pl->name, kind, min ? min : "", max ? max : "");
  else if (x >= lo && x <= hi)
    return v;
  else if (is_default)
    cfg_error(c, n, opt,
              "plugin '%s' declares a default '%s' outside its bounds for this option (a bug in "
              "the plugin)",
              pl->name, o->default_value);
  else if (min && max)
    cfg_error(c, n, opt, "expected %s from %s to %s, got %s", kind, min, max, cfg_got(n, &g));
  else if (min)
    cfg_error(c, n, opt, "expected %s of at least %s, got %s", kind, min, cfg_got(n, &g));
  else
    cfg_error(c, n, opt, "expected %s of at most %s, got %s", kind, max, cfg_got(n, &g));
  json_decref(v);
  return NULL;
}

/* A plugin default is text "as it would be written in YAML"; a list default
 * in flow form ("[a, b]") goes through the YAML parser. An invalid default
 * is the plugin's bug, reported without the schema checker's detail. */
static json_t *convert_default(struct cfg *c, const struct engine_option *o,
                               const struct ytree_node *at, const char *opt,
                               const struct engine_plugin *pl) {
  const char *def = o->default_value;
  struct ytree_node tmp;
  memset(&tmp, 0, sizeof(tmp));
  tmp.kind = YTREE_SCALAR;
  tmp.text = (char *)def;
  tmp.len = strlen(def);
  tmp.line = at->line;
  tmp.col = at->col;

  if (o->type == ENGINE_OPT_STRING_LIST && def[0] == '\0')
    return json_array();

  struct cfg sub = *c;
  sub.errs = NULL;
  sub.n_errs = 0;

  json_t *j = NULL;
  struct ytree_node *parsed = NULL;
  if (o->type == ENGINE_OPT_STRING_LIST && def[0] == '[') {
    char *perr = NULL;
    if (ytree_parse("default", def, strlen(def), &parsed, &perr) == 0 && parsed)
      j = convert_option(&sub, o, parsed, opt);
    free(perr);
  } else {
    j = convert_option(&sub, o, &tmp, opt);
  }
  ytree_free(parsed);
  cfg_drop_errors(&sub);
  if (!j)
    cfg_error(c, at, opt,
              "plugin '%s' declares an invalid default '%s' for this option (a bug in the plugin)",
              pl->name, def);
  return j;
}

static char *opt_type_expected(const struct engine_option *o) {
  switch (o->type) {
  case ENGINE_OPT_STRING:
    return xstrdup("a string");
  case ENGINE_OPT_INT:
    return xstrdup("an integer");
  case ENGINE_OPT_BOOL:
    return xstrdup(CFG_BOOL_EXPECTED);
  case ENGINE_OPT_SIZE:
    return xstrdup(CFG_SIZE_EXPECTED);
  case ENGINE_OPT_DURATION:
    return xstrdup(CFG_DURATION_EXPECTED);
  case ENGINE_OPT_STRING_LIST:
    return xstrdup("a list of strings");
  case ENGINE_OPT_SECRET:
    return xstrdup(CFG_SECRET_EXPECTED);
  case ENGINE_OPT_ENUM: {
    size_t k;
    char **v = split_enum(o->enum_values ? o->enum_values : "", &k);
    char *list = cfg_join((const char *const *)v, k, ", ");
    char *s = xasprintf("one of: %s", list);
    free(list);
    free(v);
    return s;
  }
  }
  return xstrdup("a value");
}

/* Check `with:` (NULL or null: no options given) against the schema and
 * build the normalised object. `at` positions messages about missing
 * options: the `with` key, or the entry when there is none. */
json_t *cfg_check_plugin_options(struct cfg *c, const struct engine_plugin *pl,
                                 const struct ytree_node *with, const struct ytree_node *at,
                                 const char *opt_with) {
  static const struct engine_option no_options[] = {{.name = NULL}};
  const struct engine_option *opts = pl->options ? pl->options : no_options;
  size_t n_opts = 0;
  while (opts[n_opts].name)
    n_opts++;
  const char **names = xcalloc(n_opts + 1, sizeof(char *));
  for (size_t i = 0; i < n_opts; i++)
    names[i] = opts[i].name;

  json_t *obj = json_object();
  if (with && with->kind == YTREE_MAPPING) {
    for (size_t i = 0; i < with->n_pairs; i++) {
      const struct ytree_node *k = with->pairs[i].key;
      const struct engine_option *o = NULL;
      for (size_t j = 0; j < n_opts && !o; j++)
        if (strcmp(opts[j].name, k->text) == 0)
          o = &opts[j];
      if (!o) {
        if (n_opts == 0) {
          cfg_error(c, k, opt_with, "unknown option '%s' (%s plugin '%s' takes no options)",
                    k->text, plugin_kind_name(pl->kind), pl->name);
        } else {
          char *sugg = cfg_suggestion(k->text, names, n_opts);
          char *list = cfg_join(names, n_opts, ", ");
          cfg_error(c, k, opt_with, "unknown option '%s' for %s plugin '%s'%s (valid options: %s)",
                    k->text, plugin_kind_name(pl->kind), pl->name, sugg, list);
          free(sugg);
          free(list);
        }
        continue;
      }
      char *opt = cfg_opt_key(opt_with, o->name);
      json_t *v = check_bounds(c, pl, o, with->pairs[i].value, opt,
                               convert_option(c, o, with->pairs[i].value, opt), 0);
      if (v)
        json_object_set_new(obj, o->name, v);
      free(opt);
    }
  }
  for (size_t j = 0; j < n_opts; j++) {
    const struct engine_option *o = &opts[j];
    if (json_object_get(obj, o->name) || (with && ytree_map_find(with, o->name)))
      continue; /* given (valid, or already reported) */
    char *opt = cfg_opt_key(opt_with, o->name);
    if (o->required) {
      char *expected = opt_type_expected(o);
      cfg_error(c, at, opt, "required by %s plugin '%s' but not given (expected %s)",
                plugin_kind_name(pl->kind), pl->name, expected);
      free(expected);
    } else if (o->default_value) {
      json_t *v = check_bounds(c, pl, o, at, opt, convert_default(c, o, at, opt, pl), 1);
      if (v)
        json_object_set_new(obj, o->name, v);
    }
    free(opt);
  }
  free(names);
  return obj;
}

/* Without a plugin registry (structure-only checks) `with:` is kept as
 * written: scalars as strings, null as null. */
json_t *cfg_natural_json(const struct ytree_node *n) {
  switch (n->kind) {
  case YTREE_SCALAR:
    if (ytree_is_null(n))
      return json_null();
    return json_stringn(n->text, n->len);
  case YTREE_SEQUENCE: {
    json_t *a = json_array();
    for (size_t i = 0; i < n->n_items; i++) {
      json_t *v = cfg_natural_json(n->items[i]);
      json_array_append_new(a, v ? v : json_null());
    }
    return a;
  }
  case YTREE_MAPPING: {
    json_t *o = json_object();
    for (size_t i = 0; i < n->n_pairs; i++) {
      json_t *v = cfg_natural_json(n->pairs[i].value);
      json_object_setn_new(o, n->pairs[i].key->text, n->pairs[i].key->len, v ? v : json_null());
    }
    return o;
  }
  }
  return json_null();
}