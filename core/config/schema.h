/* The schema engine of the configuration: checks the values of a YAML tree
 * (config/yaml_tree.h) against the types they must have, and collects every
 * problem as "file:line:col: option: message", in file order, so an operator
 * fixing a file gets the whole list at once. It knows strings, names,
 * integers, booleans, sizes, durations, secret references (whose values are
 * never quoted back), lists and fixed choices (with "did you mean"), blocks
 * of such fields declared in a table (struct cfg_field), and a plugin's
 * option schema (struct engine_option). config/pipeline.c lays the
 * pipeline's own keys out on top of it. */
#ifndef CORE_CONFIG_SCHEMA_H
#define CORE_CONFIG_SCHEMA_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config/values.h"
#include "config/yaml_tree.h"
#include "engine/plugin.h"

#define CFG_NAME_EXPECTED "a name made of letters, digits, '.', '_' and '-'"
#define CFG_BOOL_EXPECTED "a boolean (true/false, yes/no, on/off)"
#define CFG_SIZE_EXPECTED "a size such as 16MiB"
#define CFG_DURATION_EXPECTED "a duration such as 30s, 5m or 1h30m"
#define CFG_SECRET_EXPECTED "a secret reference env:NAME or file:/path"

/* ---- the problems found ---------------------------------------------------- */

struct cfg_error;

struct cfg {
  const char *path; /* the file, for messages */
  struct cfg_error *errs;
  size_t n_errs;
};

/* Records "path:line:col: opt: message" at node `at` (NULL: 1:1); opt may
 * be NULL or "" (no option part). */
void cfg_error(struct cfg *c, const struct ytree_node *at, const char *opt, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* "required but not given (expected EXPECTED)" */
void cfg_missing(struct cfg *c, const struct ytree_node *at, const char *opt, const char *expected);
/* Every problem in file order, one per line (malloc'd); empties the list. */
char *cfg_take_errors(struct cfg *c);
void cfg_drop_errors(struct cfg *c);

/* ---- helpers for messages ---------------------------------------------------- */

char *cfg_opt_key(const char *base, const char *key); /* "base.key" (or "key"), malloc'd */
char *cfg_opt_index(const char *base, size_t i);      /* "base[i]", malloc'd */

/* What was found, for "expected X, got Y": a scalar quoted back (shortened,
 * control characters masked), anything else named ("a sequence"). */
struct cfg_got {
  char s[72];
};
const char *cfg_got(const struct ytree_node *n, struct cfg_got *b);

/* The candidate closest to word within edit distance 2 (ignoring case), or NULL. */
const char *cfg_closest(const char *word, const char *const *cands, size_t n);
/* "; did you mean 'x'?" or "" (malloc'd) */
char *cfg_suggestion(const char *word, const char *const *cands, size_t n);
char *cfg_join(const char *const *items, size_t n, const char *sep); /* malloc'd */

/* ---- checks ---------------------------------------------------------------- */

/* Reports every key of `map` that is not one of valid[0..n-1], with a
 * suggestion and the list; opt "" is the top level. In a block that holds
 * secrets only the part of a key before the first ':', '=' or blank is
 * quoted back (`passphrase:hunter2` arrives as one key). */
void cfg_check_keys(struct cfg *c, const struct ytree_node *map, const char *opt,
                    const char *const *valid, size_t n, int secret_block);

/* Each returns 0, or reports and returns -1. */
/* A mapping, or null (an empty block: `with:`). */
int cfg_want_mapping(struct cfg *c, const struct ytree_node *n, const char *opt,
                     const char *expected);
/* A scalar without NUL characters. */
int cfg_want_scalar(struct cfg *c, const struct ytree_node *n, const char *opt,
                    const char *expected);
int cfg_get_string(struct cfg *c, const struct ytree_node *n, const char *opt, char **out);
int cfg_get_name(struct cfg *c, const struct ytree_node *n, const char *opt, char **out);
int cfg_get_int(struct cfg *c, const struct ytree_node *n, const char *opt, int64_t min,
                int64_t max, const char *expected, int64_t *out);
int cfg_get_bool(struct cfg *c, const struct ytree_node *n, const char *opt, int *out);
int cfg_get_size(struct cfg *c, const struct ytree_node *n, const char *opt, uint64_t min,
                 uint64_t max, uint64_t *out);
int cfg_get_duration(struct cfg *c, const struct ytree_node *n, const char *opt, int64_t *out);
/* env:NAME or file:/path; what was found is never quoted back. */
int cfg_get_secret(struct cfg *c, const struct ytree_node *n, const char *opt, char **out);
/* A sequence of strings, or one string standing for a one-item list. */
int cfg_get_string_list(struct cfg *c, const struct ytree_node *n, const char *opt, int nonempty,
                        char ***out, size_t *n_out);
/* One of choices[0..n-1]; *out points into choices. */
int cfg_get_choice(struct cfg *c, const struct ytree_node *n, const char *opt,
                   const char *const *choices, size_t n_choices, const char **out);
void cfg_free_strv(char **v, size_t n);

/* ---- blocks declared in a table ------------------------------------------ */

enum cfg_type {
  CFG_INT,      /* int, from imin to imax; `expected` says what is allowed */
  CFG_SIZE32,   /* uint32_t, from umin to umax bytes */
  CFG_SIZE64,   /* uint64_t, from umin to umax bytes */
  CFG_DURATION, /* int64_t milliseconds */
  CFG_STRINGS,  /* char ** and a size_t count (at count_offset); non-empty strings */
  CFG_CHOICE    /* char *, one of choices[0..n_choices-1] */
};

struct cfg_field {
  const char *key;
  enum cfg_type type;
  size_t offset;       /* of the value in the struct the block fills */
  size_t count_offset; /* CFG_STRINGS */
  int64_t imin, imax;
  uint64_t umin, umax;
  const char *expected; /* CFG_INT */
  const char *const *choices;
  size_t n_choices;
};

/* Checks a mapping's keys against fields[0..n-1] and stores each value
 * given into `base` + the field's offset. Returns how many were given. */
size_t cfg_get_fields(struct cfg *c, const struct ytree_node *map, const char *block,
                      const struct cfg_field *fields, size_t n, void *base);

/* ---- plugin options -------------------------------------------------------- */

/* Checks a `with:` block (NULL or null: no options given) against the
 * plugin's option schema and returns the normalised object: every option
 * given or defaulted, STRING/ENUM/SECRET as strings, INT/SIZE/DURATION as
 * integers (bytes, ms), BOOL as true/false, STRING_LIST as an array of
 * strings. `at` positions messages about missing options; opt_with is the
 * block's option path ("sources[0].with"). */
json_t *cfg_check_plugin_options(struct cfg *c, const struct engine_plugin *pl,
                                 const struct ytree_node *with, const struct ytree_node *at,
                                 const char *opt_with);
/* A tree as written (scalars as strings, null as null): `with:` when no
 * plugin schema is at hand. */
json_t *cfg_natural_json(const struct ytree_node *n);

#endif
