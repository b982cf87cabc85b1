/* Credentials as kubectl resolves them.
 *
 * Which kubeconfig: the `kubeconfig` option (a path or a colon-separated
 * list), else $KUBECONFIG (a list; files that do not exist are skipped, as
 * kubectl does), else ~/.kube/config; with none of these, the in-cluster
 * service account (token, ca.crt and namespace under the service-account
 * directory, the server from KUBERNETES_SERVICE_HOST/PORT). Several files are
 * merged as kubectl merges them: the first file that names a cluster, user or
 * context wins, and the first current-context set. Relative paths in a file
 * are relative to that file's directory.
 *
 * Files are read with libyaml's document loader, so every complaint names the
 * file and the line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "k8s.h"

#define MAX_FILE (16 * 1024 * 1024)

struct kcfile {
  char *path;
  char *dir;
  yaml_document_t doc;
  int loaded;
};

struct kc {
  const struct engine_host *h;
  struct kcfile *f;
  size_t n;
};

/* ---- reading -------------------------------------------------------------------- */

static char *read_file(const struct engine_host *h, const char *path, const char *what,
                       size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    h->set_error(h, "unable to read %s %s: %s", what, path, strerror(errno));
    return NULL;
  }
  struct k8s_buf b = {0};
  char tmp[8192];
  size_t n;
  while ((n = fread(tmp, 1, sizeof(tmp), fp)) > 0) {
    k8s_buf_add(&b, tmp, n);
    if (b.len > MAX_FILE) {
      fclose(fp);
      k8s_buf_free(&b);
      h->set_error(h, "%s %s is larger than 16 MiB", what, path);
      return NULL;
    }
  }
  int bad = ferror(fp);
  fclose(fp);
  if (bad || b.oom) {
    h->set_error(h, "unable to read %s %s: %s", what, path, bad ? "read error" : "out of memory");
    k8s_buf_free(&b);
    return NULL;
  }
  if (!b.p) {
    b.p = strdup("");
    if (!b.p) {
      h->set_error(h, "out of memory");
      return NULL;
    }
  }
  *len = b.len;
  return b.p;
}

static int b64val(int c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+' || c == '-')
    return 62;
  if (c == '/' || c == '_')
    return 63;
  return -1;
}

/* Standard or URL-safe base64, whitespace ignored. NULL when invalid. */
static char *b64decode(const char *s, size_t *out_len) {
  size_t n = strlen(s);
  char *out = malloc(n / 4 * 3 + 4);
  if (!out)
    return NULL;
  unsigned acc = 0;
  int bits = 0;
  size_t o = 0;
  for (const char *p = s; *p; p++) {
    if (*p == '=' || *p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
      continue;
    int v = b64val((unsigned char)*p);
    if (v < 0) {
      free(out);
      return NULL;
    }
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (char)((acc >> bits) & 0xff);
    }
  }
  out[o] = '\0';
  *out_len = o;
  return out;
}

/* ---- YAML nodes ----------------------------------------------------------------- */

static size_t line_of(yaml_node_t *n) {
  return n ? (size_t)n->start_mark.line + 1 : 0;
}

static yaml_node_t *map_get(yaml_document_t *d, yaml_node_t *m, const char *key) {
  if (!m || m->type != YAML_MAPPING_NODE)
    return NULL;
  for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(d, p->key);
    if (k && k->type == YAML_SCALAR_NODE && k->data.scalar.length == strlen(key) &&
        memcmp(k->data.scalar.value, key, k->data.scalar.length) == 0)
      return yaml_document_get_node(d, p->value);
  }
  return NULL;
}

/* The scalar's text (NUL-terminated by libyaml), or NULL for null/absent. */
static const char *scalar(yaml_node_t *n) {
  if (!n || n->type != YAML_SCALAR_NODE)
    return NULL;
  const char *s = (const char *)n->data.scalar.value;
  if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
      (strcmp(s, "") == 0 || strcmp(s, "null") == 0 || strcmp(s, "~") == 0))
    return NULL;
  return s;
}

/* A string field: absent is fine (NULL), anything but a scalar is an error. */
static int str_field(struct kc *k, struct kcfile *f, yaml_node_t *m, const char *key,
                     const char **out) {
  yaml_node_t *n = map_get(&f->doc, m, key);
  *out = NULL;
  if (!n)
    return ENGINE_OK;
  if (n->type != YAML_SCALAR_NODE) {
    k->h->set_error(k->h, "%s:%zu: '%s' must be a string", f->path, line_of(n), key);
    return ENGINE_ERROR;
  }
  *out = scalar(n);
  return ENGINE_OK;
}

static int bool_field(struct kc *k, struct kcfile *f, yaml_node_t *m, const char *key, int *out) {
  const char *s;
  *out = 0;
  if (str_field(k, f, m, key, &s) != ENGINE_OK)
    return ENGINE_ERROR;
  if (!s)
    return ENGINE_OK;
  if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "yes") || !strcmp(s, "on"))
    *out = 1;
  else if (strcmp(s, "false") && strcmp(s, "False") && strcmp(s, "no") && strcmp(s, "off")) {
    k->h->set_error(k->h, "%s:%zu: '%s' must be true or false, not '%s'", f->path,
                    line_of(map_get(&f->doc, m, key)), key, s);
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

static int load_file(struct kc *k, const char *path) {
  const struct engine_host *h = k->h;
  size_t len;
  char *text = read_file(h, path, "kubeconfig", &len);
  if (!text)
    return ENGINE_ERROR;
  struct kcfile *nf = realloc(k->f, (k->n + 1) * sizeof(*nf));
  if (!nf) {
    free(text);
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  k->f = nf;
  struct kcfile *f = &k->f[k->n];
  memset(f, 0, sizeof(*f));
  f->path = strdup(path);
  const char *slash = strrchr(path, '/');
  f->dir = slash ? strndup(path, (size_t)(slash - path + (slash == path))) : strdup(".");
  k->n++;
  if (!f->path || !f->dir) {
    free(text);
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p)) {
    free(text);
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
  int ok = yaml_parser_load(&p, &f->doc);
  if (!ok) {
    h->set_error(h, "%s:%zu:%zu: the kubeconfig is not valid YAML: %s%s%s", path,
                 (size_t)p.problem_mark.line + 1, (size_t)p.problem_mark.column + 1,
                 p.problem ? p.problem : "parse error", p.context ? " " : "",
                 p.context ? p.context : "");
    yaml_parser_delete(&p);
    free(text);
    return ENGINE_ERROR;
  }
  f->loaded = 1;
  yaml_parser_delete(&p);
  free(text);
  yaml_node_t *root = yaml_document_get_root_node(&f->doc);
  if (root && root->type != YAML_MAPPING_NODE) {
    h->set_error(h,
                 "%s:%zu: a kubeconfig is a mapping (apiVersion, clusters, contexts, users), "
                 "not a %s",
                 path, line_of(root), root->type == YAML_SEQUENCE_NODE ? "list" : "scalar");
    return ENGINE_ERROR;
  }
  yaml_node_t *kind = map_get(&f->doc, root, "kind");
  if (kind && scalar(kind) && strcmp(scalar(kind), "Config") != 0) {
    h->set_error(h, "%s:%zu: kind is '%s'; a kubeconfig has kind Config", path, line_of(kind),
                 scalar(kind));
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

static void kc_free(struct kc *k) {
  for (size_t i = 0; i < k->n; i++) {
    if (k->f[i].loaded)
      yaml_document_delete(&k->f[i].doc);
    free(k->f[i].path);
    free(k->f[i].dir);
  }
  free(k->f);
}

/* Find the entry `name` of the list `list` (clusters, users, contexts) in the
 * first file that has it; *inner is its `cluster` / `user` / `context`. */
static int find_named(struct kc *k, const char *list, const char *inner_key, const char *name,
                      struct kcfile **file, yaml_node_t **entry, yaml_node_t **inner) {
  for (size_t i = 0; i < k->n; i++) {
    struct kcfile *f = &k->f[i];
    yaml_node_t *l = map_get(&f->doc, yaml_document_get_root_node(&f->doc), list);
    if (!l)
      continue;
    if (l->type != YAML_SEQUENCE_NODE) {
      k->h->set_error(k->h, "%s:%zu: '%s' must be a list", f->path, line_of(l), list);
      return ENGINE_ERROR;
    }
    for (yaml_node_item_t *it = l->data.sequence.items.start; it < l->data.sequence.items.top;
         it++) {
      yaml_node_t *e = yaml_document_get_node(&f->doc, *it);
      const char *n = scalar(map_get(&f->doc, e, "name"));
      if (n && strcmp(n, name) == 0) {
        *file = f;
        *entry = e;
        *inner = map_get(&f->doc, e, inner_key);
        if (!*inner || (*inner)->type != YAML_MAPPING_NODE) {
          k->h->set_error(k->h, "%s:%zu: %s entry '%s' has no '%s' mapping", f->path, line_of(e),
                          list, name, inner_key);
          return ENGINE_ERROR;
        }
        return ENGINE_OK;
      }
    }
  }
  return ENGINE_NOT_FOUND;
}

/* "a, b, c" of the names in list over all files, for messages. */
static char *names_of(struct kc *k, const char *list) {
  struct k8s_buf b = {0};
  for (size_t i = 0; i < k->n; i++) {
    struct kcfile *f = &k->f[i];
    yaml_node_t *l = map_get(&f->doc, yaml_document_get_root_node(&f->doc), list);
    if (!l || l->type != YAML_SEQUENCE_NODE)
      continue;
    for (yaml_node_item_t *it = l->data.sequence.items.start; it < l->data.sequence.items.top;
         it++) {
      const char *n = scalar(map_get(&f->doc, yaml_document_get_node(&f->doc, *it), "name"));
      if (n) {
        if (b.len)
          k8s_buf_str(&b, ", ");
        k8s_buf_str(&b, n);
      }
    }
  }
  if (!b.p)
    return strdup("none");
  return b.p;
}

static char *files_of(struct kc *k) {
  struct k8s_buf b = {0};
  for (size_t i = 0; i < k->n; i++) {
    if (i)
      k8s_buf_str(&b, i + 1 == k->n ? " and " : ", ");
    k8s_buf_str(&b, k->f[i].path);
  }
  return b.p ? b.p : strdup("");
}

static char *resolve_path(struct kcfile *f, const char *p) {
  if (p[0] == '/')
    return strdup(p);
  if (p[0] == '~' && p[1] == '/' && getenv("HOME"))
    return k8s_strf("%s/%s", getenv("HOME"), p + 2);
  return k8s_strf("%s/%s", f->dir, p);
}

/* data (base64) into a memfd, or a file path resolved against the kubeconfig. */
static int pem_source(struct kc *k, struct kcfile *f, yaml_node_t *m, const char *file_key,
                      const char *data_key, const char *what, char **path, int *fd,
                      char **data_out) {
  const char *file, *data;
  if (str_field(k, f, m, file_key, &file) != ENGINE_OK ||
      str_field(k, f, m, data_key, &data) != ENGINE_OK)
    return ENGINE_ERROR;
  if (data) {
    size_t n;
    char *pem = b64decode(data, &n);
    if (!pem) {
      k->h->set_error(k->h, "%s:%zu: '%s' is not valid base64", f->path,
                      line_of(map_get(&f->doc, m, data_key)), data_key);
      return ENGINE_ERROR;
    }
    int rc = k8s_memfd(k->h, what, pem, n, fd, path);
    if (data_out && rc == ENGINE_OK)
      *data_out = strdup(pem);
    explicit_bzero(pem, n);
    free(pem);
    return rc;
  }
  if (file) {
    *path = resolve_path(f, file);
    if (!*path) {
      k->h->set_error(k->h, "out of memory");
      return ENGINE_ERROR;
    }
    if (access(*path, R_OK) != 0) {
      k->h->set_error(k->h, "%s:%zu: %s %s (%s) cannot be read: %s", f->path,
                      line_of(map_get(&f->doc, m, file_key)), file_key, *path, what,
                      strerror(errno));
      return ENGINE_ERROR;
    }
    if (data_out) {
      size_t n;
      *data_out = read_file(k->h, *path, what, &n);
      if (!*data_out)
        return ENGINE_ERROR;
    }
  }
  return ENGINE_OK;
}

static int load_exec(struct kc *k, struct kcfile *f, yaml_node_t *ex, struct k8s_creds *cr) {
  const struct engine_host *h = k->h;
  yaml_document_t *d = &f->doc;
  if (ex->type != YAML_MAPPING_NODE) {
    h->set_error(h, "%s:%zu: 'exec' must be a mapping", f->path, line_of(ex));
    return ENGINE_ERROR;
  }
  struct k8s_exec *e = calloc(1, sizeof(*e));
  if (!e) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  cr->exec = e;
  const char *api, *cmd, *hint, *mode;
  int pci = 0;
  if (str_field(k, f, ex, "apiVersion", &api) != ENGINE_OK ||
      str_field(k, f, ex, "command", &cmd) != ENGINE_OK ||
      str_field(k, f, ex, "installHint", &hint) != ENGINE_OK ||
      str_field(k, f, ex, "interactiveMode", &mode) != ENGINE_OK ||
      bool_field(k, f, ex, "provideClusterInfo", &pci) != ENGINE_OK)
    return ENGINE_ERROR;
  if (!cmd) {
    h->set_error(h, "%s:%zu: the exec credential plugin has no 'command'", f->path, line_of(ex));
    return ENGINE_ERROR;
  }
  if (!api || (strcmp(api, "client.authentication.k8s.io/v1") != 0 &&
               strcmp(api, "client.authentication.k8s.io/v1beta1") != 0)) {
    h->set_error(h,
                 "%s:%zu: exec apiVersion is '%s'; supported are client.authentication.k8s.io/v1 "
                 "and client.authentication.k8s.io/v1beta1",
                 f->path, line_of(ex), api ? api : "(missing)");
    return ENGINE_ERROR;
  }
  e->api_version = strdup(api);
  /* a relative command with a slash is relative to the kubeconfig, as kubectl does */
  e->command = (strchr(cmd, '/') && cmd[0] != '/') ? resolve_path(f, cmd) : strdup(cmd);
  e->install_hint = hint ? strdup(hint) : NULL;
  e->provide_cluster_info = pci;
  e->interactive_always = mode && strcmp(mode, "Always") == 0;
  yaml_node_t *args = map_get(d, ex, "args");
  size_t nargs = args && args->type == YAML_SEQUENCE_NODE
                     ? (size_t)(args->data.sequence.items.top - args->data.sequence.items.start)
                     : 0;
  if (args && args->type != YAML_SEQUENCE_NODE && scalar(args)) {
    h->set_error(h, "%s:%zu: exec 'args' must be a list", f->path, line_of(args));
    return ENGINE_ERROR;
  }
  e->argv = calloc(nargs + 2, sizeof(char *));
  if (!e->argv || !e->api_version || !e->command) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  e->argv[0] = strdup(e->command);
  for (size_t i = 0; i < nargs; i++) {
    yaml_node_t *a = yaml_document_get_node(d, args->data.sequence.items.start[i]);
    if (!a || a->type != YAML_SCALAR_NODE) {
      h->set_error(h, "%s:%zu: exec args must be strings", f->path, line_of(a));
      return ENGINE_ERROR;
    }
    e->argv[i + 1] = strdup((const char *)a->data.scalar.value);
  }
  yaml_node_t *env = map_get(d, ex, "env");
  size_t nenv = env && env->type == YAML_SEQUENCE_NODE
                    ? (size_t)(env->data.sequence.items.top - env->data.sequence.items.start)
                    : 0;
  e->env = calloc(nenv + 1, sizeof(char *));
  if (!e->env) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  for (size_t i = 0; i < nenv; i++) {
    yaml_node_t *v = yaml_document_get_node(d, env->data.sequence.items.start[i]);
    const char *name = scalar(map_get(d, v, "name")), *value = scalar(map_get(d, v, "value"));
    if (!name) {
      h->set_error(h, "%s:%zu: exec env entries need a 'name'", f->path, line_of(v));
      return ENGINE_ERROR;
    }
    e->env[i] = k8s_strf("%s=%s", name, value ? value : "");
  }
  return ENGINE_OK;
}

static int load_user(struct kc *k, struct kcfile *f, yaml_node_t *u, struct k8s_creds *cr) {
  const struct engine_host *h = k->h;
  const char *token, *token_file, *username, *as;
  if (str_field(k, f, u, "token", &token) != ENGINE_OK ||
      str_field(k, f, u, "tokenFile", &token_file) != ENGINE_OK ||
      str_field(k, f, u, "username", &username) != ENGINE_OK ||
      str_field(k, f, u, "as", &as) != ENGINE_OK)
    return ENGINE_ERROR;
  if (as || map_get(&f->doc, u, "as-groups")) {
    h->set_error(h,
                 "%s:%zu: impersonation ('as', 'as-groups') is not supported; give the backup "
                 "its own user or service account",
                 f->path, line_of(u));
    return ENGINE_ERROR;
  }
  if (username || map_get(&f->doc, u, "password")) {
    h->set_error(h,
                 "%s:%zu: basic authentication (username/password) is not supported; use a "
                 "token, a client certificate or an exec plugin",
                 f->path, line_of(u));
    return ENGINE_ERROR;
  }
  yaml_node_t *ap = map_get(&f->doc, u, "auth-provider");
  if (ap) {
    const char *name = scalar(map_get(&f->doc, ap, "name"));
    h->set_error(h,
                 "%s:%zu: the '%s' auth-provider is not supported (kubectl removed it too); use "
                 "the exec credential plugin of your provider (gke-gcloud-auth-plugin, kubelogin, "
                 "aws eks get-token)",
                 f->path, line_of(ap), name ? name : "?");
    return ENGINE_ERROR;
  }
  if (pem_source(k, f, u, "client-certificate", "client-certificate-data", "client certificate",
                 &cr->cert_path, &cr->cert_fd, NULL) != ENGINE_OK ||
      pem_source(k, f, u, "client-key", "client-key-data", "client key", &cr->key_path, &cr->key_fd,
                 NULL) != ENGINE_OK)
    return ENGINE_ERROR;
  if (!cr->cert_path != !cr->key_path) {
    h->set_error(h,
                 "%s:%zu: a client certificate needs its key and the other way round (%s is "
                 "missing)",
                 f->path, line_of(u), cr->cert_path ? "client-key" : "client-certificate");
    return ENGINE_ERROR;
  }
  if (token) {
    cr->token = strdup(token);
  } else if (token_file) {
    cr->token_file = resolve_path(f, token_file);
    if (cr->token_file && access(cr->token_file, R_OK) != 0) {
      h->set_error(h, "%s:%zu: tokenFile %s cannot be read: %s", f->path,
                   line_of(map_get(&f->doc, u, "tokenFile")), cr->token_file, strerror(errno));
      return ENGINE_ERROR;
    }
  }
  yaml_node_t *ex = map_get(&f->doc, u, "exec");
  if (ex && load_exec(k, f, ex, cr) != ENGINE_OK)
    return ENGINE_ERROR;
  return ENGINE_OK;
}

static int load_cluster(struct kc *k, struct kcfile *f, yaml_node_t *c, struct k8s_creds *cr) {
  const struct engine_host *h = k->h;
  const char *server, *tsn, *proxy;
  if (str_field(k, f, c, "server", &server) != ENGINE_OK ||
      str_field(k, f, c, "tls-server-name", &tsn) != ENGINE_OK ||
      str_field(k, f, c, "proxy-url", &proxy) != ENGINE_OK ||
      bool_field(k, f, c, "insecure-skip-tls-verify", &cr->insecure) != ENGINE_OK)
    return ENGINE_ERROR;
  if (!server) {
    h->set_error(h, "%s:%zu: cluster '%s' has no server", f->path, line_of(c), cr->cluster_name);
    return ENGINE_ERROR;
  }
  if (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0) {
    h->set_error(h,
                 "%s:%zu: the server of cluster '%s' is '%s'; expected an https:// (or "
                 "http://) URL",
                 f->path, line_of(map_get(&f->doc, c, "server")), cr->cluster_name, server);
    return ENGINE_ERROR;
  }
  if (proxy) {
    h->set_error(h,
                 "%s:%zu: 'proxy-url' is not supported; the engine's HTTP client follows "
                 "HTTPS_PROXY / NO_PROXY from the environment",
                 f->path, line_of(map_get(&f->doc, c, "proxy-url")));
    return ENGINE_ERROR;
  }
  cr->server = strdup(server);
  if (!cr->server) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  size_t sl = strlen(cr->server);
  while (sl > 0 && cr->server[sl - 1] == '/')
    cr->server[--sl] = '\0';
  if (tsn)
    cr->tls_server_name = strdup(tsn);
  return pem_source(k, f, c, "certificate-authority", "certificate-authority-data",
                    "cluster CA certificate", &cr->ca_path, &cr->ca_fd, &cr->ca_data);
}

static int from_kubeconfig(struct kc *k, const char *context, struct k8s_creds *cr) {
  const struct engine_host *h = k->h;
  const char *ctx = context;
  if (!ctx) {
    for (size_t i = 0; i < k->n && !ctx; i++) {
      struct kcfile *f = &k->f[i];
      ctx = scalar(map_get(&f->doc, yaml_document_get_root_node(&f->doc), "current-context"));
    }
  }
  char *files = files_of(k);
  if (!ctx) {
    h->set_error(h, "%s sets no current-context: name one with the 'context' option", files);
    free(files);
    return ENGINE_ERROR;
  }
  struct kcfile *f, *uf, *cf;
  yaml_node_t *e, *cx, *ue, *u, *ce, *c;
  int rc = find_named(k, "contexts", "context", ctx, &f, &e, &cx);
  if (rc == ENGINE_NOT_FOUND) {
    char *names = names_of(k, "contexts");
    h->set_error(h, "context '%s' is not in %s (contexts there: %s)", ctx, files, names);
    free(names);
  }
  free(files);
  if (rc != ENGINE_OK)
    return ENGINE_ERROR;
  const char *cluster, *user, *ns;
  if (str_field(k, f, cx, "cluster", &cluster) != ENGINE_OK ||
      str_field(k, f, cx, "user", &user) != ENGINE_OK ||
      str_field(k, f, cx, "namespace", &ns) != ENGINE_OK)
    return ENGINE_ERROR;
  if (!cluster) {
    h->set_error(h, "%s:%zu: context '%s' names no cluster", f->path, line_of(e), ctx);
    return ENGINE_ERROR;
  }
  cr->origin = k8s_strf("context '%s' of %s", ctx, f->path);
  cr->cluster_name = strdup(cluster);
  cr->ns = ns ? strdup(ns) : NULL;
  rc = find_named(k, "clusters", "cluster", cluster, &cf, &ce, &c);
  if (rc == ENGINE_NOT_FOUND)
    h->set_error(h, "%s:%zu: context '%s' names cluster '%s', which no kubeconfig file defines",
                 f->path, line_of(map_get(&f->doc, cx, "cluster")), ctx, cluster);
  if (rc != ENGINE_OK || load_cluster(k, cf, c, cr) != ENGINE_OK)
    return ENGINE_ERROR;
  if (user) {
    rc = find_named(k, "users", "user", user, &uf, &ue, &u);
    if (rc == ENGINE_NOT_FOUND)
      h->set_error(h, "%s:%zu: context '%s' names user '%s', which no kubeconfig file defines",
                   f->path, line_of(map_get(&f->doc, cx, "user")), ctx, user);
    if (rc != ENGINE_OK || load_user(k, uf, u, cr) != ENGINE_OK)
      return ENGINE_ERROR;
  }
  if (!cr->origin || !cr->cluster_name) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

/* ---- entry points ------------------------------------------------------------------ */

static void creds_init(struct k8s_creds *cr) {
  memset(cr, 0, sizeof(*cr));
  cr->ca_fd = cr->cert_fd = cr->key_fd = -1;
}

void k8s_creds_free(struct k8s_creds *c) {
  if (!c)
    return;
  free(c->origin);
  free(c->server);
  free(c->ca_path);
  free(c->ca_data);
  free(c->tls_server_name);
  free(c->cert_path);
  free(c->key_path);
  if (c->ca_fd >= 0)
    close(c->ca_fd);
  if (c->cert_fd >= 0)
    close(c->cert_fd);
  if (c->key_fd >= 0)
    close(c->key_fd);
  k8s_wipe_free(c->token);
  free(c->token_file);
  if (c->exec) {
    free(c->exec->api_version);
    free(c->exec->command);
    for (size_t i = 0; c->exec->argv && c->exec->argv[i]; i++)
      free(c->exec->argv[i]);
    free(c->exec->argv);
    for (size_t i = 0; c->exec->env && c->exec->env[i]; i++)
      k8s_wipe_free(c->exec->env[i]);
    free(c->exec->env);
    free(c->exec->install_hint);
    free(c->exec);
  }
  free(c->ns);
  free(c->cluster_name);
  creds_init(c);
}

int k8s_creds_in_cluster(const struct engine_host *h, const char *sa_dir, struct k8s_creds *cr) {
  creds_init(cr);
  const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !*host || !port || !*port) {
    h->set_error(h, "not running in a cluster: KUBERNETES_SERVICE_HOST and "
                    "KUBERNETES_SERVICE_PORT are not set");
    return ENGINE_ERROR;
  }
  cr->origin = k8s_strf("the in-cluster service account (%s)", sa_dir);
  cr->server = strchr(host, ':') ? k8s_strf("https://[%s]:%s", host, port)
                                 : k8s_strf("https://%s:%s", host, port);
  cr->token_file = k8s_strf("%s/token", sa_dir);
  cr->ca_path = k8s_strf("%s/ca.crt", sa_dir);
  cr->cluster_name = strdup("in-cluster");
  if (!cr->origin || !cr->server || !cr->token_file || !cr->ca_path || !cr->cluster_name) {
    h->set_error(h, "out of memory");
    k8s_creds_free(cr);
    return ENGINE_ERROR;
  }
  const char *need[] = {cr->token_file, cr->ca_path};
  for (size_t i = 0; i < 2; i++) {
    if (access(need[i], R_OK) != 0) {
      h->set_error(h,
                   "in-cluster credentials: %s cannot be read: %s (is a service account "
                   "mounted into this pod?)",
                   need[i], strerror(errno));
      k8s_creds_free(cr);
      return ENGINE_ERROR;
    }
  }
  size_t n;
  char *nsfile = k8s_strf("%s/namespace", sa_dir);
  char *ns =
      nsfile && access(nsfile, R_OK) == 0 ? read_file(h, nsfile, "namespace file", &n) : NULL;
  if (ns) {
    ns[strcspn(ns, "\r\n")] = '\0';
    cr->ns = ns;
  }
  free(nsfile);
  return ENGINE_OK;
}

static int is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int k8s_creds_load(const struct engine_host *h, const char *kubeconfig, const char *context,
                   const char *sa_dir, struct k8s_creds *cr) {
  creds_init(cr);
  struct kc k = {.h = h};
  const char *list = kubeconfig;
  int explicit_list = list != NULL;
  char *home_cfg = NULL;
  if (!list) {
    const char *env = getenv("KUBECONFIG");
    if (env && *env) {
      list = env;
    } else if (getenv("HOME")) {
      home_cfg = k8s_strf("%s/.kube/config", getenv("HOME"));
      if (home_cfg && is_file(home_cfg))
        list = home_cfg;
    }
  }
  int rc = ENGINE_OK;
  if (list) {
    char *copy = strdup(list);
    char *save = NULL;
    for (char *p = copy ? strtok_r(copy, ":", &save) : NULL; p && rc == ENGINE_OK;
         p = strtok_r(NULL, ":", &save)) {
      if (!*p)
        continue;
      char *path = (p[0] == '~' && p[1] == '/' && getenv("HOME"))
                       ? k8s_strf("%s/%s", getenv("HOME"), p + 2)
                       : strdup(p);
      if (!path) {
        rc = ENGINE_ERROR;
        h->set_error(h, "out of memory");
        break;
      }
      /* kubectl skips files of $KUBECONFIG that do not exist; a configured
       * path that does not exist is an error */
      if (explicit_list || access(path, F_OK) == 0)
        rc = load_file(&k, path);
      free(path);
    }
    free(copy);
  }
  free(home_cfg);
  if (rc != ENGINE_OK) {
    kc_free(&k);
    return ENGINE_ERROR;
  }
  if (k.n == 0) {
    kc_free(&k);
    if (getenv("KUBERNETES_SERVICE_HOST") && !context)
      return k8s_creds_in_cluster(h, sa_dir, cr);
    h->set_error(h, "no Kubernetes credentials: no kubeconfig (the 'kubeconfig' option and "
                    "KUBECONFIG are unset, ~/.kube/config does not exist) and not running in a "
                    "cluster (KUBERNETES_SERVICE_HOST is unset)");
    return ENGINE_ERROR;
  }
  rc = from_kubeconfig(&k, context, cr);
  kc_free(&k);
  if (rc != ENGINE_OK)
    k8s_creds_free(cr);
  return rc;
}
