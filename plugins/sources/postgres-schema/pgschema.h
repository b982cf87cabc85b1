/* Internal interface of the `postgres-schema` source plugin: the instance
 * configuration, connection targets (libpq conninfo without the password,
 * which travels to child processes through an in-memory passfile), the helpers
 * that run pg_dump / pg_restore / psql, and the backup and restore entry
 * points. */
#ifndef PGSCHEMA_PGSCHEMA_H
#define PGSCHEMA_PGSCHEMA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <pthread.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "archive.h"
#include "engine/plugin.h"

/* Dump streams are moved in blocks of this size. */
#define PGS_IO_BLOCK (1024u * 1024u)
/* How much of a child's stderr goes into an error message. */
#define PGS_STDERR_TAIL 1500

enum pgs_format { PGS_FORMAT_CUSTOM = 1, PGS_FORMAT_PLAIN = 2 };

struct pgs_inst {
  const struct engine_host *host;
  char *dsn;
  char **schemas;
  size_t n_schemas;
  char **exclude;
  size_t n_exclude;
  int extensions_auto;
  enum pgs_format format;
  int compress_level;
  int no_owner;
  int jobs; /* 0: from the CPU count and the server's free connections */
  int globals;
  int include_role_passwords;
  char *pg_dump;
  char *pg_restore;
  char *psql;
  /* the last message pgs_query set, so a caller can quote it in an item
   * warning (the host's error text cannot be read back) */
  char last_error[1024];
};

/* Where to connect: the parsed conninfo keywords (password removed) and the
 * password, if one was given by the dsn or the `password` option. */
struct pgs_target {
  char **keys;
  char **vals;
  size_t n;
  char *password; /* NULL when none; wiped when freed */
  int passfd;     /* sealed 0600 memfd holding a passfile line for children, or -1 */
  char **env;     /* children's environment on purpose (libpq's variables, PGPASSFILE) */
  char *describe; /* "database 'x' on host 'h' port 'p' as user 'u'" for messages */
};

/* ---- conn.c ---- */

/* Parse the configured dsn, then (if override is non-NULL) the --target DSN
 * on top of it: keywords missing from the override keep the configured
 * value. The password comes from the override, else the dsn, else the
 * `password` option, else PGPASSWORD. An in-memory passfile is made when
 * there is a password. */
int pgs_target_init(struct pgs_inst *in, const char *override, struct pgs_target *t);
void pgs_target_free(struct pgs_target *t);
/* The value of a conninfo keyword, or NULL. */
const char *pgs_target_get(const struct pgs_target *t, const char *key);
/* A conninfo string for child argv (never contains the password).
 * dbname, if non-NULL, replaces the database. malloc'd, NULL on OOM. */
char *pgs_target_conninfo(const struct pgs_target *t, const char *dbname);
/* Connect (dbname as above). On failure sets a classified error message
 * (unreachable, password required, authentication failed) and returns NULL. */
PGconn *pgs_connect(struct pgs_inst *in, const struct pgs_target *t, const char *dbname);
/* Sets env and pass_fds of a spawn of pg_dump / pg_restore / psql: libpq's
 * non-secret environment variables, and the password (if any) as the
 * passfile PGPASSFILE=/proc/self/fd/3 (no file on disk). */
void pgs_target_spawn_opts(const struct pgs_target *t, struct engine_spawn_opts *o);

/* Run a statement that returns no rows; on failure sets an error naming what. */
int pgs_exec(struct pgs_inst *in, PGconn *c, const char *sql, const char *what);
/* Run a query with text parameters; returns the result (PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK) or NULL after setting an error naming what. */
PGresult *pgs_query(struct pgs_inst *in, PGconn *c, const char *sql, int nparams,
                    const char *const *params, const char *what);
/* The server's message of a failed result or connection, trimmed. */
char *pgs_conn_message(PGconn *c);

/* "x" with embedded quotes doubled, for SQL text and pg_dump patterns. */
char *pgs_quote_ident(const char *name);
/* A printable schema name for messages (control bytes escaped). */
char *pgs_printable(const char *s);

/* A PostgreSQL client program and its version. */
struct pgs_tool {
  const char *path; /* as configured */
  char version[64]; /* "15.18" */
  int version_num;  /* 150018 (major * 10000 + minor); 0 if unknown */
};
/* Resolve `path` (searching PATH when it has no '/'), run `path --version`
 * and parse it. role is "pg_dump" / "pg_restore" / "psql" for messages. */
int pgs_tool_probe(struct pgs_inst *in, const char *path, const char *role, struct pgs_tool *tool);
/* major version of a version number (150018 -> 15, 90624 -> 9.6 as 906). */
int pgs_major(int version_num);
/* The last `max` bytes of a child's stderr, or "(no message)". Points into
 * the host's buffer or a static string. */
const char *pgs_stderr_tail(struct pgs_inst *in, struct engine_child *c);
/* "exit status 2" / "killed by signal 9". */
void pgs_describe_status(int status, char *buf, size_t len);

/* write() all of buf, retrying on EINTR and short writes. 0 / -1 (errno). */
int pgs_write_all(int fd, const void *buf, size_t len);

/* Serialise compactly, keys in insertion order. malloc'd or NULL. */
char *pgs_json_dump(json_t *j);

/* ---- backup: the run's shared state (backup.c emits, dump.c dumps) ---- */

/* The name of the item holding the cluster's globals (roles, memberships,
 * tablespaces, the database's settings). No schema of that name is backed
 * up. */
#define PGS_GLOBALS_ITEM "_globals"

/* Bytes of one schema's archive on their way from a dump worker to the
 * emitter; cut: the item's chunk ends after them (emitter.item_cut). */
struct pgs_piece {
  struct pgs_piece *next;
  size_t len;
  int cut;
  unsigned char data[];
};

enum pgs_tstate { PGS_T_PENDING = 0, PGS_T_DONE, PGS_T_FAILED };

struct pgs_tenant {
  char *name; /* the schema */
  char *oid;
  size_t worker;
  json_t *meta; /* what is known before the dump (emitter thread) */
  /* under run.mu: */
  enum pgs_tstate state;
  int emitting; /* the emitter took some of its pieces: it cannot be dumped again */
  struct pgs_piece *head, *tail;
  char *error;   /* PGS_T_FAILED: why */
  json_t *found; /* PGS_T_DONE: tables with rows and digests, the definition's digests */
  uint64_t size; /* bytes of its archive */
  int64_t started_ms, ms;
};

struct pgs_run;

struct pgs_worker {
  struct pgs_run *run;
  size_t idx;
  size_t *tenants; /* indexes into run.tenants, in order */
  size_t n;
  pthread_t th;
  int started;
  int finished;    /* under run.mu */
  size_t buffered; /* bytes of its pieces not yet emitted (under run.mu) */
  /* the piece being filled (worker thread only) */
  struct pgs_tenant *open_t;
  unsigned char *open_buf;
  size_t open_len;
  int dumps;                  /* pg_dump processes run */
  int failed_dumps;           /* of which failed */
  struct engine_child *child; /* the pg_dump running (under run.mu) */
};

struct pgs_run {
  struct pgs_inst *in;
  const struct engine_host *h;
  const struct pgs_target *t;
  const char *conninfo;
  const char *pg_dump;
  const char *snapshot;
  struct pgs_tenant *tenants;
  size_t n_tenants;
  struct pgs_worker *workers;
  size_t n_workers;
  size_t limit; /* bytes a worker may hold for tenants the emitter is not at */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;         /* cancelled or the emitter failed */
  long emit_worker; /* the worker whose tenant the emitter is waiting for, -1 */
  int raw;          /* archives this plugin cannot read: one pg_dump per schema, verbatim */
  int dumps;        /* pg_dump processes started (for the log) */
};

/* dump.c: start the workers (0, or -1 with the host's error set); stop
 * and join them (kills their pg_dump); pop the next piece of a tenant for
 * the emitter, waiting for one: 1 and *p (free it with pgs_piece_done), 0
 * when the tenant is finished (state DONE or FAILED), -1 when stopped. */
int pgs_dump_start(struct pgs_run *r);
void pgs_dump_join(struct pgs_run *r);
int pgs_dump_next(struct pgs_run *r, struct pgs_tenant *t, struct pgs_piece **p);
void pgs_piece_done(struct pgs_run *r, struct pgs_tenant *t, struct pgs_piece *p);
/* All workers finished (every pg_dump is done). */
int pgs_dump_all_finished(struct pgs_run *r);

/* ---- backup.c ---- */
int pgs_backup(void *inst, const struct engine_emitter *em);

/* ---- verify.c: the restore test's checks, on threads of their own ---- */
struct pgs_verify;
/* n threads, each with a connection to the scratch database; NULL with the
 * host's error set. */
struct pgs_verify *pgs_verify_new(struct pgs_inst *in, const struct pgs_target *t,
                                  const char *scratch, size_t n);
/* Check a restored schema against its manifest entry (meta); archive (the
 * start of the restored archive, or NULL) is taken. Waits while the
 * threads are busy. */
int pgs_verify_submit(struct pgs_verify *v, const char *schema, json_t *meta, int no_owner,
                      unsigned char *archive, size_t archive_len);
/* Wait for every check: ENGINE_OK, or ENGINE_ERROR with *failures naming
 * each schema that failed and why (malloc'd). */
int pgs_verify_finish(struct pgs_verify *v, size_t *ok, size_t *failed, char **failures);
void pgs_verify_free(struct pgs_verify *v);

/* ---- globals.c ---- */
/* The cluster's globals as a JSON document (roles, memberships,
 * tablespaces, settings), read on c inside the snapshot; NULL with the
 * host's error set. */
char *pgs_globals_collect(struct pgs_inst *in, PGconn *c, const char *database, int server_num,
                          json_t **summary);
/* Apply a globals document to the database of c (see globals.c). summary:
 * what was done, for the log. */
int pgs_globals_apply(struct pgs_inst *in, PGconn *c, const char *doc, size_t len,
                      const char *describe, char **summary);
/* Check a globals document without applying it (restore test). */
int pgs_globals_check(struct pgs_inst *in, const char *doc, size_t len, char **summary);

/* ---- restore.c ---- */
int pgs_restore_begin(void *inst, const struct engine_restore_opts *opts, void **rctx);
int pgs_restore_item(void *rctx, const struct engine_item *item, const struct engine_reader *data);
int pgs_restore_end(void *rctx, int status);

#endif
