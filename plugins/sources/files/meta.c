/* Item metadata of the files source: the JSON object built from a stat
 * buffer, byte strings that may not be UTF-8 (stored as "<key>_b64"), and a
 * printable rendering of raw names for messages. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "files.h"

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0 when it is not one. */
static size_t utf8_seq_len(const unsigned char *s, size_t len) {
  unsigned char c = s[0];
  if (c < 0x80)
    return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0)
      lo = 0xa0;
    else if (c == 0xed)
      hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0)
      lo = 0x90;
    else if (c == 0xf4)
      hi = 0x8f;
  } else {
    return 0;
  }
  if (len < n || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < n; i++) {
    if (s[i] < 0x80 || s[i] > 0xbf)
      return 0;
  }
  return n;
}

static int is_text(const char *buf, size_t len) {
  const unsigned char *s = (const unsigned char *)buf;
  size_t i = 0;
  while (i < len) {
    if (s[i] == 0)
      return 0;
    size_t n = utf8_seq_len(s + i, len - i);
    if (n == 0)
      return 0;
    i += n;
  }
  return 1;
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *files_b64_encode(const unsigned char *in, size_t len) {
  if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
    return NULL;
  char *out = malloc((len + 2) / 3 * 4 + 1);
  if (out == NULL)
    return NULL;
  char *o = out;
  size_t i = 0;
  for (; i + 3 <= len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    *o++ = b64_alphabet[v >> 18];
    *o++ = b64_alphabet[(v >> 12) & 63];
    *o++ = b64_alphabet[(v >> 6) & 63];
    *o++ = b64_alphabet[v & 63];
  }
  if (i < len) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < len)
      v |= (uint32_t)in[i + 1] << 8;
    *o++ = b64_alphabet[v >> 18];
    *o++ = b64_alphabet[(v >> 12) & 63];
    *o++ = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  *o = '\0';
  return out;
}

static int b64_value(char c) {
  const char *p = c ? strchr(b64_alphabet, c) : NULL;
  return p ? (int)(p - b64_alphabet) : -1;
}

int files_b64_decode(const char *in, size_t in_len, unsigned char **out, size_t *out_len) {
  if (in_len % 4 != 0)
    return -1;
  unsigned char *buf = malloc(in_len / 4 * 3 + 1);
  if (buf == NULL)
    return -1;
  size_t n = 0;
  for (size_t i = 0; i < in_len; i += 4) {
    int last = i + 4 == in_len;
    int pad = 0;
    if (last && in[i + 3] == '=')
      pad = in[i + 2] == '=' ? 2 : 1;
    int v[4];
    for (int k = 0; k < 4 - pad; k++) {
      v[k] = b64_value(in[i + k]);
      if (v[k] < 0) {
        free(buf);
        return -1;
      }
    }
    for (int k = 4 - pad; k < 4; k++)
      v[k] = 0;
    uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
    buf[n++] = (unsigned char)(w >> 16);
    if (pad < 2)
      buf[n++] = (unsigned char)(w >> 8);
    if (pad < 1)
      buf[n++] = (unsigned char)w;
  }
  buf[n] = 0;
  *out = buf;
  *out_len = n;
  return 0;
}

int files_meta_set_bytes(json_t *obj, const char *key, const char *buf, size_t len) {
  if (is_text(buf, len))
    return json_object_set_new(obj, key, json_stringn(buf, len));
  char *enc = files_b64_encode((const unsigned char *)buf, len);
  if (enc == NULL)
    return -1;
  char k[64];
  snprintf(k, sizeof(k), "%s_b64", key);
  int rc = json_object_set_new(obj, k, json_string(enc));
  free(enc);
  return rc;
}

int files_meta_get_bytes(json_t *obj, const char *key, char **out, size_t *out_len) {
  json_t *v = json_object_get(obj, key);
  if (json_is_string(v)) {
    size_t len = json_string_length(v);
    char *s = malloc(len + 1);
    if (s == NULL)
      return -1;
    memcpy(s, json_string_value(v), len);
    s[len] = '\0';
    *out = s;
    *out_len = len;
    return 0;
  }
  char k[64];
  snprintf(k, sizeof(k), "%s_b64", key);
  v = json_object_get(obj, k);
  if (!json_is_string(v))
    return -1;
  unsigned char *dec;
  if (files_b64_decode(json_string_value(v), json_string_length(v), &dec, out_len) != 0)
    return -1;
  *out = (char *)dec;
  return 0;
}

static char display_oom[] = "<out of memory>";

char *files_display(const char *s, size_t len) {
  /* Worst case every byte becomes "\xNN". */
  if (len > (SIZE_MAX - 1) / 4)
    return display_oom;
  char *out = malloc(len * 4 + 1);
  if (out == NULL)
    return display_oom;
  const unsigned char *u = (const unsigned char *)s;
  char *o = out;
  size_t i = 0;
  while (i < len) {
    unsigned char c = u[i];
    size_t n = utf8_seq_len(u + i, len - i);
    if (c == '\\') {
      *o++ = '\\';
      *o++ = '\\';
    } else if (c == '\n') {
      *o++ = '\\';
      *o++ = 'n';
    } else if (c == '\t') {
      *o++ = '\\';
      *o++ = 't';
    } else if (n == 0 || c < 0x20 || c == 0x7f) {
      static const char hexd[] = "0123456789abcdef";
      *o++ = '\\';
      *o++ = 'x';
      *o++ = hexd[c >> 4];
      *o++ = hexd[c & 15];
    } else {
      memcpy(o, u + i, n);
      o += n;
      i += n;
      continue;
    }
    i += 1;
  }
  *o = '\0';
  return out;
}

void files_display_free(char *d) {
  if (d != display_oom)
    free(d);
}

/* Look an id up with getpwuid_r / getgrgid_r, growing the buffer on ERANGE.
 * Returns a malloc'd name, or NULL when the id has no entry (or on OOM). */
static char *lookup_name(int is_group, uint64_t id) {
  long hint = sysconf(is_group ? _SC_GETGR_R_SIZE_MAX : _SC_GETPW_R_SIZE_MAX);
  size_t bufsize = hint > 0 ? (size_t)hint : 1024;
  for (;;) {
    char *buf = malloc(bufsize);
    if (buf == NULL)
      return NULL;
    const char *name = NULL;
    int err;
    if (is_group) {
      struct group gr, *res = NULL;
      err = getgrgid_r((gid_t)id, &gr, buf, bufsize, &res);
      if (err == 0 && res != NULL)
        name = res->gr_name;
    } else {
      struct passwd pw, *res = NULL;
      err = getpwuid_r((uid_t)id, &pw, buf, bufsize, &res);
      if (err == 0 && res != NULL)
        name = res->pw_name;
    }
    char *copy = name != NULL ? strdup(name) : NULL;
    free(buf);
    if (err == ERANGE && bufsize < (1u << 24)) {
      bufsize *= 2;
      continue;
    }
    return copy;
  }
}

/* Cached name for an id; NULL when unknown. Unknown ids are cached too, so
 * a tree owned by a deleted user does not query NSS once per file. */
static const char *cached_name(struct files_map *m, int is_group, uint64_t id) {
  struct files_map_slot *s = files_map_get(m, id, 0);
  if (s != NULL)
    return s->value;
  char *name = lookup_name(is_group, id);
  if (files_map_put(m, id, 0, name) != 0) {
    free(name);
    return NULL;
  }
  return name;
}

void files_idcache_free(struct files_idcache *c) {
  files_map_free(&c->users, free);
  files_map_free(&c->groups, free);
}

/* Nanoseconds since the epoch, or 0 in *ok when it does not fit in 64 bits
 * (dates beyond year 2262); the seconds field is then the only timestamp. */
int64_t files_ts_ns(const struct timespec *ts, int *ok) {
  int64_t ns;
  if (__builtin_mul_overflow((int64_t)ts->tv_sec, (int64_t)1000000000, &ns) ||
      __builtin_add_overflow(ns, (int64_t)ts->tv_nsec, &ns)) {
    *ok = 0;
    return 0;
  }
  *ok = 1;
  return ns;
}

json_t *files_meta_from_stat(struct files_idcache *c, const struct stat *st) {
  json_t *o = json_object();
  if (o == NULL)
    return NULL;
  int rc = 0, ok;
  rc |= json_object_set_new(o, "mode", json_integer(st->st_mode & 07777));
  rc |= json_object_set_new(o, "uid", json_integer(st->st_uid));
  rc |= json_object_set_new(o, "gid", json_integer(st->st_gid));
  const char *user = cached_name(&c->users, 0, st->st_uid);
  if (user != NULL)
    rc |= files_meta_set_bytes(o, "user", user, strlen(user));
  const char *group = cached_name(&c->groups, 1, st->st_gid);
  if (group != NULL)
    rc |= files_meta_set_bytes(o, "group", group, strlen(group));
  rc |= json_object_set_new(o, "mtime", json_integer(st->st_mtim.tv_sec));
  int64_t ns = files_ts_ns(&st->st_mtim, &ok);
  if (ok)
    rc |= json_object_set_new(o, "mtime_ns", json_integer(ns));
  ns = files_ts_ns(&st->st_atim, &ok);
  if (ok)
    rc |= json_object_set_new(o, "atime_ns", json_integer(ns));
  rc |= json_object_set_new(o, "size", json_integer(st->st_size));
  rc |= json_object_set_new(o, "ino", json_integer((json_int_t)st->st_ino));
  rc |= json_object_set_new(o, "dev", json_integer((json_int_t)st->st_dev));
  rc |= json_object_set_new(o, "nlink", json_integer((json_int_t)st->st_nlink));
  ns = files_ts_ns(&st->st_ctim, &ok);
  if (ok)
    rc |= json_object_set_new(o, "ctime_ns", json_integer(ns));
  if (rc != 0) {
    json_decref(o);
    return NULL;
  }
  return o;
}

char *files_meta_dump(json_t *obj) {
  /* sorted keys: the core stores metadata in this canonical form, and an
   * unchanged item whose text matches its parent's is not parsed again */
  return json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
}
