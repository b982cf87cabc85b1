/* The configuration of the s3/minio sinks: the options, and create (the
 * endpoint, addressing, bucket, prefix, storage class, sizes, credentials)
 * and destroy. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "s3_int.h"

void s3_destroy(void *inst) {
  struct s3 *s = inst;
  if (s == NULL)
    return;
  s3_creds_free(&s->creds);
  objstore_wipe_free(s->token_hdr);
  free(s->scheme);
  free(s->authority);
  free(s->endpoint);
  free(s->bucket);
  free(s->bucket_enc);
  free(s->prefix);
  free(s->sigv4);
  free(s->region);
  free(s->storage_class_hdr);
  free(s->where);
  free(s);
}

static int is_dns_label_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* endpoint: scheme://host[:port][/]. Sets scheme, authority, endpoint, and
 * *ip_host when the host is an address literal (no virtual hosting then). */
static int parse_endpoint(struct s3 *s, const char *ep, int *ip_host) {
  const struct engine_host *h = s->host;
  const char *sep = strstr(ep, "://");
  size_t sl = sep ? (size_t)(sep - ep) : 0;
  if (sep == NULL || !((sl == 4 && strncasecmp(ep, "http", 4) == 0) ||
                       (sl == 5 && strncasecmp(ep, "https", 5) == 0))) {
    h->set_error(h, "option 'endpoint' must start with http:// or https:// (e.g. "
                    "https://s3.eu-west-1.amazonaws.com)");
    return ENGINE_ERROR;
  }
  const char *auth = sep + 3;
  size_t al = strcspn(auth, "/?#");
  if (memchr(auth, '@', al) != NULL) {
    /* never echo: user information is usually a credential */
    h->set_error(h, "option 'endpoint' must not contain user information ('user:password@'); "
                    "give credentials through 'credentials' or the secret options");
    return ENGINE_ERROR;
  }
  const char *rest = auth + al;
  if (!(rest[0] == '\0' || (rest[0] == '/' && rest[1] == '\0'))) {
    h->set_error(h,
                 "option 'endpoint' ('%s') must be scheme://host[:port] without a path or "
                 "query; the bucket goes in 'bucket' and key prefixes in 'prefix'",
                 ep);
    return ENGINE_ERROR;
  }
  if (al == 0) {
    h->set_error(h, "option 'endpoint' ('%s') has no host", ep);
    return ENGINE_ERROR;
  }
  s->authority = strndup(auth, al);
  s->scheme = strndup(ep, sl);
  if (s->authority == NULL || s->scheme == NULL)
    return s3_fail_oom(s, "endpoint");
  for (char *p = s->scheme; *p; p++)
    *p = (char)(*p | 0x20);
  /* host and port */
  char *a = s->authority, *port = NULL;
  if (a[0] == '[') {
    char *close = strchr(a, ']');
    if (close == NULL || (close[1] != '\0' && close[1] != ':')) {
      h->set_error(h, "option 'endpoint' ('%s'): malformed IPv6 address", ep);
      return ENGINE_ERROR;
    }
    *ip_host = 1;
    port = close[1] == ':' ? close + 2 : NULL;
  } else {
    char *colon = strchr(a, ':');
    port = colon ? colon + 1 : NULL;
    size_t hl = colon ? (size_t)(colon - a) : strlen(a);
    int all_digits_dots = hl > 0;
    for (size_t i = 0; i < hl; i++) {
      char ch = a[i];
      if (ch >= 'A' && ch <= 'Z')
        a[i] = ch = (char)(ch | 0x20);
      if (!is_dns_label_char(ch) && ch != '.' && ch != '_') {
        h->set_error(h, "option 'endpoint' ('%s'): invalid character in the host name", ep);
        return ENGINE_ERROR;
      }
      if (!(ch >= '0' && ch <= '9') && ch != '.')
        all_digits_dots = 0;
    }
    if (hl == 0) {
      h->set_error(h, "option 'endpoint' ('%s') has no host", ep);
      return ENGINE_ERROR;
    }
    *ip_host = all_digits_dots;
  }
  if (port != NULL) {
    uint64_t pn = 0;
    if (objstore_parse_u64(port, &pn) != 0 || pn == 0 || pn > 65535) {
      h->set_error(h, "option 'endpoint' ('%s'): invalid port", ep);
      return ENGINE_ERROR;
    }
  }
  if (asprintf(&s->endpoint, "%s://%s", s->scheme, s->authority) < 0) {
    s->endpoint = NULL;
    return s3_fail_oom(s, "endpoint");
  }
  return ENGINE_OK;
}

static int check_bucket(struct s3 *s, const char *b) {
  const struct engine_host *h = s->host;
  size_t n = strlen(b);
  if (n == 0 || n > 255) {
    h->set_error(h, "option 'bucket' must be 1 to 255 characters long");
    return ENGINE_ERROR;
  }
  for (const char *p = b; *p; p++) {
    char c = *p;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '.' || c == '_')) {
      h->set_error(h,
                   "option 'bucket' ('%s') may only contain letters, digits, '-', '.' and '_' "
                   "(give key prefixes in 'prefix')",
                   b);
      return ENGINE_ERROR;
    }
  }
  if (!s->virtual_host)
    return ENGINE_OK;
  /* the bucket becomes a DNS label of the host name */
  int ok = n >= 3 && n <= 63 && is_dns_label_char(b[0]) && b[0] != '-' &&
           is_dns_label_char(b[n - 1]) && b[n - 1] != '-' && strstr(b, "..") == NULL;
  for (const char *p = b; ok && *p; p++)
    ok = is_dns_label_char(*p) || *p == '.';
  if (!ok) {
    h->set_error(h,
                 "bucket '%s' cannot be addressed as a host name (virtual-host addressing "
                 "needs 3-63 lower-case letters, digits, '-' and '.'); set 'addressing: path'",
                 b);
    return ENGINE_ERROR;
  }
  if (strchr(b, '.') != NULL && strcmp(s->scheme, "https") == 0)
    h->log(h, ENGINE_LOG_WARN,
           "bucket '%s' contains '.', which the server's wildcard TLS certificate does not cover "
           "with virtual-host addressing; set 'addressing: path' if TLS verification fails",
           b);
  return ENGINE_OK;
}

int s3_create(const struct engine_host *host, void **out) {
  *out = NULL;
  if (objstore_need_http(host, PLUGIN_NAME) != ENGINE_OK)
    return ENGINE_ERROR;
  s3_xml_init();
  struct s3 *s = calloc(1, sizeof *s);
  if (s == NULL) {
    host->set_error(host, "out of memory while creating the %s sink", PLUGIN_NAME);
    return ENGINE_ERROR;
  }
  s->host = host;
  const struct engine_host *h = host;

  /* region */
  const char *region = h->cfg_string(h, "region");
  if (region == NULL || region[0] == '\0')
    region = "us-east-1";
  for (const char *p = region; *p; p++) {
    if (!is_dns_label_char(*p)) {
      h->set_error(h,
                   "option 'region' ('%s') may only contain lower-case letters, digits and "
                   "'-' (e.g. eu-west-1)",
                   region);
      goto fail;
    }
  }
  s->region = strdup(region);
  if (s->region == NULL || asprintf(&s->sigv4, "aws:amz:%s:s3", region) < 0) {
    s->sigv4 = NULL;
    s3_fail_oom(s, "region");
    goto fail;
  }

  /* endpoint */
  const char *ep = h->cfg_string(h, "endpoint");
  char *derived = NULL;
  if (ep == NULL || ep[0] == '\0') {
    if (S3_MINIO) {
      h->set_error(h, "option 'endpoint' is required for the minio sink (e.g. "
                      "http://minio.lab:9000)");
      goto fail;
    }
    if (asprintf(&derived, "https://s3.%s.amazonaws.com", region) < 0) {
      s3_fail_oom(s, "endpoint");
      goto fail;
    }
    ep = derived;
  }
  int ip_host = 0;
  int erc = parse_endpoint(s, ep, &ip_host);
  free(derived);
  if (erc != ENGINE_OK)
    goto fail;

  /* addressing */
  const char *addressing = h->cfg_string(h, "addressing");
  if (addressing == NULL)
    addressing = DEFAULT_ADDRESSING;
  if (strcmp(addressing, "virtual") == 0) {
    if (ip_host) {
      h->set_error(h,
                   "virtual-host addressing needs a host name, but the endpoint '%s' is an IP "
                   "address; set 'addressing: path'",
                   s->endpoint);
      goto fail;
    }
    s->virtual_host = 1;
  } else if (strcmp(addressing, "path") != 0) {
    h->set_error(h, "option 'addressing' must be 'virtual' or 'path', got '%s'", addressing);
    goto fail;
  }

  /* bucket */
  const char *bucket = h->cfg_string(h, "bucket");
  if (bucket == NULL) {
    h->set_error(h, "option 'bucket' is required");
    goto fail;
  }
  if (check_bucket(s, bucket) != ENGINE_OK)
    goto fail;
  s->bucket = strdup(bucket);
  s->bucket_enc = objstore_uri_encode(bucket, strlen(bucket), 0);
  if (s->bucket == NULL || s->bucket_enc == NULL) {
    s3_fail_oom(s, "bucket");
    goto fail;
  }

  /* prefix: no leading '/', one trailing '/' when non-empty */
  const char *prefix = h->cfg_string(h, "prefix");
  if (prefix == NULL)
    prefix = "";
  while (*prefix == '/')
    prefix++;
  size_t pl = strlen(prefix);
  while (pl > 0 && prefix[pl - 1] == '/')
    pl--;
  if (pl > 512) {
    h->set_error(h, "option 'prefix' is %zu bytes long; at most 512 leave room for object names",
                 pl);
    goto fail;
  }
  if (asprintf(&s->prefix, "%.*s%s", (int)pl, prefix, pl ? "/" : "") < 0) {
    s->prefix = NULL;
    s3_fail_oom(s, "prefix");
    goto fail;
  }
  s->prefix_len = strlen(s->prefix);
  for (const char *p = s->prefix; *p;) {
    size_t n = strcspn(p, "/");
    if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
      h->set_error(h, "option 'prefix' ('%s') must not contain empty, '.' or '..' components",
                   prefix);
      goto fail;
    }
    p += n + (p[n] == '/');
  }

  /* storage class */
  const char *sc = h->cfg_string(h, "storage_class");
  if (sc != NULL && sc[0] != '\0') {
    for (const char *p = sc; *p; p++) {
      if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '_' || *p == '-')) {
        h->set_error(h,
                     "option 'storage_class' ('%s') must be a storage class name such as "
                     "STANDARD_IA",
                     sc);
        goto fail;
      }
    }
    if (asprintf(&s->storage_class_hdr, "x-amz-storage-class: %s", sc) < 0) {
      s->storage_class_hdr = NULL;
      s3_fail_oom(s, "storage_class");
      goto fail;
    }
  }

  /* CA bundle: checked here so a typo is reported before any transfer */
  s->ca_bundle = h->cfg_string(h, "ca_bundle");
  if (s->ca_bundle != NULL && s->ca_bundle[0] == '\0')
    s->ca_bundle = NULL;
  if (s->ca_bundle != NULL && access(s->ca_bundle, R_OK) != 0) {
    h->set_error(h, "option 'ca_bundle': unable to read '%s': %s", s->ca_bundle, strerror(errno));
    goto fail;
  }

  /* sizes and limits */
  /* within s3_bounds: the engine checked the pipeline against them */
  int64_t part = h->cfg_int(h, "part_size", (int64_t)(16 * MIB));
  int64_t thr = h->cfg_int(h, "multipart_threshold", (int64_t)(64 * MIB));
  if ((uint64_t)part < S3_MIN_PART)
    h->log(h, ENGINE_LOG_WARN,
           "part_size %" PRId64 " bytes is below S3's 5 MiB minimum: only servers configured "
           "for smaller parts (radosgw's 'rgw multipart min part size') accept it",
           part);
  s->part_size = (uint64_t)part;
  s->threshold = (uint64_t)thr;
  s->max_retries = (int)h->cfg_int(h, "max_retries", 6);
  s->timeout_ms = h->cfg_int(h, "timeout", 600000);
  s->stale_upload_ms = h->cfg_int(h, "stale_upload_age", (int64_t)24 * 3600 * 1000);

  /* credentials last: nothing else may fail while they are held */
  if (s3_creds_load(h, &s->creds) != ENGINE_OK)
    goto fail;
  if (s->creds.token != NULL &&
      asprintf(&s->token_hdr, "x-amz-security-token: %s", s->creds.token) < 0) {
    s->token_hdr = NULL;
    s3_fail_oom(s, "session token");
    goto fail;
  }

  if (asprintf(&s->where, "s3://%s/%s at %s", s->bucket, s->prefix, s->endpoint) < 0) {
    s->where = NULL;
    s3_fail_oom(s, "describe");
    goto fail;
  }
  h->log(h, ENGINE_LOG_DEBUG,
         "%s (%s addressing, region %s, multipart above %" PRIu64 " bytes in parts of %" PRIu64 ")",
         s->where, s->virtual_host ? "virtual-host" : "path-style", s->region, s->threshold,
         s->part_size);
  *out = s;
  return ENGINE_OK;

fail:
  s3_destroy(s);
  return ENGINE_ERROR;
}

const struct engine_option s3_options[] = {
    {.name = "endpoint",
     .type = ENGINE_OPT_STRING,
     .required = S3_MINIO,
#if S3_MINIO
     .description = "Server URL, scheme://host[:port], e.g. http://minio.lab:9000."
#else
     .description = "Server URL, scheme://host[:port]; default https://s3.REGION.amazonaws.com."
#endif
    },
    {.name = "region",
     .type = ENGINE_OPT_STRING,
     .default_value = "us-east-1",
     .description = "Region the requests are signed for (SigV4)."},
    {.name = "bucket",
     .type = ENGINE_OPT_STRING,
     .required = 1,
     .description = "Bucket holding the repository; it must exist (never created)."},
    {.name = "prefix",
     .type = ENGINE_OPT_STRING,
     .description = "Key prefix of the repository inside the bucket, e.g. engine/ (default: none, "
                    "the bucket's root)."},
    {.name = "credentials",
     .type = ENGINE_OPT_STRING,
     .default_value = "env",
     .description = "'env' (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) or "
                    "'file:/path' (an AWS shared-credentials file, section 'profile')."},
    {.name = "profile",
     .type = ENGINE_OPT_STRING,
     .default_value = "default",
     .description = "Section of the credentials file to use."},
    {.name = "access_key_id",
     .type = ENGINE_OPT_SECRET,
     .description = "Access key id (env:NAME or file:/path); instead of 'credentials'."},
    {.name = "secret_access_key",
     .type = ENGINE_OPT_SECRET,
     .description = "Secret access key (env:NAME or file:/path); with access_key_id."},
    {.name = "session_token",
     .type = ENGINE_OPT_SECRET,
     .description = "Session token of temporary credentials (env:NAME or file:/path); optional."},
    {.name = "storage_class",
     .type = ENGINE_OPT_STRING,
     .description = "Storage class of new objects (x-amz-storage-class), e.g. STANDARD_IA."},
    {.name = "addressing",
     .type = ENGINE_OPT_ENUM,
     .default_value = DEFAULT_ADDRESSING,
     .enum_values = "virtual|path",
     .description = "virtual: BUCKET.host/key; path: host/BUCKET/key."},
    {.name = "ca_bundle",
     .type = ENGINE_OPT_STRING,
     .description = "CA certificates file (PEM) to verify the server with, instead of the "
                    "system's."},
    {.name = "part_size",
     .type = ENGINE_OPT_SIZE,
     .default_value = "16MiB",
     .description = "Part size of multipart uploads (S3 needs at least 5MiB)."},
    {.name = "multipart_threshold",
     .type = ENGINE_OPT_SIZE,
     .default_value = "64MiB",
     .description = "Objects larger than this are uploaded in parts."},
    {.name = "max_retries",
     .type = ENGINE_OPT_INT,
     .default_value = "6",
     .description = "Retries of a request after transport errors, 408, 429 and 5xx (with "
                    "exponential backoff and jitter)."},
    {.name = "timeout",
     .type = ENGINE_OPT_DURATION,
     .default_value = "10m",
     .description = "Time limit of one request (each attempt)."},
    {.name = "stale_upload_age",
     .type = ENGINE_OPT_DURATION,
     .default_value = "24h",
     .description = "prune aborts the incomplete multipart uploads of repository objects under "
                    "the prefix that are at least this old (left by killed runs)."},
    {.name = NULL},
};

/* Checked by the engine against the pipeline (ABI 1.5), so create() need
 * not: parts from 64 KiB (S3 itself wants 5 MiB, radosgw can be configured
 * lower) to S3's 5 GiB, which is also the largest single PUT. */
const struct engine_option_bounds s3_bounds[] = {
    {.name = "part_size", .min = "64KiB", .max = "5GiB"},
    {.name = "multipart_threshold", .min = "1", .max = "5GiB"},
    {.name = "max_retries", .min = "0", .max = "100"},
    {.name = "timeout", .min = "1s"},
    {.name = NULL},
};
