/* S3 XML documents through libxml2: the responses (errors, multipart
 * initiation, ListObjectsV2 pages, DeleteObjects results) are parsed, the
 * DeleteObjects request is built (libxml2 escapes the keys). Element names are matched without
 * their namespace: AWS qualifies them with the 2006-03-01 namespace, other servers may not. */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3_int.h"

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_init_once(void) {
  xmlInitParser();
}

/* libxml2 sets up its global state in xmlInitParser, which must run before
 * threads parse concurrently. */
void s3_xml_init(void) {
  pthread_once(&xml_once, xml_init_once);
}

static xmlDocPtr parse(const char *body, size_t len) {
  if (body == NULL || len == 0 || len > (size_t)INT32_MAX)
    return NULL;
  s3_xml_init();
  /* no network, no entity expansion beyond the predefined ones, and no
   * messages on stderr: a server's malformed reply is reported by the caller */
  return xmlReadMemory(body, (int)len, "s3-response.xml", NULL,
                       XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

static int named(const xmlNode *n, const char *name) {
  return n != NULL && n->type == XML_ELEMENT_NODE && n->name != NULL &&
         strcmp((const char *)n->name, name) == 0;
}

static xmlNode *child(const xmlNode *parent, const char *name) {
  for (xmlNode *c = parent ? parent->children : NULL; c != NULL; c = c->next)
    if (named(c, name))
      return c;
  return NULL;
}

/* malloc'd text of an element (libxml2's xmlFree is free() by default, but
 * do not rely on it: copy). */
static char *text_of(const xmlNode *n) {
  if (n == NULL)
    return NULL;
  xmlChar *t = xmlNodeGetContent(n);
  if (t == NULL)
    return NULL;
  char *out = strdup((const char *)t);
  xmlFree(t);
  return out;
}

static void copy_child_text(const xmlNode *parent, const char *name, char *out, size_t out_len) {
  out[0] = '\0';
  char *t = text_of(child(parent, name));
  if (t == NULL)
    return;
  /* one line in a message: flatten control characters */
  size_t o = 0;
  for (const char *p = t; *p != '\0' && o + 1 < out_len; p++)
    out[o++] = (unsigned char)*p < 0x20 ? ' ' : *p;
  out[o] = '\0';
  free(t);
}

int s3_xml_error(const char *body, size_t len, struct s3_error_doc *out) {
  out->code[0] = out->message[0] = out->region[0] = '\0';
  xmlDocPtr doc = parse(body, len);
  if (doc == NULL)
    return 0;
  int found = 0;
  xmlNode *root = xmlDocGetRootElement(doc);
  if (named(root, "Error")) {
    copy_child_text(root, "Code", out->code, sizeof out->code);
    copy_child_text(root, "Message", out->message, sizeof out->message);
    copy_child_text(root, "Region", out->region, sizeof out->region);
    found = out->code[0] != '\0' || out->message[0] != '\0';
  }
  xmlFreeDoc(doc);
  return found;
}

char *s3_xml_root_child(const char *body, size_t len, const char *root_name, const char *name) {
  xmlDocPtr doc = parse(body, len);
  if (doc == NULL)
    return NULL;
  char *out = NULL;
  xmlNode *root = xmlDocGetRootElement(doc);
  if (named(root, root_name))
    out = text_of(child(root, name));
  xmlFreeDoc(doc);
  return out;
}

/* A response document whose root element must be `name`: the document
 * (*root set), or NULL with the reason in why. */
static xmlDocPtr result_doc(const char *body, size_t len, const char *name, xmlNode **root,
                            char *why, size_t why_len) {
  xmlDocPtr doc = parse(body, len);
  if (doc == NULL) {
    snprintf(why, why_len, "the response is %s", len ? "not well-formed XML" : "empty");
    return NULL;
  }
  *root = xmlDocGetRootElement(doc);
  if (!named(*root, name)) {
    snprintf(why, why_len, "the response is <%s>, not <%s>",
             *root && (*root)->name ? (const char *)(*root)->name : "(nothing)", name);
    xmlFreeDoc(doc);
    return NULL;
  }
  return doc;
}

/* Whether a listing says more pages follow (<IsTruncated>true</IsTruncated>). */
static int truncated(xmlNode *root) {
  char *t = text_of(child(root, "IsTruncated"));
  int more = t != NULL && strcmp(t, "true") == 0;
  free(t);
  return more;
}

int s3_xml_list(const char *body, size_t len, int (*cb)(void *ud, const char *key, uint64_t size),
                void *ud, char **next_token, char *why, size_t why_len) {
  *next_token = NULL;
  xmlNode *root = NULL;
  xmlDocPtr doc = result_doc(body, len, "ListBucketResult", &root, why, why_len);
  if (doc == NULL)
    return -1;
  int rc = 0;
  for (xmlNode *c = root->children; c != NULL; c = c->next) {
    if (!named(c, "Contents"))
      continue;
    char *key = text_of(child(c, "Key"));
    char *size_text = text_of(child(c, "Size"));
    uint64_t size = 0;
    if (key == NULL || size_text == NULL || objstore_parse_u64(size_text, &size) != 0) {
      snprintf(why, why_len, "an entry of the listing lacks a valid <Key> or <Size>%s%.200s%s",
               key ? " (key '" : "", key ? key : "", key ? "')" : "");
      free(key);
      free(size_text);
      rc = -1;
      goto out;
    }
    int stop = cb(ud, key, size);
    free(key);
    free(size_text);
    if (stop) {
      rc = 1;
      goto out;
    }
  }
  if (truncated(root)) {
    *next_token = text_of(child(root, "NextContinuationToken"));
    if (*next_token == NULL || (*next_token)[0] == '\0') {
      free(*next_token);
      *next_token = NULL;
      snprintf(why, why_len, "the listing is truncated but has no <NextContinuationToken>");
      rc = -1;
    }
  }
out:
  xmlFreeDoc(doc);
  return rc;
}

/* Strict UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF: xmlCheckUTF8 lets overlong forms such as C1 86 through, and the
 * request document is then not well-formed) of characters XML 1.0 allows:
 * tab, LF, CR, U+0020-U+D7FF, U+E000-U+FFFD, U+10000-U+10FFFF. */
int s3_xml_key_ok(const char *key) {
  static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000}; /* by sequence length */
  if (key == NULL)
    return 0;
  for (const unsigned char *p = (const unsigned char *)key; *p;) {
    uint32_t c;
    size_t n;
    if (*p < 0x80) {
      c = *p;
      n = 1;
    } else if ((*p & 0xe0) == 0xc0) {
      c = *p & 0x1fu;
      n = 2;
    } else if ((*p & 0xf0) == 0xe0) {
      c = *p & 0x0fu;
      n = 3;
    } else if ((*p & 0xf8) == 0xf0) {
      c = *p & 0x07u;
      n = 4;
    } else {
      return 0;
    }
    for (size_t i = 1; i < n; i++) {
      if ((p[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
        return 0;
      c = (c << 6) | (p[i] & 0x3fu);
    }
    if (c < least[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
      return 0;
    if (c < 0x20 ? (c != '\t' && c != '\n' && c != '\r') : (c == 0xfffe || c == 0xffff))
      return 0;
    p += n;
  }
  return 1;
}

/* A request document with a root element `name` in S3's namespace. */
static xmlDocPtr request_doc(const char *name, xmlNodePtr *root) {
  s3_xml_init();
  xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
  *root = doc ? xmlNewDocNode(doc, NULL, (const xmlChar *)name, NULL) : NULL;
  if (*root == NULL) {
    if (doc != NULL)
      xmlFreeDoc(doc);
    return NULL;
  }
  xmlDocSetRootElement(doc, *root);
  if (xmlNewNs(*root, (const xmlChar *)"http://s3.amazonaws.com/doc/2006-03-01/", NULL) == NULL) {
    xmlFreeDoc(doc);
    return NULL;
  }
  return doc;
}

/* The document as malloc'd text (NULL on OOM); frees the document. */
static char *request_text(xmlDocPtr doc, size_t *out_len) {
  char *out = NULL;
  xmlChar *mem = NULL;
  int size = 0;
  /* UTF-8 as is, not as character references: shorter, and what S3 expects */
  xmlDocDumpFormatMemoryEnc(doc, &mem, &size, "UTF-8", 0);
  if (mem != NULL && size > 0) {
    out = malloc((size_t)size + 1);
    if (out != NULL) {
      memcpy(out, mem, (size_t)size);
      out[size] = '\0';
      *out_len = (size_t)size;
    }
  }
  if (mem != NULL)
    xmlFree(mem);
  xmlFreeDoc(doc);
  return out;
}

char *s3_xml_delete_doc(const char *const *keys, size_t n, size_t *out_len) {
  xmlNodePtr root;
  xmlDocPtr doc = request_doc("Delete", &root);
  if (doc == NULL)
    return NULL;
  int ok = xmlNewChild(root, NULL, (const xmlChar *)"Quiet", (const xmlChar *)"true") != NULL;
  for (size_t i = 0; ok && i < n; i++) {
    xmlNodePtr obj = xmlNewChild(root, NULL, (const xmlChar *)"Object", NULL);
    /* xmlNewTextChild escapes the content (&, <, >, and CR as &#13; so
     * that the server's parser does not normalise it away) */
    ok = obj != NULL &&
         xmlNewTextChild(obj, NULL, (const xmlChar *)"Key", (const xmlChar *)keys[i]) != NULL;
  }
  if (!ok) {
    xmlFreeDoc(doc);
    return NULL;
  }
  return request_text(doc, out_len);
}

char *s3_xml_complete_doc(char *const *etags, size_t n, size_t *out_len) {
  xmlNodePtr root;
  xmlDocPtr doc = request_doc("CompleteMultipartUpload", &root);
  if (doc == NULL)
    return NULL;
  int ok = 1;
  for (size_t i = 0; ok && i < n; i++) {
    char num[32];
    snprintf(num, sizeof num, "%zu", i + 1);
    xmlNodePtr part = xmlNewChild(root, NULL, (const xmlChar *)"Part", NULL);
    /* an ETag is quoted hex, but whatever a server sent is escaped */
    ok = part != NULL &&
         xmlNewChild(part, NULL, (const xmlChar *)"PartNumber", (const xmlChar *)num) != NULL &&
         xmlNewTextChild(part, NULL, (const xmlChar *)"ETag", (const xmlChar *)etags[i]) != NULL;
  }
  if (!ok) {
    xmlFreeDoc(doc);
    return NULL;
  }
  return request_text(doc, out_len);
}

int s3_xml_delete_errors(const char *body, size_t len,
                         int (*cb)(void *ud, const char *key, const char *code,
                                   const char *message),
                         void *ud, char *why, size_t why_len) {
  xmlNode *root = NULL;
  xmlDocPtr doc = result_doc(body, len, "DeleteResult", &root, why, why_len);
  if (doc == NULL)
    return -1;
  int rc = 0;
  for (xmlNode *c = root->children; c != NULL; c = c->next) {
    if (!named(c, "Error"))
      continue;
    /* keys are echoed verbatim (not flattened like messages): the caller
     * compares them with the keys it asked to delete */
    char *key = text_of(child(c, "Key"));
    char code[128], message[512];
    copy_child_text(c, "Code", code, sizeof code);
    copy_child_text(c, "Message", message, sizeof message);
    int stop = cb(ud, key ? key : "", code, message);
    free(key);
    if (stop) {
      rc = 1;
      goto out;
    }
  }
out:
  xmlFreeDoc(doc);
  return rc;
}

int s3_xml_uploads(const char *body, size_t len,
                   int (*cb)(void *ud, const char *key, const char *upload_id,
                             const char *initiated),
                   void *ud, char **next_key, char **next_upload_id, char *why, size_t why_len) {
  *next_key = *next_upload_id = NULL;
  xmlNode *root = NULL;
  xmlDocPtr doc = result_doc(body, len, "ListMultipartUploadsResult", &root, why, why_len);
  if (doc == NULL)
    return -1;
  int rc = 0;
  for (xmlNode *c = root->children; c != NULL; c = c->next) {
    if (!named(c, "Upload"))
      continue;
    char *key = text_of(child(c, "Key"));
    char *id = text_of(child(c, "UploadId"));
    char initiated[64];
    copy_child_text(c, "Initiated", initiated, sizeof initiated);
    if (key == NULL || id == NULL || id[0] == '\0') {
      snprintf(why, why_len, "an <Upload> entry lacks its <Key> or <UploadId>%s%.200s%s",
               key ? " (key '" : "", key ? key : "", key ? "')" : "");
      free(key);
      free(id);
      rc = -1;
      goto out;
    }
    int stop = cb(ud, key, id, initiated);
    free(key);
    free(id);
    if (stop) {
      rc = 1;
      goto out;
    }
  }
  if (truncated(root)) {
    *next_key = text_of(child(root, "NextKeyMarker"));
    *next_upload_id = text_of(child(root, "NextUploadIdMarker"));
    if (*next_key == NULL || (*next_key)[0] == '\0') {
      free(*next_key);
      free(*next_upload_id);
      *next_key = *next_upload_id = NULL;
      snprintf(why, why_len, "the listing is truncated but has no <NextKeyMarker>");
      rc = -1;
    }
  }
out:
  xmlFreeDoc(doc);
  return rc;
}
