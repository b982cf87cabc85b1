/* Pipeline configuration: walks the YAML tree of a pipeline file, checks
 * every key against the fixed layout and every plugin's `with:` block against
 * the plugin's option schema, and fills struct pipeline. All problems are
 * collected (an operator fixing a file wants the whole list at once), each as
 * "file:line:col: option: message". Secret values are never echoed. */
#include "config/pipeline.h"
#include "plugin/loader.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/yaml_tree.h"
#include "stage/compress.h"
#include "util/log.h"

/* A pipeline is a few kilobytes; anything this large is a mistake (wrong
 * file) and would only make the parser allocate for nothing. */
#define PIPELINE_MAX_FILE (4u * 1024u * 1024u)
/* Longest scalar quoted back in a message. */
#define GOT_MAX 60

struct cfg_error {
  int line, col;
  size_t seq; /* keeps the order of messages at the same position */
  char *msg;
};

struct ctx {
  const char *path;
  pipeline_lookup_fn lookup;
  void *ud;
  struct cfg_error *errs;
  size_t n_errs;
};

static void cerr(struct ctx *c, const struct ytree_node *at, const char *opt, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void cerr(struct ctx *c, const struct ytree_node *at, const char *opt, const char *fmt,
                 ...) {
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
static char *take_errors(struct ctx *c) {
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

static void drop_errors(struct ctx *c) {
  for (size_t i = 0; i < c->n_errs; i++)
    free(c->errs[i].msg);
  free(c->errs);
  c->errs = NULL;
  c->n_errs = 0;
}

/* ---- small helpers -------------------------------------------------- */

static char *opt_key(const char *base, const char *key) {
  return *base ? xasprintf("%s.%s", base, key) : xstrdup(key);
}

static char *opt_index(const char *base, size_t i) {
  return xasprintf("%s[%zu]", base, i);
}

/* What was found, for "expected X, got Y": a scalar is quoted back
 * (shortened, control characters masked), anything else is named. */
struct got_buf {
  char s[GOT_MAX + 8];
};

static const char *got(const struct ytree_node *n, struct got_buf *b) {
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
static const char *closest(const char *word, const char *const *cands, size_t n) {
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

static char *join(const char *const *items, size_t n, const char *sep) {
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
static char *suggestion(const char *word, const char *const *cands, size_t n) {
  const char *s = closest(word, cands, n);
  return s ? xasprintf("; did you mean '%s'?", s) : xstrdup("");
}

static size_t count_names(const char *const *names) {
  size_t n = 0;
  while (names[n])
    n++;
  return n;
}

/* Report every key of `map` that is not in `valid` (NULL-terminated).
 * In a block that holds secrets a mistyped line such as
 * `passphrase:hunter2` arrives as one key, so only the part before the
 * first ':', '=' or blank is quoted back there. */
static void check_keys_ex(struct ctx *c, const struct ytree_node *map, const char *opt,
                          const char *const *valid, int secret_block) {
  size_t nv = count_names(valid);
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
    char *sugg = suggestion(key, valid, nv);
    char *list = join(valid, nv, ", ");
    if (*opt)
      cerr(c, k, opt, "unknown key '%s%s'%s (expected one of: %s)", key, cut, sugg, list);
    else
      cerr(c, k, NULL, "unknown key '%s%s' at top level%s (expected one of: %s)", key, cut, sugg,
           list);
    free(key);
    free(sugg);
    free(list);
  }
}

static void check_keys(struct ctx *c, const struct ytree_node *map, const char *opt,
                       const char *const *valid) {
  check_keys_ex(c, map, opt, valid, 0);
}

static void missing(struct ctx *c, const struct ytree_node *at, const char *opt,
                    const char *expected) {
  cerr(c, at, opt, "required but not given (expected %s)", expected);
}

/* Mapping-valued blocks may be written empty (`with:`): null counts as an
 * empty mapping. Returns 0 when `n` can be walked as a mapping. */
static int want_mapping(struct ctx *c, const struct ytree_node *n, const char *opt,
                        const char *expected) {
  if (n->kind == YTREE_MAPPING || ytree_is_null(n))
    return 0;
  struct got_buf g;
  cerr(c, n, opt, "expected %s, got %s", expected, got(n, &g));
  return -1;
}

static int want_scalar(struct ctx *c, const struct ytree_node *n, const char *opt,
                       const char *expected) {
  struct got_buf g;
  if (n->kind != YTREE_SCALAR || ytree_is_null(n)) {
    cerr(c, n, opt, "expected %s, got %s", expected, got(n, &g));
    return -1;
  }
  if (strlen(n->text) != n->len) {
    cerr(c, n, opt, "expected %s, got a value containing a NUL character", expected);
    return -1;
  }
  return 0;
}

static int get_string(struct ctx *c, const struct ytree_node *n, const char *opt, char **out) {
  if (want_scalar(c, n, opt, "a string") < 0)
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

#define NAME_EXPECTED "a name made of letters, digits, '.', '_' and '-'"

static int get_name(struct ctx *c, const struct ytree_node *n, const char *opt, char **out) {
  struct got_buf g;
  if (want_scalar(c, n, opt, NAME_EXPECTED) < 0)
    return -1;
  if (!valid_name(n->text)) {
    cerr(c, n, opt, "expected %s, got %s", NAME_EXPECTED, got(n, &g));
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

static int get_int(struct ctx *c, const struct ytree_node *n, const char *opt, int64_t min,
                   int64_t max, const char *expected, int64_t *out) {
  struct got_buf g;
  int64_t v;
  if (want_scalar(c, n, opt, expected) < 0)
    return -1;
  if (parse_int64(n->text, &v) < 0 || v < min || v > max) {
    cerr(c, n, opt, "expected %s, got %s", expected, got(n, &g));
    return -1;
  }
  *out = v;
  return 0;
}

#define BOOL_EXPECTED "a boolean (true/false, yes/no, on/off)"

static int get_bool(struct ctx *c, const struct ytree_node *n, const char *opt, int *out) {
  struct got_buf g;
  if (want_scalar(c, n, opt, BOOL_EXPECTED) < 0)
    return -1;
  if (config_parse_bool(n->text, out) < 0) {
    cerr(c, n, opt, "expected %s, got %s", BOOL_EXPECTED, got(n, &g));
    return -1;
  }
  return 0;
}

#define SIZE_EXPECTED "a size such as 16MiB"

/* Pipeline-level sizes use 0 for "default", so there they start at 1;
 * plugin options may give 0 a meaning of their own. */
static int get_size(struct ctx *c, const struct ytree_node *n, const char *opt, uint64_t min,
                    uint64_t max, uint64_t *out) {
  struct got_buf g;
  uint64_t v;
  if (want_scalar(c, n, opt, SIZE_EXPECTED) < 0)
    return -1;
  if (config_parse_size(n->text, &v) < 0) {
    cerr(c, n, opt, "expected %s, got %s", SIZE_EXPECTED, got(n, &g));
    return -1;
  }
  if (v < min || v > max) {
    cerr(c, n, opt, "expected a size between %" PRIu64 " and %" PRIu64 " bytes, got %s", min, max,
         got(n, &g));
    return -1;
  }
  *out = v;
  return 0;
}

#define DURATION_EXPECTED "a duration such as 30s, 5m or 1h30m"

static int get_duration(struct ctx *c, const struct ytree_node *n, const char *opt, int64_t *out) {
  struct got_buf g;
  if (want_scalar(c, n, opt, DURATION_EXPECTED) < 0)
    return -1;
  if (config_parse_duration(n->text, out) < 0) {
    cerr(c, n, opt, "expected %s, got %s", DURATION_EXPECTED, got(n, &g));
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

#define SECRET_EXPECTED "a secret reference env:NAME or file:/path"

/* The value may be the secret itself, so unlike every other check this one
 * never quotes what it found. */
static int get_secret(struct ctx *c, const struct ytree_node *n, const char *opt, char **out) {
  if (n->kind != YTREE_SCALAR || ytree_is_null(n)) {
    cerr(c, n, opt, "expected %s, got %s", SECRET_EXPECTED, ytree_kind_name(n));
    return -1;
  }
  if (strlen(n->text) != n->len || !valid_secret_ref(n->text)) {
    if (strncmp(n->text, "env:", 4) == 0 || strncmp(n->text, "file:", 5) == 0)
      cerr(c, n, opt,
           "expected %s, got a malformed reference (NAME is letters, digits and '_'; the path "
           "must not be empty)",
           SECRET_EXPECTED);
    else
      cerr(c, n, opt,
           "a literal secret is not accepted (the value is not shown); expected %s, e.g. "
           "env:ENGINE_PASSPHRASE",
           SECRET_EXPECTED);
    return -1;
  }
  *out = xstrdup(n->text);
  return 0;
}

static void free_strv(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

/* A sequence of strings, or a single string standing for a one-item list. */
static int get_string_list(struct ctx *c, const struct ytree_node *n, const char *opt, int nonempty,
                           char ***out, size_t *n_out) {
  struct got_buf g;
  const char *expected = nonempty ? "a list of non-empty strings" : "a list of strings";
  *out = NULL;
  *n_out = 0;
  if (n->kind == YTREE_SCALAR && !ytree_is_null(n)) {
    if (want_scalar(c, n, opt, expected) < 0)
      return -1;
    if (nonempty && n->len == 0) {
      cerr(c, n, opt, "expected %s, got ''", expected);
      return -1;
    }
    *out = xcalloc(1, sizeof(char *));
    (*out)[0] = xstrdup(n->text);
    *n_out = 1;
    return 0;
  }
  if (n->kind != YTREE_SEQUENCE) {
    cerr(c, n, opt, "expected %s, got %s", expected, got(n, &g));
    return -1;
  }
  char **v = xcalloc(n->n_items, sizeof(char *));
  size_t k = 0;
  int rc = 0;
  for (size_t i = 0; i < n->n_items; i++) {
    const struct ytree_node *it = n->items[i];
    char *o = opt_index(opt, i);
    if (want_scalar(c, it, o, nonempty ? "a non-empty string" : "a string") < 0) {
      rc = -1;
    } else if (nonempty && it->len == 0) {
      cerr(c, it, o, "expected a non-empty string, got ''");
      rc = -1;
    } else {
      v[k++] = xstrdup(it->text);
    }
    free(o);
  }
  if (rc < 0) {
    free_strv(v, k);
    return -1;
  }
  *out = v;
  *n_out = k;
  return 0;
}

/* One of a fixed set of words (NULL-terminated), with a suggestion. */
static int get_choice(struct ctx *c, const struct ytree_node *n, const char *opt,
                      const char *const *choices, size_t n_choices, const char **out) {
  struct got_buf g;
  char *list = join(choices, n_choices, ", ");
  char *expected = xasprintf("one of: %s", list);
  free(list);
  int rc = want_scalar(c, n, opt, expected);
  if (rc == 0) {
    rc = -1;
    for (size_t i = 0; i < n_choices && rc < 0; i++) {
      if (strcmp(n->text, choices[i]) == 0) {
        *out = choices[i];
        rc = 0;
      }
    }
    if (rc < 0) {
      char *sugg = suggestion(n->text, choices, n_choices);
      cerr(c, n, opt, "expected %s, got %s%s", expected, got(n, &g), sugg);
      free(sugg);
    }
  }
  free(expected);
  return rc;
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

static json_t *string_json(struct ctx *c, const struct ytree_node *n, const char *opt,
                           const char *s) {
  json_t *j = json_string(s);
  if (!j)
    cerr(c, n, opt, "expected a string, got a value that is not valid UTF-8");
  return j;
}

static json_t *convert_option(struct ctx *c, const struct engine_option *o,
                              const struct ytree_node *n, const char *opt) {
  switch (o->type) {
  case ENGINE_OPT_STRING:
    if (want_scalar(c, n, opt, "a string") < 0)
      return NULL;
    return string_json(c, n, opt, n->text);
  case ENGINE_OPT_SECRET: {
    char *ref;
    if (get_secret(c, n, opt, &ref) < 0)
      return NULL;
    json_t *j = string_json(c, n, opt, ref);
    free(ref);
    return j;
  }
  case ENGINE_OPT_INT: {
    int64_t v;
    if (get_int(c, n, opt, INT64_MIN, INT64_MAX, "an integer", &v) < 0)
      return NULL;
    return json_integer((json_int_t)v);
  }
  case ENGINE_OPT_BOOL: {
    int b;
    if (get_bool(c, n, opt, &b) < 0)
      return NULL;
    return json_boolean(b);
  }
  case ENGINE_OPT_SIZE: {
    uint64_t v;
    if (get_size(c, n, opt, 0, INT64_MAX, &v) < 0)
      return NULL;
    return json_integer((json_int_t)v);
  }
  case ENGINE_OPT_DURATION: {
    int64_t v;
    if (get_duration(c, n, opt, &v) < 0)
      return NULL;
    return json_integer((json_int_t)v);
  }
  case ENGINE_OPT_STRING_LIST: {
    char **v;
    size_t k;
    if (get_string_list(c, n, opt, 0, &v, &k) < 0)
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
    free_strv(v, k);
    return a;
  }
  case ENGINE_OPT_ENUM: {
    size_t k;
    const char *choice;
    char **v = split_enum(o->enum_values ? o->enum_values : "", &k);
    json_t *j = NULL;
    if (get_choice(c, n, opt, (const char *const *)v, k, &choice) == 0)
      j = string_json(c, n, opt, choice);
    free(v);
    return j;
  }
  }
  cerr(c, n, opt, "the plugin's schema gives this option an unknown type (%d)", (int)o->type);
  return NULL;
}

/* A plugin default is text "as it would be written in YAML"; a list default
 * in flow form ("[a, b]") goes through the YAML parser. An invalid default
 * is the plugin's bug, reported without the schema checker's detail. */
static json_t *convert_default(struct ctx *c, const struct engine_option *o,
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

  struct ctx sub = *c;
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
  drop_errors(&sub);
  if (!j)
    cerr(c, at, opt,
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
    return xstrdup(BOOL_EXPECTED);
  case ENGINE_OPT_SIZE:
    return xstrdup(SIZE_EXPECTED);
  case ENGINE_OPT_DURATION:
    return xstrdup(DURATION_EXPECTED);
  case ENGINE_OPT_STRING_LIST:
    return xstrdup("a list of strings");
  case ENGINE_OPT_SECRET:
    return xstrdup(SECRET_EXPECTED);
  case ENGINE_OPT_ENUM: {
    size_t k;
    char **v = split_enum(o->enum_values ? o->enum_values : "", &k);
    char *list = join((const char *const *)v, k, ", ");
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
static json_t *validate_with(struct ctx *c, const struct engine_plugin *pl,
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
          cerr(c, k, opt_with, "unknown option '%s' (%s plugin '%s' takes no options)", k->text,
               plugin_kind_name(pl->kind), pl->name);
        } else {
          char *sugg = suggestion(k->text, names, n_opts);
          char *list = join(names, n_opts, ", ");
          cerr(c, k, opt_with, "unknown option '%s' for %s plugin '%s'%s (valid options: %s)",
               k->text, plugin_kind_name(pl->kind), pl->name, sugg, list);
          free(sugg);
          free(list);
        }
        continue;
      }
      char *opt = opt_key(opt_with, o->name);
      json_t *v = convert_option(c, o, with->pairs[i].value, opt);
      if (v)
        json_object_set_new(obj, o->name, v);
      free(opt);
    }
  }
  for (size_t j = 0; j < n_opts; j++) {
    const struct engine_option *o = &opts[j];
    if (json_object_get(obj, o->name) || (with && ytree_map_find(with, o->name)))
      continue; /* given (valid, or already reported) */
    char *opt = opt_key(opt_with, o->name);
    if (o->required) {
      char *expected = opt_type_expected(o);
      cerr(c, at, opt, "required by %s plugin '%s' but not given (expected %s)",
           plugin_kind_name(pl->kind), pl->name, expected);
      free(expected);
    } else if (o->default_value) {
      json_t *v = convert_default(c, o, at, opt, pl);
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
static json_t *natural_json(const struct ytree_node *n) {
  switch (n->kind) {
  case YTREE_SCALAR:
    if (ytree_is_null(n))
      return json_null();
    return json_stringn(n->text, n->len);
  case YTREE_SEQUENCE: {
    json_t *a = json_array();
    for (size_t i = 0; i < n->n_items; i++) {
      json_t *v = natural_json(n->items[i]);
      json_array_append_new(a, v ? v : json_null());
    }
    return a;
  }
  case YTREE_MAPPING: {
    json_t *o = json_object();
    for (size_t i = 0; i < n->n_pairs; i++) {
      json_t *v = natural_json(n->pairs[i].value);
      json_object_setn_new(o, n->pairs[i].key->text, n->pairs[i].key->len, v ? v : json_null());
    }
    return o;
  }
  }
  return json_null();
}

/* Resolve a plugin; reports and returns NULL when it cannot be used. */
static const struct engine_plugin *resolve(struct ctx *c, enum engine_plugin_kind kind,
                                           const char *type, const struct ytree_node *at,
                                           const char *opt) {
  char *lerr = NULL;
  const struct engine_plugin *pl = c->lookup(c->ud, kind, type, &lerr);
  if (!pl) {
    if (lerr)
      cerr(c, at, opt, "%s", lerr);
    else
      cerr(c, at, opt, "no %s plugin named '%s'", plugin_kind_name(kind), type);
    free(lerr);
    return NULL;
  }
  free(lerr);
  if (pl->kind != kind) {
    cerr(c, at, opt, "plugin '%s' is a %s plugin, not a %s plugin", type,
         plugin_kind_name(pl->kind), plugin_kind_name(kind));
    return NULL;
  }
  return pl;
}

/* ---- sources and sinks ---------------------------------------------- */

static const char *const source_keys[] = {"name", "type", "with", NULL};
static const char *const sink_keys[] = {"name", "type", "with", "required", NULL};

static void parse_plugin_entry(struct ctx *c, const struct ytree_node *item, const char *opt,
                               enum engine_plugin_kind kind, struct pipeline_plugin_cfg *cfg,
                               const struct ytree_node **name_at) {
  cfg->line = item->line;
  cfg->col = item->col;
  cfg->required = 1;
  *name_at = item;
  if (item->kind != YTREE_MAPPING) {
    struct got_buf g;
    cerr(c, item, opt, "expected a mapping such as { type: %s, with: {...} }, got %s",
         kind == ENGINE_PLUGIN_SOURCE ? "files" : "local", got(item, &g));
    return;
  }
  check_keys(c, item, opt, kind == ENGINE_PLUGIN_SINK ? sink_keys : source_keys);

  const struct ytree_node *type = ytree_map_get(item, "type");
  char *o = opt_key(opt, "type");
  if (!type)
    cerr(c, item, o, "required but not given (expected the name of a %s plugin)",
         plugin_kind_name(kind));
  else if (get_name(c, type, o, &cfg->type) == 0)
    *name_at = type;
  free(o);

  const struct ytree_node *name = ytree_map_get(item, "name");
  if (name) {
    o = opt_key(opt, "name");
    if (get_name(c, name, o, &cfg->name) == 0)
      *name_at = name;
    free(o);
  } else if (cfg->type) {
    cfg->name = xstrdup(cfg->type);
  }

  const struct ytree_node *req = ytree_map_get(item, "required");
  if (req) {
    o = opt_key(opt, "required");
    get_bool(c, req, o, &cfg->required);
    free(o);
  }

  const struct ytree_node *with = ytree_map_get(item, "with");
  char *ow = opt_key(opt, "with");
  if (with && want_mapping(c, with, ow, "a mapping of plugin options") < 0)
    with = NULL;
  if (cfg->type && c->lookup) {
    o = opt_key(opt, "type");
    cfg->plugin = resolve(c, kind, cfg->type, type, o);
    free(o);
    if (cfg->plugin)
      cfg->with =
          validate_with(c, cfg->plugin, with, with ? ytree_map_find(item, "with")->key : item, ow);
  } else if (!c->lookup) {
    cfg->with = with ? natural_json(with) : json_object();
    if (json_is_null(cfg->with)) {
      json_decref(cfg->with);
      cfg->with = json_object();
    }
  }
  free(ow);
}

static void parse_plugin_list(struct ctx *c, const struct ytree_node *root, const char *key,
                              enum engine_plugin_kind kind, struct pipeline_plugin_cfg **out,
                              size_t *n_out) {
  const char *what = plugin_kind_name(kind);
  const struct ytree_node *list = ytree_map_get(root, key);
  if (!list) {
    cerr(c, root, key,
         "required but not given (expected a non-empty list of %ss, each { type: ..., with: {...} "
         "})",
         what);
    return;
  }
  if (list->kind != YTREE_SEQUENCE || list->n_items == 0) {
    struct got_buf g;
    cerr(c, list, key, "expected a non-empty list of %ss, got %s", what,
         list->kind == YTREE_SEQUENCE ? "an empty list" : got(list, &g));
    return;
  }
  *out = xcalloc(list->n_items, sizeof(**out));
  *n_out = list->n_items;
  const struct ytree_node **name_at = xcalloc(list->n_items, sizeof(*name_at));
  for (size_t i = 0; i < list->n_items; i++) {
    char *opt = opt_index(key, i);
    parse_plugin_entry(c, list->items[i], opt, kind, &(*out)[i], &name_at[i]);
    for (size_t j = 0; j < i && (*out)[i].name; j++) {
      if ((*out)[j].name && strcmp((*out)[i].name, (*out)[j].name) == 0) {
        int explicit_name = ytree_map_get(list->items[i], "name") != NULL;
        char *o = explicit_name ? opt_key(opt, "name") : xstrdup(opt);
        cerr(c, name_at[i], o,
             "duplicate %s name '%s' (%salready used by %s[%zu] at line %d); "
             "give each %s its own name",
             what, (*out)[i].name, explicit_name ? "" : "the name defaults to the type; ", key, j,
             (*out)[j].line, what);
        free(o);
        break;
      }
    }
    free(opt);
  }
  free(name_at);
}

/* ---- stages ----------------------------------------------------------- */

static const char *const stages_keys[] = {"compress", "encrypt", NULL};
static const char *const compress_keys[] = {"algorithm", "level", NULL};
static const char *const encrypt_keys[] = {"algorithm", "passphrase", "key_file", NULL};
static const char *const compress_algos[] = {"zstd", "gzip", "none"};

static void parse_compress(struct ctx *c, const struct ytree_node *n, struct pipeline *p) {
  p->compress_algorithm = xstrdup("zstd");
  p->compress_level = -1;
  if (!n ||
      want_mapping(c, n, "stages.compress", "a mapping such as { algorithm: zstd, level: 3 }") <
          0 ||
      n->kind != YTREE_MAPPING)
    return;
  check_keys(c, n, "stages.compress", compress_keys);
  int algo = COMPRESS_ZSTD;
  const struct ytree_node *a = ytree_map_get(n, "algorithm");
  const char *name;
  if (a) {
    if (get_choice(c, a, "stages.compress.algorithm", compress_algos, 3, &name) == 0 &&
        compress_algo_from_name(name) >= 0) {
      algo = compress_algo_from_name(name);
      free(p->compress_algorithm);
      p->compress_algorithm = xstrdup(name);
    } else {
      algo = -1;
    }
  }
  const struct ytree_node *l = ytree_map_get(n, "level");
  if (l) {
    int64_t v;
    if (algo < 0) {
      /* range unknown: only the shape can be checked */
      get_int(c, l, "stages.compress.level", INT_MIN, INT_MAX, "an integer", &v);
      return;
    }
    int min, max;
    compress_level_range((enum compress_algo)algo, &min, &max);
    char *expected =
        min == max ? xasprintf("%d (the only level of %s)", min, p->compress_algorithm)
                   : xasprintf("an integer from %d to %d for %s", min, max, p->compress_algorithm);
    if (get_int(c, l, "stages.compress.level", min, max, expected, &v) == 0)
      p->compress_level = (int)v;
    free(expected);
  }
}

#define ENCRYPT_HINT                                                                               \
  "a mapping such as { algorithm: aes-256-gcm, passphrase: env:ENGINE_PASSPHRASE }, or "           \
  "{ algorithm: none } to store backups unencrypted"

static void parse_encrypt(struct ctx *c, const struct ytree_node *n, const struct ytree_node *at,
                          struct pipeline *p) {
  if (!n) {
    missing(c, at, "stages.encrypt", ENCRYPT_HINT);
    return;
  }
  if (n->kind != YTREE_MAPPING) {
    /* not quoted back: it may be a passphrase written in the wrong place */
    cerr(c, n, "stages.encrypt", "expected %s, got %s", ENCRYPT_HINT, ytree_kind_name(n));
    return;
  }
  check_keys_ex(c, n, "stages.encrypt", encrypt_keys, 1);
  const struct ytree_node *a = ytree_map_get(n, "algorithm");
  const struct ytree_pair *pass = ytree_map_find(n, "passphrase");
  const struct ytree_pair *kf = ytree_map_find(n, "key_file");
  if (!a) {
    missing(c, n, "stages.encrypt.algorithm",
            "the name of a crypto plugin such as aes-256-gcm, or none");
    return;
  }
  if (get_name(c, a, "stages.encrypt.algorithm", &p->encrypt_algorithm) < 0)
    return;
  if (strcmp(p->encrypt_algorithm, "none") == 0) {
    if (pass)
      cerr(c, pass->key, "stages.encrypt.passphrase",
           "not allowed with algorithm none (remove it, or choose a crypto algorithm)");
    if (kf)
      cerr(c, kf->key, "stages.encrypt.key_file",
           "not allowed with algorithm none (remove it, or choose a crypto algorithm)");
    return;
  }
  if (c->lookup)
    p->crypto =
        resolve(c, ENGINE_PLUGIN_CRYPTO, p->encrypt_algorithm, a, "stages.encrypt.algorithm");
  if (pass && kf) {
    cerr(c, kf->key, "stages.encrypt.key_file",
         "not allowed together with passphrase (give exactly one of passphrase or key_file)");
    return;
  }
  if (!pass && !kf) {
    cerr(c, n, "stages.encrypt",
         "algorithm '%s' needs a passphrase (env:NAME or file:/path) or a key_file, neither was "
         "given",
         p->encrypt_algorithm);
    return;
  }
  if (pass) {
    get_secret(c, pass->value, "stages.encrypt.passphrase", &p->encrypt_passphrase_ref);
  } else if (get_string(c, kf->value, "stages.encrypt.key_file", &p->encrypt_key_file) == 0 &&
             !*p->encrypt_key_file) {
    cerr(c, kf->value, "stages.encrypt.key_file", "expected a file path, got ''");
  }
}

static void parse_stages(struct ctx *c, const struct ytree_node *root, struct pipeline *p) {
  const struct ytree_pair *sp = ytree_map_find(root, "stages");
  const struct ytree_node *st = sp ? sp->value : NULL;
  if (st && want_mapping(c, st, "stages", "a mapping with compress and encrypt") < 0)
    return;
  if (st && st->kind == YTREE_MAPPING) {
    check_keys(c, st, "stages", stages_keys);
    parse_compress(c, ytree_map_get(st, "compress"), p);
    parse_encrypt(c, ytree_map_get(st, "encrypt"), sp->key, p);
  } else {
    parse_compress(c, NULL, p);
    parse_encrypt(c, NULL, sp ? sp->key : root, p);
  }
}

/* ---- repository, limits, retention, hooks, notify ----------------------- */

static const char *const repository_keys[] = {"chunk_min", "chunk_avg", "chunk_max", "pack_size",
                                              NULL};
static const char *const limits_keys[] = {"memory", NULL};
static const char *const retention_keys[] = {
    "keep_last",   "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly",
    "keep_yearly", "keep_within", "keep_tags",  "apply",       NULL};
static const char *const hooks_keys[] = {"before", "after", NULL};
static const char *const notify_keys[] = {"webhook", "on", NULL};
static const char *const notify_events[] = {"success", "failure", "partial"};
static const char *const apply_values[] = {"after-run", "never"};

/* Looks up `key` in a block and hands back the value and its option path;
 * returns NULL (nothing to free) when the key is absent. */
static const struct ytree_node *field(const struct ytree_node *map, const char *block,
                                      const char *key, char **opt) {
  const struct ytree_node *v = ytree_map_get(map, key);
  *opt = v ? opt_key(block, key) : NULL;
  return v;
}

static void parse_repository(struct ctx *c, const struct ytree_node *n, struct pipeline *p) {
  if (want_mapping(c, n, "repository",
                   "a mapping with chunk_min, chunk_avg, chunk_max, pack_size") < 0 ||
      n->kind != YTREE_MAPPING)
    return;
  check_keys(c, n, "repository", repository_keys);
  uint32_t *chunk[3] = {&p->chunk_min, &p->chunk_avg, &p->chunk_max};
  for (size_t i = 0; i < 3; i++) {
    char *opt;
    const struct ytree_node *v = field(n, "repository", repository_keys[i], &opt);
    uint64_t sz;
    if (v && get_size(c, v, opt, 1, UINT32_MAX, &sz) == 0)
      *chunk[i] = (uint32_t)sz;
    free(opt);
  }
  char *opt;
  const struct ytree_node *v = field(n, "repository", "pack_size", &opt);
  if (v)
    get_size(c, v, opt, 1024 * 1024, 1024ull * 1024 * 1024, &p->pack_size);
  free(opt);
}

static void parse_limits(struct ctx *c, const struct ytree_node *n, struct pipeline *p) {
  if (want_mapping(c, n, "limits", "a mapping such as { memory: 256MiB }") < 0 ||
      n->kind != YTREE_MAPPING)
    return;
  check_keys(c, n, "limits", limits_keys);
  char *opt;
  const struct ytree_node *v = field(n, "limits", "memory", &opt);
  if (v)
    get_size(c, v, opt, 1, UINT64_MAX, &p->max_inflight);
  free(opt);
}

static void parse_retention(struct ctx *c, const struct ytree_node *n, struct pipeline *p) {
  struct pipeline_retention *r = &p->retention;
  if (want_mapping(c, n, "retention", "a mapping such as { keep_last: 7, keep_daily: 30 }") < 0)
    return;
  r->set = 1;
  if (n->kind != YTREE_MAPPING) {
    cerr(c, n, "retention",
         "no keep_* rule given; a policy that keeps nothing would forget every snapshot");
    return;
  }
  check_keys(c, n, "retention", retention_keys);
  int *keep[6] = {&r->keep_last,   &r->keep_hourly,  &r->keep_daily,
                  &r->keep_weekly, &r->keep_monthly, &r->keep_yearly};
  int rules = 0;
  for (size_t i = 0; i < 6; i++) {
    char *opt;
    const struct ytree_node *v = field(n, "retention", retention_keys[i], &opt);
    int64_t k;
    if (v && get_int(c, v, opt, 0, INT_MAX, "a non-negative integer", &k) == 0)
      *keep[i] = (int)k;
    rules += v != NULL;
    free(opt);
  }
  char *opt;
  const struct ytree_node *v = field(n, "retention", "keep_within", &opt);
  if (v)
    get_duration(c, v, opt, &r->keep_within_ms);
  rules += v != NULL;
  free(opt);
  v = field(n, "retention", "keep_tags", &opt);
  if (v)
    get_string_list(c, v, opt, 1, &r->keep_tags, &r->n_keep_tags);
  rules += v != NULL;
  free(opt);
  v = field(n, "retention", "apply", &opt);
  const char *apply;
  if (v && get_choice(c, v, opt, apply_values, 2, &apply) == 0 && strcmp(apply, "after-run") == 0)
    r->apply = xstrdup(apply);
  free(opt);
  if (!rules)
    cerr(c, n, "retention",
         "no keep_* rule given; a policy that keeps nothing would forget every snapshot");
}

static void parse_hooks(struct ctx *c, const struct ytree_node *n, struct pipeline *p) {
  if (want_mapping(c, n, "hooks", "a mapping such as { before: [cmd], after: [cmd] }") < 0 ||
      n->kind != YTREE_MAPPING)
    return;
  check_keys(c, n, "hooks", hooks_keys);
  char *opt;
  const struct ytree_node *v = field(n, "hooks", "before", &opt);
  if (v)
    get_string_list(c, v, opt, 1, &p->hooks_before, &p->n_hooks_before);
  free(opt);
  v = field(n, "hooks", "after", &opt);
  if (v)
    get_string_list(c, v, opt, 1, &p->hooks_after, &p->n_hooks_after);
  free(opt);
}

static void parse_notify_entry(struct ctx *c, const struct ytree_node *n, const char *opt,
                               struct pipeline_notify *nt) {
  struct got_buf g;
  if (n->kind != YTREE_MAPPING) {
    cerr(c, n, opt, "expected a mapping such as { webhook: https://..., on: [failure] }, got %s",
         got(n, &g));
    return;
  }
  check_keys(c, n, opt, notify_keys);
  char *o = opt_key(opt, "webhook");
  const struct ytree_node *w = ytree_map_get(n, "webhook");
  if (!w) {
    missing(c, n, o, "an http:// or https:// URL");
  } else if (get_string(c, w, o, &nt->webhook) == 0 && strncmp(nt->webhook, "http://", 7) != 0 &&
             strncmp(nt->webhook, "https://", 8) != 0) {
    cerr(c, w, o, "expected an http:// or https:// URL, got %s", got(w, &g));
  }
  free(o);

  const struct ytree_node *on = ytree_map_get(n, "on");
  if (!on) {
    nt->n_on = 3;
    nt->on = xcalloc(3, sizeof(char *));
    for (size_t i = 0; i < 3; i++)
      nt->on[i] = xstrdup(notify_events[i]);
    return;
  }
  o = opt_key(opt, "on");
  if (get_string_list(c, on, o, 1, &nt->on, &nt->n_on) == 0) {
    for (size_t i = 0; i < nt->n_on; i++) {
      const char *ev;
      const struct ytree_node *at = on->kind == YTREE_SEQUENCE ? on->items[i] : on;
      char *oi = on->kind == YTREE_SEQUENCE ? opt_index(o, i) : xstrdup(o);
      get_choice(c, at, oi, notify_events, 3, &ev);
      free(oi);
    }
  }
  free(o);
}

static void parse_notify(struct ctx *c, const struct ytree_node *n, struct pipeline *p) {
  struct got_buf g;
  if (n->kind != YTREE_SEQUENCE) {
    cerr(c, n, "notify",
         "expected a list such as [ { webhook: https://..., on: [failure] } ], got %s", got(n, &g));
    return;
  }
  p->notify = xcalloc(n->n_items, sizeof(*p->notify));
  p->n_notify = n->n_items;
  for (size_t i = 0; i < n->n_items; i++) {
    char *opt = opt_index("notify", i);
    parse_notify_entry(c, n->items[i], opt, &p->notify[i]);
    free(opt);
  }
}

/* ---- top level -------------------------------------------------------- */

static const char *const top_keys[] = {"version", "name",   "schedule",   "tags",   "sources",
                                       "stages",  "sinks",  "repository", "limits", "retention",
                                       "hooks",   "notify", NULL};

static void parse_top(struct ctx *c, const struct ytree_node *root, struct pipeline *p) {
  struct got_buf g;
  check_keys(c, root, "", top_keys);

  const struct ytree_node *v = ytree_map_get(root, "version");
  int64_t version;
  if (!v)
    missing(c, root, "version", "1");
  else if (get_int(c, v, "version", INT_MIN, INT_MAX, "an integer", &version) == 0) {
    if (version != 1)
      cerr(c, v, "version", "unsupported version %s (this engine reads version 1)", got(v, &g));
    else
      p->version = 1;
  }

  v = ytree_map_get(root, "name");
  if (!v)
    missing(c, root, "name", NAME_EXPECTED);
  else
    get_name(c, v, "name", &p->name);

  v = ytree_map_get(root, "schedule");
  if (v && get_string(c, v, "schedule", &p->schedule) == 0 && !*p->schedule)
    cerr(c, v, "schedule", "expected a cron expression such as \"0 3 * * *\", got ''");

  v = ytree_map_get(root, "tags");
  if (v)
    get_string_list(c, v, "tags", 1, &p->tags, &p->n_tags);

  parse_plugin_list(c, root, "sources", ENGINE_PLUGIN_SOURCE, &p->sources, &p->n_sources);
  parse_stages(c, root, p);
  parse_plugin_list(c, root, "sinks", ENGINE_PLUGIN_SINK, &p->sinks, &p->n_sinks);

  if ((v = ytree_map_get(root, "repository")))
    parse_repository(c, v, p);
  if ((v = ytree_map_get(root, "limits")))
    parse_limits(c, v, p);
  if ((v = ytree_map_get(root, "retention")))
    parse_retention(c, v, p);
  if ((v = ytree_map_get(root, "hooks")))
    parse_hooks(c, v, p);
  if ((v = ytree_map_get(root, "notify")))
    parse_notify(c, v, p);
}

int pipeline_load_string(const char *path, const char *text, size_t len, pipeline_lookup_fn lookup,
                         void *ud, struct pipeline **out, char **err) {
  *out = NULL;
  *err = NULL;
  struct ytree_node *root = NULL;
  if (ytree_parse(path, text, len, &root, err) < 0)
    return -1;
  if (!root || root->kind != YTREE_MAPPING || root->n_pairs == 0) {
    struct got_buf g;
    *err = xasprintf("%s:%d:%d: expected a mapping with version, name, sources, stages and sinks "
                     "at top level, got %s",
                     path, root ? root->line : 1, root ? root->col : 1,
                     root && root->kind == YTREE_MAPPING ? "an empty mapping" : got(root, &g));
    ytree_free(root);
    return -1;
  }

  struct ctx c = {.path = path, .lookup = lookup, .ud = ud};
  struct pipeline *p = xcalloc(1, sizeof(*p));
  p->path = xstrdup(path);
  parse_top(&c, root, p);
  ytree_free(root);

  if (c.n_errs) {
    *err = take_errors(&c);
    pipeline_free(p);
    return -1;
  }
  *out = p;
  return 0;
}

static const char *file_type_name(mode_t m) {
  return S_ISDIR(m)    ? "a directory"
         : S_ISFIFO(m) ? "a FIFO"
         : S_ISCHR(m)  ? "a character device"
         : S_ISBLK(m)  ? "a block device"
         : S_ISSOCK(m) ? "a socket"
                       : "not a regular file";
}

/* Read a whole pipeline file. Only regular files of at most
 * PIPELINE_MAX_FILE bytes: the open does not block (a FIFO would wait for a
 * writer) and the type is checked on the opened file, not on the name. */
static int read_pipeline_file(const char *path, char **text_out, size_t *len_out, char **err) {
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    *err = xasprintf("unable to open '%s': %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    *err = xasprintf("unable to stat '%s': %s", path, strerror(errno));
    close(fd);
    return -1;
  }
  if (!S_ISREG(st.st_mode)) {
    *err = xasprintf("unable to read '%s': it is %s; a pipeline must be a regular file", path,
                     file_type_name(st.st_mode));
    close(fd);
    return -1;
  }
  if (st.st_size > (off_t)PIPELINE_MAX_FILE) {
    *err = xasprintf("unable to read '%s': it is %jd bytes; a pipeline file may be at most %u "
                     "bytes (%u MiB)",
                     path, (intmax_t)st.st_size, PIPELINE_MAX_FILE, PIPELINE_MAX_FILE >> 20);
    close(fd);
    return -1;
  }
  /* a regular file never blocks, but reads are plain from here on */
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0)
    (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  /* read to EOF rather than trusting st_size (the file may change under
   * us), never past the limit */
  size_t cap = (size_t)st.st_size + 1, len = 0;
  char *text = xmalloc(cap);
  for (;;) {
    if (len == cap) {
      if (cap > PIPELINE_MAX_FILE) {
        *err = xasprintf("unable to read '%s': it grew past %u bytes (%u MiB), the limit for a "
                         "pipeline file",
                         path, PIPELINE_MAX_FILE, PIPELINE_MAX_FILE >> 20);
        free(text);
        close(fd);
        return -1;
      }
      cap = cap * 2 > PIPELINE_MAX_FILE + 1 ? PIPELINE_MAX_FILE + 1 : cap * 2;
      text = xrealloc(text, cap);
    }
    ssize_t n = read(fd, text + len, cap - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      *err = xasprintf("unable to read '%s': %s", path, strerror(errno));
      free(text);
      close(fd);
      return -1;
    }
    if (n == 0)
      break;
    len += (size_t)n;
  }
  close(fd);
  *text_out = text;
  *len_out = len;
  return 0;
}

int pipeline_load(const char *path, pipeline_lookup_fn lookup, void *ud, struct pipeline **out,
                  char **err) {
  *out = NULL;
  *err = NULL;
  char *text;
  size_t len;
  if (read_pipeline_file(path, &text, &len, err) < 0)
    return -1;
  int rc = pipeline_load_string(path, text, len, lookup, ud, out, err);
  free(text);
  return rc;
}

static void free_plugin_cfgs(struct pipeline_plugin_cfg *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(v[i].name);
    free(v[i].type);
    json_decref(v[i].with);
  }
  free(v);
}

void pipeline_free(struct pipeline *p) {
  if (!p)
    return;
  free(p->path);
  free(p->name);
  free(p->schedule);
  free_strv(p->tags, p->n_tags);
  free_plugin_cfgs(p->sources, p->n_sources);
  free_plugin_cfgs(p->sinks, p->n_sinks);
  free(p->compress_algorithm);
  free(p->encrypt_algorithm);
  free(p->encrypt_passphrase_ref);
  free(p->encrypt_key_file);
  free_strv(p->retention.keep_tags, p->retention.n_keep_tags);
  free(p->retention.apply);
  free_strv(p->hooks_before, p->n_hooks_before);
  free_strv(p->hooks_after, p->n_hooks_after);
  for (size_t i = 0; i < p->n_notify; i++) {
    free(p->notify[i].webhook);
    free_strv(p->notify[i].on, p->notify[i].n_on);
  }
  free(p->notify);
  free(p);
}

/* ---- value parsers ---------------------------------------------------- */

static int parse_u64_digits(const char **s, uint64_t *out) {
  const char *q = *s;
  uint64_t v = 0;
  if (!isdigit((unsigned char)*q))
    return -1;
  for (; isdigit((unsigned char)*q); q++)
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*q - '0'), &v))
      return -1;
  *s = q;
  *out = v;
  return 0;
}

int config_parse_size(const char *s, uint64_t *bytes) {
  if (!s)
    return -1;
  const char *q = s;
  uint64_t whole;
  if (parse_u64_digits(&q, &whole) < 0)
    return -1;
  /* "1.5GiB": the fraction is kept exact (up to 18 digits) and the result
   * must be a whole number of bytes */
  uint64_t frac = 0, scale = 1;
  if (*q == '.') {
    q++;
    if (!isdigit((unsigned char)*q))
      return -1;
    for (int digits = 0; isdigit((unsigned char)*q); q++, digits++) {
      if (digits == 18)
        return -1;
      frac = frac * 10 + (uint64_t)(*q - '0');
      scale *= 10;
    }
  }
  int spaced = 0;
  while (*q == ' ') {
    q++;
    spaced = 1;
  }
  uint64_t mult = 1;
  static const char prefixes[] = "kmgtpe";
  if (*q == '\0') {
    if (spaced)
      return -1;
  } else if ((q[0] == 'b' || q[0] == 'B') && q[1] == '\0') {
    mult = 1;
  } else {
    const char *pfx = strchr(prefixes, tolower((unsigned char)*q));
    if (!pfx)
      return -1;
    int exp = (int)(pfx - prefixes) + 1;
    uint64_t base;
    q++;
    if (*q == '\0')
      base = 1024; /* bare K/M/G: what operators mean by "1G" */
    else if ((q[0] == 'b' || q[0] == 'B') && q[1] == '\0')
      base = 1000;
    else if ((q[0] == 'i' || q[0] == 'I') && (q[1] == 'b' || q[1] == 'B') && q[2] == '\0')
      base = 1024;
    else
      return -1;
    for (int i = 0; i < exp; i++)
      mult *= base; /* 1024^6 still fits */
  }
  uint64_t v;
  if (__builtin_mul_overflow(whole, mult, &v))
    return -1;
  if (frac) {
    unsigned __int128 f = (unsigned __int128)frac * mult;
    if (f % scale != 0)
      return -1;
    if (__builtin_add_overflow(v, (uint64_t)(f / scale), &v))
      return -1;
  }
  *bytes = v;
  return 0;
}

int config_parse_duration(const char *s, int64_t *ms) {
  if (!s || !*s)
    return -1;
  static const struct {
    const char *unit;
    int64_t ms;
  } units[] = {
      {"ms", 1},       {"s", 1000},      {"m", 60000},         {"h", 3600000},
      {"d", 86400000}, {"w", 604800000}, {"y", 31536000000LL},
  };
  const char *q = s;
  uint64_t n;
  int64_t total = 0;
  if (parse_u64_digits(&q, &n) < 0)
    return -1;
  if (*q == '\0') { /* bare number: seconds */
    if (n > (uint64_t)(INT64_MAX / 1000))
      return -1;
    *ms = (int64_t)n * 1000;
    return 0;
  }
  for (;;) {
    size_t i, ulen = 0;
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
      ulen = strlen(units[i].unit);
      if (strncmp(q, units[i].unit, ulen) == 0 && !isalpha((unsigned char)q[ulen]))
        break;
    }
    if (i == sizeof(units) / sizeof(units[0]))
      return -1;
    int64_t part;
    if (n > (uint64_t)INT64_MAX || __builtin_mul_overflow((int64_t)n, units[i].ms, &part) ||
        __builtin_add_overflow(total, part, &total))
      return -1;
    q += ulen;
    if (*q == '\0')
      break;
    if (parse_u64_digits(&q, &n) < 0)
      return -1;
  }
  *ms = total;
  return 0;
}

int config_parse_bool(const char *s, int *b) {
  static const char *const yes[] = {"true", "yes", "on"};
  static const char *const no[] = {"false", "no", "off"};
  if (!s)
    return -1;
  for (size_t i = 0; i < 3; i++) {
    if (strcasecmp(s, yes[i]) == 0) {
      *b = 1;
      return 0;
    }
    if (strcasecmp(s, no[i]) == 0) {
      *b = 0;
      return 0;
    }
  }
  return -1;
}
