/* "evil": a test-only source plugin (tests/integration/test_unsafe_names.sh).
 *
 * Backup emits FILE items whose names try to leave the restore target
 * ("../escape.txt", "/abs.txt", "a/../../b.txt") next to harmless items; the
 * core must refuse the unsafe ones at backup time (each a failed item) and
 * store the others. Restore writes every item it is given under the target
 * naively -- it creates parent directories and opens the name relative to
 * the target with openat, following ".." and honouring absolute names -- so
 * the only thing standing between such names (in a crafted manifest) and the
 * file system is the core's check of each item before any plugin call.
 * Never install this plugin. */
#include <engine/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EVIL_VERSION "1.0.0"

struct evil {
  const struct engine_host *host;
};

struct evil_restore {
  struct evil *e;
  int rootfd;
  int dry_run;
};

static const char *const evil_names[] = {"ok.txt", "../escape.txt", "/abs.txt", "a/../../b.txt",
                                         "z/ok2.txt"};

static int evil_create(const struct engine_host *host, void **inst) {
  struct evil *e = calloc(1, sizeof *e);
  if (!e) {
    host->set_error(host, "evil: out of memory");
    return ENGINE_ERROR;
  }
  e->host = host;
  *inst = e;
  return ENGINE_OK;
}

static void evil_destroy(void *inst) {
  free(inst);
}

static int evil_backup(void *inst, const struct engine_emitter *em) {
  struct evil *e = inst;
  for (size_t i = 0; i < sizeof(evil_names) / sizeof(evil_names[0]); i++) {
    char content[128];
    int len = snprintf(content, sizeof content, "content of item %zu (%s)\n", i, evil_names[i]);
    struct engine_item item = {
        .name = evil_names[i],
        .name_len = strlen(evil_names[i]),
        .type = ENGINE_ITEM_FILE,
        .meta_json = NULL,
        .size = (uint64_t)len,
    };
    if (em->item_begin(em, &item) != ENGINE_OK) {
      e->host->set_error(e->host, "evil: interrupted while emitting '%s'", evil_names[i]);
      return ENGINE_ERROR;
    }
    if (em->item_write(em, content, (size_t)len) != ENGINE_OK) {
      em->item_end(em, ENGINE_ERROR, NULL, "interrupted while writing");
      e->host->set_error(e->host, "evil: interrupted while writing '%s'", evil_names[i]);
      return ENGINE_ERROR;
    }
    if (em->item_end(em, ENGINE_OK, NULL, NULL) != ENGINE_OK) {
      e->host->set_error(e->host, "evil: storing '%s' failed", evil_names[i]);
      return ENGINE_ERROR;
    }
  }
  return ENGINE_OK;
}

static int evil_restore_begin(void *inst, const struct engine_restore_opts *opts, void **rctx) {
  struct evil *e = inst;
  const char *target = opts && opts->target ? opts->target : ".";
  struct evil_restore *r = calloc(1, sizeof *r);
  if (!r) {
    e->host->set_error(e->host, "evil: out of memory");
    return ENGINE_ERROR;
  }
  r->e = e;
  r->dry_run = opts ? opts->dry_run : 0;
  r->rootfd = -1;
  if (!r->dry_run) {
    if (mkdir(target, 0755) != 0 && errno != EEXIST) {
      e->host->set_error(e->host, "evil: unable to create '%s': %s", target, strerror(errno));
      free(r);
      return ENGINE_ERROR;
    }
    r->rootfd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r->rootfd < 0) {
      e->host->set_error(e->host, "evil: unable to open '%s': %s", target, strerror(errno));
      free(r);
      return ENGINE_ERROR;
    }
  }
  *rctx = r;
  return ENGINE_OK;
}

/* mkdir -p of the parents of `name` relative to rootfd, following "..". */
static void make_parents(int rootfd, const char *name) {
  char *p = strdup(name);
  if (!p)
    return;
  for (char *s = p + 1; *s; s++) {
    if (*s != '/')
      continue;
    *s = '\0';
    (void)mkdirat(rootfd, p, 0755);
    *s = '/';
  }
  free(p);
}

static int evil_restore_item(void *rctx, const struct engine_item *item,
                             const struct engine_reader *data) {
  struct evil_restore *r = rctx;
  const struct engine_host *h = r->e->host;
  if (r->dry_run)
    return ENGINE_OK;
  char *name = strndup(item->name, item->name_len);
  if (!name) {
    h->set_error(h, "evil: out of memory");
    return ENGINE_ERROR;
  }
  make_parents(r->rootfd, name);
  int fd = openat(r->rootfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    h->set_error(h, "evil: unable to create '%s': %s", name, strerror(errno));
    free(name);
    return ENGINE_ERROR;
  }
  int rc = ENGINE_OK;
  if (data) {
    char buf[4096];
    for (;;) {
      ssize_t n = data->read(data, buf, sizeof buf);
      if (n < 0) {
        h->set_error(h, "evil: reading the content of '%s' failed", name);
        rc = ENGINE_ERROR;
        break;
      }
      if (n == 0)
        break;
      if (write(fd, buf, (size_t)n) != n) {
        h->set_error(h, "evil: unable to write '%s': %s", name, strerror(errno));
        rc = ENGINE_ERROR;
        break;
      }
    }
  }
  if (close(fd) != 0 && rc == ENGINE_OK) {
    h->set_error(h, "evil: unable to close '%s': %s", name, strerror(errno));
    rc = ENGINE_ERROR;
  }
  free(name);
  return rc;
}

static int evil_restore_end(void *rctx, int status) {
  struct evil_restore *r = rctx;
  (void)status;
  if (r->rootfd >= 0)
    close(r->rootfd);
  free(r);
  return ENGINE_OK;
}

static const struct engine_source_ops evil_source_ops = {
    .struct_size = sizeof(struct engine_source_ops),
    .backup = evil_backup,
    .restore_begin = evil_restore_begin,
    .restore_item = evil_restore_item,
    .restore_end = evil_restore_end,
};

static const struct engine_plugin evil_plugin = {
    ENGINE_PLUGIN_HEADER,
    .kind = ENGINE_PLUGIN_SOURCE,
    .name = "evil",
    .version = EVIL_VERSION,
    .license = "MIT",
    .description = "TEST ONLY: emits items with unsafe names and restores them naively",
    .options = NULL,
    .create = evil_create,
    .destroy = evil_destroy,
    .source = &evil_source_ops,
};

ENGINE_PLUGIN_EXPORT const struct engine_plugin *engine_plugin_query(uint32_t host_abi_major) {
  return host_abi_major == ENGINE_ABI_MAJOR ? &evil_plugin : NULL;
}
