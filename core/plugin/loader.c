/* Plugin loader: builds the search path, dlopens every `*.so` found on it,
 * checks each descriptor against the ABI rules and keeps a registry the rest
 * of the engine resolves `type:` names through. */
#include "plugin/loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"

#ifndef ENGINE_BUILD_PLUGIN_DIR
#error "ENGINE_BUILD_PLUGIN_DIR must be defined by the build"
#endif
#ifndef ENGINE_BUILD_DIR
#error "ENGINE_BUILD_DIR must be defined by the build"
#endif
#ifndef ENGINE_INSTALL_PLUGIN_DIR
#error "ENGINE_INSTALL_PLUGIN_DIR must be defined by the build"
#endif

/* Sizes of the structures as ABI 1.0 defined them. Later minors append
 * fields, so these stay the minimum a plugin of any 1.x minor must provide
 * even after sizeof() of the current headers grows. */
#define PLUGIN_V1_0_SIZE ENGINE_FIELD_END(struct engine_plugin, crypto)
#define SOURCE_OPS_V1_0_SIZE ENGINE_FIELD_END(struct engine_source_ops, restore_end)
#define SINK_OPS_V1_0_SIZE ENGINE_FIELD_END(struct engine_sink_ops, describe)
#define CRYPTO_OPS_V1_0_SIZE ENGINE_FIELD_END(struct engine_crypto_ops, open)
/* The prefix every major version keeps, so a refusal can still name the
 * plugin (documented in docs/PLUGINS.md). */
#define PLUGIN_FROZEN_PREFIX_SIZE ENGINE_FIELD_END(struct engine_plugin, name)

#define MAX_PLUGIN_NAME 64
#define MAX_OPTIONS 256
#define MAX_AEAD_PARAM 32

const char *plugin_kind_name(enum engine_plugin_kind k) {
  switch (k) {
  case ENGINE_PLUGIN_SOURCE:
    return "source";
  case ENGINE_PLUGIN_SINK:
    return "sink";
  case ENGINE_PLUGIN_CRYPTO:
    return "crypto";
  }
  return "unknown";
}

static int kind_valid(enum engine_plugin_kind k) {
  return k == ENGINE_PLUGIN_SOURCE || k == ENGINE_PLUGIN_SINK || k == ENGINE_PLUGIN_CRYPTO;
}

static int opt_type_valid(enum engine_opt_type t) {
  return t >= ENGINE_OPT_STRING && t <= ENGINE_OPT_ENUM;
}

static int name_valid(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > MAX_PLUGIN_NAME)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return 0;
  }
  return 1;
}

/* "plugin '/x/y.so'" or "plugin '<in-memory>'" plus, when the descriptor can
 * name itself, " (name 'foo')". */
static char *describe_plugin(const char *path, const struct engine_plugin *p) {
  const char *shown = path ? path : "<in-memory>";
  if (p && p->struct_size >= PLUGIN_FROZEN_PREFIX_SIZE && p->name && p->name[0])
    return xasprintf("plugin '%s' (name '%s')", shown, p->name);
  return xasprintf("plugin '%s'", shown);
}

static int refuse(char **err, const char *path, const struct engine_plugin *p, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(char **err, const char *path, const struct engine_plugin *p, const char *fmt,
                  ...) {
  char *who = describe_plugin(path, p);
  char *why = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&why, fmt, ap) < 0)
    why = NULL;
  va_end(ap);
  if (err)
    *err = xasprintf("%s %s", who,
                     why ? why : "was refused (out of memory while formatting the reason)");
  free(who);
  free(why);
  return -1;
}

static int check_options(const char *path, const struct engine_plugin *p, char **err) {
  if (!p->options)
    return 0;
  for (size_t i = 0;; i++) {
    const struct engine_option *o = &p->options[i];
    if (i >= MAX_OPTIONS)
      return refuse(err, path, p,
                    "declares more than %d options; is its options array terminated by an entry "
                    "whose name is NULL?",
                    MAX_OPTIONS);
    if (!o->name)
      return 0;
    if (!o->name[0])
      return refuse(err, path, p, "has an option (index %zu) with an empty name", i);
    if (!opt_type_valid(o->type))
      return refuse(err, path, p,
                    "declares option '%s' with unknown type %d (valid types are 1..8)", o->name,
                    (int)o->type);
    if (o->type == ENGINE_OPT_ENUM && (!o->enum_values || !o->enum_values[0]))
      return refuse(err, path, p,
                    "declares enum option '%s' without enum_values (expected \"a|b|c\")", o->name);
    for (size_t j = 0; j < i; j++)
      if (strcmp(p->options[j].name, o->name) == 0)
        return refuse(err, path, p, "declares option '%s' twice", o->name);
  }
}

/* The bounds table (ABI 1.5), or NULL: a descriptor that ends before it has none. */
static const struct engine_option_bounds *bounds_of(const struct engine_plugin *p) {
  return ENGINE_HAS_FIELD(p, struct engine_plugin, option_bounds) ? p->option_bounds : NULL;
}

static const struct engine_option *option_named(const struct engine_plugin *p, const char *name) {
  for (const struct engine_option *o = p->options; o && o->name; o++)
    if (strcmp(o->name, name) == 0)
      return o;
  return NULL;
}

/* Each entry bounds a declared INT, SIZE or DURATION option, once, with a
 * non-empty min or max. The values themselves are parsed where the
 * pipeline's are (config), which reports a bad one as the plugin's bug. */
static int check_bounds(const char *path, const struct engine_plugin *p, char **err) {
  const struct engine_option_bounds *b = bounds_of(p);
  for (size_t i = 0; b && b[i].name; i++) {
    if (i >= MAX_OPTIONS)
      return refuse(err, path, p,
                    "declares more than %d option bounds; is its option_bounds array terminated "
                    "by an entry whose name is NULL?",
                    MAX_OPTIONS);
    const struct engine_option *o = option_named(p, b[i].name);
    if (!o)
      return refuse(err, path, p, "declares bounds for option '%s', which it does not have",
                    b[i].name);
    if (o->type != ENGINE_OPT_INT && o->type != ENGINE_OPT_SIZE && o->type != ENGINE_OPT_DURATION)
      return refuse(err, path, p,
                    "declares bounds for option '%s', which is not an INT, SIZE or DURATION option",
                    o->name);
    if ((!b[i].min && !b[i].max) || (b[i].min && !b[i].min[0]) || (b[i].max && !b[i].max[0]))
      return refuse(err, path, p, "declares empty bounds for option '%s'", o->name);
    for (size_t j = 0; j < i; j++)
      if (strcmp(b[j].name, b[i].name) == 0)
        return refuse(err, path, p, "declares bounds for option '%s' twice", o->name);
  }
  return 0;
}

int plugin_option_bounds(const struct engine_plugin *p, const char *name, const char **min,
                         const char **max) {
  *min = *max = NULL;
  for (const struct engine_option_bounds *b = bounds_of(p); b && b->name; b++)
    if (strcmp(b->name, name) == 0) {
      *min = b->min;
      *max = b->max;
      return 1;
    }
  return 0;
}

static int check_source_ops(const char *path, const struct engine_plugin *p, char **err) {
  const struct engine_source_ops *s = p->source;
  if (s->struct_size < SOURCE_OPS_V1_0_SIZE)
    return refuse(err, path, p,
                  "has a source ops table of %u bytes, smaller than the %zu bytes of ABI 1.0",
                  s->struct_size, (size_t)SOURCE_OPS_V1_0_SIZE);
  const char *missing = !s->backup          ? "backup"
                        : !s->restore_begin ? "restore_begin"
                        : !s->restore_item  ? "restore_item"
                        : !s->restore_end   ? "restore_end"
                                            : NULL;
  if (missing)
    return refuse(err, path, p, "lacks the mandatory source callback '%s'", missing);
  return 0;
}

static int check_sink_ops(const char *path, const struct engine_plugin *p, char **err) {
  const struct engine_sink_ops *s = p->sink;
  if (s->struct_size < SINK_OPS_V1_0_SIZE)
    return refuse(err, path, p,
                  "has a sink ops table of %u bytes, smaller than the %zu bytes of ABI 1.0",
                  s->struct_size, (size_t)SINK_OPS_V1_0_SIZE);
  const char *missing = !s->put        ? "put"
                        : !s->get      ? "get"
                        : !s->stat     ? "stat"
                        : !s->list     ? "list"
                        : !s->del      ? "del"
                        : !s->describe ? "describe"
                                       : NULL;
  if (missing)
    return refuse(err, path, p, "lacks the mandatory sink callback '%s'", missing);
  return 0;
}

static int check_crypto_ops(const char *path, const struct engine_plugin *p, char **err) {
  const struct engine_crypto_ops *c = p->crypto;
  if (c->struct_size < CRYPTO_OPS_V1_0_SIZE)
    return refuse(err, path, p,
                  "has a crypto ops table of %u bytes, smaller than the %zu bytes of ABI 1.0",
                  c->struct_size, (size_t)CRYPTO_OPS_V1_0_SIZE);
  if (!c->seal)
    return refuse(err, path, p, "lacks the mandatory crypto callback 'seal'");
  if (!c->open)
    return refuse(err, path, p, "lacks the mandatory crypto callback 'open'");
  if (c->key_len == 0)
    return refuse(err, path, p, "declares a key length of 0 bytes");
  if (c->nonce_len == 0 || c->nonce_len > MAX_AEAD_PARAM)
    return refuse(err, path, p, "declares a nonce length of %zu bytes (expected 1..%d)",
                  c->nonce_len, MAX_AEAD_PARAM);
  if (c->tag_len == 0 || c->tag_len > MAX_AEAD_PARAM)
    return refuse(err, path, p, "declares a tag length of %zu bytes (expected 1..%d)", c->tag_len,
                  MAX_AEAD_PARAM);
  return 0;
}

int plugin_check_descriptor(const char *path, const struct engine_plugin *p, char **err) {
  if (err)
    *err = NULL;
  if (!p)
    return refuse(err, path, NULL, "returned no descriptor");
  if (p->abi_major != ENGINE_ABI_MAJOR)
    return refuse(err, path, p,
                  "was built for engine plugin ABI %u.%u but this engine provides ABI %d.%d; "
                  "rebuild it against the engine %d.x SDK headers",
                  p->abi_major, p->abi_minor, ENGINE_ABI_MAJOR, ENGINE_ABI_MINOR, ENGINE_ABI_MAJOR);
  if (p->struct_size < PLUGIN_V1_0_SIZE)
    return refuse(err, path, p,
                  "has a descriptor of %u bytes, smaller than the %zu bytes of ABI 1.0; "
                  "set struct_size to sizeof(struct engine_plugin)",
                  p->struct_size, (size_t)PLUGIN_V1_0_SIZE);
  /* A newer minor appended fields we do not know; its descriptor must still
   * contain everything we do know, since we read up to our sizeof. */
  if (p->abi_minor > ENGINE_ABI_MINOR && p->struct_size < sizeof(struct engine_plugin))
    return refuse(err, path, p,
                  "claims ABI %u.%u but its descriptor (%u bytes) is smaller than this engine's "
                  "ABI %d.%d descriptor (%zu bytes)",
                  p->abi_major, p->abi_minor, p->struct_size, ENGINE_ABI_MAJOR, ENGINE_ABI_MINOR,
                  sizeof(struct engine_plugin));
  if (!kind_valid(p->kind))
    return refuse(err, path, p, "declares unknown kind %d (expected 1 source, 2 sink or 3 crypto)",
                  (int)p->kind);
  if (!p->name || !name_valid(p->name))
    return refuse(err, path, NULL,
                  "has an invalid name '%s' (expected 1..%d characters from [a-z0-9-])",
                  p->name ? p->name : "", MAX_PLUGIN_NAME);
  if (!p->version || !p->version[0])
    return refuse(err, path, p, "has no version string");
  if (!p->create)
    return refuse(err, path, p, "has no create callback");

  int rc;
  switch (p->kind) {
  case ENGINE_PLUGIN_SOURCE:
    if (!p->source)
      return refuse(err, path, p, "is a source plugin but has no source ops table");
    rc = check_source_ops(path, p, err);
    break;
  case ENGINE_PLUGIN_SINK:
    if (!p->sink)
      return refuse(err, path, p, "is a sink plugin but has no sink ops table");
    rc = check_sink_ops(path, p, err);
    break;
  default:
    if (!p->crypto)
      return refuse(err, path, p, "is a crypto plugin but has no crypto ops table");
    rc = check_crypto_ops(path, p, err);
    break;
  }
  if (rc)
    return rc;
  if (check_options(path, p, err))
    return -1;
  return check_bounds(path, p, err);
}

/* dlopen + dlsym + query, without the descriptor checks. Returns the raw
 * descriptor (possibly NULL) and leaves the handle open on success. */
static int open_and_query(const char *path, void **handle, const struct engine_plugin **desc,
                          char **err) {
  *handle = NULL;
  *desc = NULL;
  dlerror();
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *why = dlerror();
    *err = xasprintf("unable to load plugin '%s': %s", path, why ? why : "dlopen failed");
    return -1;
  }
  dlerror();
  void *sym = dlsym(h, ENGINE_PLUGIN_QUERY_SYMBOL);
  if (!sym) {
    *err = xasprintf("plugin '%s' does not export the symbol '%s'; it is not an engine plugin, or "
                     "it was built without ENGINE_PLUGIN_EXPORT on that function",
                     path, ENGINE_PLUGIN_QUERY_SYMBOL);
    dlclose(h);
    return -1;
  }
  engine_plugin_query_fn query;
  /* POSIX guarantees object and function pointers convert through dlsym. */
  memcpy(&query, &sym, sizeof query);
  const struct engine_plugin *p = query(ENGINE_ABI_MAJOR);
  if (!p) {
    *err =
        xasprintf("plugin '%s' does not support engine plugin ABI major %d (%s(%d) returned NULL); "
                  "it needs a different engine version",
                  path, ENGINE_ABI_MAJOR, ENGINE_PLUGIN_QUERY_SYMBOL, ENGINE_ABI_MAJOR);
    dlclose(h);
    return -1;
  }
  *handle = h;
  *desc = p;
  return 0;
}

int plugin_load_file(const char *path, struct plugin_entry *out) {
  memset(out, 0, sizeof *out);
  out->path = xstrdup(path);
  void *h;
  const struct engine_plugin *p;
  char *err = NULL;
  if (open_and_query(path, &h, &p, &err)) {
    out->error = err;
    return -1;
  }
  /* The handle stays open even when the descriptor is refused, so that
   * registry_find can still tell "found but refused" from "not found". */
  out->handle = h;
  if (plugin_check_descriptor(path, p, &err)) {
    out->error = err;
    return -1;
  }
  out->plugin = p;
  return 0;
}

/* Kind and name of a refused-but-queryable plugin, read only from the
 * prefix that every ABI major keeps. */
static const struct engine_plugin *refused_descriptor(const struct plugin_entry *e) {
  if (e->plugin || !e->handle)
    return NULL;
  dlerror();
  void *sym = dlsym(e->handle, ENGINE_PLUGIN_QUERY_SYMBOL);
  if (!sym)
    return NULL;
  engine_plugin_query_fn query;
  memcpy(&query, &sym, sizeof query);
  const struct engine_plugin *p = query(ENGINE_ABI_MAJOR);
  if (!p || p->struct_size < PLUGIN_FROZEN_PREFIX_SIZE || !p->name)
    return NULL;
  return p;
}

/* ---- search path ------------------------------------------------------ */

struct strvec {
  char **v;
  size_t n, cap;
};

static void strvec_push(struct strvec *sv, char *s) {
  if (sv->n == sv->cap) {
    sv->cap = sv->cap ? sv->cap * 2 : 8;
    sv->v = xrealloc(sv->v, sv->cap * sizeof *sv->v);
  }
  sv->v[sv->n++] = s;
}

static void strvec_free(struct strvec *sv) {
  for (size_t i = 0; i < sv->n; i++)
    free(sv->v[i]);
  free(sv->v);
  sv->v = NULL;
  sv->n = sv->cap = 0;
}

static int path_is_under(const char *path, const char *dir) {
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/')
    n--;
  return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* The build tree's plugins are only trusted by a binary that itself lives in
 * that build tree: an installed engine must never pick up stale or
 * half-built plugins from wherever the sources were once compiled. */
static int running_from_build_tree(void) {
  char exe[PATH_MAX], build[PATH_MAX];
  if (!realpath("/proc/self/exe", exe))
    return 0;
  if (!realpath(ENGINE_BUILD_DIR, build))
    return 0;
  return path_is_under(exe, build);
}

/* Directories are compared by their resolved path so the same directory
 * reached twice (e.g. through ENGINE_PLUGIN_PATH and --plugin-dir) is scanned
 * once and its plugins are not reported as shadowing themselves. */
static void add_dir(struct strvec *dirs, struct strvec *keys, const char *dir) {
  if (!dir || !dir[0])
    return;
  char resolved[PATH_MAX];
  const char *key = realpath(dir, resolved) ? resolved : dir;
  for (size_t i = 0; i < keys->n; i++)
    if (strcmp(keys->v[i], key) == 0)
      return;
  strvec_push(keys, xstrdup(key));
  strvec_push(dirs, xstrdup(dir));
}

static void build_search_path(const char *const *extra, size_t n_extra, struct strvec *dirs) {
  struct strvec keys = {0};
  for (size_t i = 0; extra && i < n_extra; i++) {
    struct stat st;
    /* Unlike the implicit directories, one the operator named explicitly
     * and that is missing is probably a typo worth pointing out. */
    if (extra[i] && (stat(extra[i], &st) != 0 || !S_ISDIR(st.st_mode)))
      log_warn("plugin directory '%s' given with --plugin-dir is not a directory; skipping it",
               extra[i]);
    add_dir(dirs, &keys, extra[i]);
  }
  const char *env = getenv("ENGINE_PLUGIN_PATH");
  if (env) {
    char *copy = xstrdup(env), *save = NULL;
    for (char *tok = strtok_r(copy, ":", &save); tok; tok = strtok_r(NULL, ":", &save))
      add_dir(dirs, &keys, tok);
    free(copy);
  }
  if (running_from_build_tree())
    add_dir(dirs, &keys, ENGINE_BUILD_PLUGIN_DIR);
  add_dir(dirs, &keys, ENGINE_INSTALL_PLUGIN_DIR);
  strvec_free(&keys);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_so_suffix(const char *name) {
  size_t n = strlen(name);
  return n > 3 && strcmp(name + n - 3, ".so") == 0;
}

/* Lists `dir`'s *.so files (as full paths, sorted) and, when subdirs is
 * non-NULL, its subdirectories (sorted). Hidden entries are ignored. */
static void scan_dir(const char *dir, struct strvec *files, struct strvec *subdirs) {
  DIR *d = opendir(dir);
  if (!d) {
    if (errno != ENOENT && errno != ENOTDIR)
      log_warn("unable to read plugin directory '%s': %s", dir, strerror(errno));
    return;
  }
  size_t first_file = files->n, first_sub = subdirs ? subdirs->n : 0;
  struct dirent *de;
  for (;;) {
    errno = 0;
    de = readdir(d);
    if (!de) {
      if (errno)
        log_warn("unable to read plugin directory '%s': %s", dir, strerror(errno));
      break;
    }
    if (de->d_name[0] == '.')
      continue;
    char *full = xasprintf("%s/%s", dir, de->d_name);
    struct stat st;
    if (stat(full, &st) != 0) {
      /* A dangling symlink: worth a word, the operator probably meant it. */
      log_warn("skipping plugin path '%s': %s", full, strerror(errno));
      free(full);
      continue;
    }
    if (S_ISREG(st.st_mode) && has_so_suffix(de->d_name))
      strvec_push(files, full);
    else if (S_ISDIR(st.st_mode) && subdirs)
      strvec_push(subdirs, full);
    else
      free(full);
  }
  closedir(d);
  if (files->n - first_file > 1)
    qsort(files->v + first_file, files->n - first_file, sizeof *files->v, cmp_str);
  if (subdirs && subdirs->n - first_sub > 1)
    qsort(subdirs->v + first_sub, subdirs->n - first_sub, sizeof *subdirs->v, cmp_str);
}

static void registry_add(struct plugin_registry *r, size_t *cap, const char *path) {
  if (r->n_entries == *cap) {
    *cap = *cap ? *cap * 2 : 16;
    r->entries = xrealloc(r->entries, *cap * sizeof *r->entries);
  }
  struct plugin_entry *e = &r->entries[r->n_entries++];
  if (plugin_load_file(path, e)) {
    log_debug("%s", e->error);
    return;
  }
  for (size_t i = 0; i + 1 < r->n_entries; i++) {
    const struct plugin_entry *o = &r->entries[i];
    if (o->plugin && !o->shadowed && o->plugin->kind == e->plugin->kind &&
        strcmp(o->plugin->name, e->plugin->name) == 0) {
      e->shadowed = 1;
      log_debug("%s plugin '%s' at '%s' is shadowed by '%s', earlier in the search path",
                plugin_kind_name(e->plugin->kind), e->plugin->name, e->path, o->path);
      break;
    }
  }
}

int registry_load(const char *const *extra_dirs, size_t n_extra, struct plugin_registry **out) {
  struct plugin_registry *r = xcalloc(1, sizeof *r);
  struct strvec dirs = {0};
  build_search_path(extra_dirs, n_extra, &dirs);
  size_t cap = 0;
  for (size_t i = 0; i < dirs.n; i++) {
    struct strvec files = {0}, subdirs = {0};
    /* The directory's own plugins come before those of its subdirectories. */
    scan_dir(dirs.v[i], &files, &subdirs);
    for (size_t j = 0; j < subdirs.n; j++)
      scan_dir(subdirs.v[j], &files, NULL);
    for (size_t j = 0; j < files.n; j++)
      registry_add(r, &cap, files.v[j]);
    strvec_free(&files);
    strvec_free(&subdirs);
  }
  r->dirs = dirs.v;
  r->n_dirs = dirs.n;
  *out = r;
  return 0;
}

void registry_free(struct plugin_registry *r) {
  if (!r)
    return;
  for (size_t i = 0; i < r->n_entries; i++) {
    struct plugin_entry *e = &r->entries[i];
    if (e->handle)
      dlclose(e->handle);
    free(e->path);
    free(e->error);
  }
  free(r->entries);
  for (size_t i = 0; i < r->n_dirs; i++)
    free(r->dirs[i]);
  free(r->dirs);
  free(r);
}

/* v[0..n) joined with sep, malloc'd. */
static char *join_strs(char *const *v, size_t n, const char *sep) {
  size_t sl = strlen(sep), len = 1;
  for (size_t i = 0; i < n; i++)
    len += strlen(v[i]) + sl;
  char *s = xmalloc(len);
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (i) {
      memcpy(s + o, sep, sl);
      o += sl;
    }
    size_t l = strlen(v[i]);
    memcpy(s + o, v[i], l);
    o += l;
  }
  s[o] = '\0';
  return s;
}

static char *join_search_path(const struct plugin_registry *r) {
  if (r->n_dirs == 0)
    return xstrdup("(empty)");
  return join_strs(r->dirs, r->n_dirs, ":");
}

static char *available_names(const struct plugin_registry *r, enum engine_plugin_kind kind) {
  struct strvec names = {0};
  for (size_t i = 0; i < r->n_entries; i++) {
    const struct plugin_entry *e = &r->entries[i];
    if (e->plugin && !e->shadowed && e->plugin->kind == kind)
      strvec_push(&names, xstrdup(e->plugin->name));
  }
  if (names.n == 0) {
    strvec_free(&names);
    return NULL;
  }
  qsort(names.v, names.n, sizeof *names.v, cmp_str);
  char *s = join_strs(names.v, names.n, ", ");
  strvec_free(&names);
  return s;
}

const struct engine_plugin *registry_find(struct plugin_registry *r, enum engine_plugin_kind kind,
                                          const char *name, char **err) {
  if (err)
    *err = NULL;
  const struct plugin_entry *refused = NULL;
  size_t n_failed = 0;
  for (size_t i = 0; i < r->n_entries; i++) {
    const struct plugin_entry *e = &r->entries[i];
    if (e->plugin) {
      if (e->plugin->kind == kind && strcmp(e->plugin->name, name) == 0 && !e->shadowed) {
        if (refused)
          log_warn("using %s plugin '%s' from '%s'; a plugin of that name earlier in the search "
                   "path was refused: %s",
                   plugin_kind_name(kind), name, e->path, refused->error);
        return e->plugin;
      }
      continue;
    }
    n_failed++;
    const struct engine_plugin *raw = refused ? NULL : refused_descriptor(e);
    if (raw && raw->kind == kind && strcmp(raw->name, name) == 0)
      refused = e;
  }
  if (!err)
    return NULL;
  if (refused) {
    *err = xasprintf("%s plugin '%s' was found but refused: %s", plugin_kind_name(kind), name,
                     refused->error);
    return NULL;
  }
  char *avail = available_names(r, kind);
  char *path = join_search_path(r);
  char *failed = n_failed ? xasprintf("; %zu plugin file%s failed to load (run 'engine plugins' to "
                                      "see why)",
                                      n_failed, n_failed == 1 ? "" : "s")
                          : xstrdup("");
  if (avail)
    *err = xasprintf("no %s plugin named '%s' (available: %s; search path: %s%s)",
                     plugin_kind_name(kind), name, avail, path, failed);
  else
    *err = xasprintf("no %s plugin named '%s' (no %s plugins were found; search path: %s%s)",
                     plugin_kind_name(kind), name, plugin_kind_name(kind), path, failed);
  free(avail);
  free(path);
  free(failed);
  return NULL;
}
