/* The audit trail (docs/CLI.md "audit", docs/FORMAT.md "audits/"): every
 * run, restore, forget, prune, key, repair and check operation leaves one
 * record, as a JSON line appended to the local audit log (mode 0600) and as
 * an immutable object `audits/<id>` in the repository (sealed JSON, AAD
 * "audit"), when the repository could be opened. The local log also keeps
 * what never reached a repository (a run whose sink was down), and is what
 * the consecutive_failures notification counts. */
#ifndef CORE_OPS_AUDIT_H
#define CORE_OPS_AUDIT_H

#include <jansson.h>

#include "repo/repo.h"

/* One operation, as the command saw it. */
struct audit_op {
  const char *command;  /* "run", "restore", "key add", "repair index", "check", ... */
  const char *pipeline; /* the pipeline's name (its file when it could not be read) */
  const char *snapshot; /* the snapshot made, restored or checked, or NULL */
  const char *outcome;  /* "success", "partial" or "failure" */
  int exit_code;
  const char *error;      /* why it failed, or NULL */
  double seconds;         /* how long it took */
  json_t *details;        /* the command's own facts (borrowed), or NULL */
  const char *repository; /* the repository id, or NULL when none was opened */
};

/* The record (a new reference): the op plus version, op_id (random), time,
 * created_ns, host, user, pid, engine_version, and systemd_invocation when
 * systemd started the process ($INVOCATION_ID). */
json_t *audit_record(const struct audit_op *op);

/* The local audit log: $ENGINE_AUDIT_LOG ("" or "off": none), else
 * audit.log in the state directory (ops_state_dir). malloc'd or NULL. */
char *audit_log_path(void);
/* $ENGINE_STATE_DIR, else systemd's $STATE_DIRECTORY (StateDirectory=),
 * else $XDG_STATE_HOME/engine, else $HOME/.local/state/engine (malloc'd;
 * NULL when none can be named). */
char *ops_state_dir(void);

/* Appends the record as one line (directory 0700 and file 0600 created as
 * needed). Returns 0, or -1 with *err. */
int audit_append_local(json_t *record, char **err);
/* Stores the record as audits/<id>. Returns 0, or -1 with *err. */
int audit_store(struct repo *r, json_t *record, char **err);

/* Every record in the repository, oldest first, and the objects that could
 * not be read ({"object","error"}). Returns 0, or -1 with *err. */
int audit_list(struct repo *r, json_t **records, json_t **unreadable, char **err);
/* The local log's records of this pipeline, oldest first (a new array;
 * lines that are not records are skipped). */
json_t *audit_local_records(const char *pipeline);

/* The runs of this pipeline on this host that never reached a repository
 * (failed before one was opened: a before hook, an unreadable pipeline
 * file, sinks that cannot be reached), from the tail of the local log,
 * oldest first (a new array of audit records). */
json_t *audit_local_unrecorded_runs(const char *pipeline);

/* How many runs of this pipeline on this host failed in a row, up to and
 * including the last one the local log holds. */
int audit_failure_streak(const char *pipeline);
/* Does the local log hold a record made under this systemd invocation? */
int audit_has_invocation(const char *invocation);

#endif
