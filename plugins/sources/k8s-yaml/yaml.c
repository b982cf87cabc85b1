/* YAML <-> JSON with libyaml.
 *
 * Emitting: every object becomes block-style YAML through libyaml's event
 * emitter (never pasted together as text), keys sorted byte-wise (the order
 * kubectl prints them in), UTF-8 unescaped, no line folding. Strings that a
 * YAML 1.1 reader (kubectl's go-yaml, PyYAML) would read as something else
 * are double-quoted ("true", "yes", "8080", "1.5", "2024-01-01", "null", "~",
 * ""); strings with line breaks are literal blocks when libyaml can write
 * them so; libyaml itself quotes what cannot be plain ("a: b", "- x", " x").
 *
 * Parsing: one document to JSON, for restoring what the emitter wrote.
 * Quoted and block scalars are strings; plain scalars resolve as YAML 1.1
 * does for null, booleans, integers and floats. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "k8s.h"

/* ---- emitting ------------------------------------------------------------------ */

static int write_cb(void *ud, unsigned char *buf, size_t n) {
  struct k8s_buf *b = ud;
  k8s_buf_add(b, buf, n);
  return !b->oom;
}

static int is_word(const char *s, size_t n, const char *const *words) {
  for (size_t i = 0; words[i]; i++)
    if (strlen(words[i]) == n && memcmp(words[i], s, n) == 0)
      return 1;
  return 0;
}

/* Would a YAML 1.1 or 1.2 reader take this plain scalar for a non-string
 * (or refuse it)? Then it is written double-quoted. */
static int ambiguous(const char *s, size_t n) {
  static const char *const words[] = {
      "y",    "Y",     "yes",   "Yes",   "YES",   "n",     "N",     "no",   "No",   "NO",   "true",
      "True", "TRUE",  "false", "False", "FALSE", "on",    "On",    "ON",   "off",  "Off",  "OFF",
      "null", "Null",  "NULL",  "~",     "=",     "<<",    ".inf",  ".Inf", ".INF", ".nan", ".NaN",
      ".NAN", "-.inf", "-.Inf", "-.INF", "+.inf", "+.Inf", "+.INF", NULL};
  if (n == 0)
    return 1;
  if (is_word(s, n, words))
    return 1;
  unsigned char c0 = (unsigned char)s[0];
  int numeric_start = c0 >= '0' && c0 <= '9';
  if ((c0 == '-' || c0 == '+' || c0 == '.') && n > 1) {
    unsigned char c1 = (unsigned char)s[1];
    numeric_start = (c1 >= '0' && c1 <= '9') || c1 == '.';
  }
  if (!numeric_start)
    return 0;
  /* integers and floats of YAML 1.1 and 1.2 (decimal, octal, hex, binary,
   * sexagesimal, exponents, underscores) use only these characters; "256Mi"
   * or "25%" stay plain, as kubectl writes them */
  static const char numchars[] = "0123456789+-.:_eExXoObBabcdfABCDF";
  if (strspn(s, numchars) >= n)
    return 1;
  /* timestamps: 2024-01-01, 2024-01-01T10:00:00Z */
  if (n >= 6 && strspn(s, "0123456789") == 4 && s[4] == '-')
    return 1;
  return 0;
}

static int has_newline(const char *s, size_t n) {
  return memchr(s, '\n', n) != NULL;
}

static int emit_scalar(yaml_emitter_t *em, const char *s, size_t n, int is_string, int key) {
  yaml_event_t ev;
  yaml_scalar_style_t style = YAML_PLAIN_SCALAR_STYLE;
  if (is_string) {
    if (ambiguous(s, n))
      style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    else if (!key && has_newline(s, n))
      style = YAML_LITERAL_SCALAR_STYLE;
  }
  if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)n, 1, 1, style))
    return 0;
  return yaml_emitter_emit(em, &ev);
}

static int cmp_keys(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int emit_value(yaml_emitter_t *em, json_t *v, int depth) {
  yaml_event_t ev;
  char num[64];
  if (depth > 200)
    return 0;
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    size_t n = json_object_size(v), i = 0;
    const char **keys = malloc((n ? n : 1) * sizeof(*keys));
    if (!keys)
      return 0;
    const char *k;
    json_t *val;
    json_object_foreach(v, k, val) keys[i++] = k;
    qsort(keys, n, sizeof(*keys), cmp_keys);
    int ok = yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) &&
             yaml_emitter_emit(em, &ev);
    for (i = 0; ok && i < n; i++)
      ok = emit_scalar(em, keys[i], strlen(keys[i]), 1, 1) &&
           emit_value(em, json_object_get(v, keys[i]), depth + 1);
    free(keys);
    return ok && yaml_mapping_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev);
  }
  case JSON_ARRAY: {
    int ok = yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE) &&
             yaml_emitter_emit(em, &ev);
    for (size_t i = 0; ok && i < json_array_size(v); i++)
      ok = emit_value(em, json_array_get(v, i), depth + 1);
    return ok && yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev);
  }
  case JSON_STRING:
    return emit_scalar(em, json_string_value(v), json_string_length(v), 1, 0);
  case JSON_INTEGER:
    snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return emit_scalar(em, num, strlen(num), 0, 0);
  case JSON_REAL: {
    double d = json_real_value(v);
    snprintf(num, sizeof(num), "%.17g", d);
    if (!strpbrk(num, ".eEn")) /* keep it a float: 2 -> 2.0 */
      snprintf(num, sizeof(num), "%.1f", d);
    return emit_scalar(em, num, strlen(num), 0, 0);
  }
  case JSON_TRUE:
    return emit_scalar(em, "true", 4, 0, 0);
  case JSON_FALSE:
    return emit_scalar(em, "false", 5, 0, 0);
  case JSON_NULL:
  default:
    return emit_scalar(em, "null", 4, 0, 0);
  }
}

int k8s_yaml_emit(json_t *v, int explicit_start, struct k8s_buf *out, char *err, size_t errlen) {
  yaml_emitter_t em;
  yaml_event_t ev;
  if (!yaml_emitter_initialize(&em)) {
    snprintf(err, errlen, "out of memory");
    return ENGINE_ERROR;
  }
  yaml_emitter_set_output(&em, write_cb, out);
  yaml_emitter_set_unicode(&em, 1);
  yaml_emitter_set_width(&em, -1);
  yaml_emitter_set_indent(&em, 2);
  int ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) &&
           yaml_emitter_emit(&em, &ev) &&
           yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, !explicit_start) &&
           yaml_emitter_emit(&em, &ev) && emit_value(&em, v, 0) &&
           yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&em, &ev) &&
           yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&em, &ev) &&
           yaml_emitter_flush(&em);
  if (!ok || out->oom) {
    snprintf(err, errlen, "unable to write YAML: %s",
             out->oom ? "out of memory" : (em.problem ? em.problem : "nesting too deep"));
    yaml_emitter_delete(&em);
    return ENGINE_ERROR;
  }
  yaml_emitter_delete(&em);
  return ENGINE_OK;
}

/* ---- parsing ------------------------------------------------------------------- */

static int match_int(const char *s) {
  const char *p = s;
  if (*p == '-' || *p == '+')
    p++;
  if (!*p)
    return 0;
  for (; *p; p++)
    if (*p < '0' || *p > '9')
      return 0;
  return 1;
}

static int match_float(const char *s) {
  const char *p = s;
  int digits = 0;
  if (*p == '-' || *p == '+')
    p++;
  while (*p >= '0' && *p <= '9')
    p++, digits++;
  if (*p == '.') {
    p++;
    while (*p >= '0' && *p <= '9')
      p++, digits++;
  }
  if (!digits)
    return 0;
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '-' || *p == '+')
      p++;
    if (*p < '0' || *p > '9')
      return 0;
    while (*p >= '0' && *p <= '9')
      p++;
  }
  return *p == '\0';
}

static json_t *plain_scalar(const char *s, size_t n) {
  static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
  static const char *const trues[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
                                      "on",   "On",   "ON",   "y",   "Y",   NULL};
  static const char *const falses[] = {"false", "False", "FALSE", "no", "No", "NO",
                                       "off",   "Off",   "OFF",   "n",  "N",  NULL};
  if (is_word(s, n, nulls))
    return json_null();
  if (is_word(s, n, trues))
    return json_true();
  if (is_word(s, n, falses))
    return json_false();
  if (n < 40 && !memchr(s, '\0', n)) {
    char tmp[48];
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (match_int(tmp)) {
      errno = 0;
      long long v = strtoll(tmp, NULL, 10);
      if (errno == 0)
        return json_integer(v);
    }
    if (match_float(tmp)) {
      double d = strtod(tmp, NULL);
      if (isfinite(d))
        return json_real(d);
    }
  }
  return json_stringn(s, n);
}

static json_t *convert(yaml_document_t *doc, yaml_node_t *node, int depth, char *err,
                       size_t errlen) {
  if (!node || depth > 200) {
    snprintf(err, errlen, "the document is nested too deeply");
    return NULL;
  }
  switch (node->type) {
  case YAML_SCALAR_NODE: {
    const char *s = (const char *)node->data.scalar.value;
    size_t n = node->data.scalar.length;
    json_t *v = node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? plain_scalar(s, n)
                                                                   : json_stringn(s, n);
    if (!v)
      snprintf(err, errlen, "line %zu: a scalar is not valid UTF-8",
               (size_t)node->start_mark.line + 1);
    return v;
  }
  case YAML_SEQUENCE_NODE: {
    json_t *a = json_array();
    for (yaml_node_item_t *it = node->data.sequence.items.start;
         a && it < node->data.sequence.items.top; it++) {
      json_t *e = convert(doc, yaml_document_get_node(doc, *it), depth + 1, err, errlen);
      if (!e || json_array_append_new(a, e) != 0) {
        json_decref(a);
        return NULL;
      }
    }
    return a;
  }
  case YAML_MAPPING_NODE: {
    json_t *o = json_object();
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start;
         o && p < node->data.mapping.pairs.top; p++) {
      yaml_node_t *k = yaml_document_get_node(doc, p->key);
      if (!k || k->type != YAML_SCALAR_NODE) {
        snprintf(err, errlen, "line %zu: a mapping key is not a scalar",
                 k ? (size_t)k->start_mark.line + 1 : 0);
        json_decref(o);
        return NULL;
      }
      char *key = strndup((const char *)k->data.scalar.value, k->data.scalar.length);
      json_t *e =
          key ? convert(doc, yaml_document_get_node(doc, p->value), depth + 1, err, errlen) : NULL;
      if (!e || json_object_set_new(o, key, e) != 0) {
        if (e)
          snprintf(err, errlen, "line %zu: a key is not valid UTF-8",
                   (size_t)k->start_mark.line + 1);
        free(key);
        json_decref(o);
        return NULL;
      }
      free(key);
    }
    return o;
  }
  default:
    snprintf(err, errlen, "an empty document");
    return NULL;
  }
}

json_t *k8s_yaml_parse(const char *text, size_t len, char *err, size_t errlen) {
  yaml_parser_t p;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&p)) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
  if (!yaml_parser_load(&p, &doc)) {
    snprintf(err, errlen, "line %zu column %zu: %s", (size_t)p.problem_mark.line + 1,
             (size_t)p.problem_mark.column + 1, p.problem ? p.problem : "invalid YAML");
    yaml_parser_delete(&p);
    return NULL;
  }
  json_t *v = NULL;
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root)
    snprintf(err, errlen, "the document is empty");
  else
    v = convert(&doc, root, 0, err, errlen);
  yaml_document_delete(&doc);
  yaml_parser_delete(&p);
  return v;
}
