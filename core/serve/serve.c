/* engine serve: the server — its start (tokens, the listening socket, the
 * state directory, the pipelines of the config directory), SIGHUP reloads
 * and the orderly stop on SIGTERM/SIGINT. The parts it drives are listed
 * in serve_int.h. */
#include "serve/serve_int.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/pipeline.h"
#include "ops/preflight.h"
#include "plugin/loader.h"
#include "util/cron.h"
#include "util/log.h"
#include "util/secret.h"

/* ---- pipelines ----------------------------------------------------------- */

static void free_pipelines(struct serve_pipeline *ps, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(ps[i].name);
    free(ps[i].path);
    free(ps[i].error);
    free(ps[i].schedule);
    json_decref(ps[i].warnings);
  }
  free(ps);
}

static const struct engine_plugin *lookup(void *ud, enum engine_plugin_kind kind, const char *type,
                                          char **err) {
  return registry_find(ud, kind, type, err);
}

static int has_suffix(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a > b && strcmp(s + a - b, suf) == 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Validate one file as `engine validate` does (structure, plugins and their
 * options, the schedule). */
static void load_one(struct plugin_registry *reg, const char *dir, const char *file,
                     struct serve_pipeline *out) {
  memset(out, 0, sizeof(*out));
  out->path = xasprintf("%s/%s", dir, file);
  struct pipeline *p = NULL;
  char *err = NULL;
  if (!reg)
    err = xstrdup("unable to scan the plugin search path");
  else if (pipeline_load(out->path, lookup, reg, &p, &err) == 0) {
    out->name = xstrdup(p->name);
    out->timeout_ms = p->timeout_ms;
    out->rpo_ms = p->rpo_ms;
    out->rto_ms = p->rto_ms;
    out->warnings = preflight_secret_warnings(p);
    if (p->schedule) {
      char *cal = NULL, *e = NULL;
      out->schedule = xstrdup(p->schedule);
      if (cron_to_oncalendar(p->schedule, &cal, &e) != 0 ||
          cron_parse(p->schedule, &out->cron, &e) != 0) {
        err = xasprintf("%s: %s", out->path, e);
        free(e);
      }
      free(cal);
    }
    if (!err)
      out->valid = 1;
  }
  pipeline_free(p);
  if (!out->warnings)
    out->warnings = json_array();
  if (!out->name) {
    /* named after the file, so it can still be listed */
    const char *dot = strrchr(file, '.');
    out->name = xasprintf("%.*s", (int)(dot - file), file);
  }
  out->error = err;
}

/* Read every *.yml / *.yaml of the config directory. Returns -1 (and keeps
 * what was loaded before) when the directory cannot be read. */
static int load_pipelines(struct serve *s) {
  const char *dir = s->config_dir;
  DIR *d = opendir(dir);
  if (!d) {
    log_error("serve: unable to read the config directory '%s': %s", dir, strerror(errno));
    return -1;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.' || !(has_suffix(e->d_name, ".yml") || has_suffix(e->d_name, ".yaml")))
      continue;
    char *path = xasprintf("%s/%s", dir, e->d_name);
    struct stat st;
    int regular = stat(path, &st) == 0 && S_ISREG(st.st_mode);
    free(path);
    if (!regular)
      continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      names = xrealloc(names, cap * sizeof(*names));
    }
    names[n++] = xstrdup(e->d_name);
  }
  closedir(d);
  if (n)
    qsort(names, n, sizeof(*names), cmp_str);

  struct plugin_registry *reg = NULL;
  if (registry_load(s->opts->plugin_dirs, s->opts->n_plugin_dirs, &reg) != 0)
    reg = NULL;
  struct serve_pipeline *ps = xcalloc(n, sizeof(*ps));
  size_t invalid = 0;
  for (size_t i = 0; i < n; i++) {
    load_one(reg, dir, names[i], &ps[i]);
    for (size_t k = 0; k < i && ps[i].valid; k++)
      if (ps[k].valid && strcmp(ps[k].name, ps[i].name) == 0) {
        ps[i].valid = 0;
        ps[i].error = xasprintf("%s: pipeline name '%s' is already used by %s", ps[i].path,
                                ps[i].name, ps[k].path);
      }
    if (ps[i].valid) {
      serve_stats_get(s, ps[i].name);
      size_t k;
      json_t *w;
      json_array_foreach(ps[i].warnings, k, w)
          log_warn("serve: %s (pipeline '%s'): %s", ps[i].path, ps[i].name, json_string_value(w));
    } else {
      invalid++;
      log_warn("serve: %s is not loaded:\n%s", ps[i].path, ps[i].error);
    }
    free(names[i]);
  }
  free(names);
  registry_free(reg);
  free_pipelines(s->pipelines, s->n_pipelines);
  s->pipelines = ps;
  s->n_pipelines = n;
  serve_say("loaded %zu pipeline(s) from %s (%zu invalid)", n - invalid, dir, invalid);
  return 0;
}

/* ---- signals and stopping ------------------------------------------------- */

static void on_stop_timer(uv_timer_t *t) {
  struct serve *s = t->data;
  if (s->stop_stage == 0) {
    log_warn("serve: %d job(s) still running after %d s: sending them SIGTERM", s->running,
             SERVE_STOP_WAIT_MS / 1000);
    serve_jobs_kill(s, SIGTERM);
    s->stop_stage = 1;
    uv_timer_start(&s->stop_timer, on_stop_timer, 10000, 0);
  } else if (s->stop_stage == 1) {
    log_warn("serve: %d job(s) ignored SIGTERM for 10 s: sending them SIGKILL", s->running);
    serve_jobs_kill(s, SIGKILL);
    s->stop_stage = 2;
  }
}

static const char *signame(int signum) {
  return signum == SIGTERM ? "SIGTERM" : signum == SIGINT ? "SIGINT" : "signal";
}

static void begin_stop(struct serve *s, int signum) {
  if (s->stopping) {
    if (s->stop_stage == 0) {
      serve_say("second %s: stopping the running jobs now", signame(signum));
      uv_timer_stop(&s->stop_timer);
      on_stop_timer(&s->stop_timer);
    }
    return;
  }
  s->stopping = 1;
  serve_say("%s: no longer accepting requests; waiting for %d running job(s) (up to %d s)",
            signame(signum), s->running, SERVE_STOP_WAIT_MS / 1000);
  if (s->http)
    httpd_close(s->http);
  s->http = NULL;
  serve_watch_stop(s);
  uv_signal_stop(&s->sig_hup);
  serve_jobs_fail_queued(s, "not started: the server was stopped");
  serve_cancel_listings(s);
  uv_timer_start(&s->stop_timer, on_stop_timer, SERVE_STOP_WAIT_MS, 0);
  serve_maybe_stopped(s);
}

static void on_signal(uv_signal_t *h, int signum) {
  struct serve *s = h->data;
  if (signum == SIGHUP) {
    serve_say("SIGHUP: reloading %s", s->config_dir);
    load_pipelines(s);
    serve_status_refresh(s, NULL);
    return;
  }
  begin_stop(s, signum);
}

/* ---- start ----------------------------------------------------------------- */

static int parse_listen(const char *spec, struct sockaddr_storage *ss, int *loopback, char **err) {
  char host[256];
  const char *port_s;
  if (spec[0] == '[') {
    const char *end = strchr(spec, ']');
    if (!end || end[1] != ':' || (size_t)(end - spec - 1) >= sizeof(host))
      goto bad;
    snprintf(host, sizeof(host), "%.*s", (int)(end - spec - 1), spec + 1);
    port_s = end + 2;
  } else {
    const char *colon = strrchr(spec, ':');
    if (!colon || (size_t)(colon - spec) >= sizeof(host))
      goto bad;
    snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
    if (strchr(host, ':')) {
      *err = xasprintf("--listen '%s': write an IPv6 address in brackets, e.g. [::1]:5036", spec);
      return -1;
    }
    port_s = colon + 1;
  }
  char *end;
  errno = 0;
  long port = strtol(port_s, &end, 10);
  if (!*port_s || *end || errno || port < 0 || port > 65535 || !host[0])
    goto bad;
  if (strcmp(host, "localhost") == 0)
    snprintf(host, sizeof(host), "127.0.0.1");
  memset(ss, 0, sizeof(*ss));
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0) {
    uint32_t a = ntohl(((struct sockaddr_in *)ss)->sin_addr.s_addr);
    *loopback = (a >> 24) == 127;
    return 0;
  }
  if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0) {
    const struct in6_addr *a = &((struct sockaddr_in6 *)ss)->sin6_addr;
    *loopback = IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    return 0;
  }
bad:
  *err = xasprintf("--listen '%s': expected ADDRESS:PORT with a numeric IPv4 address, "
                   "[IPv6] or localhost, and a port 0..65535 (e.g. 127.0.0.1:5036)",
                   spec);
  return -1;
}

/* The SHA-256 of the token in path (surrounding whitespace ignored). */
static int load_token(const char *path, unsigned char hash[32], char **err) {
  struct stat st;
  if (stat(path, &st) != 0) {
    *err = xasprintf("unable to read the token file '%s': %s", path, strerror(errno));
    return -1;
  }
  if (st.st_mode & 077)
    log_warn("serve: the token file '%s' is accessible by group or others (mode %04o); "
             "expected 0600",
             path, (unsigned)(st.st_mode & 07777));
  char *ref = xasprintf("file:%s", path);
  char *tok = NULL, *e = NULL;
  size_t len = 0;
  int rc = secret_resolve(ref, &tok, &len, &e);
  free(ref);
  if (rc != 0) {
    *err = xasprintf("token file: %s", e);
    free(e);
    return -1;
  }
  size_t start = 0, end = len;
  while (start < end &&
         (tok[start] == ' ' || tok[start] == '\t' || tok[start] == '\r' || tok[start] == '\n'))
    start++;
  while (end > start && (tok[end - 1] == ' ' || tok[end - 1] == '\t' || tok[end - 1] == '\r' ||
                         tok[end - 1] == '\n'))
    end--;
  if (end == start) {
    *err = xasprintf("the token file '%s' is empty", path);
    secret_wipe_free(tok, len);
    return -1;
  }
  unsigned int hl = 0;
  rc = EVP_Digest(tok + start, end - start, hash, &hl, EVP_sha256(), NULL);
  secret_wipe_free(tok, len);
  if (rc != 1 || hl != 32) {
    *err = xstrdup("unable to hash the token: SHA-256 failed");
    return -1;
  }
  return 0;
}

static void add_host(struct serve *s, const char *host) {
  for (size_t i = 0; i < s->n_hosts; i++)
    if (strcasecmp(s->hosts[i], host) == 0)
      return;
  s->hosts = xrealloc(s->hosts, (s->n_hosts + 1) * sizeof(*s->hosts));
  s->hosts[s->n_hosts++] = xstrdup(host);
}

/* The names a request may give in Host (and Origin) when there is no token:
 * a page elsewhere (DNS rebinding, a cross-site form) names its own host. */
static void init_hosts(struct serve *s) {
  const char *colon = strrchr(s->address, ':');
  const char *port = colon ? colon + 1 : "0";
  char *h[] = {xasprintf("127.0.0.1:%s", port), xasprintf("localhost:%s", port),
               xasprintf("[::1]:%s", port)};
  for (size_t i = 0; i < sizeof(h) / sizeof(h[0]); i++) {
    add_host(s, h[i]);
    free(h[i]);
  }
  add_host(s, s->address);
  if (!has_suffix(s->opts->listen, ":0"))
    add_host(s, s->opts->listen);
  if (strcmp(port, "80") == 0) /* a browser leaves out the default port */
    for (size_t i = 0, n = s->n_hosts; i < n; i++)
      if (has_suffix(s->hosts[i], ":80")) {
        char *bare = xasprintf("%.*s", (int)(strlen(s->hosts[i]) - 3), s->hosts[i]);
        add_host(s, bare);
        free(bare);
      }
}

static void free_state(struct serve *s) {
  for (size_t i = 0; i < s->n_hosts; i++)
    free(s->hosts[i]);
  free(s->hosts);
  free_pipelines(s->pipelines, s->n_pipelines);
  while (s->stats) {
    struct serve_stats *n = s->stats->next;
    free(s->stats->name);
    json_decref(s->stats->status);
    free(s->stats->status_error);
    free(s->stats);
    s->stats = n;
  }
  serve_jobs_free(s);
  OPENSSL_cleanse(s->token_hash, sizeof(s->token_hash));
  OPENSSL_cleanse(s->restore_token_hash, sizeof(s->restore_token_hash));
}

static void close_loop(struct serve *s) {
  uv_run(&s->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&s->loop) != 0)
    log_warn("serve: some handles were still open at exit");
}

int serve_run(const struct serve_opts *o) {
  serve_set_quiet(o->quiet);
  struct serve *s = xcalloc(1, sizeof(*s));
  s->opts = o;
  s->config_dir = o->config_dir;
  s->started_at = serve_now();
  s->started_ns = uv_hrtime();
  int rc = 1;
  char *err = NULL;
  ssize_t n = readlink("/proc/self/exe", s->exe, sizeof(s->exe) - 1);
  if (n <= 0)
    snprintf(s->exe, sizeof(s->exe), "engine");
  else
    s->exe[n] = '\0';

  struct sockaddr_storage addr;
  int loopback = 0;
  if (parse_listen(o->listen, &addr, &loopback, &err) != 0) {
    fprintf(stderr, "engine: error: %s\n", err);
    free(err);
    free(s);
    return 2;
  }
  if (!loopback && !o->token_file) {
    fprintf(stderr,
            "engine: error: refusing to listen on %s without --token-file: the API starts "
            "backups and lists snapshots, so any other address needs a bearer token (a file of "
            "mode 0600); or listen on 127.0.0.1\n",
            o->listen);
    free(s);
    return 2;
  }
  if (o->allow_restore && !o->restore_token_file) {
    fprintf(stderr, "engine: error: --allow-restore needs --restore-token-file: restores through "
                    "the API must carry a token of their own\n");
    free(s);
    return 2;
  }
  if (o->token_file) {
    if (load_token(o->token_file, s->token_hash, &err) != 0) {
      fprintf(stderr, "engine: error: %s\n", err);
      free(err);
      free(s);
      return 1;
    }
    s->have_token = 1;
  }
  if (o->allow_restore) {
    if (load_token(o->restore_token_file, s->restore_token_hash, &err) != 0) {
      fprintf(stderr, "engine: error: restore token: %s\n", err);
      free(err);
      free(s);
      return 1;
    }
    if (s->have_token && CRYPTO_memcmp(s->token_hash, s->restore_token_hash, 32) == 0) {
      fprintf(stderr, "engine: error: the restore token must differ from the token of "
                      "--token-file (anyone who may start a backup could restore)\n");
      free(s);
      return 2;
    }
    s->have_restore_token = 1;
  }
  s->lock_fd = -1;
  s->summary_minute = o->summary_minute;
  int uv = uv_loop_init(&s->loop);
  if (uv != 0) {
    fprintf(stderr, "engine: error: unable to create the event loop: %s\n", uv_strerror(uv));
    free(s);
    return 1;
  }
  if (serve_state_open(s, &err) != 0) {
    fprintf(stderr, "engine: error: %s\n", err);
    free(err);
    goto out;
  }
  serve_jobs_load(s);
  if (load_pipelines(s) != 0)
    goto out;
  if (httpd_listen(&s->loop, (const struct sockaddr *)&addr, serve_handle_request, s, &s->http,
                   &err) != 0) {
    fprintf(stderr, "engine: error: %s\n", err);
    free(err);
    goto out;
  }
  httpd_address(s->http, s->address, sizeof(s->address));
  init_hosts(s);
  uv_signal_init(&s->loop, &s->sig_term);
  uv_signal_init(&s->loop, &s->sig_int);
  uv_signal_init(&s->loop, &s->sig_hup);
  uv_timer_init(&s->loop, &s->tick);
  uv_timer_init(&s->loop, &s->stop_timer);
  uv_timer_init(&s->loop, &s->watchdog);
  s->sig_term.data = s->sig_int.data = s->sig_hup.data = s->tick.data = s->stop_timer.data =
      s->watchdog.data = s;
  uv_signal_start(&s->sig_term, on_signal, SIGTERM);
  uv_signal_start(&s->sig_int, on_signal, SIGINT);
  uv_signal_start(&s->sig_hup, on_signal, SIGHUP);
  serve_watch_start(s);
  serve_say("listening on http://%s/ (%s; config %s; state %s%s)", s->address,
            s->have_token ? "bearer token required" : "no authentication", s->config_dir,
            s->state_dir, s->have_restore_token ? "; restores enabled" : "");
  rc = 0;
out:
  close_loop(s);
  serve_state_close(s);
  free_state(s);
  free(s);
  return rc;
}
