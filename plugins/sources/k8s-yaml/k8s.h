/* Internal interface of the `k8s-yaml` source plugin: a cluster's resources
 * as apply-ready YAML, one item per object, restored to a directory, to
 * stdout or to a cluster by server-side apply (docs/sources/k8s-yaml.md).
 *
 *   kubeconfig.c  credentials as kubectl resolves them (kubeconfig files,
 *                 contexts, in-cluster service-account files)
 *   exec.c        exec credential plugins (client.authentication.k8s.io)
 *   client.c      requests to the API server through the host's HTTP client
 *   discovery.c   served group/version/resources, the resource filters
 *   normalize.c   what is dropped and skipped, so the YAML is apply-ready
 *   yaml.c        YAML <-> JSON with libyaml (emitter and parser)
 *   backup.c      lists, pagination, the items
 *   restore.c     the restore targets; apply.c the cluster target */
#ifndef K8S_YAML_K8S_H
#define K8S_YAML_K8S_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "engine/plugin.h"

/* A growing byte buffer; oom is set (and further appends ignored) when an
 * allocation failed. */
struct k8s_buf {
  char *p;
  size_t len, cap;
  int oom;
};
void k8s_buf_add(struct k8s_buf *b, const void *data, size_t n);
void k8s_buf_str(struct k8s_buf *b, const char *s);
void k8s_buf_printf(struct k8s_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void k8s_buf_free(struct k8s_buf *b);
/* malloc'd formatted string, NULL on OOM */
char *k8s_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Overwrite and free a string that may hold a secret. */
void k8s_wipe_free(char *s);

/* ---- credentials (kubeconfig.c, exec.c) ---------------------------------- */

struct k8s_exec {
  char *api_version; /* client.authentication.k8s.io/v1 or v1beta1 */
  char *command;
  char **argv; /* command, args..., NULL */
  char **env;  /* NAME=VALUE from the kubeconfig, NULL-terminated */
  char *install_hint;
  int provide_cluster_info;
  int interactive_always;
};

/* Everything needed to talk to one API server, as resolved from a kubeconfig
 * context or the in-cluster files. Strings are malloc'd. */
struct k8s_creds {
  char *origin;  /* "context 'x' of /path/config" or "in-cluster service account" */
  char *server;  /* https://host:port[/prefix], no trailing slash */
  char *ca_path; /* CA file (given, or a memfd /proc/self/fd/N holding the data) */
  int ca_fd;
  char *ca_data; /* PEM, for exec plugins' cluster info; may be NULL */
  int insecure;
  char *tls_server_name;
  char *cert_path, *key_path; /* client certificate and key (files or memfds) */
  int cert_fd, key_fd;
  char *token;      /* static bearer token (secret) */
  char *token_file; /* read again every minute (rotated service-account tokens) */
  struct k8s_exec *exec;
  char *ns; /* the context's (or service account's) namespace; informational */
  char *cluster_name;
};

void k8s_creds_free(struct k8s_creds *c);
/* Resolve credentials like kubectl: `kubeconfig` (a path, or a colon-separated
 * list, merged), else $KUBECONFIG, else ~/.kube/config, else the in-cluster
 * files (sa_dir and KUBERNETES_SERVICE_HOST/PORT). context NULL: the
 * current-context. Errors name the file and line. */
int k8s_creds_load(const struct engine_host *h, const char *kubeconfig, const char *context,
                   const char *sa_dir, struct k8s_creds *out);
/* In-cluster credentials only (sa_dir and KUBERNETES_SERVICE_HOST/PORT). */
int k8s_creds_in_cluster(const struct engine_host *h, const char *sa_dir, struct k8s_creds *out);
/* A memfd (close-on-exec, mode 0600) holding data, and its /proc/self/fd
 * path: the host's HTTP client reads CA and client certificate files by
 * path, and these never touch a disk. */
int k8s_memfd(const struct engine_host *h, const char *what, const void *data, size_t len, int *fd,
              char **path);

/* The result of running an exec credential plugin. */
struct k8s_exec_cred {
  char *token;
  char *cert_pem, *key_pem;
  int64_t expires_ms; /* wall clock (ms since the epoch), 0: never */
};
void k8s_exec_cred_free(struct k8s_exec_cred *c);
/* Run the plugin through host->spawn (env: the kubeconfig's, KUBERNETES_EXEC_INFO,
 * and the engine's variables named in pass_env / with the prefixes the cloud
 * plugins read). */
int k8s_exec_run(const struct engine_host *h, const struct k8s_creds *cr, char **pass_env,
                 size_t n_pass_env, struct k8s_exec_cred *out);

/* ---- the API client (client.c) ------------------------------------------- */

struct k8s_client {
  const struct engine_host *h;
  struct k8s_creds cr;
  int64_t timeout_ms, connect_timeout_ms;
  int max_retries;
  char **pass_env;
  size_t n_pass_env;
  pthread_mutex_t mu;     /* the token cache below */
  char *token;            /* current bearer token (static, file or exec) */
  int64_t token_until_ms; /* monotonic ms after which the token is read/fetched again */
  struct k8s_exec_cred exec_cred;
  int exec_cert_fd, exec_key_fd;
  char *exec_cert_path, *exec_key_path;
  int can_patch; /* the host's HTTP client sends PATCH bodies (ENGINE_HTTP_EXT_MINOR) */
  int can_client_cert;
};

struct k8s_resp {
  long status;
  char *body;
  size_t len;
  char error[768]; /* why no response arrived (the message also set as the error) */
};

/* Takes ownership of cr (zeroed on return, also on failure). */
int k8s_client_init(struct k8s_client *c, const struct engine_host *h, struct k8s_creds *cr,
                    int64_t timeout_ms, int64_t connect_timeout_ms, int max_retries,
                    char **pass_env, size_t n_pass_env);
void k8s_client_free(struct k8s_client *c);
/* One request. path is below the server URL ("/api/v1/namespaces?limit=500").
 * ENGINE_OK when a response arrived (any status, in r), ENGINE_ERROR when
 * none did or the credentials could not be obtained (message set). A 401 is
 * retried once with fresh credentials (exec plugins, token files). */
int k8s_request(struct k8s_client *c, const char *method, const char *path, const char *ctype,
                const void *body, size_t len, int max_retries, struct k8s_resp *r);
void k8s_resp_free(struct k8s_resp *r);
/* "403 Forbidden: configmaps is forbidden: User ..." from a Status body.
 * malloc'd. */
char *k8s_resp_reason(const struct k8s_resp *r);
/* GET path and parse the JSON body. ENGINE_OK with *out for a 2xx;
 * ENGINE_NOT_FOUND for 404 (no message); ENGINE_ERROR otherwise with the
 * message set (what names the request for it). *status gets the HTTP status
 * (0: no response). */
int k8s_get_json(struct k8s_client *c, const char *path, const char *what, json_t **out,
                 long *status);
/* The same without setting the error: *why (malloc'd) says what went wrong
 * when ENGINE_ERROR is returned; NULL when the credentials could not be
 * obtained (that message is set already, do not replace it). */
int k8s_fetch_json(struct k8s_client *c, const char *path, json_t **out, long *status, char **why);
/* Percent-encode s for a URL query value or a path segment. malloc'd. */
char *k8s_urlenc(const char *s);

/* ---- discovery (discovery.c) --------------------------------------------- */

struct k8s_res {
  char *group;   /* "" for the core group */
  char *version; /* the preferred version */
  char *name;    /* plural resource name */
  char *kind;
  int namespaced;
  char *full; /* "deployments.apps", "configmaps" */
};

struct k8s_reslist {
  struct k8s_res *v;
  size_t n;
};
void k8s_reslist_free(struct k8s_reslist *l);
/* Every listable resource at its group's preferred version. A group version
 * that cannot be read is a warning through warn(ud, what, why). */
int k8s_discover(struct k8s_client *c, struct k8s_reslist *out,
                 void (*warn)(void *ud, const char *what, const char *why), void *ud);
/* The API path of a resource's collection: "/apis/apps/v1" + ("/namespaces/NS")
 * + "/deployments". ns NULL: across namespaces / cluster-scoped. */
char *k8s_res_path(const char *group, const char *version, const char *resource, const char *ns,
                   const char *name);
/* Does the glob list match "resource.group" (or the bare resource name when a
 * pattern has no dot)? */
int k8s_res_matches(char *const *globs, size_t n, const struct k8s_res *r);
/* Resources never backed up, with the reason (documented). NULL: keep. */
const char *k8s_res_skipped(const struct k8s_res *r);

/* ---- normalisation (normalize.c) ----------------------------------------- */

/* Why an object is not backed up (owned by a controller, a token Secret ...),
 * or NULL. */
const char *k8s_object_skipped(json_t *obj, const char *group, const char *resource);
/* Drop status and the server-assigned fields (docs/sources/k8s-yaml.md). */
void k8s_normalize(json_t *obj, const char *group, const char *resource);
/* Rewrite namespace references old -> new (restore --namespace-map). */
void k8s_map_namespace(json_t *obj, const char *group, const char *resource, const char *from,
                       const char *to);

/* ---- YAML (yaml.c) --------------------------------------------------------- */

/* Emit a JSON value as one YAML document (keys sorted, strings quoted where
 * YAML would read them as something else, multi-line strings as literal
 * blocks). explicit_start: begin with "---". ENGINE_OK or ENGINE_ERROR with a
 * message in err. */
int k8s_yaml_emit(json_t *v, int explicit_start, struct k8s_buf *out, char *err, size_t errlen);
/* Parse one YAML document into JSON. NULL with a message ("line N: ...") in
 * err. */
json_t *k8s_yaml_parse(const char *text, size_t len, char *err, size_t errlen);

/* ---- the instance and the source callbacks -------------------------------- */

enum k8s_cluster_mode { K8S_CLUSTER_AUTO = 0, K8S_CLUSTER_NONE = 1, K8S_CLUSTER_ALL = 2 };

struct k8s_inst {
  const struct engine_host *h;
  char *kubeconfig, *context, *sa_dir;
  char **namespaces, **exclude_namespaces, **resources, **exclude_resources, **exec_env;
  size_t n_namespaces, n_exclude_namespaces, n_resources, n_exclude_resources, n_exec_env;
  enum k8s_cluster_mode cluster;
  int include_secrets;
  char *label_selector;
  int64_t page_size;
  int64_t timeout_ms, connect_timeout_ms, crd_wait_ms;
  int max_retries;
};

int k8s_backup(void *inst, const struct engine_emitter *em);
int k8s_restore_begin(void *inst, const struct engine_restore_opts *opts, void **rctx);
int k8s_restore_item(void *rctx, const struct engine_item *item, const struct engine_reader *data);
int k8s_restore_end(void *rctx, int status);

/* Does s match one of the globs (fnmatch)? */
int k8s_glob_any(char *const *globs, size_t n, const char *s);

/* ---- cluster apply (apply.c) ---------------------------------------------- */

struct k8s_apply_obj {
  char *name; /* the item name, for messages */
  char *ns;   /* after --namespace-map; NULL for cluster-scoped */
  char *group, *version, *resource, *kind, *objname;
  int prio;
  size_t off, len; /* JSON text in the spool */
};

struct k8s_apply_opts {
  int update;  /* --drop-existing: apply over existing objects */
  int force;   /* take over conflicting fields (--yes) */
  int dry_run; /* dryRun=All */
  int64_t crd_wait_ms;
};

/* Apply n objects (already in apply order) whose JSON is read with
 * read(ud, off, len, buf). Each failure is logged naming the object; returns
 * the number of failures (and sets the error listing them), -1 when the run
 * could not go on. */
long k8s_apply_all(struct k8s_client *c, struct k8s_apply_obj *objs, size_t n,
                   const struct k8s_apply_opts *o,
                   int (*read)(void *ud, size_t off, size_t len, char *buf), void *ud,
                   size_t *applied, size_t *skipped);
/* The apply priority of a resource (CRDs first ... workloads, then the rest). */
int k8s_apply_priority(const char *group, const char *resource);

#endif
