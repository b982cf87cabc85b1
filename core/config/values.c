/* Value syntaxes of the configuration (config/values.h). */
#include "config/values.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

static int parse_u64_digits(const char **s, uint64_t *out) {
  const char *q = *s;
  uint64_t v = 0;
  if (!isdigit((unsigned char)*q))
    return -1;
  for (; isdigit((unsigned char)*q); q++)
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*q - '0'), &v))
      return -1;
  *s = q;
  *out = v;
  return 0;
}

int config_parse_size(const char *s, uint64_t *bytes) {
  if (!s)
    return -1;
  const char *q = s;
  uint64_t whole;
  if (parse_u64_digits(&q, &whole) < 0)
    return -1;
  /* "1.5GiB": the fraction is kept exact (up to 18 digits) and the result
   * must be a whole number of bytes */
  uint64_t frac = 0, scale = 1;
  if (*q == '.') {
    q++;
    if (!isdigit((unsigned char)*q))
      return -1;
    for (int digits = 0; isdigit((unsigned char)*q); q++, digits++) {
      if (digits == 18)
        return -1;
      frac = frac * 10 + (uint64_t)(*q - '0');
      scale *= 10;
    }
  }
  int spaced = 0;
  while (*q == ' ') {
    q++;
    spaced = 1;
  }
  uint64_t mult = 1;
  static const char prefixes[] = "kmgtpe";
  if (*q == '\0') {
    if (spaced)
      return -1;
  } else if ((q[0] == 'b' || q[0] == 'B') && q[1] == '\0') {
    mult = 1;
  } else {
    const char *pfx = strchr(prefixes, tolower((unsigned char)*q));
    if (!pfx)
      return -1;
    int exp = (int)(pfx - prefixes) + 1;
    uint64_t base;
    q++;
    if (*q == '\0')
      base = 1024; /* bare K/M/G: what operators mean by "1G" */
    else if ((q[0] == 'b' || q[0] == 'B') && q[1] == '\0')
      base = 1000;
    else if ((q[0] == 'i' || q[0] == 'I') && (q[1] == 'b' || q[1] == 'B') && q[2] == '\0')
      base = 1024;
    else
      return -1;
    for (int i = 0; i < exp; i++)
      mult *= base; /* 1024^6 still fits */
  }
  uint64_t v;
  if (__builtin_mul_overflow(whole, mult, &v))
    return -1;
  if (frac) {
    unsigned __int128 f = (unsigned __int128)frac * mult;
    if (f % scale != 0)
      return -1;
    if (__builtin_add_overflow(v, (uint64_t)(f / scale), &v))
      return -1;
  }
  *bytes = v;
  return 0;
}

int config_parse_duration(const char *s, int64_t *ms) {
  if (!s || !*s)
    return -1;
  static const struct {
    const char *unit;
    int64_t ms;
  } units[] = {
      {"ms", 1},       {"s", 1000},      {"m", 60000},         {"h", 3600000},
      {"d", 86400000}, {"w", 604800000}, {"y", 31536000000LL},
  };
  const char *q = s;
  uint64_t n;
  int64_t total = 0;
  if (parse_u64_digits(&q, &n) < 0)
    return -1;
  if (*q == '\0') { /* bare number: seconds */
    if (n > (uint64_t)(INT64_MAX / 1000))
      return -1;
    *ms = (int64_t)n * 1000;
    return 0;
  }
  for (;;) {
    size_t i, ulen = 0;
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
      ulen = strlen(units[i].unit);
      if (strncmp(q, units[i].unit, ulen) == 0 && !isalpha((unsigned char)q[ulen]))
        break;
    }
    if (i == sizeof(units) / sizeof(units[0]))
      return -1;
    int64_t part;
    if (n > (uint64_t)INT64_MAX || __builtin_mul_overflow((int64_t)n, units[i].ms, &part) ||
        __builtin_add_overflow(total, part, &total))
      return -1;
    q += ulen;
    if (*q == '\0')
      break;
    if (parse_u64_digits(&q, &n) < 0)
      return -1;
  }
  *ms = total;
  return 0;
}

int config_parse_bool(const char *s, int *b) {
  static const char *const yes[] = {"true", "yes", "on"};
  static const char *const no[] = {"false", "no", "off"};
  if (!s)
    return -1;
  for (size_t i = 0; i < 3; i++) {
    if (strcasecmp(s, yes[i]) == 0) {
      *b = 1;
      return 0;
    }
    if (strcasecmp(s, no[i]) == 0) {
      *b = 0;
      return 0;
    }
  }
  return -1;
}
