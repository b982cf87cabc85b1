/* Connection targets and child-process helpers of the postgres-schema
 * plugin. The configured dsn is parsed with libpq and re-serialised without
 * its password, so argv of pg_dump / pg_restore / psql never holds one; the
 * password reaches them through a passfile that is never on disk (a sealed
 * memfd handed to the child as descriptor 3, PGPASSFILE=/proc/self/fd/3),
 * and reaches libpq connections as a parameter. The children's environment
 * is the host's allow-list plus libpq's non-secret variables (below). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pgschema.h"

/* ---- small helpers ------------------------------------------------------ */

int pgs_write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

char *pgs_json_dump(json_t *j) {
  return json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
}

char *pgs_quote_ident(const char *name) {
  size_t n = strlen(name), q = 0;
  for (size_t i = 0; i < n; i++)
    q += name[i] == '"';
  char *out = malloc(n + q + 3);
  if (out == NULL)
    return NULL;
  char *o = out;
  *o++ = '"';
  for (size_t i = 0; i < n; i++) {
    if (name[i] == '"')
      *o++ = '"';
    *o++ = name[i];
  }
  *o++ = '"';
  *o = '\0';
  return out;
}

char *pgs_printable(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(n * 4 + 1);
  if (out == NULL)
    return NULL;
  char *o = out;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '\\') {
      *o++ = '\\';
      *o++ = '\\';
    } else if (ch < 0x20 || ch == 0x7f) {
      static const char hexd[] = "0123456789abcdef";
      *o++ = '\\';
      *o++ = 'x';
      *o++ = hexd[ch >> 4];
      *o++ = hexd[ch & 15];
    } else {
      *o++ = (char)ch;
    }
  }
  *o = '\0';
  return out;
}

void pgs_describe_status(int status, char *buf, size_t len) {
  if (WIFEXITED(status))
    snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
  else
    snprintf(buf, len, "wait status 0x%x", (unsigned)status);
}

const char *pgs_stderr_tail(struct pgs_inst *in, struct engine_child *c) {
  const char *s = in->host->child_stderr(in->host, c);
  if (s == NULL)
    return "(no message)";
  while (*s == '\n' || *s == ' ')
    s++;
  if (*s == '\0')
    return "(no message)";
  size_t n = strlen(s);
  if (n > PGS_STDERR_TAIL) {
    s += n - PGS_STDERR_TAIL;
    /* start at a line boundary when one is near, so the quote reads well */
    const char *nl = strchr(s, '\n');
    if (nl != NULL && nl - s < 200)
      s = nl + 1;
  }
  return s;
}

/* ---- targets ------------------------------------------------------------- */

static void wipe_free(char *s) {
  if (s == NULL)
    return;
  explicit_bzero(s, strlen(s));
  free(s);
}

static int target_set(struct pgs_target *t, const char *key, const char *val) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->keys[i], key) == 0) {
      char *v = strdup(val);
      if (v == NULL)
        return -1;
      free(t->vals[i]);
      t->vals[i] = v;
      return 0;
    }
  char **k = realloc(t->keys, (t->n + 1) * sizeof(*k));
  if (k == NULL)
    return -1;
  t->keys = k;
  char **v = realloc(t->vals, (t->n + 1) * sizeof(*v));
  if (v == NULL)
    return -1;
  t->vals = v;
  t->keys[t->n] = strdup(key);
  t->vals[t->n] = strdup(val);
  if (t->keys[t->n] == NULL || t->vals[t->n] == NULL) {
    free(t->keys[t->n]);
    free(t->vals[t->n]);
    return -1;
  }
  t->n++;
  return 0;
}

const char *pgs_target_get(const struct pgs_target *t, const char *key) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->keys[i], key) == 0)
      return t->vals[i];
  return NULL;
}

/* Merge the keywords of one connection string; its password, if any,
 * replaces *password. what names the string in messages. */
static int merge_conninfo(struct pgs_inst *in, struct pgs_target *t, const char *conninfo,
                          const char *what, char **password) {
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
  if (opts == NULL) {
    /* libpq's message names the bad keyword; the string itself may hold a
     * password and is not repeated. */
    char *m = perr ? perr : NULL;
    if (m != NULL) {
      size_t l = strlen(m);
      while (l > 0 && (m[l - 1] == '\n' || m[l - 1] == ' '))
        m[--l] = '\0';
    }
    in->host->set_error(in->host, "%s is not a valid libpq connection string or URI: %s", what,
                        m ? m : "out of memory");
    PQfreemem(perr);
    return ENGINE_ERROR;
  }
  int rc = ENGINE_OK;
  for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
    if (o->val == NULL)
      continue;
    if (strcmp(o->keyword, "password") == 0) {
      char *p = strdup(o->val);
      if (p == NULL) {
        rc = ENGINE_ERROR;
        break;
      }
      wipe_free(*password);
      *password = p;
      continue;
    }
    if (target_set(t, o->keyword, o->val) != 0) {
      rc = ENGINE_ERROR;
      break;
    }
  }
  /* option values (a password among them) are in libpq's memory too */
  for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
    if (o->val != NULL)
      explicit_bzero(o->val, strlen(o->val));
  PQconninfoFree(opts);
  if (rc != ENGINE_OK)
    in->host->set_error(in->host, "unable to parse %s: out of memory", what);
  return rc;
}

/* The passfile as libpq reads it in the child: the first descriptor
 * handed over by the host (pass_fds[0] is descriptor 3 there). */
#define PGS_PASSFILE "/proc/self/fd/3"

/* A passfile line matching any host, port, database and user, in a memfd:
 * no file on disk to survive a SIGKILL. libpq stat()s the path (a regular
 * file, no group or world access: fchmod 0600, memfds start as 0777) and
 * opens it anew for each connection, so every connection of a child reads
 * it from the start. Sealed against writing and growing; shrinking stays
 * allowed so pgs_target_free can drop the pages holding the password. */
static int write_passfile(struct pgs_inst *in, struct pgs_target *t) {
  const struct engine_host *h = in->host;
  if (h->abi_minor < 2) {
    h->set_error(h,
                 "this engine provides plugin ABI %u.%u, which cannot hand pg_dump a password "
                 "without writing it to a file; the postgres-schema plugin needs ABI 1.2 or "
                 "later (upgrade the engine)",
                 h->abi_major, h->abi_minor);
    return ENGINE_ERROR;
  }
  int fd = memfd_create("engine-pgpass", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    h->set_error(h, "unable to create the in-memory passfile (memfd_create): %s", strerror(errno));
    return ENGINE_ERROR;
  }
  size_t pl = strlen(t->password);
  char *line = malloc(pl * 2 + 16);
  if (line == NULL) {
    close(fd);
    h->set_error(h, "unable to write the in-memory passfile: out of memory");
    return ENGINE_ERROR;
  }
  size_t n = 0;
  memcpy(line, "*:*:*:*:", 8);
  n = 8;
  for (size_t i = 0; i < pl; i++) {
    if (t->password[i] == ':' || t->password[i] == '\\')
      line[n++] = '\\';
    line[n++] = t->password[i];
  }
  line[n++] = '\n';
  const char *step = "fchmod";
  int werr = fchmod(fd, 0600) != 0 ? errno : 0;
  if (werr == 0) {
    step = "write";
    werr = pgs_write_all(fd, line, n) != 0 ? errno : 0;
  }
  if (werr == 0) {
    step = "sealing";
    werr = fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SEAL) != 0 ? errno : 0;
  }
  explicit_bzero(line, n);
  free(line);
  if (werr != 0) {
    int trunc_rc = ftruncate(fd, 0);
    (void)trunc_rc;
    close(fd);
    h->set_error(h, "unable to prepare the in-memory passfile (%s): %s", step, strerror(werr));
    return ENGINE_ERROR;
  }
  t->passfd = fd;
  return ENGINE_OK;
}

/* libpq reads these besides its connection keywords (service files, session
 * defaults, GSSAPI and TLS trust stores); none holds a secret. */
static const char *const pgs_env_extra[] = {
    "PGSYSCONFDIR",  "PGSERVICEFILE", "PGLOCALEDIR", "PGDATESTYLE", "PGTZ",
    "PGGEQO",        "PG_COLOR",      "PG_COLORS",   "KRB5CCNAME",  "KRB5_CONFIG",
    "SSL_CERT_FILE", "SSL_CERT_DIR",  NULL};

static int env_has(char **env, size_t n, const char *name) {
  size_t nl = strlen(name);
  for (size_t i = 0; i < n; i++)
    if (strncmp(env[i], name, nl) == 0 && env[i][nl] == '=')
      return 1;
  return 0;
}

static int env_add(char ***env, size_t *n, size_t *cap, const char *name, const char *val) {
  if (*n + 2 > *cap) {
    size_t nc = *cap ? *cap * 2 : 16;
    char **ne = realloc(*env, nc * sizeof(*ne));
    if (ne == NULL)
      return -1;
    *env = ne;
    *cap = nc;
  }
  char *e = NULL;
  if (asprintf(&e, "%s=%s", name, val) < 0)
    return -1;
  (*env)[(*n)++] = e;
  (*env)[*n] = NULL;
  return 0;
}

/* What the children get on purpose: the engine's values of libpq's
 * environment variables (the envvar of every connection keyword libpq
 * knows, so a newer libpq's new ones come along) except PGPASSWORD, those
 * of pgs_env_extra, and PGPASSFILE naming the memfd when there is a
 * password (then an operator's own PGPASSFILE is not passed). */
static int build_child_env(struct pgs_inst *in, struct pgs_target *t) {
  char **env = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  PQconninfoOption *opts = PQconninfoParse("", NULL);
  if (opts == NULL)
    rc = -1;
  for (PQconninfoOption *o = opts; rc == 0 && o->keyword != NULL; o++) {
    if (o->envvar == NULL || strcmp(o->envvar, "PGPASSWORD") == 0 ||
        (t->passfd >= 0 && strcmp(o->envvar, "PGPASSFILE") == 0) || env_has(env, n, o->envvar))
      continue;
    const char *v = getenv(o->envvar);
    if (v != NULL)
      rc = env_add(&env, &n, &cap, o->envvar, v);
  }
  PQconninfoFree(opts);
  for (size_t i = 0; rc == 0 && pgs_env_extra[i] != NULL; i++) {
    const char *v = getenv(pgs_env_extra[i]);
    if (v != NULL && !env_has(env, n, pgs_env_extra[i]))
      rc = env_add(&env, &n, &cap, pgs_env_extra[i], v);
  }
  if (rc == 0 && t->passfd >= 0)
    rc = env_add(&env, &n, &cap, "PGPASSFILE", PGS_PASSFILE);
  if (rc != 0) {
    for (size_t i = 0; i < n; i++)
      free(env[i]);
    free(env);
    in->host->set_error(in->host, "unable to prepare the environment of pg_dump: out of memory");
    return ENGINE_ERROR;
  }
  t->env = env;
  return ENGINE_OK;
}

static int build_describe(struct pgs_target *t) {
  const char *db = pgs_target_get(t, "dbname");
  const char *host = pgs_target_get(t, "host");
  const char *addr = pgs_target_get(t, "hostaddr");
  const char *port = pgs_target_get(t, "port");
  const char *user = pgs_target_get(t, "user");
  char *s = NULL;
  int r = asprintf(&s, "database '%s' on %s '%s'%s%s%s%s%s", db ? db : "(default)",
                   host || !addr ? "host" : "address",
                   host   ? host
                   : addr ? addr
                          : "(default)",
                   port ? " port " : "", port ? port : "", user ? " as user '" : "",
                   user ? user : "", user ? "'" : "");
  if (r < 0)
    return -1;
  t->describe = s;
  return 0;
}

int pgs_target_init(struct pgs_inst *in, const char *override, struct pgs_target *t) {
  const struct engine_host *h = in->host;
  memset(t, 0, sizeof(*t));
  t->passfd = -1;
  char *dsn_pw = NULL, *over_pw = NULL;
  if (merge_conninfo(in, t, in->dsn, "option 'dsn'", &dsn_pw) != ENGINE_OK)
    goto fail;
  if (override != NULL && merge_conninfo(in, t, override, "--target", &over_pw) != ENGINE_OK)
    goto fail;
  if (over_pw != NULL) {
    t->password = over_pw;
    over_pw = NULL;
  } else if (dsn_pw != NULL) {
    t->password = dsn_pw;
    dsn_pw = NULL;
  } else if (h->cfg_string(h, "password") != NULL) {
    char *pw = NULL;
    size_t pw_len = 0;
    if (h->secret(h, "password", &pw, &pw_len) != ENGINE_OK)
      goto fail;
    if (memchr(pw, '\0', pw_len) != NULL) {
      h->secret_free(pw, pw_len);
      h->set_error(h, "option 'password': the secret contains a NUL byte");
      goto fail;
    }
    t->password = strdup(pw);
    h->secret_free(pw, pw_len);
    if (t->password == NULL) {
      h->set_error(h, "unable to read option 'password': out of memory");
      goto fail;
    }
  } else if (getenv("PGPASSWORD") != NULL && getenv("PGPASSWORD")[0] != '\0') {
    /* libpq would use it in the engine; the children get it the same way
     * as any other password, never as PGPASSWORD in their environment */
    t->password = strdup(getenv("PGPASSWORD"));
    if (t->password == NULL) {
      h->set_error(h, "unable to read PGPASSWORD: out of memory");
      goto fail;
    }
  }
  if (build_describe(t) != 0) {
    h->set_error(h, "unable to describe the connection: out of memory");
    goto fail;
  }
  if (t->password != NULL && write_passfile(in, t) != ENGINE_OK)
    goto fail;
  if (build_child_env(in, t) != ENGINE_OK)
    goto fail;
  wipe_free(dsn_pw);
  wipe_free(over_pw);
  return ENGINE_OK;
fail:
  wipe_free(dsn_pw);
  wipe_free(over_pw);
  pgs_target_free(t);
  return ENGINE_ERROR;
}

void pgs_target_free(struct pgs_target *t) {
  for (size_t i = 0; i < t->n; i++) {
    free(t->keys[i]);
    free(t->vals[i]);
  }
  free(t->keys);
  free(t->vals);
  if (t->passfd >= 0) {
    /* drop the pages holding the password now, even if a child that
     * outlives us still holds the descriptor (should that fail, they go
     * with the last descriptor) */
    int trunc_rc = ftruncate(t->passfd, 0);
    (void)trunc_rc;
    close(t->passfd);
  }
  for (size_t i = 0; t->env != NULL && t->env[i] != NULL; i++)
    free(t->env[i]);
  free(t->env);
  wipe_free(t->password);
  free(t->describe);
  memset(t, 0, sizeof(*t));
  t->passfd = -1;
}

void pgs_target_spawn_opts(const struct pgs_target *t, struct engine_spawn_opts *o) {
  o->env = (const char *const *)t->env;
  o->pass_fds = t->passfd >= 0 ? &t->passfd : NULL;
  o->n_pass_fds = t->passfd >= 0 ? 1 : 0;
}

/* key='value' with \ and ' escaped, as libpq's conninfo syntax wants. */
static int append_kv(char **buf, size_t *len, size_t *cap, const char *k, const char *v) {
  size_t need = *len + strlen(k) + strlen(v) * 2 + 5;
  if (need > *cap) {
    size_t nc = *cap ? *cap : 128;
    while (nc < need)
      nc *= 2;
    char *nb = realloc(*buf, nc);
    if (nb == NULL)
      return -1;
    *buf = nb;
    *cap = nc;
  }
  char *o = *buf + *len;
  if (*len > 0)
    *o++ = ' ';
  size_t kl = strlen(k);
  memcpy(o, k, kl);
  o += kl;
  *o++ = '=';
  *o++ = '\'';
  for (const char *p = v; *p; p++) {
    if (*p == '\'' || *p == '\\')
      *o++ = '\\';
    *o++ = *p;
  }
  *o++ = '\'';
  *o = '\0';
  *len = (size_t)(o - *buf);
  return 0;
}

char *pgs_target_conninfo(const struct pgs_target *t, const char *dbname) {
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int have_db = 0;
  for (size_t i = 0; i < t->n; i++) {
    const char *v = t->vals[i];
    if (strcmp(t->keys[i], "dbname") == 0) {
      have_db = 1;
      if (dbname != NULL)
        v = dbname;
    }
    if (append_kv(&buf, &len, &cap, t->keys[i], v) != 0) {
      free(buf);
      return NULL;
    }
  }
  if ((!have_db && dbname != NULL && append_kv(&buf, &len, &cap, "dbname", dbname) != 0) ||
      (buf == NULL && append_kv(&buf, &len, &cap, "application_name", "engine") != 0)) {
    free(buf);
    return NULL;
  }
  return buf;
}

char *pgs_conn_message(PGconn *c) {
  const char *m = c ? PQerrorMessage(c) : NULL;
  char *s = strdup(m && m[0] ? m : "no message from libpq");
  if (s == NULL)
    return NULL;
  /* libpq messages end with a newline and may span several lines */
  size_t l = strlen(s);
  while (l > 0 && (s[l - 1] == '\n' || s[l - 1] == ' '))
    s[--l] = '\0';
  for (char *p = s; *p; p++)
    if (*p == '\n')
      *p = ' ';
  return s;
}

PGconn *pgs_connect(struct pgs_inst *in, const struct pgs_target *t, const char *dbname) {
  const struct engine_host *h = in->host;
  const char **keys = calloc(t->n + 4, sizeof(*keys));
  const char **vals = calloc(t->n + 4, sizeof(*vals));
  if (keys == NULL || vals == NULL) {
    free(keys);
    free(vals);
    h->set_error(h, "unable to connect to %s: out of memory", t->describe);
    return NULL;
  }
  size_t n = 0;
  int have_db = 0;
  for (size_t i = 0; i < t->n; i++) {
    keys[n] = t->keys[i];
    vals[n] = t->vals[i];
    if (strcmp(t->keys[i], "dbname") == 0) {
      have_db = 1;
      if (dbname != NULL)
        vals[n] = dbname;
    }
    n++;
  }
  if (!have_db && dbname != NULL) {
    keys[n] = "dbname";
    vals[n++] = dbname;
  }
  if (t->password != NULL) {
    keys[n] = "password";
    vals[n++] = t->password;
  }
  keys[n] = "fallback_application_name";
  vals[n++] = "engine-postgres-schema";
  keys[n] = NULL;
  vals[n] = NULL;
  PGconn *c = PQconnectdbParams(keys, vals, 0);
  free(keys);
  free(vals);
  const char *where = t->describe;
  char *alt = NULL;
  if (dbname != NULL && asprintf(&alt, "database '%s' (%s)", dbname, t->describe) >= 0)
    where = alt;
  if (c == NULL) {
    h->set_error(h, "unable to connect to %s: out of memory", where);
    free(alt);
    return NULL;
  }
  if (PQstatus(c) != CONNECTION_OK) {
    char *m = pgs_conn_message(c);
    const char *msg = m ? m : "out of memory";
    if (PQconnectionNeedsPassword(c) && t->password == NULL)
      h->set_error(h,
                   "unable to connect to %s: the server asks for a password and none was given; "
                   "set the 'password' option (env:NAME or file:PATH) or use a passfile (%s)",
                   where, msg);
    else if (strstr(msg, "authentication failed") != NULL)
      h->set_error(h,
                   "authentication failed connecting to %s; check the user and the password (%s)",
                   where, msg);
    else
      h->set_error(h, "unable to connect to %s: %s", where, msg);
    free(m);
    free(alt);
    PQfinish(c);
    return NULL;
  }
  free(alt);
  return c;
}

int pgs_exec(struct pgs_inst *in, PGconn *c, const char *sql, const char *what) {
  PGresult *r = pgs_query(in, c, sql, 0, NULL, what);
  if (r == NULL)
    return ENGINE_ERROR;
  PQclear(r);
  return ENGINE_OK;
}

PGresult *pgs_query(struct pgs_inst *in, PGconn *c, const char *sql, int nparams,
                    const char *const *params, const char *what) {
  /* without parameters, the simple protocol (several statements allowed) */
  PGresult *r =
      nparams > 0 ? PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0) : PQexec(c, sql);
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
    return r;
  const char *em = r ? PQresultErrorMessage(r) : NULL;
  char *m = em && em[0] ? strdup(em) : pgs_conn_message(c);
  if (m != NULL) {
    size_t l = strlen(m);
    while (l > 0 && (m[l - 1] == '\n' || m[l - 1] == ' '))
      m[--l] = '\0';
    for (char *p = m; *p; p++)
      if (*p == '\n')
        *p = ' ';
  }
  snprintf(in->last_error, sizeof(in->last_error), "%s failed: %s", what, m ? m : "out of memory");
  in->host->set_error(in->host, "%s", in->last_error);
  free(m);
  PQclear(r);
  return NULL;
}

/* ---- client programs ---------------------------------------------------- */

/* Is `path` (or `path` found in PATH) an executable file? */
static int find_program(const char *path) {
  if (strchr(path, '/') != NULL)
    return access(path, X_OK) == 0;
  const char *p = getenv("PATH");
  if (p == NULL || p[0] == '\0')
    p = "/usr/local/bin:/usr/bin:/bin";
  while (*p) {
    const char *e = strchr(p, ':');
    size_t dl = e ? (size_t)(e - p) : strlen(p);
    char *cand = NULL;
    if (asprintf(&cand, "%.*s/%s", (int)dl, dl ? p : ".", path) >= 0) {
      struct stat st;
      int ok = stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0;
      free(cand);
      if (ok)
        return 1;
    }
    if (e == NULL)
      break;
    p = e + 1;
  }
  return 0;
}

int pgs_major(int version_num) {
  return version_num >= 100000 ? version_num / 10000 : version_num / 100;
}

/* "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" -> 15.18 / 150018;
 * "pg_dump (PostgreSQL) 9.6.24" -> 90624; "16beta2" -> 160000. */
static int parse_version(const char *text, char *out, size_t out_len) {
  const char *p = strstr(text, ") ");
  p = p ? p + 2 : text;
  while (*p && (*p < '0' || *p > '9'))
    p++;
  if (*p == '\0')
    return 0;
  int a = 0, b = 0, c = 0, parts = 0;
  const char *s = p;
  a = (int)strtol(p, (char **)&p, 10);
  parts = 1;
  if (*p == '.' && p[1] >= '0' && p[1] <= '9') {
    b = (int)strtol(p + 1, (char **)&p, 10);
    parts = 2;
    if (*p == '.' && p[1] >= '0' && p[1] <= '9') {
      c = (int)strtol(p + 1, (char **)&p, 10);
      parts = 3;
    }
  }
  size_t vl = 0;
  while (s[vl] && s[vl] != ' ' && s[vl] != '\n' && vl + 1 < out_len)
    vl++;
  memcpy(out, s, vl);
  out[vl] = '\0';
  if (a >= 10)
    return a * 10000 + (parts >= 2 ? b : 0);
  return a * 10000 + b * 100 + (parts >= 3 ? c : 0);
}

int pgs_tool_probe(struct pgs_inst *in, const char *path, const char *role, struct pgs_tool *tool) {
  const struct engine_host *h = in->host;
  memset(tool, 0, sizeof(*tool));
  tool->path = path;
  if (!find_program(path)) {
    if (strchr(path, '/') != NULL)
      h->set_error(h,
                   "%s '%s' is missing or not executable: install the PostgreSQL client programs "
                   "(Debian: postgresql-client) or fix the '%s' option",
                   role, path, role);
    else
      h->set_error(h,
                   "%s not found: no executable '%s' in PATH (%s); install the PostgreSQL client "
                   "programs (Debian: postgresql-client) or set the '%s' option",
                   role, path, getenv("PATH") ? getenv("PATH") : "unset", role);
    return ENGINE_ERROR;
  }
  const char *argv[] = {path, "--version", NULL};
  const char *env[] = {NULL};
  struct engine_spawn_opts o = {.struct_size = sizeof(o),
                                .file = path,
                                .argv = argv,
                                .env = env,
                                .stdin_mode = ENGINE_STDIO_NULL,
                                .stdout_mode = ENGINE_STDIO_PIPE,
                                .stderr_mode = ENGINE_STDIO_PIPE};
  struct engine_child *c = NULL;
  if (h->spawn(h, &o, &c) != ENGINE_OK)
    return ENGINE_ERROR;
  char buf[512];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(c->stdout_fd, buf + len, sizeof(buf) - 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
    if (len == sizeof(buf) - 1) {
      /* the rest is of no interest; drain it so the child can exit */
      char sink[256];
      while (read(c->stdout_fd, sink, sizeof(sink)) > 0)
        ;
      break;
    }
  }
  buf[len] = '\0';
  close(c->stdout_fd);
  c->stdout_fd = -1;
  int status = 0;
  int wrc = h->child_wait(h, c, &status);
  if (wrc != ENGINE_OK) {
    h->child_free(h, c);
    return ENGINE_ERROR;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    char st[96];
    pgs_describe_status(status, st, sizeof(st));
    h->set_error(h, "'%s --version' failed (%s): %s", path, st, pgs_stderr_tail(in, c));
    h->child_free(h, c);
    return ENGINE_ERROR;
  }
  h->child_free(h, c);
  tool->version_num = parse_version(buf, tool->version, sizeof(tool->version));
  if (tool->version_num == 0 || strstr(buf, "PostgreSQL") == NULL) {
    size_t l = strlen(buf);
    while (l > 0 && buf[l - 1] == '\n')
      buf[--l] = '\0';
    h->set_error(h, "'%s --version' printed '%.100s', which is not a PostgreSQL %s version", path,
                 buf, role);
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}
