/* The s3 sink's XML (plugins/sinks/s3/s3_xml.c, libxml2): the input is a
 * response body as a server could send it, given to every parser the sink
 * uses: s3_xml_error (error bodies), s3_xml_root_child (multipart
 * initiation: InitiateMultipartUploadResult/UploadId), s3_xml_list
 * (ListObjectsV2 pages), s3_xml_delete_errors (DeleteObjects results) and
 * s3_xml_uploads (ListMultipartUploads pages).
 * The input is also taken as an object key: when s3_xml_key_ok accepts it,
 * the DeleteObjects request built for it must carry exactly that key.
 *
 * Checked beyond "no crash": results are NUL-terminated within their
 * buffers, a truncated listing always has a continuation token, and keys
 * survive the request document's escaping. */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "s3_int.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  s3_xml_init();
  return 0;
}

static int list_cb(void *ud, const char *key, uint64_t size) {
  (void)size;
  size_t *n = ud;
  FUZZ_CHECK(key != NULL, "a listed entry without a key");
  return ++*n >= 1000; /* stop after 1000, as a caller may */
}

static int del_cb(void *ud, const char *key, const char *code, const char *message) {
  size_t *n = ud;
  FUZZ_CHECK(key && code && message, "a DeleteObjects error without key, code or message");
  FUZZ_CHECK(strlen(code) < 128 && strlen(message) < 512, "an error's text overruns its buffer");
  ++*n;
  return 0;
}

static int upload_cb(void *ud, const char *key, const char *upload_id, const char *initiated) {
  size_t *n = ud;
  FUZZ_CHECK(key && upload_id && upload_id[0] && initiated && strlen(initiated) < 64,
             "an upload without key or id, or an overrun");
  ++*n;
  return 0;
}

static const xmlNode *elem(const xmlNode *n, const char *name) {
  for (; n; n = n->next)
    if (n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0)
      return n;
  return NULL;
}

/* The key in a DeleteObjects request for one key, read back with libxml2. */
static void check_delete_doc(const char *key) {
  size_t len = 0;
  char *doc = s3_xml_delete_doc(&key, 1, &len);
  FUZZ_CHECK(doc && len == strlen(doc), "s3_xml_delete_doc failed for an accepted key");
  xmlDocPtr d = xmlReadMemory(doc, (int)len, "delete.xml", NULL,
                              XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  FUZZ_CHECK(d != NULL, "the DeleteObjects request is not well-formed: %s", doc);
  const xmlNode *root = xmlDocGetRootElement(d);
  const xmlNode *obj = root ? elem(root->children, "Object") : NULL;
  const xmlNode *k = obj ? elem(obj->children, "Key") : NULL;
  xmlChar *text = k ? xmlNodeGetContent(k) : NULL;
  FUZZ_CHECK(text && strcmp((const char *)text, key) == 0,
             "the request carries another key than the one given");
  xmlFree(text);
  xmlFreeDoc(d);
  free(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *body = (const char *)data;

  struct s3_error_doc e;
  int found = s3_xml_error(body, size, &e);
  FUZZ_CHECK(strlen(e.code) < sizeof(e.code) && strlen(e.message) < sizeof(e.message) &&
                 strlen(e.region) < sizeof(e.region),
             "error fields overrun");
  FUZZ_CHECK(!found || e.code[0] || e.message[0], "an error document without code or message");

  free(s3_xml_root_child(body, size, "InitiateMultipartUploadResult", "UploadId"));
  free(s3_xml_root_child(body, size, "CompleteMultipartUploadResult", "ETag"));

  size_t n = 0;
  char *token = NULL, why[256];
  int rc = s3_xml_list(body, size, list_cb, &n, &token, why, sizeof(why));
  FUZZ_CHECK(rc != -1 || strlen(why) < sizeof(why), "no reason");
  FUZZ_CHECK(rc == 0 || token == NULL, "a token with a failed listing");
  if (token)
    FUZZ_CHECK(token[0] != '\0', "an empty continuation token");
  free(token);

  n = 0;
  rc = s3_xml_delete_errors(body, size, del_cb, &n, why, sizeof(why));
  FUZZ_CHECK(rc == 0 || rc == -1, "rc %d", rc);

  n = 0;
  char *next_key = NULL, *next_id = NULL;
  rc = s3_xml_uploads(body, size, upload_cb, &n, &next_key, &next_id, why, sizeof(why));
  FUZZ_CHECK(rc == 0 || (!next_key && !next_id), "markers with a failed listing");
  FUZZ_CHECK(!next_id || next_key, "an upload id marker without a key marker");
  if (next_key)
    FUZZ_CHECK(next_key[0] != '\0', "an empty key marker");
  free(next_key);
  free(next_id);

  char *key = malloc(size + 1);
  memcpy(key, data, size);
  key[size] = '\0';
  if (s3_xml_key_ok(key))
    check_delete_doc(key);
  free(key);
  return 0;
}
