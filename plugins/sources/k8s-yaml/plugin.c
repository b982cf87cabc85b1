/* The `k8s-yaml` source plugin: descriptor, option schema and instance
 * lifecycle (docs/sources/k8s-yaml.md). */
#include <stdlib.h>
#include <string.h>

#include "k8s.h"
#include "engine/helpers.h"

static const struct engine_option k8s_options[] = {
    {.name = "kubeconfig",
     .type = ENGINE_OPT_STRING,
     .description = "kubeconfig file (or a colon-separated list, merged as kubectl does); default: "
                    "$KUBECONFIG, else ~/.kube/config, else the in-cluster service account."},
    {.name = "context",
     .type = ENGINE_OPT_STRING,
     .description = "kubeconfig context to use; default: its current-context."},
    {.name = "namespaces",
     .type = ENGINE_OPT_STRING_LIST,
     .description = "Globs of the namespaces to back up (default: all)."},
    {.name = "exclude_namespaces",
     .type = ENGINE_OPT_STRING_LIST,
     .description = "Globs of namespaces to leave out (\"kube-*\")."},
    {.name = "resources",
     .type = ENGINE_OPT_STRING_LIST,
     .description = "Globs of the resources to back up, as RESOURCE.GROUP (\"deployments.apps\", "
                    "\"configmaps\", \"*.example.com\"); a pattern without a dot also matches the "
                    "bare resource name. Default: every resource the server lists."},
    {.name = "exclude_resources",
     .type = ENGINE_OPT_STRING_LIST,
     .description = "Globs of resources to leave out, written as for 'resources'."},
    {.name = "cluster_resources",
     .type = ENGINE_OPT_ENUM,
     .enum_values = "auto|none|all",
     .default_value = "auto",
     .description = "Cluster-scoped objects: auto (what the backed-up namespaces need: the "
                    "namespaces, CRDs of their custom resources, PVs bound to their PVCs, "
                    "ClusterRoles their RoleBindings name), none, or all."},
    {.name = "include_secrets",
     .type = ENGINE_OPT_BOOL,
     .default_value = "false",
     .description = "Back up Secrets too (their data then exists only inside the encrypted "
                    "repository); service-account token Secrets are never backed up."},
    {.name = "label_selector",
     .type = ENGINE_OPT_STRING,
     .description = "Only objects matching this label selector (\"app=shop,tier!=cache\"); the "
                    "cluster objects 'auto' adds are not filtered."},
    {.name = "page_size",
     .type = ENGINE_OPT_INT,
     .default_value = "500",
     .description = "Objects per list request (limit + continue), as kubectl's --chunk-size."},
    {.name = "timeout",
     .type = ENGINE_OPT_DURATION,
     .default_value = "60s",
     .description = "Longest a single API request may take."},
    {.name = "connect_timeout",
     .type = ENGINE_OPT_DURATION,
     .default_value = "10s",
     .description = "Longest the connection to the API server may take to open."},
    {.name = "max_retries",
     .type = ENGINE_OPT_INT,
     .default_value = "5",
     .description = "Retries of a request after a transport error, 429 or 5xx (with backoff)."},
    {.name = "crd_wait",
     .type = ENGINE_OPT_DURATION,
     .default_value = "60s",
     .description = "How long a restore waits for restored CRDs to become Established."},
    {.name = "exec_env",
     .type = ENGINE_OPT_STRING_LIST,
     .description = "More environment variables (names or globs such as \"AWS_*\") handed to exec "
                    "credential plugins besides the non-secret ones of the cloud CLIs."},
    {.name = "service_account_dir",
     .type = ENGINE_OPT_STRING,
     .default_value = "/var/run/secrets/kubernetes.io/serviceaccount",
     .description = "Where the in-cluster token, ca.crt and namespace files are."},
    {.name = NULL},
};

static const struct engine_option_bounds k8s_bounds[] = {
    {.name = "page_size", .min = "1", .max = "100000"},
    {.name = "timeout", .min = "1s"},
    {.name = "connect_timeout", .min = "1s"},
    {.name = "max_retries", .min = "0", .max = "100"},
    {.name = "crd_wait", .min = "0s"},
    {.name = NULL},
};

static void k8s_destroy(void *p) {
  struct k8s_inst *in = p;
  if (!in)
    return;
  free(in->kubeconfig);
  free(in->context);
  free(in->sa_dir);
  free(in->label_selector);
  engine_strv_free(in->namespaces, in->n_namespaces);
  engine_strv_free(in->exclude_namespaces, in->n_exclude_namespaces);
  engine_strv_free(in->resources, in->n_resources);
  engine_strv_free(in->exclude_resources, in->n_exclude_resources);
  engine_strv_free(in->exec_env, in->n_exec_env);
  free(in);
}

static int opt_str(const struct engine_host *h, const char *opt, char **out) {
  const char *s = h->cfg_string(h, opt);
  *out = NULL;
  if (!s || !*s)
    return ENGINE_OK;
  *out = strdup(s);
  if (!*out) {
    h->set_error(h, "unable to read option '%s': out of memory", opt);
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

static int k8s_create(const struct engine_host *host, void **out) {
  struct k8s_inst *in = calloc(1, sizeof(*in));
  if (!in) {
    host->set_error(host, "unable to create the k8s-yaml source: out of memory");
    return ENGINE_ERROR;
  }
  in->h = host;
  if (opt_str(host, "kubeconfig", &in->kubeconfig) != ENGINE_OK ||
      opt_str(host, "context", &in->context) != ENGINE_OK ||
      opt_str(host, "service_account_dir", &in->sa_dir) != ENGINE_OK ||
      opt_str(host, "label_selector", &in->label_selector) != ENGINE_OK ||
      engine_cfg_strv(host, "namespaces", &in->namespaces, &in->n_namespaces) != ENGINE_OK ||
      engine_cfg_strv(host, "exclude_namespaces", &in->exclude_namespaces,
                      &in->n_exclude_namespaces) != ENGINE_OK ||
      engine_cfg_strv(host, "resources", &in->resources, &in->n_resources) != ENGINE_OK ||
      engine_cfg_strv(host, "exclude_resources", &in->exclude_resources,
                      &in->n_exclude_resources) != ENGINE_OK ||
      engine_cfg_strv(host, "exec_env", &in->exec_env, &in->n_exec_env) != ENGINE_OK) {
    k8s_destroy(in);
    return ENGINE_ERROR;
  }
  if (!in->sa_dir) {
    in->sa_dir = strdup("/var/run/secrets/kubernetes.io/serviceaccount");
    if (!in->sa_dir) {
      host->set_error(host, "out of memory");
      k8s_destroy(in);
      return ENGINE_ERROR;
    }
  }
  const char *cl = host->cfg_string(host, "cluster_resources");
  in->cluster = !cl || strcmp(cl, "auto") == 0 ? K8S_CLUSTER_AUTO
                : strcmp(cl, "none") == 0      ? K8S_CLUSTER_NONE
                                               : K8S_CLUSTER_ALL;
  in->include_secrets = host->cfg_bool(host, "include_secrets", 0);
  in->page_size = host->cfg_int(host, "page_size", 500);
  in->timeout_ms = host->cfg_int(host, "timeout", 60000);
  in->connect_timeout_ms = host->cfg_int(host, "connect_timeout", 10000);
  in->max_retries = (int)host->cfg_int(host, "max_retries", 5);
  in->crd_wait_ms = host->cfg_int(host, "crd_wait", 60000);
  /* bounds are the engine's to check from ABI 1.5; an older one does not */
  if (in->page_size < 1 || in->max_retries < 0 || in->max_retries > 100) {
    host->set_error(host, "option 'page_size' must be at least 1 and 'max_retries' 0 to 100");
    k8s_destroy(in);
    return ENGINE_ERROR;
  }
  *out = in;
  return ENGINE_OK;
}

static const struct engine_source_ops k8s_source_ops = {
    .struct_size = sizeof(struct engine_source_ops),
    .backup = k8s_backup,
    .restore_begin = k8s_restore_begin,
    .restore_item = k8s_restore_item,
    .restore_end = k8s_restore_end,
#ifdef ENGINE_SOURCE_CAP_DRY_RUN
    /* restore --dry-run reaches the plugin: a server-side dry run */
    .capabilities = ENGINE_SOURCE_CAP_DRY_RUN,
#endif
};

static const struct engine_plugin k8s_plugin = {
    ENGINE_PLUGIN_HEADER,
    .kind = ENGINE_PLUGIN_SOURCE,
    .name = "k8s-yaml",
    .version = "1.0.0",
    .license = "MIT",
    .description = "A Kubernetes cluster's resources (CRDs and custom resources included) as "
                   "clean, apply-ready YAML, one item per object; restored to a directory, to "
                   "stdout or to a cluster by server-side apply in dependency order.",
    .options = k8s_options,
    .option_bounds = k8s_bounds,
    .create = k8s_create,
    .destroy = k8s_destroy,
    .source = &k8s_source_ops,
};

ENGINE_PLUGIN_EXPORT const struct engine_plugin *engine_plugin_query(uint32_t host_abi_major) {
  if (host_abi_major != ENGINE_ABI_MAJOR)
    return NULL;
  return &k8s_plugin;
}
