/* GCS error bodies: the message of a JSON API or OAuth2 error document, or
 * a printable excerpt of whatever else the server sent. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gcs_int.h"

/* Copies a printable, single-line excerpt of text into buf. */
static void excerpt(const char *text, size_t len, char *buf, size_t buflen) {
  size_t o = 0, i = 0;
  int space = 0;
  for (; i < len && o + 4 < buflen; i++) {
    unsigned char c = (unsigned char)text[i];
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = o > 0;
      continue;
    }
    if (space) {
      buf[o++] = ' ';
      space = 0;
    }
    buf[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  if (i < len && o + 3 < buflen) {
    memcpy(buf + o, "...", 3);
    o += 3;
  }
  buf[o] = '\0';
}

const char *gcs_error_text(const char *body, size_t len, char *buf, size_t buflen) {
  if (buflen == 0)
    return buf;
  buf[0] = '\0';
  if (body == NULL || len == 0)
    return buf;
  json_t *root = json_loadb(body, len, 0, NULL);
  if (root != NULL) {
    /* JSON API: {"error": {"code": 403, "message": "..."}};
     * OAuth2 token endpoint: {"error": "invalid_grant", "error_description": "..."} */
    json_t *err = json_object_get(root, "error");
    const char *msg = NULL, *code = NULL;
    if (json_is_object(err)) {
      msg = json_string_value(json_object_get(err, "message"));
    } else if (json_is_string(err)) {
      code = json_string_value(err);
      msg = json_string_value(json_object_get(root, "error_description"));
    }
    if (code != NULL && msg != NULL)
      snprintf(buf, buflen, "%s: %s", code, msg);
    else if (msg != NULL || code != NULL)
      snprintf(buf, buflen, "%s", msg != NULL ? msg : code);
    json_decref(root);
    if (buf[0] != '\0') {
      char tmp[512];
      excerpt(buf, strlen(buf), tmp, sizeof tmp < buflen ? sizeof tmp : buflen);
      snprintf(buf, buflen, "%s", tmp);
      return buf;
    }
  }
  excerpt(body, len, buf, buflen < 200 ? buflen : 200);
  return buf;
}
