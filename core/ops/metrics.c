/* Prometheus text format (metrics.h). */
#include "ops/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/fileio.h"
#include "util/log.h"

struct sample {
  char *name;
  char *labels; /* "" or {a="x",b="y"} */
  double value;
};

struct family {
  char *name, *type, *help;
};

struct metrics {
  struct family *fam;
  size_t n_fam, cap_fam;
  struct sample *s;
  size_t n_s, cap_s;
};

struct metrics *metrics_new(void) {
  return xcalloc(1, sizeof(struct metrics));
}

void metrics_free(struct metrics *m) {
  if (!m)
    return;
  for (size_t i = 0; i < m->n_fam; i++) {
    free(m->fam[i].name);
    free(m->fam[i].type);
    free(m->fam[i].help);
  }
  for (size_t i = 0; i < m->n_s; i++) {
    free(m->s[i].name);
    free(m->s[i].labels);
  }
  free(m->fam);
  free(m->s);
  free(m);
}

static const struct family *find_family(const struct metrics *m, const char *name) {
  for (size_t i = 0; i < m->n_fam; i++)
    if (strcmp(m->fam[i].name, name) == 0)
      return &m->fam[i];
  return NULL;
}

void metrics_family(struct metrics *m, const char *name, const char *type, const char *help) {
  if (find_family(m, name))
    return;
  if (m->n_fam == m->cap_fam) {
    m->cap_fam = m->cap_fam ? 2 * m->cap_fam : 16;
    m->fam = xrealloc(m->fam, m->cap_fam * sizeof(*m->fam));
  }
  m->fam[m->n_fam++] = (struct family){xstrdup(name), xstrdup(type), xstrdup(help)};
}

/* {k="v",...} with \ " and newlines escaped, from NULL-terminated pairs. */
static char *render_labels(va_list ap) {
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  if (!f)
    die_oom();
  int n = 0;
  for (;;) {
    const char *k = va_arg(ap, const char *);
    if (!k)
      break;
    const char *v = va_arg(ap, const char *);
    fputs(n++ ? "," : "{", f);
    fprintf(f, "%s=\"", k);
    for (const char *p = v ? v : ""; *p; p++) {
      if (*p == '\\' || *p == '"')
        fprintf(f, "\\%c", *p);
      else if (*p == '\n')
        fputs("\\n", f);
      else
        fputc(*p, f);
    }
    fputc('"', f);
  }
  if (n)
    fputc('}', f);
  if (fclose(f) != 0)
    die_oom();
  return out;
}

static struct sample *find_sample(const struct metrics *m, const char *name, const char *labels) {
  for (size_t i = 0; i < m->n_s; i++)
    if (strcmp(m->s[i].name, name) == 0 && strcmp(m->s[i].labels, labels) == 0)
      return &m->s[i];
  return NULL;
}

static void put_sample(struct metrics *m, const char *name, char *labels, double value) {
  struct sample *s = find_sample(m, name, labels);
  if (s) {
    s->value = value;
    free(labels);
    return;
  }
  if (m->n_s == m->cap_s) {
    m->cap_s = m->cap_s ? 2 * m->cap_s : 64;
    m->s = xrealloc(m->s, m->cap_s * sizeof(*m->s));
  }
  m->s[m->n_s++] = (struct sample){xstrdup(name), labels, value};
}

void metrics_set(struct metrics *m, const char *name, double value, ...) {
  if (!find_family(m, name)) {
    log_debug("metrics: no family '%s' declared; sample dropped", name);
    return;
  }
  va_list ap;
  va_start(ap, value);
  char *labels = render_labels(ap);
  va_end(ap);
  put_sample(m, name, labels, value);
}

double metrics_get(const struct metrics *m, const char *name, int *found, ...) {
  va_list ap;
  va_start(ap, found);
  char *labels = render_labels(ap);
  va_end(ap);
  const struct sample *s = m ? find_sample(m, name, labels) : NULL;
  free(labels);
  *found = s != NULL;
  return s ? s->value : 0;
}

static void print_value(FILE *f, double v) {
  if (isnan(v))
    fputs("NaN", f);
  else if (isinf(v))
    fputs(v > 0 ? "+Inf" : "-Inf", f);
  else if (v == floor(v) && fabs(v) < 9007199254740992.0)
    fprintf(f, "%.0f", v);
  else
    fprintf(f, "%.17g", v);
}

char *metrics_text(const struct metrics *m, size_t *len) {
  char *out = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&out, &n);
  if (!f)
    die_oom();
  for (size_t i = 0; i < m->n_fam; i++) {
    const struct family *fm = &m->fam[i];
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", fm->name, fm->help, fm->name, fm->type);
    for (size_t k = 0; k < m->n_s; k++) {
      if (strcmp(m->s[k].name, fm->name) != 0)
        continue;
      fprintf(f, "%s%s ", m->s[k].name, m->s[k].labels);
      print_value(f, m->s[k].value);
      fputc('\n', f);
    }
  }
  if (fclose(f) != 0)
    die_oom();
  if (len)
    *len = n;
  return out;
}

int metrics_write_file(const struct metrics *m, const char *path, char **err) {
  size_t len;
  char *text = metrics_text(m, &len);
  /* 0644: node_exporter usually runs as another user */
  int rc = file_write_atomic(path, text, len, 0644, err);
  free(text);
  return rc;
}

struct metrics *metrics_parse(const char *text, size_t len) {
  struct metrics *m = metrics_new();
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    size_t ll = (size_t)(le - p);
    if (ll && p[0] != '#') {
      char *line = xasprintf("%.*s", (int)ll, p);
      /* name, then labels up to the closing brace (values may hold
       * spaces), then the value */
      char *brace = strchr(line, '{');
      char *space = strchr(line, ' ');
      char *vstart = NULL;
      char *name = NULL, *labels = NULL;
      if (brace && (!space || brace < space)) {
        char *close = strstr(brace, "} ");
        if (close) {
          name = xasprintf("%.*s", (int)(brace - line), line);
          labels = xasprintf("%.*s", (int)(close + 1 - brace), brace);
          vstart = close + 2;
        }
      } else if (space) {
        name = xasprintf("%.*s", (int)(space - line), line);
        labels = xstrdup("");
        vstart = space + 1;
      }
      char *vend = NULL;
      double v = vstart ? strtod(vstart, &vend) : 0;
      if (name && vend && vend != vstart)
        put_sample(m, name, labels, v);
      else
        free(labels);
      free(name);
      free(line);
    }
    p = nl ? nl + 1 : end;
  }
  return m;
}

struct metrics *metrics_read_file(const char *path) {
  char *buf = NULL, *err = NULL;
  size_t len = 0;
  if (file_read_all(path, 64u << 20, &buf, &len, &err) != 0) {
    free(err);
    return NULL;
  }
  struct metrics *m = metrics_parse(buf, len);
  free(buf);
  return m;
}
