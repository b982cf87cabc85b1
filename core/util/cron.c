/* Cron expression parsing, matching and next-run computation (see cron.h). */
#include "util/cron.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/log.h"

struct field_spec {
  const char *what;
  int lo, hi;
  const char *const *names; /* names[i] is the value lo + i, or NULL */
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const wday_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static const struct field_spec specs[CRON_NFIELDS] = {{"minute", 0, 59, NULL},
                                                      {"hour", 0, 23, NULL},
                                                      {"day-of-month", 1, 31, NULL},
                                                      {"month", 1, 12, month_names},
                                                      {"day-of-week", 0, 7, wday_names}};

/* One value: digits, or (months, weekdays) a three-letter name. Advances *s. */
static int parse_value(const char **s, const struct field_spec *f, int *out) {
  const char *p = *s;
  if (isdigit((unsigned char)*p)) {
    long v = 0;
    while (isdigit((unsigned char)*p)) {
      v = v * 10 + (*p - '0');
      if (v > 1000)
        return -1;
      p++;
    }
    if (v < f->lo || v > f->hi)
      return -1;
    *out = (int)v;
    *s = p;
    return 0;
  }
  if (f->names) {
    int n = f == &specs[CRON_MONTH] ? 12 : 7;
    for (int i = 0; i < n; i++)
      if (strncasecmp(p, f->names[i], 3) == 0 && !isalpha((unsigned char)p[3])) {
        *out = f->lo + i;
        *s = p + 3;
        return 0;
      }
  }
  return -1;
}

/* One comma-separated element: "*", "a", "a-b", each optionally "/step". */
static int parse_element(const char *e, const struct field_spec *f, uint64_t *bits) {
  int a, b, step = 1;
  const char *p = e;
  if (*p == '*') {
    a = f->lo;
    b = f->hi;
    p++;
  } else {
    if (parse_value(&p, f, &a) != 0)
      return -1;
    b = a;
    if (*p == '-') {
      p++;
      if (parse_value(&p, f, &b) != 0 || b < a)
        return -1;
    } else if (*p == '/') {
      b = f->hi; /* "5/15": from 5 to the end in steps of 15 */
    }
  }
  if (*p == '/') {
    p++;
    if (!isdigit((unsigned char)*p))
      return -1;
    long s = 0;
    while (isdigit((unsigned char)*p)) {
      s = s * 10 + (*p - '0');
      if (s > 1000)
        return -1;
      p++;
    }
    if (s < 1 || s > f->hi - f->lo + 1)
      return -1;
    step = (int)s;
  }
  if (*p != '\0')
    return -1;
  for (int v = a; v <= b; v += step)
    *bits |= (uint64_t)1 << v;
  return 0;
}

static int parse_field(const char *text, enum cron_field which, uint64_t *bits, const char *expr,
                       char **err) {
  const struct field_spec *f = &specs[which];
  char *dup = xstrdup(text), *save = NULL;
  int rc = 0;
  *bits = 0;
  if (text[0] == ',' || text[strlen(text) - 1] == ',' || strstr(text, ",,"))
    rc = -1;
  for (char *e = strtok_r(dup, ",", &save); e && rc == 0; e = strtok_r(NULL, ",", &save))
    rc = parse_element(e, f, bits);
  free(dup);
  if (rc != 0) {
    *err = xasprintf("schedule '%s': %s field '%s': expected numbers %d..%d%s, '*', ranges a-b, "
                     "steps /n or lists",
                     expr, f->what, text, f->lo, f->hi,
                     which == CRON_MONTH  ? " or jan..dec"
                     : which == CRON_WDAY ? " (0 and 7 are Sunday) or sun..sat"
                                          : "");
    return -1;
  }
  return 0;
}

static int is_leap(int y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m) {
  static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : d[m - 1];
}

/* Day of the week (0 = Sunday) of a proleptic Gregorian date (Sakamoto). */
static int weekday(int y, int m, int d) {
  static const int t[] = {0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4};
  if (m < 3)
    y -= 1;
  return (y + y / 4 - y / 100 + y / 400 + t[m - 1] + d) % 7;
}

int cron_parse(const char *text, struct cron_expr *out, char **err) {
  static const char *const shortcuts[][2] = {{"@hourly", "0 * * * *"},   {"@daily", "0 0 * * *"},
                                             {"@midnight", "0 0 * * *"}, {"@weekly", "0 0 * * 0"},
                                             {"@monthly", "0 0 1 * *"},  {"@yearly", "0 0 1 1 *"},
                                             {"@annually", "0 0 1 1 *"}};
  const char *expr = text;
  memset(out, 0, sizeof(*out));
  for (size_t i = 0; i < sizeof(shortcuts) / sizeof(shortcuts[0]); i++)
    if (strcmp(text, shortcuts[i][0]) == 0)
      expr = shortcuts[i][1];
  char f[CRON_NFIELDS][128];
  char extra[8];
  int n = sscanf(expr, "%127s %127s %127s %127s %127s", f[0], f[1], f[2], f[3], f[4]);
  if (n != CRON_NFIELDS || sscanf(expr, "%*s %*s %*s %*s %*s %7s", extra) == 1) {
    *err = xasprintf(
        "schedule '%s': expected 5 cron fields 'minute hour day-of-month month day-of-week' or "
        "@hourly/@daily/@weekly/@monthly/@yearly",
        text);
    return -1;
  }
  uint64_t bits[CRON_NFIELDS];
  for (int i = 0; i < CRON_NFIELDS; i++) {
    if (parse_field(f[i], (enum cron_field)i, &bits[i], text, err) != 0)
      return -1;
    out->any[i] = strcmp(f[i], "*") == 0;
  }
  out->minutes = bits[CRON_MINUTE];
  out->hours = (uint32_t)bits[CRON_HOUR];
  out->mdays = (uint32_t)bits[CRON_MDAY];
  out->months = (uint16_t)bits[CRON_MONTH];
  /* Sunday may be written 0 or 7 */
  out->wdays = (uint8_t)((bits[CRON_WDAY] | (bits[CRON_WDAY] >> 7)) & 0x7f);
  out->mday_star = f[CRON_MDAY][0] == '*';
  out->wday_star = f[CRON_WDAY][0] == '*';
  if (out->mday_star || out->wday_star) {
    /* the day-of-month list alone decides the days: some month must have one */
    int possible = 0;
    for (int m = 1; m <= 12 && !possible; m++)
      if (out->months & (1u << m))
        for (int d = 1; d <= (m == 2 ? 29 : days_in_month(2001, m)); d++)
          if (out->mdays & (1u << d))
            possible = 1;
    if (!possible) {
      *err = xasprintf("schedule '%s' never matches: none of its months has such a day", text);
      return -1;
    }
  }
  return 0;
}

static int day_matches(const struct cron_expr *c, int y, int m, int d) {
  int dom = (c->mdays >> d) & 1;
  int dow = (c->wdays >> weekday(y, m, d)) & 1;
  return c->mday_star || c->wday_star ? dom && dow : dom || dow;
}

int cron_matches(const struct cron_expr *c, const struct tm *t) {
  return ((c->minutes >> t->tm_min) & 1) && ((c->hours >> t->tm_hour) & 1) &&
         ((c->months >> (t->tm_mon + 1)) & 1) &&
         day_matches(c, t->tm_year + 1900, t->tm_mon + 1, t->tm_mday);
}

/* The first matching local calendar minute at or after y-mo-d h:mi (calendar
 * arithmetic only; whether that local time exists is checked by the caller). */
static int next_civil(const struct cron_expr *c, int *py, int *pmo, int *pd, int *ph, int *pmi,
                      int y_limit) {
  int y = *py, mo = *pmo, d = *pd, h = *ph, mi = *pmi;
  for (;;) {
    if (mi > 59) {
      mi = 0;
      h++;
    }
    if (h > 23) {
      h = 0;
      d++;
    }
    if (mo > 12) {
      mo = 1;
      y++;
    }
    if (d > days_in_month(y, mo)) {
      d = 1;
      mo++;
    }
    if (mo > 12) {
      mo = 1;
      y++;
    }
    if (y > y_limit)
      return -1;
    if (!((c->months >> mo) & 1)) {
      mo++;
      d = 1;
      h = mi = 0;
    } else if (!day_matches(c, y, mo, d)) {
      d++;
      h = mi = 0;
    } else if (!((c->hours >> h) & 1)) {
      h++;
      mi = 0;
    } else if (!((c->minutes >> mi) & 1)) {
      mi++;
    } else {
      break;
    }
  }
  *py = y;
  *pmo = mo;
  *pd = d;
  *ph = h;
  *pmi = mi;
  return 0;
}

int cron_next(const struct cron_expr *c, time_t after, time_t *next) {
  struct tm t;
  if (!localtime_r(&after, &t))
    return -1;
  int y = t.tm_year + 1900, mo = t.tm_mon + 1, d = t.tm_mday, h = t.tm_hour, mi = t.tm_min + 1;
  int y_limit = y + 28;
  for (;;) {
    if (next_civil(c, &y, &mo, &d, &h, &mi, y_limit) != 0)
      return -1;
    struct tm cand;
    memset(&cand, 0, sizeof(cand));
    cand.tm_year = y - 1900;
    cand.tm_mon = mo - 1;
    cand.tm_mday = d;
    cand.tm_hour = h;
    cand.tm_min = mi;
    cand.tm_isdst = -1;
    time_t r = mktime(&cand);
    /* mktime moves a time inside a daylight-saving gap: such a minute does
     * not exist on this day's clock, so it is skipped */
    if (r != (time_t)-1 && r > after && cand.tm_year == y - 1900 && cand.tm_mon == mo - 1 &&
        cand.tm_mday == d && cand.tm_hour == h && cand.tm_min == mi) {
      *next = r;
      return 0;
    }
    mi++;
  }
}

static const char *const dow_names[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};

/* One parsed cron field as the OnCalendar form of the same field: "*" when the
 * expression said "*", else the explicit list of values (systemd's own step
 * syntax differs per field, so steps and ranges are expanded). */
static char *calendar_field(uint64_t bits, int lo, int hi, int any, int is_dow, int width) {
  if (any)
    return xstrdup(is_dow ? "" : "*"); /* any weekday: the day-of-week part is left out */
  char out[512] = "";
  for (int v = lo; v <= hi; v++) {
    if (!((bits >> v) & 1))
      continue;
    char piece[16];
    if (is_dow)
      snprintf(piece, sizeof(piece), "%s", dow_names[v]);
    else
      snprintf(piece, sizeof(piece), "%0*d", width, v);
    if (out[0])
      strncat(out, ",", sizeof(out) - strlen(out) - 1);
    strncat(out, piece, sizeof(out) - strlen(out) - 1);
  }
  return xstrdup(out);
}

/* cron "m h dom mon dow" -> OnCalendar "DOW *-MON-DOM HH:MM:00" */
int cron_to_oncalendar(const char *cron, char **out, char **err) {
  struct cron_expr c;
  if (cron_parse(cron, &c, err) != 0)
    return -1;
  if (!c.mday_star && !c.wday_star) {
    /* cron ORs day-of-month and day-of-week; OnCalendar ANDs them */
    *err = xasprintf(
        "schedule '%s': restricting both day-of-month and day-of-week is not supported (cron and "
        "systemd combine them differently); use one of them",
        cron);
    return -1;
  }
  /* with a '*'-led day field (such as "*\/2") cron ANDs the two, as systemd does */
  char *mi = calendar_field(c.minutes, 0, 59, c.any[CRON_MINUTE], 0, 2);
  char *hr = calendar_field(c.hours, 0, 23, c.any[CRON_HOUR], 0, 2);
  char *dm = calendar_field(c.mdays, 1, 31, c.any[CRON_MDAY], 0, 2);
  char *mo = calendar_field(c.months, 1, 12, c.any[CRON_MONTH], 0, 2);
  char *dw = calendar_field(c.wdays, 0, 6, c.any[CRON_WDAY] || c.wdays == 0x7f, 1, 0);
  *out = xasprintf("%s%s*-%s-%s %s:%s:00", dw, dw[0] ? " " : "", mo, dm, hr, mi);
  free(mi);
  free(hr);
  free(dm);
  free(mo);
  free(dw);
  return 0;
}
