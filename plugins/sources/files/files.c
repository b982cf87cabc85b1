/* The `files` source plugin: descriptor, option schema and instance
 * lifecycle. The backup walk lives in walk.c, the restore writer in
 * restore.c; this file only reads and checks the configuration. */
#include <stdlib.h>
#include <string.h>

#include "files.h"
#include "engine/helpers.h"

static const struct engine_option files_options[] = {
    {.name = "paths",
     .type = ENGINE_OPT_STRING_LIST,
     .required = 1,
     .description = "Absolute paths of the files or directories to back up (symlinks among them "
                    "are stored as symlinks, never followed)."},
    {.name = "exclude",
     .type = ENGINE_OPT_STRING_LIST,
     .description = "fnmatch globs to skip: without '/' a pattern matches any basename, with "
                    "'/' the path ('/...' anchored, otherwise any trailing part); a trailing "
                    "'/' matches directories only."},
    {.name = "one_file_system",
     .type = ENGINE_OPT_BOOL,
     .default_value = "false",
     .description = "Do not descend into directories on another file system than the "
                    "configured path they were reached from."},
    {.name = "xattrs",
     .type = ENGINE_OPT_BOOL,
     .default_value = "true",
     .description = "Back up and restore extended attributes (user.*, trusted.*, security.*, "
                    "system.*), which hold POSIX ACLs and file capabilities; false: none are read "
                    "or restored."},
    {.name = "file_flags",
     .type = ENGINE_OPT_BOOL,
     .default_value = "true",
     .description = "Back up and restore inode flags (chattr: append-only, immutable, nodump, "
                    "noatime, ...); false: none are read or restored."},
    {.name = NULL},
};

static void files_destroy(void *p) {
  struct files_inst *in = p;
  if (in == NULL)
    return;
  engine_strv_free(in->paths, in->n_paths);
  for (size_t i = 0; i < in->n_exclude; i++)
    free(in->exclude[i].glob);
  free(in->exclude);
  free(in);
}

/* Classify each exclude glob once, so the walk only calls fnmatch. */
static int compile_excludes(const struct engine_host *h, struct files_inst *in) {
  char **globs;
  size_t n;
  if (engine_cfg_strv(h, "exclude", &globs, &n) != ENGINE_OK)
    return ENGINE_ERROR;
  if (n == 0)
    return ENGINE_OK;
  in->exclude = calloc(n, sizeof(*in->exclude));
  if (in->exclude == NULL) {
    h->set_error(h, "unable to read option 'exclude': out of memory");
    engine_strv_free(globs, n);
    return ENGINE_ERROR;
  }
  in->n_exclude = n;
  for (size_t i = 0; i < n; i++) {
    struct files_exclude *x = &in->exclude[i];
    char *g = globs[i];
    globs[i] = NULL;
    x->glob = g;
    size_t len = strlen(g);
    while (len > 0 && g[len - 1] == '/') {
      g[--len] = '\0';
      x->dir_only = 1;
    }
    if (len == 0) {
      h->set_error(h, "option 'exclude': pattern '/' would exclude everything; list paths instead");
      engine_strv_free(globs, n);
      return ENGINE_ERROR;
    }
    if (g[0] == '/')
      x->mode = FILES_EXCLUDE_ANCHORED;
    else if (strchr(g, '/') != NULL)
      x->mode = FILES_EXCLUDE_SUFFIX;
    else
      x->mode = FILES_EXCLUDE_BASENAME;
  }
  engine_strv_free(globs, n);
  return ENGINE_OK;
}

static int files_create(const struct engine_host *host, void **out) {
  struct files_inst *in = calloc(1, sizeof(*in));
  if (in == NULL) {
    host->set_error(host, "unable to create the files source: out of memory");
    return ENGINE_ERROR;
  }
  in->host = host;
  if (engine_cfg_strv(host, "paths", &in->paths, &in->n_paths) != ENGINE_OK ||
      compile_excludes(host, in) != ENGINE_OK) {
    files_destroy(in);
    return ENGINE_ERROR;
  }
  if (in->n_paths == 0) {
    host->set_error(host, "option 'paths' is required: list the files or directories to back up");
    files_destroy(in);
    return ENGINE_ERROR;
  }
  for (size_t i = 0; i < in->n_paths; i++) {
    /* Item names are absolute paths; a relative one would depend on the
     * working directory of whoever runs the pipeline. */
    if (in->paths[i][0] != '/') {
      host->set_error(host, "option 'paths': '%s' is not an absolute path", in->paths[i]);
      files_destroy(in);
      return ENGINE_ERROR;
    }
  }
  in->one_file_system = host->cfg_bool(host, "one_file_system", 0);
  in->xattrs = host->cfg_bool(host, "xattrs", 1);
  in->file_flags = host->cfg_bool(host, "file_flags", 1);
  *out = in;
  return ENGINE_OK;
}

static const struct engine_source_ops files_source_ops = {
    .struct_size = sizeof(struct engine_source_ops),
    .backup = files_backup,
    .restore_begin = files_restore_begin,
    .restore_item = files_restore_item,
    .restore_end = files_restore_end,
    .capabilities = ENGINE_SOURCE_CAP_INCREMENTAL | ENGINE_SOURCE_CAP_RESTORE_TEST |
                    ENGINE_SOURCE_CAP_CANONICAL_META, /* files_meta_dump */
};

static const struct engine_plugin files_plugin = {
    ENGINE_PLUGIN_HEADER,
    .kind = ENGINE_PLUGIN_SOURCE,
    .name = "files",
    .version = "1.1.0",
    .license = "MIT",
    .description = "Files, directories, symlinks, hard links and special files, with ownership, "
                   "modes, timestamps, sparse files, extended attributes (ACLs, capabilities) "
                   "and inode flags.",
    .options = files_options,
    .create = files_create,
    .destroy = files_destroy,
    .source = &files_source_ops,
};

ENGINE_PLUGIN_EXPORT const struct engine_plugin *engine_plugin_query(uint32_t host_abi_major) {
  if (host_abi_major != ENGINE_ABI_MAJOR)
    return NULL;
  return &files_plugin;
}
