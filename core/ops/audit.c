/* The audit trail: records, the local log and the repository's audits/
 * objects (see audit.h). */
#include "ops/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/encoding.h"
#include "util/log.h"
#include "util/sysinfo.h"

#define AUDIT_VERSION 1
/* The tail of the local log that streaks and invocations are looked for in. */
#define AUDIT_TAIL_BYTES (1024 * 1024)

char *ops_state_dir(void) {
  const char *e = getenv("ENGINE_STATE_DIR");
  if (e && *e)
    return xstrdup(e);
  e = getenv("STATE_DIRECTORY"); /* systemd's StateDirectory=, ':'-separated */
  if (e && e[0] == '/')
    return xasprintf("%.*s", (int)strcspn(e, ":"), e);
  e = getenv("XDG_STATE_HOME");
  if (e && e[0] == '/')
    return xasprintf("%s/engine", e);
  e = getenv("HOME");
  if (e && e[0] == '/')
    return xasprintf("%s/.local/state/engine", e);
  return NULL;
}

char *audit_log_path(void) {
  const char *e = getenv("ENGINE_AUDIT_LOG");
  if (e)
    return *e && strcmp(e, "off") != 0 ? xstrdup(e) : NULL;
  char *dir = ops_state_dir();
  char *p = dir ? xasprintf("%s/audit.log", dir) : NULL;
  free(dir);
  return p;
}

json_t *audit_record(const struct audit_op *op) {
  unsigned char rnd[16];
  char op_id[33];
  RAND_bytes(rnd, sizeof(rnd));
  for (size_t i = 0; i < sizeof(rnd); i++)
    snprintf(op_id + 2 * i, 3, "%02x", rnd[i]);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char host[SYS_NAME_MAX], user[SYS_NAME_MAX];
  sys_hostname(host);
  sys_username(user);
  char *t = iso_time((int64_t)ts.tv_sec);
  json_t *r = json_pack(
      "{s:i, s:s, s:s, s:I, s:s, s:s, s:I, s:s, s:s, s:s?, s:s, s:i, s:s?, s:f, s:s, s:s?}",
      "version", AUDIT_VERSION, "op_id", op_id, "time", t, "created_ns",
      (json_int_t)ts.tv_sec * 1000000000 + ts.tv_nsec, "host", host, "user", user, "pid",
      (json_int_t)getpid(), "command", op->command, "pipeline", op->pipeline ? op->pipeline : "",
      "snapshot", op->snapshot, "outcome", op->outcome, "exit_code", op->exit_code, "error",
      op->error, "duration_seconds", op->seconds, "engine_version", ENGINE_VERSION, "repository",
      op->repository);
  free(t);
  if (!r)
    die_oom();
  if (op->details)
    json_object_set(r, "details", op->details);
  const char *inv = getenv("INVOCATION_ID");
  if (inv && *inv)
    json_object_set_new(r, "systemd_invocation", json_string(inv));
  return r;
}

/* mkdir -p with mode 0700 for what it creates */
static int make_dirs(const char *path, char **err) {
  char *p = xstrdup(path);
  for (char *s = p + 1; *s; s++) {
    if (*s != '/')
      continue;
    *s = '\0';
    if (mkdir(p, 0700) != 0 && errno != EEXIST) {
      *err = xasprintf("unable to create '%s': %s", p, strerror(errno));
      free(p);
      return -1;
    }
    *s = '/';
  }
  free(p);
  return 0;
}

int audit_append_local(json_t *record, char **err) {
  char *path = audit_log_path();
  if (!path)
    return 0;
  if (make_dirs(path, err) != 0) {
    free(path);
    return -1;
  }
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    *err = xasprintf("unable to open the audit log '%s': %s", path, strerror(errno));
    free(path);
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) == 0 && (st.st_mode & 077) && st.st_uid == geteuid())
    (void)fchmod(fd, 0600); /* the log names hosts, users, errors: keep it to its owner */
  char *text = json_dumps(record, JSON_COMPACT | JSON_SORT_KEYS);
  char *line = xasprintf("%s\n", text ? text : "{}");
  free(text);
  /* one write per line under an exclusive lock: concurrent commands never
   * interleave their lines */
  (void)flock(fd, LOCK_EX);
  size_t len = strlen(line), off = 0;
  int rc = 0;
  while (off < len) {
    ssize_t w = write(fd, line + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      *err = xasprintf("unable to write the audit log '%s': %s", path,
                       w < 0 ? strerror(errno) : "nothing written");
      rc = -1;
      break;
    }
    off += (size_t)w;
  }
  if (rc == 0 && fsync(fd) != 0 && errno != EINVAL) {
    *err = xasprintf("unable to write the audit log '%s': %s", path, strerror(errno));
    rc = -1;
  }
  (void)flock(fd, LOCK_UN);
  close(fd);
  free(line);
  free(path);
  return rc;
}

int audit_store(struct repo *r, json_t *record, char **err) {
  char id[65];
  return repo_save_json(r, "audit", record, id, err);
}

static int cmp_records(const void *a, const void *b) {
  json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  json_int_t tx = json_integer_value(json_object_get(x, "created_ns"));
  json_int_t ty = json_integer_value(json_object_get(y, "created_ns"));
  if (tx != ty)
    return tx < ty ? -1 : 1;
  const char *ix = json_string_value(json_object_get(x, "op_id"));
  const char *iy = json_string_value(json_object_get(y, "op_id"));
  return strcmp(ix ? ix : "", iy ? iy : "");
}

static json_t *sorted(json_t *arr) {
  size_t n = json_array_size(arr);
  json_t **v = xcalloc(n, sizeof(*v));
  for (size_t i = 0; i < n; i++)
    v[i] = json_incref(json_array_get(arr, i));
  qsort(v, n, sizeof(*v), cmp_records);
  json_t *out = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(out, v[i]);
  free(v);
  json_decref(arr);
  return out;
}

int audit_list(struct repo *r, json_t **records, json_t **unreadable, char **err) {
  *records = NULL;
  *unreadable = NULL;
  json_t *names;
  if (repo_list(r, "audits/", &names, err) != 0)
    return -1;
  json_t *out = json_array(), *bad = json_array();
  size_t i;
  json_t *e;
  json_array_foreach(names, i, e) {
    const char *name = json_string_value(json_object_get(e, "name"));
    const char *id = name ? strrchr(name, '/') : NULL;
    if (!id || strlen(id + 1) != 64 || strstr(name, ".tmp-"))
      continue;
    json_t *rec = NULL;
    char *lerr = NULL;
    if (repo_load_json(r, "audit", id + 1, &rec, &lerr) != 0 || !json_is_object(rec)) {
      json_array_append_new(
          bad, json_pack("{s:s, s:s}", "object", name, "error", lerr ? lerr : "not a JSON object"));
      free(lerr);
      json_decref(rec);
      continue;
    }
    json_object_set_new(rec, "object", json_string(name));
    json_array_append_new(out, rec);
  }
  json_decref(names);
  *records = sorted(out);
  *unreadable = bad;
  return 0;
}

/* The local log (its last max bytes when max > 0), or NULL. */
static char *read_log(size_t max, size_t *len) {
  char *path = audit_log_path();
  if (!path)
    return NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  free(path);
  if (fd < 0)
    return NULL;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return NULL;
  }
  off_t start = max && (size_t)st.st_size > max ? st.st_size - (off_t)max : 0;
  size_t want = (size_t)(st.st_size - start);
  char *buf = xmalloc(want + 1);
  size_t got = 0;
  while (got < want) {
    ssize_t r = pread(fd, buf + got, want - got, start + (off_t)got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  close(fd);
  buf[got] = '\0';
  *len = got;
  return buf;
}

/* Each line of text that is a JSON object, in order; a partial first line
 * (the tail of a longer log) and other junk are skipped. */
static json_t *parse_lines(char *text) {
  json_t *out = json_array();
  char *save = NULL;
  for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
    json_t *j = json_loads(l, 0, NULL);
    if (json_is_object(j))
      json_array_append_new(out, j);
    else
      json_decref(j);
  }
  return out;
}

json_t *audit_local_records(const char *pipeline) {
  size_t len;
  char *text = read_log(0, &len);
  json_t *out = json_array();
  if (!text)
    return out;
  json_t *all = parse_lines(text);
  free(text);
  size_t i;
  json_t *r;
  json_array_foreach(all, i, r) {
    const char *p = json_string_value(json_object_get(r, "pipeline"));
    if (p && strcmp(p, pipeline) == 0)
      json_array_append(out, r);
  }
  json_decref(all);
  return out;
}

int audit_failure_streak(const char *pipeline) {
  size_t len;
  char *text = read_log(AUDIT_TAIL_BYTES, &len);
  if (!text)
    return 0;
  json_t *all = parse_lines(text);
  free(text);
  char host[SYS_NAME_MAX];
  sys_hostname(host);
  int streak = 0;
  for (size_t i = json_array_size(all); i-- > 0;) {
    json_t *r = json_array_get(all, i);
    const char *cmd = json_string_value(json_object_get(r, "command"));
    const char *p = json_string_value(json_object_get(r, "pipeline"));
    const char *h = json_string_value(json_object_get(r, "host"));
    if (!cmd || !p || !h || strcmp(cmd, "run") != 0 || strcmp(p, pipeline) != 0 ||
        strcmp(h, host) != 0)
      continue;
    const char *o = json_string_value(json_object_get(r, "outcome"));
    if (!o || strcmp(o, "failure") != 0)
      break;
    streak++;
  }
  json_decref(all);
  return streak;
}

json_t *audit_local_unrecorded_runs(const char *pipeline) {
  json_t *out = json_array();
  size_t len;
  char *text = read_log(AUDIT_TAIL_BYTES, &len);
  if (!text)
    return out;
  json_t *all = parse_lines(text);
  free(text);
  char host[SYS_NAME_MAX];
  sys_hostname(host);
  size_t i;
  json_t *r;
  json_array_foreach(all, i, r) {
    const char *cmd = json_string_value(json_object_get(r, "command"));
    const char *p = json_string_value(json_object_get(r, "pipeline"));
    const char *h = json_string_value(json_object_get(r, "host"));
    if (cmd && p && h && strcmp(cmd, "run") == 0 && strcmp(p, pipeline) == 0 &&
        strcmp(h, host) == 0 && !json_is_string(json_object_get(r, "repository")))
      json_array_append(out, r);
  }
  json_decref(all);
  return out;
}

int audit_has_invocation(const char *invocation) {
  size_t len;
  char *text = read_log(AUDIT_TAIL_BYTES, &len);
  if (!text)
    return 0;
  json_t *all = parse_lines(text);
  free(text);
  int found = 0;
  size_t i;
  json_t *r;
  json_array_foreach(all, i, r) {
    const char *inv = json_string_value(json_object_get(r, "systemd_invocation"));
    if (inv && strcmp(inv, invocation) == 0)
      found = 1;
  }
  json_decref(all);
  return found;
}
