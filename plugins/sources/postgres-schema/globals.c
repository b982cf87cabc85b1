/* The cluster's globals: what no schema dump holds but its objects need.
 *
 * Backup reads, inside the run's snapshot, the roles (attributes, comments
 * and, with include_role_passwords, their password hashes from pg_authid),
 * role memberships, the roles' settings (ALTER ROLE ... SET, also those for
 * the backed-up database only), the database's own settings (ALTER
 * DATABASE ... SET) and the tablespaces (owner, location, options), and
 * stores them as one JSON document, the item `_globals`:
 *
 *   {"format": "engine-postgres-globals 1", "database": "app",
 *    "server_version_num": 150018, "passwords": false,
 *    "roles": [{"name": "reporting", "superuser": false, "inherit": true,
 *               "createrole": false, "createdb": false, "login": false,
 *               "replication": false, "bypassrls": false,
 *               "connection_limit": -1, "valid_until": null,
 *               "comment": null}],
 *    "memberships": [{"role": "pg_read_all_data", "member": "app",
 *                     "admin": false}],
 *    "role_settings": [{"role": "app", "setting": "work_mem=64MB"}],
 *    "database_settings": [{"role": null, "setting": "search_path=app, public"}],
 *    "tablespaces": [{"name": "fast", "owner": "postgres",
 *                     "location": "/srv/pg/fast", "options": [], "comment": null}]}
 *
 * Restore applies it to the target server: in one transaction, roles that
 * do not exist are created and every role gets its attributes, comment,
 * settings and memberships (the connecting role keeps its own attributes),
 * and the target database gets the settings; then the tablespaces that do
 * not exist are created (CREATE TABLESPACE cannot run in a transaction;
 * their directories must exist on the target). Statements are built with
 * libpq's quoting (PQescapeIdentifier / PQescapeLiteral). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgschema.h"

#define GLOBALS_FORMAT "engine-postgres-globals 1"

/* ---- backup -------------------------------------------------------------------- */

static json_t *str_or_null(PGresult *r, int row, int col) {
  return PQgetisnull(r, row, col) ? json_null() : json_string(PQgetvalue(r, row, col));
}

static int is_true(PGresult *r, int row, int col) {
  return PQgetvalue(r, row, col)[0] == 't';
}

char *pgs_globals_collect(struct pgs_inst *in, PGconn *c, const char *database, int server_num,
                          json_t **summary) {
  const struct engine_host *h = in->host;
  *summary = NULL;
  json_t *doc =
      json_pack("{s:s, s:s, s:i, s:b}", "format", GLOBALS_FORMAT, "database", database,
                "server_version_num", server_num, "passwords", in->include_role_passwords);
  json_t *roles = json_array(), *members = json_array(), *rset = json_array(), *dset = json_array(),
         *spcs = json_array();
  char *out = NULL;
  if (doc == NULL || roles == NULL || members == NULL || rset == NULL || dset == NULL ||
      spcs == NULL) {
    h->set_error(h, "out of memory");
    goto done;
  }
  /* pg_authid holds the password hashes and is readable by superusers
   * only; pg_roles shows '********' */
  const char *roles_sql =
      in->include_role_passwords
          ? "SELECT a.rolname, a.rolsuper, a.rolinherit, a.rolcreaterole, a.rolcreatedb, "
            "a.rolcanlogin, a.rolreplication, a.rolbypassrls, a.rolconnlimit, "
            "a.rolvaliduntil::text, pg_catalog.shobj_description(a.oid, 'pg_authid'), "
            "a.rolpassword FROM pg_catalog.pg_authid a WHERE a.rolname !~ '^pg_' ORDER BY 1"
          : "SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, "
            "r.rolcanlogin, r.rolreplication, r.rolbypassrls, r.rolconnlimit, "
            "r.rolvaliduntil::text, pg_catalog.shobj_description(r.oid, 'pg_authid') FROM "
            "pg_catalog.pg_roles r WHERE r.rolname !~ '^pg_' ORDER BY 1";
  PGresult *r = pgs_query(in, c, roles_sql, 0, NULL,
                          in->include_role_passwords
                              ? "reading the roles and their passwords (pg_authid: "
                                "include_role_passwords needs a superuser or pg_read_all_data)"
                              : "reading the roles");
  if (r == NULL)
    goto done;
  for (int i = 0; i < PQntuples(r); i++) {
    json_t *o = json_pack(
        "{s:s, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:i, s:o, s:o}", "name", PQgetvalue(r, i, 0),
        "superuser", is_true(r, i, 1), "inherit", is_true(r, i, 2), "createrole", is_true(r, i, 3),
        "createdb", is_true(r, i, 4), "login", is_true(r, i, 5), "replication", is_true(r, i, 6),
        "bypassrls", is_true(r, i, 7), "connection_limit", atoi(PQgetvalue(r, i, 8)), "valid_until",
        str_or_null(r, i, 9), "comment", str_or_null(r, i, 10));
    if (o != NULL && in->include_role_passwords)
      json_object_set_new(o, "password", str_or_null(r, i, 11));
    json_array_append_new(roles, o);
  }
  PQclear(r);
  int pg16 = server_num >= 160000;
  r = pgs_query(in, c,
                pg16 ? "SELECT r.rolname, m.rolname, a.admin_option, a.inherit_option, "
                       "a.set_option FROM pg_catalog.pg_auth_members a JOIN pg_catalog.pg_roles r "
                       "ON r.oid = a.roleid JOIN pg_catalog.pg_roles m ON m.oid = a.member WHERE "
                       "m.rolname !~ '^pg_' ORDER BY 1, 2"
                     : "SELECT r.rolname, m.rolname, a.admin_option FROM "
                       "pg_catalog.pg_auth_members a JOIN pg_catalog.pg_roles r ON r.oid = "
                       "a.roleid JOIN pg_catalog.pg_roles m ON m.oid = a.member WHERE m.rolname "
                       "!~ '^pg_' ORDER BY 1, 2",
                0, NULL, "reading the role memberships");
  if (r == NULL)
    goto done;
  for (int i = 0; i < PQntuples(r); i++) {
    json_t *o = json_pack("{s:s, s:s, s:b}", "role", PQgetvalue(r, i, 0), "member",
                          PQgetvalue(r, i, 1), "admin", is_true(r, i, 2));
    if (o != NULL && pg16) {
      json_object_set_new(o, "inherit", json_boolean(is_true(r, i, 3)));
      json_object_set_new(o, "set", json_boolean(is_true(r, i, 4)));
    }
    json_array_append_new(members, o);
  }
  PQclear(r);
  r = pgs_query(in, c,
                "SELECT r.rolname, s.setdatabase <> 0, pg_catalog.unnest(s.setconfig) FROM "
                "pg_catalog.pg_db_role_setting s LEFT JOIN pg_catalog.pg_roles r ON r.oid = "
                "s.setrole WHERE s.setdatabase = 0 OR s.setdatabase = (SELECT d.oid FROM "
                "pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()) "
                "ORDER BY 2, 1 NULLS FIRST",
                0, NULL, "reading the role and database settings");
  if (r == NULL)
    goto done;
  for (int i = 0; i < PQntuples(r); i++) {
    int in_db = is_true(r, i, 1);
    if (!in_db && PQgetisnull(r, i, 0))
      continue; /* settings for all roles in all databases are not ours */
    json_array_append_new(in_db ? dset : rset, json_pack("{s:o, s:s}", "role", str_or_null(r, i, 0),
                                                         "setting", PQgetvalue(r, i, 2)));
  }
  PQclear(r);
  r = pgs_query(in, c,
                "SELECT t.spcname, pg_catalog.pg_get_userbyid(t.spcowner), "
                "pg_catalog.pg_tablespace_location(t.oid), COALESCE(t.spcoptions, '{}'), "
                "pg_catalog.shobj_description(t.oid, 'pg_tablespace') FROM "
                "pg_catalog.pg_tablespace t WHERE t.spcname !~ '^pg_' ORDER BY 1",
                0, NULL, "reading the tablespaces");
  if (r == NULL)
    goto done;
  for (int i = 0; i < PQntuples(r); i++) {
    json_t *opts = json_array();
    /* '{a=1,b=2}': option values are simple tokens */
    const char *p = PQgetvalue(r, i, 3);
    if (*p == '{')
      p++;
    while (*p && *p != '}') {
      const char *e = p + strcspn(p, ",}");
      json_array_append_new(opts, json_stringn(p, (size_t)(e - p)));
      p = *e == ',' ? e + 1 : e;
    }
    json_array_append_new(spcs,
                          json_pack("{s:s, s:s, s:s, s:o, s:o}", "name", PQgetvalue(r, i, 0),
                                    "owner", PQgetvalue(r, i, 1), "location", PQgetvalue(r, i, 2),
                                    "options", opts, "comment", str_or_null(r, i, 4)));
  }
  PQclear(r);
  *summary = json_pack("{s:I, s:I, s:I, s:I, s:b}", "roles", (json_int_t)json_array_size(roles),
                       "memberships", (json_int_t)json_array_size(members), "settings",
                       (json_int_t)(json_array_size(rset) + json_array_size(dset)), "tablespaces",
                       (json_int_t)json_array_size(spcs), "passwords", in->include_role_passwords);
  json_object_set(doc, "roles", roles);
  json_object_set(doc, "memberships", members);
  json_object_set(doc, "role_settings", rset);
  json_object_set(doc, "database_settings", dset);
  json_object_set(doc, "tablespaces", spcs);
  out = json_dumps(doc, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
  if (out == NULL || *summary == NULL) {
    free(out);
    out = NULL;
    json_decref(*summary);
    *summary = NULL;
    h->set_error(h, "out of memory");
  }
done:
  json_decref(doc);
  json_decref(roles);
  json_decref(members);
  json_decref(rset);
  json_decref(dset);
  json_decref(spcs);
  return out;
}

/* ---- restore ------------------------------------------------------------------------ */

struct ap {
  struct pgs_inst *in;
  PGconn *c;
  struct pgs_buf sql;
  int oom;
};

static void add(struct ap *a, const char *f, ...) __attribute__((format(printf, 2, 3)));
static void add(struct ap *a, const char *f, ...) {
  char *s = NULL;
  va_list ap;
  va_start(ap, f);
  int n = vasprintf(&s, f, ap);
  va_end(ap);
  if (n < 0) {
    a->oom = 1;
    return;
  }
  pgs_buf_add(&a->sql, s, (size_t)n);
  free(s);
}

/* Quoted with libpq; "" on out of memory (and a->oom set). */
static char *ident(struct ap *a, const char *s) {
  char *q = PQescapeIdentifier(a->c, s, strlen(s));
  if (q == NULL)
    a->oom = 1;
  return q;
}

static char *literal(struct ap *a, const char *s) {
  char *q = PQescapeLiteral(a->c, s, strlen(s));
  if (q == NULL)
    a->oom = 1;
  return q;
}

/* Settings whose value is a list of names (pg_dumpall's list): each element
 * is quoted on its own. */
static int list_setting(const char *name) {
  static const char *const lists[] = {"local_preload_libraries",
                                      "search_path",
                                      "session_preload_libraries",
                                      "shared_preload_libraries",
                                      "temp_tablespaces",
                                      "unix_socket_directories",
                                      NULL};
  for (size_t i = 0; lists[i]; i++)
    if (strcasecmp(name, lists[i]) == 0)
      return 1;
  return 0;
}

/* "name=value" -> "name TO value" (quoted), appended to the script. */
static int add_setting(struct ap *a, const char *setting) {
  const char *eq = strchr(setting, '=');
  if (eq == NULL || eq == setting)
    return -1;
  char *name = strndup(setting, (size_t)(eq - setting));
  if (name == NULL) {
    a->oom = 1;
    return -1;
  }
  char *qn = ident(a, name);
  add(a, "%s TO ", qn ? qn : "");
  PQfreemem(qn);
  const char *v = eq + 1;
  if (!list_setting(name)) {
    char *ql = literal(a, v);
    add(a, "%s", ql ? ql : "''");
    PQfreemem(ql);
  } else {
    /* elements separated by ", ", each maybe a double-quoted identifier */
    int first = 1;
    while (*v) {
      while (*v == ' ' || *v == ',')
        v++;
      if (!*v)
        break;
      struct pgs_buf el = {0};
      if (*v == '"') {
        for (v++; *v; v++) {
          if (*v == '"') {
            if (v[1] != '"') {
              v++;
              break;
            }
            v++;
          }
          pgs_buf_add(&el, v, 1);
        }
      } else {
        while (*v && *v != ',') {
          pgs_buf_add(&el, v, 1);
          v++;
        }
        while (el.len > 0 && el.p[el.len - 1] == ' ')
          el.len--;
      }
      pgs_buf_add(&el, "", 1);
      char *ql = el.oom ? NULL : literal(a, (char *)el.p);
      add(a, "%s%s", first ? "" : ", ", ql ? ql : "''");
      PQfreemem(ql);
      pgs_buf_free(&el);
      first = 0;
    }
    if (first)
      add(a, "''");
  }
  free(name);
  return 0;
}

static const char *jstr(json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

static int run_sql(struct ap *a, const char *what, char **err) {
  pgs_buf_add(&a->sql, "", 1);
  if (a->oom || a->sql.oom) {
    *err = strdup("out of memory");
    return -1;
  }
  PGresult *r = PQexec(a->c, (const char *)a->sql.p);
  int ok = r && (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
  if (!ok) {
    char *m = pgs_conn_message(a->c);
    const char *rm = r ? PQresultErrorMessage(r) : NULL;
    if (asprintf(err, "%s failed: %s", what, rm && rm[0] ? rm : m ? m : "?") < 0)
      *err = NULL;
    free(m);
    if (*err) { /* one line */
      size_t l = strlen(*err);
      while (l > 0 && ((*err)[l - 1] == '\n' || (*err)[l - 1] == ' '))
        (*err)[--l] = '\0';
      for (char *p = *err; *p; p++)
        if (*p == '\n')
          *p = ' ';
    }
  }
  PQclear(r);
  pgs_buf_free(&a->sql);
  return ok ? 0 : -1;
}

static json_t *parse_doc(const struct engine_host *h, const char *doc, size_t len) {
  json_error_t je;
  json_t *d = json_loadb(doc, len, 0, &je);
  const char *f = json_string_value(json_object_get(d, "format"));
  if (!json_is_object(d) || f == NULL || strcmp(f, GLOBALS_FORMAT) != 0 ||
      !json_is_array(json_object_get(d, "roles"))) {
    h->set_error(h, "the globals item is not a globals document of this plugin (%s)",
                 d ? "unknown format" : je.text);
    json_decref(d);
    return NULL;
  }
  return d;
}

int pgs_globals_check(struct pgs_inst *in, const char *doc, size_t len, char **summary) {
  json_t *d = parse_doc(in->host, doc, len);
  if (d == NULL)
    return ENGINE_ERROR;
  if (asprintf(summary,
               "%zu role(s), %zu membership(s), %zu setting(s), %zu tablespace(s); readable, not "
               "applied (roles and tablespaces are cluster-wide)",
               json_array_size(json_object_get(d, "roles")),
               json_array_size(json_object_get(d, "memberships")),
               json_array_size(json_object_get(d, "role_settings")) +
                   json_array_size(json_object_get(d, "database_settings")),
               json_array_size(json_object_get(d, "tablespaces"))) < 0)
    *summary = NULL;
  json_decref(d);
  return ENGINE_OK;
}

int pgs_globals_apply(struct pgs_inst *in, PGconn *c, const char *doc, size_t len,
                      const char *describe, char **summary) {
  const struct engine_host *h = in->host;
  *summary = NULL;
  json_t *d = parse_doc(h, doc, len);
  if (d == NULL)
    return ENGINE_ERROR;
  PGresult *r = pgs_query(in, c, "SELECT current_user, pg_catalog.current_database()", 0, NULL,
                          "reading the target's roles");
  if (r == NULL) {
    json_decref(d);
    return ENGINE_ERROR;
  }
  char *me = strdup(PQgetvalue(r, 0, 0));
  char *db = strdup(PQgetvalue(r, 0, 1));
  PQclear(r);
  struct ap a = {.in = in, .c = c};
  int rc = ENGINE_ERROR;
  size_t created = 0, n_roles = 0, n_members = 0, n_settings = 0, n_spc = 0, n_spc_new = 0;
  char *err = NULL;
  json_t *have_roles = json_object();
  if (me == NULL || db == NULL || have_roles == NULL) {
    h->set_error(h, "out of memory");
    goto out;
  }
  /* the roles that exist */
  r = pgs_query(in, c, "SELECT rolname FROM pg_catalog.pg_roles", 0, NULL,
                "reading the target's roles");
  if (r == NULL)
    goto out;
  for (int i = 0; i < PQntuples(r); i++)
    json_object_set_new(have_roles, PQgetvalue(r, i, 0), json_true());
  PQclear(r);

  char *qdb = ident(&a, db);
  add(&a, "SET client_min_messages = warning;\nBEGIN;\n");
  size_t i;
  json_t *o;
  json_array_foreach(json_object_get(d, "roles"), i, o) {
    const char *name = jstr(o, "name");
    if (name == NULL)
      continue;
    n_roles++;
    char *q = ident(&a, name);
    if (json_object_get(have_roles, name) == NULL) {
      add(&a, "CREATE ROLE %s;\n", q ? q : "");
      created++;
    }
    if (strcmp(name, me) == 0) {
      h->log(h, ENGINE_LOG_INFO,
             "globals: role '%s' is the one restoring them; its attributes are left as they are",
             name);
    } else {
      add(&a,
          "ALTER ROLE %s WITH %sSUPERUSER %sINHERIT %sCREATEROLE %sCREATEDB %sLOGIN "
          "%sREPLICATION %sBYPASSRLS CONNECTION LIMIT %d",
          q ? q : "", json_is_true(json_object_get(o, "superuser")) ? "" : "NO",
          json_is_true(json_object_get(o, "inherit")) ? "" : "NO",
          json_is_true(json_object_get(o, "createrole")) ? "" : "NO",
          json_is_true(json_object_get(o, "createdb")) ? "" : "NO",
          json_is_true(json_object_get(o, "login")) ? "" : "NO",
          json_is_true(json_object_get(o, "replication")) ? "" : "NO",
          json_is_true(json_object_get(o, "bypassrls")) ? "" : "NO",
          (int)json_integer_value(json_object_get(o, "connection_limit")));
      const char *vu = jstr(o, "valid_until");
      if (vu != NULL) {
        char *l = literal(&a, vu);
        add(&a, " VALID UNTIL %s", l ? l : "''");
        PQfreemem(l);
      }
      const char *pw = jstr(o, "password");
      if (pw != NULL) {
        char *l = literal(&a, pw);
        add(&a, " PASSWORD %s", l ? l : "''");
        PQfreemem(l);
      }
      add(&a, ";\n");
    }
    const char *cm = jstr(o, "comment");
    if (cm != NULL) {
      char *l = literal(&a, cm);
      add(&a, "COMMENT ON ROLE %s IS %s;\n", q ? q : "", l ? l : "''");
      PQfreemem(l);
    }
    PQfreemem(q);
  }
  json_array_foreach(json_object_get(d, "role_settings"), i, o) {
    const char *role = jstr(o, "role"), *set = jstr(o, "setting");
    if (role == NULL || set == NULL)
      continue;
    char *q = ident(&a, role);
    add(&a, "ALTER ROLE %s SET ", q ? q : "");
    PQfreemem(q);
    if (add_setting(&a, set) != 0)
      h->log(h, ENGINE_LOG_WARN, "globals: setting '%s' of role '%s' is not name=value; skipped",
             set, role);
    add(&a, ";\n");
    n_settings++;
  }
  json_array_foreach(json_object_get(d, "database_settings"), i, o) {
    const char *role = jstr(o, "role"), *set = jstr(o, "setting");
    if (set == NULL)
      continue;
    if (role != NULL) {
      char *q = ident(&a, role);
      add(&a, "ALTER ROLE %s IN DATABASE %s SET ", q ? q : "", qdb ? qdb : "");
      PQfreemem(q);
    } else {
      add(&a, "ALTER DATABASE %s SET ", qdb ? qdb : "");
    }
    add_setting(&a, set);
    add(&a, ";\n");
    n_settings++;
  }
  json_array_foreach(json_object_get(d, "memberships"), i, o) {
    const char *role = jstr(o, "role"), *member = jstr(o, "member");
    if (role == NULL || member == NULL)
      continue;
    char *qr = ident(&a, role), *qm = ident(&a, member);
    add(&a, "GRANT %s TO %s", qr ? qr : "", qm ? qm : "");
    json_t *inh = json_object_get(o, "inherit"), *set = json_object_get(o, "set");
    int admin = json_is_true(json_object_get(o, "admin"));
    if (PQserverVersion(c) >= 160000 && json_is_boolean(inh) && json_is_boolean(set))
      add(&a, " WITH ADMIN %s, INHERIT %s, SET %s", admin ? "TRUE" : "FALSE",
          json_is_true(inh) ? "TRUE" : "FALSE", json_is_true(set) ? "TRUE" : "FALSE");
    else if (admin)
      add(&a, " WITH ADMIN OPTION");
    add(&a, ";\n");
    PQfreemem(qr);
    PQfreemem(qm);
    n_members++;
  }
  PQfreemem(qdb);
  add(&a, "COMMIT;\n");
  if (run_sql(&a, "restoring the roles, memberships and settings", &err) != 0) {
    PQclear(PQexec(c, "ROLLBACK"));
    h->set_error(h, "restoring the globals into %s failed, nothing was changed: %s", describe,
                 err ? err : "out of memory");
    goto out;
  }
  /* tablespaces: one statement each, outside any transaction */
  json_array_foreach(json_object_get(d, "tablespaces"), i, o) {
    const char *name = jstr(o, "name"), *owner = jstr(o, "owner"), *loc = jstr(o, "location");
    if (name == NULL || loc == NULL)
      continue;
    n_spc++;
    const char *params[] = {name};
    r = pgs_query(in, c,
                  "SELECT pg_catalog.pg_tablespace_location(oid) FROM pg_catalog.pg_tablespace "
                  "WHERE spcname = $1",
                  1, params, "looking up a tablespace");
    if (r == NULL)
      goto out;
    if (PQntuples(r) > 0) {
      if (strcmp(PQgetvalue(r, 0, 0), loc) != 0)
        h->log(h, ENGINE_LOG_WARN,
               "globals: tablespace '%s' exists on %s at '%s', not at '%s' as backed up; left "
               "as it is",
               name, describe, PQgetvalue(r, 0, 0), loc);
      PQclear(r);
      continue;
    }
    PQclear(r);
    char *qn = ident(&a, name), *qo = owner ? ident(&a, owner) : NULL, *ql = literal(&a, loc);
    add(&a, "CREATE TABLESPACE %s%s%s LOCATION %s", qn ? qn : "", qo ? " OWNER " : "", qo ? qo : "",
        ql ? ql : "''");
    json_t *opts = json_object_get(o, "options");
    if (json_array_size(opts) > 0) {
      add(&a, " WITH (");
      size_t k;
      json_t *v;
      json_array_foreach(opts, k, v) {
        /* name=value, both simple tokens from the catalog */
        const char *s = json_string_value(v);
        const char *eq = s ? strchr(s, '=') : NULL;
        if (eq == NULL)
          continue;
        char *on = strndup(s, (size_t)(eq - s));
        char *qon = on ? ident(&a, on) : NULL, *qov = literal(&a, eq + 1);
        add(&a, "%s%s = %s", k ? ", " : "", qon ? qon : "", qov ? qov : "''");
        free(on);
        PQfreemem(qon);
        PQfreemem(qov);
      }
      add(&a, ")");
    }
    PQfreemem(qn);
    PQfreemem(qo);
    PQfreemem(ql);
    if (run_sql(&a, "creating the tablespace", &err) != 0) {
      h->set_error(h,
                   "restoring the globals into %s: the roles, memberships and settings were "
                   "restored, but tablespace '%s' (location '%s') could not be created: %s",
                   describe, name, loc, err ? err : "out of memory");
      goto out;
    }
    const char *cm = jstr(o, "comment");
    if (cm != NULL) {
      char *l = literal(&a, cm);
      qn = ident(&a, name);
      add(&a, "COMMENT ON TABLESPACE %s IS %s", qn ? qn : "", l ? l : "''");
      PQfreemem(qn);
      PQfreemem(l);
      free(err);
      err = NULL;
      if (run_sql(&a, "commenting the tablespace", &err) != 0)
        h->log(h, ENGINE_LOG_WARN, "globals: %s", err ? err : "out of memory");
    }
    n_spc_new++;
  }
  if (asprintf(summary,
               "%zu role(s) (%zu created), %zu membership(s), %zu setting(s), %zu tablespace(s) "
               "(%zu created)",
               n_roles, created, n_members, n_settings, n_spc, n_spc_new) < 0)
    *summary = NULL;
  rc = ENGINE_OK;
out:
  free(err);
  pgs_buf_free(&a.sql);
  json_decref(have_roles);
  free(me);
  free(db);
  json_decref(d);
  return rc;
}
