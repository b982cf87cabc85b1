/* "hello": a minimal source plugin built out of tree against the installed
 * SDK (see Makefile and docs/PLUGINS.md). Backup emits two STREAM items with
 * fixed content; restore writes them as files into the --target directory.
 * It exists to prove that a third-party plugin builds from `pkg-config
 * engine-plugin` alone and loads into the engine. */
#include <engine/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HELLO_VERSION "1.0.0"

struct hello {
  const struct engine_host *host;
  char *greeting;
  int repeat; /* lines of hello.txt */
};

struct hello_restore {
  struct hello *h;
  char *target;
  int dry_run;
};

static const char about_text[] =
    "This item was produced by the out-of-tree engine plugin 'hello'.\n";

static int hello_create(const struct engine_host *host, void **inst) {
  struct hello *h = calloc(1, sizeof *h);
  if (!h) {
    host->set_error(host, "out of memory");
    return ENGINE_ERROR;
  }
  h->host = host;
  /* The host applied the schema's defaults, so the options are always
   * there; an engine of ABI 1.5 or later also kept repeat within its bounds,
   * an older one did not. */
  int64_t repeat = host->cfg_int(host, "repeat", 1);
  if (host->abi_minor < 5 && (repeat < 1 || repeat > 10)) {
    free(h);
    host->set_error(host, "option 'repeat' must be from 1 to 10, got %lld", (long long)repeat);
    return ENGINE_ERROR;
  }
  h->repeat = (int)repeat;
  const char *g = host->cfg_string(host, "greeting");
  h->greeting = strdup(g ? g : "hello");
  if (!h->greeting) {
    free(h);
    host->set_error(host, "out of memory");
    return ENGINE_ERROR;
  }
  *inst = h;
  return ENGINE_OK;
}

static void hello_destroy(void *inst) {
  struct hello *h = inst;
  if (!h)
    return;
  free(h->greeting);
  free(h);
}

/* ---- backup ----------------------------------------------------------- */

/* One STREAM item: `content` written `times` times. */
static int emit_stream(struct hello *h, const struct engine_emitter *em, const char *name,
                       const char *content, size_t len, int times) {
  struct engine_item item = {
      .name = name,
      .name_len = strlen(name),
      .type = ENGINE_ITEM_STREAM,
      .meta_json = "{\"media_type\":\"text/plain\"}",
      .size = len * (size_t)times,
  };
  if (em->item_begin(em, &item) != ENGINE_OK) {
    /* The run is being cancelled: stop emitting. */
    h->host->set_error(h->host, "interrupted while emitting '%s'", name);
    return ENGINE_ERROR;
  }
  for (int i = 0; i < times; i++) {
    if (em->item_write(em, content, len) != ENGINE_OK) {
      em->item_end(em, ENGINE_ERROR, NULL, "interrupted while writing");
      h->host->set_error(h->host, "interrupted while writing '%s'", name);
      return ENGINE_ERROR;
    }
  }
  return em->item_end(em, ENGINE_OK, NULL, NULL);
}

static int hello_backup(void *inst, const struct engine_emitter *em) {
  struct hello *h = inst;
  char greeting[512];
  int n = snprintf(greeting, sizeof greeting, "%s, world\n", h->greeting);
  if (n < 0 || (size_t)n >= sizeof greeting) {
    h->host->set_error(h->host, "option 'greeting' is longer than %zu bytes", sizeof greeting - 9);
    return ENGINE_ERROR;
  }
  h->host->progress_total(h->host, (uint64_t)n * (uint64_t)h->repeat + sizeof about_text - 1);
  if (em->mark(em, "hello_version", "\"" HELLO_VERSION "\"") != ENGINE_OK) {
    h->host->set_error(h->host, "unable to record the consistency mark");
    return ENGINE_ERROR;
  }
  if (emit_stream(h, em, "hello.txt", greeting, (size_t)n, h->repeat) != ENGINE_OK)
    return ENGINE_ERROR;
  if (emit_stream(h, em, "about.txt", about_text, sizeof about_text - 1, 1) != ENGINE_OK)
    return ENGINE_ERROR;
  h->host->log(h->host, ENGINE_LOG_DEBUG, "emitted 2 items");
  return ENGINE_OK;
}

/* ---- restore ---------------------------------------------------------- */

static const char *const item_names[] = {"hello.txt", "about.txt"};

static int hello_restore_begin(void *inst, const struct engine_restore_opts *opts, void **rctx) {
  struct hello *h = inst;
  const struct engine_host *host = h->host;
  if (!opts->target || !opts->target[0]) {
    host->set_error(host, "restoring the hello source needs --target DIR");
    return ENGINE_ERROR;
  }
  if (!opts->dry_run && mkdir(opts->target, 0755) != 0 && errno != EEXIST) {
    host->set_error(host, "unable to create '%s': %s", opts->target, strerror(errno));
    return ENGINE_ERROR;
  }
  if (!opts->yes) {
    for (size_t i = 0; i < sizeof item_names / sizeof *item_names; i++) {
      char path[4096];
      struct stat st;
      snprintf(path, sizeof path, "%s/%s", opts->target, item_names[i]);
      if (lstat(path, &st) == 0) {
        host->set_error(host, "'%s' already exists", path);
        return ENGINE_EXISTS;
      }
    }
  }
  struct hello_restore *r = calloc(1, sizeof *r);
  if (r)
    r->target = strdup(opts->target);
  if (!r || !r->target) {
    free(r);
    host->set_error(host, "out of memory");
    return ENGINE_ERROR;
  }
  r->h = h;
  r->dry_run = opts->dry_run;
  *rctx = r;
  return ENGINE_OK;
}

/* Item names come from the repository; never let one escape the target. */
static int safe_name(const struct engine_item *item, char *out, size_t size) {
  if (item->name_len == 0 || item->name_len >= size || memchr(item->name, '\0', item->name_len) ||
      memchr(item->name, '/', item->name_len))
    return -1;
  memcpy(out, item->name, item->name_len);
  out[item->name_len] = '\0';
  return strcmp(out, ".") && strcmp(out, "..") ? 0 : -1;
}

static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t w = write(fd, buf, len);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -1;
    buf += w;
    len -= (size_t)w;
  }
  return 0;
}

static int hello_restore_item(void *rctx, const struct engine_item *item,
                              const struct engine_reader *data) {
  struct hello_restore *r = rctx;
  const struct engine_host *host = r->h->host;
  char name[256], path[4096];
  if (safe_name(item, name, sizeof name) != 0) {
    host->set_error(host, "refusing to restore an item with an unsafe name");
    return ENGINE_ERROR;
  }
  snprintf(path, sizeof path, "%s/%s", r->target, name);
  if (r->dry_run) {
    host->log(host, ENGINE_LOG_INFO, "would write '%s' (%llu bytes)", path,
              (unsigned long long)item->size);
    return ENGINE_OK;
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    host->set_error(host, "unable to create '%s': %s", path, strerror(errno));
    return ENGINE_ERROR;
  }
  char buf[65536];
  for (;;) {
    ssize_t n = data ? data->read(data, buf, sizeof buf) : 0;
    if (n < 0) {
      host->set_error(host, "unable to read the content of '%s' from the repository", name);
      close(fd);
      return ENGINE_ERROR;
    }
    if (n == 0)
      break;
    if (write_all(fd, buf, (size_t)n) != 0) {
      host->set_error(host, "unable to write '%s': %s", path, strerror(errno));
      close(fd);
      return ENGINE_ERROR;
    }
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    host->set_error(host, "unable to write '%s': %s", path, strerror(errno));
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

static int hello_restore_end(void *rctx, int status) {
  struct hello_restore *r = rctx;
  (void)status;
  free(r->target);
  free(r);
  return ENGINE_OK;
}

/* ---- descriptor ------------------------------------------------------- */

static const struct engine_option hello_options[] = {
    {.name = "greeting",
     .type = ENGINE_OPT_STRING,
     .default_value = "hello",
     .description = "Word that starts the first item, hello.txt."},
    {.name = "repeat",
     .type = ENGINE_OPT_INT,
     .default_value = "1",
     .description = "How many times hello.txt says it (1 to 10)."},
    {.name = NULL},
};

/* ABI 1.5: the engine refuses a pipeline whose value is outside these. */
static const struct engine_option_bounds hello_bounds[] = {
    {.name = "repeat", .min = "1", .max = "10"},
    {.name = NULL},
};

static const struct engine_source_ops hello_ops = {
    .struct_size = sizeof(struct engine_source_ops),
    .backup = hello_backup,
    .restore_begin = hello_restore_begin,
    .restore_item = hello_restore_item,
    .restore_end = hello_restore_end,
};

static const struct engine_plugin hello_plugin = {
    ENGINE_PLUGIN_HEADER,     .kind = ENGINE_PLUGIN_SOURCE,
    .name = "hello",          .version = HELLO_VERSION,
    .license = "MIT",         .description = "Example source: two fixed text items (SDK example).",
    .options = hello_options, .option_bounds = hello_bounds,
    .create = hello_create,   .destroy = hello_destroy,
    .source = &hello_ops,
};

ENGINE_PLUGIN_EXPORT const struct engine_plugin *engine_plugin_query(uint32_t host_abi_major) {
  return host_abi_major == ENGINE_ABI_MAJOR ? &hello_plugin : NULL;
}
