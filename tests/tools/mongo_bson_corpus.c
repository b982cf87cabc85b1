/* Writes BSON documents of every type, made with libbson alone, back to
 * back (mongodump's .bson layout), for tests/integration/test_mongo_fidelity.sh:
 *
 *     mongo_bson_corpus OUT.bson      prints the number of documents
 *     mongo_bson_corpus --check FILE  checks that FILE is a sequence of
 *                                     whole BSON documents; prints the count
 *
 * Every document starts with its _id (a server moves _id first, so the
 * bytes a server keeps are these). Built by the test itself with
 * `cc $(pkg-config --cflags --libs libbson-1.0)`. */
#include <bson/bson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE *out;
static int count;

static void emit(bson_t *b) {
  if (fwrite(bson_get_data(b), 1, b->len, out) != b->len) {
    perror("write");
    exit(1);
  }
  count++;
  bson_destroy(b);
}

static bson_t *doc_with_id(int32_t id) {
  bson_t *b = bson_new();
  BSON_APPEND_INT32(b, "_id", id);
  return b;
}

static double bits_double(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

static void append_dec(bson_t *b, const char *key, const char *text) {
  bson_decimal128_t d;
  if (!bson_decimal128_from_string(text, &d)) {
    fprintf(stderr, "bad decimal128 %s\n", text);
    exit(1);
  }
  BSON_APPEND_DECIMAL128(b, key, &d);
}

static void numbers(void) {
  bson_t *b = doc_with_id(1);
  BSON_APPEND_INT32(b, "i32min", INT32_MIN);
  BSON_APPEND_INT32(b, "i32max", INT32_MAX);
  BSON_APPEND_INT32(b, "i32zero", 0);
  BSON_APPEND_INT64(b, "i64small", 5); /* an int64 that fits int32 stays int64 */
  BSON_APPEND_INT64(b, "i64max", INT64_MAX);
  BSON_APPEND_INT64(b, "i64min", INT64_MIN);
  emit(b);

  b = doc_with_id(2);
  BSON_APPEND_DOUBLE(b, "integral", 1.0);
  BSON_APPEND_DOUBLE(b, "two53", 9007199254740992.0);
  BSON_APPEND_DOUBLE(b, "big", 1e300);
  BSON_APPEND_DOUBLE(b, "negzero", -0.0);
  BSON_APPEND_DOUBLE(b, "nan", NAN);
  BSON_APPEND_DOUBLE(b, "nan_payload", bits_double(0x7ff8000000000123ull));
  BSON_APPEND_DOUBLE(b, "nan_negative", bits_double(0xfff8000000000000ull));
  BSON_APPEND_DOUBLE(b, "nan_signaling", bits_double(0x7ff0000000000001ull));
  BSON_APPEND_DOUBLE(b, "inf", INFINITY);
  BSON_APPEND_DOUBLE(b, "ninf", -INFINITY);
  BSON_APPEND_DOUBLE(b, "denormal", bits_double(1));
  emit(b);

  b = doc_with_id(3);
  append_dec(b, "one", "1.0");
  append_dec(b, "negzero", "-0");
  append_dec(b, "nan", "NaN");
  append_dec(b, "inf", "Infinity");
  append_dec(b, "ninf", "-Infinity");
  append_dec(b, "max", "9.999999999999999999999999999999999E+6144");
  append_dec(b, "tiny", "1E-6176");
  append_dec(b, "precise", "0.1000000000000000000000000000000000");
  emit(b);
}

static void dates_and_times(void) {
  bson_t *b = doc_with_id(4);
  BSON_APPEND_DATE_TIME(b, "before1970", -3155760000000ll); /* 1870 */
  BSON_APPEND_DATE_TIME(b, "one_ms_before", -1);
  BSON_APPEND_DATE_TIME(b, "epoch", 0);
  BSON_APPEND_DATE_TIME(b, "min", INT64_MIN);
  BSON_APPEND_DATE_TIME(b, "max", INT64_MAX);
  emit(b);

  b = doc_with_id(5);
  BSON_APPEND_TIMESTAMP(b, "zero", 0, 0);
  BSON_APPEND_TIMESTAMP(b, "max", UINT32_MAX, UINT32_MAX);
  BSON_APPEND_TIMESTAMP(b, "ts", 1700000000, 42);
  emit(b);
}

static void binaries(void) {
  uint8_t data[300];
  for (size_t i = 0; i < sizeof data; i++)
    data[i] = (uint8_t)(i * 37 + 11);
  bson_t *b = doc_with_id(6);
  BSON_APPEND_BINARY(b, "generic", BSON_SUBTYPE_BINARY, data, sizeof data);
  BSON_APPEND_BINARY(b, "empty", BSON_SUBTYPE_BINARY, data, 0);
  BSON_APPEND_BINARY(b, "uuid", BSON_SUBTYPE_UUID, data, 16);
  BSON_APPEND_BINARY(b, "md5", BSON_SUBTYPE_MD5, data + 16, 16);
  BSON_APPEND_BINARY(b, "user", BSON_SUBTYPE_USER, data, 33);
  BSON_APPEND_BINARY(b, "user_ff", (bson_subtype_t)0xff, data, 7);
  BSON_APPEND_BINARY(b, "old_binary", BSON_SUBTYPE_BINARY_DEPRECATED, data, 20);
  emit(b);
}

static void regexes_keys_pointers(void) {
  bson_t *b = doc_with_id(7);
  BSON_APPEND_REGEX(b, "flags", "^a.*b$", "imsux");
  BSON_APPEND_REGEX(b, "none", "[/\\\\]x", "");
  BSON_APPEND_REGEX(b, "unicode", "h\xc3\xa9llo|\xe2\x98\x83", "i");
  emit(b);

  b = doc_with_id(8);
  BSON_APPEND_MINKEY(b, "min");
  BSON_APPEND_MAXKEY(b, "max");
  BSON_APPEND_NULL(b, "null");
  BSON_APPEND_UNDEFINED(b, "undefined");
  BSON_APPEND_BOOL(b, "t", true);
  BSON_APPEND_BOOL(b, "f", false);
  emit(b);

  b = doc_with_id(9);
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, "5f0c1e2d3a4b5c6d7e8f9012");
  BSON_APPEND_DBPOINTER(b, "ptr", "db.collection", &oid);
  BSON_APPEND_OID(b, "oid", &oid);
  BSON_APPEND_SYMBOL(b, "symbol", "sym");
  BSON_APPEND_CODE(b, "code", "function () { return 1; }");
  bson_t scope = BSON_INITIALIZER;
  BSON_APPEND_INT32(&scope, "x", 1);
  BSON_APPEND_UTF8(&scope, "y", "scope");
  BSON_APPEND_CODE_WITH_SCOPE(b, "code_with_scope", "function () { return x + y; }", &scope);
  BSON_APPEND_CODE_WITH_SCOPE(b, "code_empty_scope", "x", NULL);
  bson_destroy(&scope);
  emit(b);
}

static void structure(void) {
  /* arrays nested 100 deep */
  bson_t *b = doc_with_id(10);
  bson_t levels[100];
  bson_t *parent = b;
  for (int i = 0; i < 100; i++) {
    bson_append_array_begin(parent, i == 0 ? "deep" : "0", -1, &levels[i]);
    parent = &levels[i];
  }
  BSON_APPEND_INT32(parent, "0", 1);
  for (int i = 99; i >= 0; i--)
    bson_append_array_end(i == 0 ? b : &levels[i - 1], &levels[i]);
  emit(b);

  /* key order as written, odd keys */
  b = doc_with_id(11);
  BSON_APPEND_INT32(b, "z", 1);
  BSON_APPEND_INT32(b, "a", 2);
  BSON_APPEND_INT32(b, "m", 3);
  BSON_APPEND_INT32(b, "", 4);
  BSON_APPEND_INT32(b, "a.b", 5);
  BSON_APPEND_INT32(b, "$dollar", 6);
  BSON_APPEND_INT32(b, "k\xc3\xa9y", 7);
  emit(b);

  /* duplicate keys, also inside a subdocument */
  b = doc_with_id(12);
  BSON_APPEND_INT32(b, "k", 1);
  BSON_APPEND_UTF8(b, "k", "two");
  bson_t sub;
  BSON_APPEND_DOCUMENT_BEGIN(b, "k", &sub);
  BSON_APPEND_INT32(&sub, "a", 1);
  BSON_APPEND_INT32(&sub, "a", 2);
  bson_append_document_end(b, &sub);
  emit(b);

  /* strings: multi-byte UTF-8, an embedded NUL, empty */
  b = doc_with_id(13);
  BSON_APPEND_UTF8(b, "utf8", "h\xc3\xa9llo \xe2\x98\x83 \xf0\x9d\x84\x9e");
  bson_append_utf8(b, "with_nul", -1, "a\0b", 3);
  BSON_APPEND_UTF8(b, "empty", "");
  emit(b);

  /* _id of other types */
  b = bson_new();
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, "65a1b2c3d4e5f60718293a4b");
  BSON_APPEND_OID(b, "_id", &oid);
  BSON_APPEND_UTF8(b, "kind", "oid id");
  emit(b);
  b = bson_new();
  BSON_APPEND_UTF8(b, "_id", "a string id");
  emit(b);
  b = bson_new();
  BSON_APPEND_DOCUMENT_BEGIN(b, "_id", &sub);
  BSON_APPEND_INT32(&sub, "tenant", 7);
  BSON_APPEND_INT64(&sub, "seq", 1);
  bson_append_document_end(b, &sub);
  emit(b);
  b = bson_new();
  BSON_APPEND_INT64(b, "_id", 1);
  emit(b);
}

/* A document of exactly 16 MiB, the largest a server stores. */
static void largest(void) {
  const uint32_t want = 16u * 1024u * 1024u;
  uint8_t *pad = calloc(1, want);
  for (uint32_t i = 0; i < want; i++)
    pad[i] = (uint8_t)(i * 2654435761u >> 24);
  bson_t probe = BSON_INITIALIZER;
  BSON_APPEND_INT32(&probe, "_id", 14);
  BSON_APPEND_BINARY(&probe, "pad", BSON_SUBTYPE_BINARY, pad, 0);
  uint32_t overhead = probe.len;
  bson_destroy(&probe);
  bson_t *b = doc_with_id(14);
  BSON_APPEND_BINARY(b, "pad", BSON_SUBTYPE_BINARY, pad, want - overhead);
  free(pad);
  if (b->len != want) {
    fprintf(stderr, "the large document has %u bytes, not %u\n", b->len, want);
    exit(1);
  }
  emit(b);
}

static int check(const char *path) {
  bson_error_t e;
  bson_reader_t *r = bson_reader_new_from_file(path, &e);
  if (r == NULL) {
    fprintf(stderr, "%s: %s\n", path, e.message);
    return 1;
  }
  const bson_t *doc;
  bool eof = false;
  int n = 0;
  while ((doc = bson_reader_read(r, &eof)) != NULL)
    n++;
  bson_reader_destroy(r);
  if (!eof) {
    fprintf(stderr, "%s: not a sequence of BSON documents after document %d\n", path, n);
    return 1;
  }
  printf("%d\n", n);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--check") == 0)
    return check(argv[2]);
  if (argc != 2) {
    fprintf(stderr, "usage: %s OUT.bson | --check FILE\n", argv[0]);
    return 2;
  }
  out = fopen(argv[1], "wb");
  if (out == NULL) {
    perror(argv[1]);
    return 1;
  }
  numbers();
  dates_and_times();
  binaries();
  regexes_keys_pointers();
  structure();
  largest();
  if (fclose(out) != 0) {
    perror("close");
    return 1;
  }
  printf("%d\n", count);
  return 0;
}
