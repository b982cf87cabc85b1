/* The baselines of bench/mongo_bench.sh: what libmongoc alone does, with
 * nothing of the engine around it.
 *
 *   mongo_raw dump URI DB COLL FILE BATCH   a find cursor (batchSize BATCH
 *                                           documents), every document
 *                                           appended to FILE
 *   mongo_raw load URI DB COLL FILE BYTES   the documents of FILE (BSON back
 *                                           to back) inserted by unordered
 *                                           bulk writes of BYTES bytes
 *
 * Prints "DOCS BYTES SECONDS". Built by the bench with
 * `cc $(pkg-config --cflags --libs libmongoc-1.0)`. */
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dump(mongoc_collection_t *coll, const char *path, int32_t batch) {
  FILE *f = fopen(path, "wb");
  if (f == NULL) {
    perror(path);
    return 1;
  }
  bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
  BSON_APPEND_INT32(&opts, "batchSize", batch);
  double t0 = now();
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
  const bson_t *doc;
  unsigned long long n = 0, bytes = 0;
  while (mongoc_cursor_next(cur, &doc)) {
    if (fwrite(bson_get_data(doc), 1, doc->len, f) != doc->len) {
      perror("write");
      return 1;
    }
    n++;
    bytes += doc->len;
  }
  bson_error_t e;
  if (mongoc_cursor_error(cur, &e)) {
    fprintf(stderr, "cursor: %s\n", e.message);
    return 1;
  }
  if (fclose(f) != 0) {
    perror("close");
    return 1;
  }
  printf("%llu %llu %.3f\n", n, bytes, now() - t0);
  mongoc_cursor_destroy(cur);
  bson_destroy(&filter);
  bson_destroy(&opts);
  return 0;
}

static int flush(mongoc_bulk_operation_t *b) {
  bson_t reply;
  bson_error_t e;
  int ok = mongoc_bulk_operation_execute(b, &reply, &e) != 0;
  if (!ok)
    fprintf(stderr, "bulk: %s\n", e.message);
  bson_destroy(&reply);
  mongoc_bulk_operation_destroy(b);
  return ok;
}

static int load(mongoc_collection_t *coll, const char *path, long long max_bytes) {
  bson_error_t e;
  bson_reader_t *r = bson_reader_new_from_file(path, &e);
  if (r == NULL) {
    fprintf(stderr, "%s: %s\n", path, e.message);
    return 1;
  }
  bson_t opts = BSON_INITIALIZER, io = BSON_INITIALIZER;
  BSON_APPEND_BOOL(&opts, "ordered", false);
  BSON_APPEND_BOOL(&io, "validate", false);
  double t0 = now();
  const bson_t *doc;
  mongoc_bulk_operation_t *b = NULL;
  long long in_batch = 0;
  unsigned long long n = 0, bytes = 0;
  while ((doc = bson_reader_read(r, NULL)) != NULL) {
    if (b == NULL)
      b = mongoc_collection_create_bulk_operation_with_opts(coll, &opts);
    if (!mongoc_bulk_operation_insert_with_opts(b, doc, &io, &e)) {
      fprintf(stderr, "insert: %s\n", e.message);
      return 1;
    }
    in_batch += doc->len;
    n++;
    bytes += doc->len;
    if (in_batch >= max_bytes) {
      if (!flush(b))
        return 1;
      b = NULL;
      in_batch = 0;
    }
  }
  if (b != NULL && !flush(b))
    return 1;
  printf("%llu %llu %.3f\n", n, bytes, now() - t0);
  bson_reader_destroy(r);
  bson_destroy(&opts);
  bson_destroy(&io);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 7 || (strcmp(argv[1], "dump") != 0 && strcmp(argv[1], "load") != 0)) {
    fprintf(stderr, "usage: %s dump|load URI DB COLL FILE BATCH|BYTES\n", argv[0]);
    return 2;
  }
  mongoc_init();
  bson_error_t e;
  mongoc_uri_t *uri = mongoc_uri_new_with_error(argv[2], &e);
  mongoc_client_t *client = uri ? mongoc_client_new_from_uri(uri) : NULL;
  if (client == NULL) {
    fprintf(stderr, "%s: %s\n", argv[2], uri ? "unable to create a client" : e.message);
    return 1;
  }
  mongoc_collection_t *coll = mongoc_client_get_collection(client, argv[3], argv[4]);
  int rc = strcmp(argv[1], "dump") == 0 ? dump(coll, argv[5], (int32_t)atoi(argv[6]))
                                        : load(coll, argv[5], atoll(argv[6]));
  mongoc_collection_destroy(coll);
  mongoc_client_destroy(client);
  mongoc_uri_destroy(uri);
  mongoc_cleanup();
  return rc;
}
