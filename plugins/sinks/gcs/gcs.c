/* The "gcs" sink: a repository in a Google Cloud Storage bucket, through the
 * JSON API. Small objects are sent in one media upload, large ones through a
 * resumable session in chunks; downloads use alt=media with a Range header.
 * Every request goes through the engine's shared HTTP client
 * (host->http_request), which reuses connections and retries transport
 * errors, 408, 429 and 5xx with backoff. Authentication is an OAuth2 access
 * token obtained with a service-account key (auth.c), or nothing at all for
 * emulators. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gcs_int.h"

/* ---- get / stat ------------------------------------------------------- */

/* One ranged download (alt=media); what the answer means is the sinks'
 * shared decision (objstore_read_answer). */
static int gcs_get(void *inst, const char *name, uint64_t off, uint64_t len, void **buf,
                   size_t *out_len) {
  struct gcs_sink *s = inst;
  *buf = NULL;
  *out_len = 0;
  char why[256];
  struct objstore_read rd;
  if (objstore_read_init(&rd, off, len, NULL, NULL, why, sizeof why) != 0) {
    GCS_ERROR(s, "unable to read object '%s': %s", name != NULL ? name : "", why);
    return ENGINE_ERROR;
  }
  char *full = gcs_full_name(s, name, 0);
  char *url = full != NULL ? gcs_object_url(s, full, "alt=media") : NULL;
  int rc = ENGINE_ERROR;
  if (full == NULL)
    goto out;
  if (url == NULL) {
    rc = gcs_fail_oom(s, "reading", full);
    goto out;
  }
  const char *headers[] = {rd.range, NULL};
  struct call c = {.method = "GET",
                   .url = url,
                   .headers = rd.range[0] ? headers : NULL,
                   .on_body = objstore_body_cb,
                   .ud = &rd.body};
  struct engine_http_response resp;
  if (gcs_send(s, &c, "download", full, &resp) != ENGINE_OK) {
    if (objstore_body_stopped(&rd.body, why, sizeof why))
      GCS_ERROR(s, "download gs://%s/%s: %s", s->bucket, full, why);
    goto out;
  }
  enum objstore_verdict v = objstore_read_answer(&rd, resp.status, why, sizeof why);
  if (v == OBJSTORE_NEED_SIZE) {
    struct meta m;
    rc = gcs_get_meta(s, full, &m);
    if (rc == ENGINE_OK)
      v = objstore_read_sized(&rd, m.size, why, sizeof why);
    rc = rc == ENGINE_OK ? ENGINE_ERROR : rc;
  }
  switch (v) {
  case OBJSTORE_DATA:
    *buf = objstore_read_take(&rd, out_len);
    rc = *buf != NULL ? ENGINE_OK : gcs_fail_oom(s, "reading", full);
    break;
  case OBJSTORE_ABSENT:
    rc = gcs_not_found(s, full);
    break;
  case OBJSTORE_FAILED:
    GCS_ERROR(s, "unable to read object gs://%s/%s: %s", s->bucket, full, why);
    break;
  case OBJSTORE_STATUS:
    rc = gcs_fail_http(s, "download", full, resp.status, (const char *)rd.body.p, rd.body.len);
    break;
  case OBJSTORE_NEED_SIZE:
    break; /* get_meta's message stands */
  }
  s->host->http_response_free(&resp);
out:
  objstore_read_free(&rd);
  free(url);
  free(full);
  return rc;
}

static int gcs_stat(void *inst, const char *name, uint64_t *size) {
  struct gcs_sink *s = inst;
  char *full = gcs_full_name(s, name, 0);
  if (full == NULL)
    return ENGINE_ERROR;
  struct meta m;
  int rc = gcs_get_meta(s, full, &m);
  if (rc == ENGINE_OK && size != NULL)
    *size = m.size;
  free(full);
  return rc;
}

/* ---- list ------------------------------------------------------------- */

/* One page; *next is the nextPageToken (malloc'd) or NULL at the end.
 * *stopped is set when the callback asked to stop. */
static int list_page(struct gcs_sink *s, const char *full_prefix, const char *token,
                     int (*cb)(void *ud, const char *name, uint64_t size), void *ud, char **next,
                     int *stopped) {
  *next = NULL;
  char *penc = objstore_uri_encode(full_prefix, strlen(full_prefix), 0);
  char *tenc = token != NULL ? objstore_uri_encode(token, strlen(token), 0) : NULL;
  char *url = NULL;
  if (penc == NULL || (token != NULL && tenc == NULL) ||
      asprintf(&url,
               "%s/storage/v1/b/%s/o?prefix=%s&maxResults=%d"
               "&fields=items%%28name%%2Csize%%29%%2CnextPageToken%s%s",
               s->endpoint, s->bucket_enc, penc, LIST_PAGE, tenc != NULL ? "&pageToken=" : "",
               tenc != NULL ? tenc : "") < 0) {
    free(penc);
    free(tenc);
    return gcs_fail_oom(s, "listing", full_prefix);
  }
  free(penc);
  free(tenc);
  static const char *const headers[] = {"Accept: application/json", NULL};
  struct call c = {.method = "GET", .url = url, .headers = headers, .max_body = 64 * MIB};
  struct engine_http_response resp;
  int rc = gcs_send(s, &c, "list", full_prefix, &resp);
  free(url);
  if (rc != ENGINE_OK)
    return rc;
  if (resp.status != 200) {
    if (resp.status == 404)
      GCS_ERROR(s, "list gs://%s/%s: HTTP 404: bucket '%s' not found", s->bucket, full_prefix,
                s->bucket);
    else
      gcs_fail_http(s, "list", full_prefix, resp.status, resp.body, resp.body_len);
    s->host->http_response_free(&resp);
    return ENGINE_ERROR;
  }
  json_t *root = json_loadb(resp.body, resp.body_len, 0, NULL);
  s->host->http_response_free(&resp);
  json_t *items = json_object_get(root, "items");
  if (root == NULL || (items != NULL && !json_is_array(items))) {
    GCS_ERROR(s, "list gs://%s/%s: the server's answer is not an object listing", s->bucket,
              full_prefix);
    json_decref(root);
    return ENGINE_ERROR;
  }
  size_t plen = strlen(s->prefix);
  size_t i;
  json_t *it;
  json_array_foreach(items, i, it) {
    const char *nm = json_string_value(json_object_get(it, "name"));
    uint64_t size = 0;
    if (nm == NULL || gcs_parse_size(json_object_get(it, "size"), &size) != 0) {
      GCS_ERROR(s, "list gs://%s/%s: an entry of the listing has no valid name or size", s->bucket,
                full_prefix);
      rc = ENGINE_ERROR;
      break;
    }
    size_t nl = strlen(nm);
    /* "folder/" placeholders (made by consoles) are not repository objects */
    if (nl <= plen || strncmp(nm, s->prefix, plen) != 0 || nm[nl - 1] == '/')
      continue;
    if (cb(ud, nm + plen, size) != 0) {
      *stopped = 1;
      break;
    }
  }
  const char *tok = json_string_value(json_object_get(root, "nextPageToken"));
  if (rc == ENGINE_OK && !*stopped && tok != NULL && tok[0] != '\0') {
    *next = strdup(tok);
    if (*next == NULL)
      rc = gcs_fail_oom(s, "listing", full_prefix);
  }
  json_decref(root);
  return rc;
}

static int gcs_list(void *inst, const char *prefix,
                    int (*cb)(void *ud, const char *name, uint64_t size), void *ud) {
  struct gcs_sink *s = inst;
  char *full = gcs_full_name(s, prefix != NULL ? prefix : "", 1);
  if (full == NULL)
    return ENGINE_ERROR;
  int rc = ENGINE_OK, stopped = 0;
  char *token = NULL;
  do {
    char *next = NULL;
    if (s->host->cancelled(s->host)) {
      GCS_ERROR(s, "list gs://%s/%s: cancelled", s->bucket, full);
      rc = ENGINE_ERROR;
      break;
    }
    rc = list_page(s, full, token, cb, ud, &next, &stopped);
    free(token);
    token = next;
  } while (rc == ENGINE_OK && token != NULL);
  free(token);
  free(full);
  return rc;
}

/* ---- del -------------------------------------------------------------- */

static int gcs_del(void *inst, const char *name) {
  struct gcs_sink *s = inst;
  char *full = gcs_full_name(s, name, 0);
  if (full == NULL)
    return ENGINE_ERROR;
  char *url = gcs_object_url(s, full, NULL);
  if (url == NULL) {
    int rc = gcs_fail_oom(s, "deleting", full);
    free(full);
    return rc;
  }
  struct call c = {.method = "DELETE", .url = url, .max_body = MIB};
  struct engine_http_response resp;
  int rc = gcs_send(s, &c, "delete", full, &resp);
  free(url);
  if (rc == ENGINE_OK) {
    if (resp.status == 200 || resp.status == 204) {
      rc = ENGINE_OK;
    } else if (resp.status == 404 && resp.attempts > 1) {
      /* an earlier attempt whose answer was lost deleted it */
      rc = ENGINE_OK;
    } else if (resp.status == 404) {
      rc = gcs_not_found(s, full);
    } else {
      rc = gcs_fail_http(s, "delete", full, resp.status, resp.body, resp.body_len);
    }
    s->host->http_response_free(&resp);
  }
  free(full);
  return rc;
}

/* ---- instance --------------------------------------------------------- */

static const char *gcs_describe(void *inst) {
  return ((struct gcs_sink *)inst)->where;
}

static const struct engine_sink_ops gcs_ops = {
    .struct_size = sizeof(struct engine_sink_ops),
    .put = gcs_put,
    .get = gcs_get,
    .stat = gcs_stat,
    .list = gcs_list,
    .del = gcs_del,
    .describe = gcs_describe,
};

static const struct engine_plugin gcs_plugin = {
    ENGINE_PLUGIN_HEADER,
    .kind = ENGINE_PLUGIN_SINK,
    .name = "gcs",
    .version = "0.1.0",
    .license = "MIT",
    .description =
        "Repository in a Google Cloud Storage bucket (JSON API, OAuth2 service account).",
    .options = gcs_options,
    .option_bounds = gcs_bounds,
    .create = gcs_create,
    .destroy = gcs_destroy,
    .sink = &gcs_ops,
};

ENGINE_PLUGIN_EXPORT const struct engine_plugin *engine_plugin_query(uint32_t host_abi_major) {
  return host_abi_major == ENGINE_ABI_MAJOR ? &gcs_plugin : NULL;
}
