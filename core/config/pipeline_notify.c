/* The `notify:` entries of a pipeline (docs/CONFIG.md, notify): webhook,
 * the events it is called for, headers (credentials only as secret
 * references), timeout, retries and the thresholds. config/pipeline.c
 * parses the list and calls pipeline_parse_notify_entry for each entry. */
#include "config/pipeline_notify.h"

#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/log.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const char *const notify_keys[] = {
    "webhook", "on", "headers", "timeout", "retries", "consecutive_failures", "storage_threshold"};
/* The first three are the default of `on`. stale, recovered and
 * daily_summary are raised by `engine serve`; the others by the commands
 * (docs/CONFIG.md, notify). */
static const char *const notify_events[] = {
    "success",       "failure", "partial",   "consecutive_failures", "storage_low",
    "verify_failed", "stale",   "recovered", "daily_summary"};
#define NOTIFY_DEFAULT_EVENTS 3

char *pipeline_notify_event_list(void) {
  return cfg_join(notify_events, NELEM(notify_events), ", ");
}

int pipeline_notify_event_known(const char *event) {
  for (size_t i = 0; i < NELEM(notify_events); i++)
    if (strcmp(event, notify_events[i]) == 0)
      return 1;
  return 0;
}

/* Header names a webhook call sets itself, and names whose values are
 * credentials: those must be secret references like every secret of a
 * pipeline (a literal would sit in the file and in backups of it). */
static const char *const header_reserved[] = {"Content-Type", "Content-Length", "Host",
                                              "Transfer-Encoding", "Connection"};
static const char *const header_sensitive[] = {"authorization", "cookie", "token",    "secret",
                                               "key",           "auth",   "password", "signature"};

static int header_name_ok(const char *s) {
  if (!*s)
    return 0;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
      return 0;
  return 1;
}

static int header_is_sensitive(const char *name) {
  char *low = xstrdup(name);
  for (char *q = low; *q; q++)
    *q = (char)tolower((unsigned char)*q);
  int hit = 0;
  for (size_t i = 0; i < NELEM(header_sensitive) && !hit; i++)
    hit = strstr(low, header_sensitive[i]) != NULL;
  free(low);
  return hit;
}

static void parse_notify_headers(struct cfg *c, const struct ytree_node *n, const char *opt,
                                 struct pipeline_notify *nt) {
  if (cfg_want_mapping(c, n, opt, "a mapping such as { Authorization: env:HOOK_TOKEN }") < 0 ||
      n->kind != YTREE_MAPPING)
    return;
  nt->headers = xcalloc(n->n_pairs, sizeof(*nt->headers));
  for (size_t i = 0; i < n->n_pairs; i++) {
    const struct ytree_pair *hp = &n->pairs[i];
    const char *name = hp->key->text;
    char *o = cfg_opt_key(opt, name);
    int bad_name = !header_name_ok(name);
    for (size_t k = 0; k < NELEM(header_reserved) && !bad_name; k++)
      if (strcasecmp(name, header_reserved[k]) == 0) {
        cfg_error(c, hp->key, o, "the engine sets header '%s' itself; remove it", name);
        bad_name = 2;
      }
    if (bad_name == 1)
      cfg_error(c, hp->key, opt, "'%s' is not a header name (letters, digits, '-' and '_')", name);
    const struct ytree_node *v = hp->value;
    int ref = v->kind == YTREE_SCALAR &&
              (strncmp(v->text, "env:", 4) == 0 || strncmp(v->text, "file:", 5) == 0);
    char *value = NULL;
    if (ref || (v->kind == YTREE_SCALAR && header_is_sensitive(name))) {
      /* refuses a literal without quoting it */
      cfg_get_secret(c, v, o, &value);
    } else if (cfg_get_string(c, v, o, &value) == 0 && strpbrk(value, "\r\n")) {
      cfg_error(c, v, o, "a header value must be one line");
      free(value);
      value = NULL;
    }
    if (value && !bad_name) {
      struct pipeline_notify_header *h = &nt->headers[nt->n_headers++];
      h->name = xstrdup(name);
      h->value = value;
      h->secret = ref || header_is_sensitive(name);
    } else {
      free(value);
    }
    free(o);
  }
}

static const struct cfg_field notify_fields[] = {
    {.key = "timeout",
     .type = CFG_DURATION,
     .offset = offsetof(struct pipeline_notify, timeout_ms)},
    {.key = "retries",
     .type = CFG_INT,
     .offset = offsetof(struct pipeline_notify, retries),
     .imin = 0,
     .imax = 10,
     .expected = "an integer from 0 to 10"},
    {.key = "consecutive_failures",
     .type = CFG_INT,
     .offset = offsetof(struct pipeline_notify, consecutive_failures),
     .imin = 1,
     .imax = 1000,
     .expected = "an integer from 1 to 1000 (failed runs in a row)"},
};

/* storage_threshold: 90% or 90 */
static void parse_threshold(struct cfg *c, const struct ytree_node *n, const char *opt, int *out) {
  struct cfg_got g;
  if (cfg_want_scalar(c, n, opt, "a percentage such as 90%") < 0)
    return;
  char *end = NULL;
  long v = strtol(n->text, &end, 10);
  if (end == n->text || (*end && strcmp(end, "%") != 0) || v < 1 || v > 100) {
    cfg_error(c, n, opt, "expected a percentage from 1%% to 100%% such as 90%%, got %s",
              cfg_got(n, &g));
    return;
  }
  *out = (int)v;
}

void pipeline_parse_notify_entry(struct cfg *c, const struct ytree_node *n, const char *opt,
                                 struct pipeline_notify *nt) {
  struct cfg_got g;
  nt->timeout_ms = PIPELINE_NOTIFY_TIMEOUT_MS;
  nt->retries = PIPELINE_NOTIFY_RETRIES;
  nt->consecutive_failures = PIPELINE_NOTIFY_CONSECUTIVE;
  nt->storage_threshold = PIPELINE_NOTIFY_STORAGE;
  if (n->kind != YTREE_MAPPING) {
    cfg_error(c, n, opt,
              "expected a mapping such as { webhook: https://..., on: [failure] }, got %s",
              cfg_got(n, &g));
    return;
  }
  cfg_check_keys(c, n, opt, notify_keys, NELEM(notify_keys), 0);
  /* the block's plain fields; webhook, on, headers and the threshold below */
  struct ytree_node fields = *n;
  struct ytree_pair *kept = xcalloc(n->n_pairs, sizeof(*kept));
  fields.pairs = kept;
  fields.n_pairs = 0;
  for (size_t i = 0; i < n->n_pairs; i++)
    for (size_t k = 0; k < NELEM(notify_fields); k++)
      if (strcmp(n->pairs[i].key->text, notify_fields[k].key) == 0)
        kept[fields.n_pairs++] = n->pairs[i];
  cfg_get_fields(c, &fields, opt, notify_fields, NELEM(notify_fields), nt);
  free(kept);
  const struct ytree_node *t = ytree_map_get(n, "timeout");
  char *o = cfg_opt_key(opt, "timeout");
  if (t && nt->timeout_ms < 1000)
    cfg_error(c, t, o, "expected a duration of at least 1s, got %s", cfg_got(t, &g));
  free(o);
  const struct ytree_node *th = ytree_map_get(n, "storage_threshold");
  if (th) {
    o = cfg_opt_key(opt, "storage_threshold");
    parse_threshold(c, th, o, &nt->storage_threshold);
    free(o);
  }
  const struct ytree_node *hd = ytree_map_get(n, "headers");
  if (hd) {
    o = cfg_opt_key(opt, "headers");
    parse_notify_headers(c, hd, o, nt);
    free(o);
  }
  o = cfg_opt_key(opt, "webhook");
  const struct ytree_node *w = ytree_map_get(n, "webhook");
  if (!w) {
    cfg_missing(c, n, o, "an http:// or https:// URL");
  } else if (cfg_get_string(c, w, o, &nt->webhook) == 0 &&
             strncmp(nt->webhook, "http://", 7) != 0 && strncmp(nt->webhook, "https://", 8) != 0) {
    cfg_error(c, w, o, "expected an http:// or https:// URL, got %s", cfg_got(w, &g));
  }
  free(o);

  const struct ytree_node *on = ytree_map_get(n, "on");
  if (!on) {
    nt->n_on = NOTIFY_DEFAULT_EVENTS;
    nt->on = xcalloc(nt->n_on, sizeof(char *));
    for (size_t i = 0; i < nt->n_on; i++)
      nt->on[i] = xstrdup(notify_events[i]);
    return;
  }
  o = cfg_opt_key(opt, "on");
  if (cfg_get_string_list(c, on, o, 1, &nt->on, &nt->n_on) == 0) {
    for (size_t i = 0; i < nt->n_on; i++) {
      const char *ev;
      const struct ytree_node *at = on->kind == YTREE_SEQUENCE ? on->items[i] : on;
      char *oi = on->kind == YTREE_SEQUENCE ? cfg_opt_index(o, i) : xstrdup(o);
      cfg_get_choice(c, at, oi, notify_events, NELEM(notify_events), &ev);
      free(oi);
    }
  }
  free(o);
}
